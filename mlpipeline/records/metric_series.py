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
from mlpipeline.records.lines import SURROGATE_ESCAPE
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
    except (OSError, ValueError):  # not UTF-8, or a path no file can have
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
            lines, rest = piece[:end], piece[end + 1 :]
            # Each line must be one report, no more and no less. Lines that each begin with
            # "{" and hold no "[" cannot run into one another (an object's "," is followed by
            # a key, a string's raw newline is refused), so the count of values says it.
            breaks = lines.count(b"\n")
            if b"[" in lines or lines[:1] != b"{" or lines.count(b"\n{") != breaks:
                return None
            reports = _decode_reports(b"[" + lines.replace(b"\n", b"\n,") + b"]", breaks + 1)
            if reports is None:
                return None
            if not all([type(report) is dict for report in reports]):
                return None
            metrics = [report.get("metrics") for report in reports]
            if not all([type(found) is dict for found in metrics]):
                return None
            series.run_ids.extend([report.get("run_id") for report in reports])
            series.steps.extend(_numbers([report.get("step") for report in reports]))
            series.values.extend(_numbers([found.get(metric) for found in metrics]))


def _decode_reports(array: bytes, count: int) -> Optional[List[Any]]:
    """``count`` values from the JSON array ``array``, as the json module reads them; None when
    it holds anything else. orjson (in the ``plot`` extra) reads it three times as fast; what it
    reads otherwise than json (an integer past 64 bits comes back a float, NaN is refused) is
    read again by json; a lone surrogate, which the strict reader refuses, by neither."""
    reports = None
    if _orjson_loads is not None:
        try:
            reports = _orjson_loads(array)
        except ValueError:
            pass
        else:
            # Such an integer is a float here; only a run_id's type matters past number().
            kinds = set(map(type, reports))
            if kinds == {dict} and not set(map(type, [report.get("run_id") for report in reports])) <= _EXACT:
                reports = None
    if reports is None:
        if SURROGATE_ESCAPE.search(array):
            return None  # the strict reader skips a report holding a lone surrogate, naming its line
        try:
            reports = json.loads(array.decode("utf-8"))
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            return None
    return reports if len(reports) == count else None  # a line of two values, or of none


_EXACT = {str, type(None)}
"""run_id types that orjson reads as json does (our run ids are strings)."""


def _numbers(items: List[Any]) -> List[Optional[float]]:
    """number() of each item; a float is its own answer and an int its float, taken without the
    call (half a million a plot)."""
    try:
        return [item if type(item) is float else float(item) if type(item) is int else number(item) for item in items]
    except OverflowError:  # an int past a float's range: number() says infinite
        return [number(item) for item in items]


try:
    from orjson import loads as _orjson_loads
except ImportError:
    _orjson_loads = None
