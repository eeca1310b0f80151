"""One metric of a metric history, read fast: what ``mlpipeline plot`` draws.

A plot of 500 versions reads 500,000 reports. Decoded line by line, and each checked, that
cost 7 ms a history of 1,000 reports; here a piece of the file is decoded as one JSON array,
in the parser's C code, after checking that its lines cannot be anything but one value each.
A file with any other line (cut short by a crash, edited, not a report, a report holding a
list) is read again the strict way, line by line, with a warning naming each line skipped:
the result is the same, only slower.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, List, NamedTuple, Optional

from mlpipeline.records.files import number, regular_file_opener
from mlpipeline.records.metric_history import read_history_file

_PIECE = 8 << 20
"""Read this much at a time: memory stays bounded however long the history grows."""


class MetricSeries(NamedTuple):
    """A history's reports in order, one entry each: the run that made it, its step (None
    when it gave none, or no number) and its value of the metric (None when it reported none,
    or no number; NaN and infinities as floats)."""

    run_ids: List[Any]
    steps: List[Optional[float]]
    values: List[Optional[float]]


def read_metric_series(path: "str | Path", metric: str, warn: Optional[Callable[[str], None]] = None) -> MetricSeries:
    """``metric`` through the history file at ``path``; a file that cannot be read gives none
    (with a warning to ``warn``), a line that is no report is skipped (warned likewise)."""
    try:
        series = _read_fast(path, metric)
    except (OSError, UnicodeDecodeError):
        series = None  # read again the strict way, which says what is wrong
    if series is not None:
        return series
    series = MetricSeries([], [], [])
    for report in read_history_file(Path(path), warn):
        series.run_ids.append(report.get("run_id"))
        series.steps.append(number(report.get("step")))
        series.values.append(number(report["metrics"].get(metric)))
    return series


def _read_fast(path: "str | Path", metric: str) -> Optional[MetricSeries]:
    """The series when every whole line of the file is one report; None otherwise."""
    series = MetricSeries([], [], [])
    with open(path, "rb", opener=regular_file_opener) as handle:
        rest = b""
        while True:
            piece = handle.read(_PIECE)
            if not piece:
                return series  # what is left in rest has no newline: being written, or cut short
            piece = rest + piece
            end = piece.rfind(b"\n")
            if end < 0:
                if len(piece) > _PIECE:
                    return None  # a line longer than a piece is no report of ours
                rest = piece
                continue
            text, rest = piece[:end].decode("utf-8"), piece[end + 1 :]
            # Each line must be one report, no more and no less. Lines that each begin with
            # "{" and hold no "[" cannot run into one another (an object's "," is followed by
            # a key, a string's raw newline is refused), so the count of values says it.
            breaks = text.count("\n")
            if "[" in text or text[:1] != "{" or text.count("\n{") != breaks:
                return None
            try:
                reports = json.loads("[" + text.replace("\n", "\n,") + "]")
            except (ValueError, RecursionError):
                return None
            if len(reports) != breaks + 1:
                return None  # a line of two values, or of none
            for report in reports:
                metrics = report.get("metrics") if type(report) is dict else None
                if type(metrics) is not dict:
                    return None
                step, value = report.get("step"), metrics.get(metric)
                series.run_ids.append(report.get("run_id"))
                # number() is the rule; a float is its answer, taken without the call.
                series.steps.append(step if type(step) is float else number(step))
                series.values.append(value if type(value) is float else number(value))
