"""The recorded runs that ``compare`` and ``plot`` look at: from results.jsonl, the latest
finished run of each version (or the latest whatever its state), and the reports of each."""
from __future__ import annotations

import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from mlpipeline.queue.config import ConfigError, ProjectConfig, QueueEntry, parse_entry
from mlpipeline.records.files import regular_file_opener
from mlpipeline.records.lines import RecordError, decode_object, holds_lone_surrogate, iter_lines
from mlpipeline.records.metric_history import HISTORY_FILE, read_history_file
from mlpipeline.records.metric_series import MetricSeries, read_metric_series
from mlpipeline.records.paths import OutputPaths
from mlpipeline.records.run_record import RECORD_DIR


def warn_on_stderr(message: str) -> None:
    """compare's and plot's warnings go to stderr: stdout may be JSON or CSV for a program."""
    sys.stderr.write(f"warning: {message}\n")


@dataclass
class RecordedRun:
    """One run of a version as results.jsonl has it."""

    row: Dict[str, Any]
    warn: Callable[[str], None] = warn_on_stderr

    @property
    def label(self) -> str:
        return f"{self.row.get('script')}:{self.row.get('version')}"

    @property
    def state(self) -> str:
        return str(self.row.get("status"))

    def history(self) -> List[Dict[str, Any]]:
        """The reports of the model this run trained, up to this run's last: its own and those
        of the runs it resumed. Empty when none was kept (a run from before metric histories)."""
        for path in self._history_files():
            rows = list(read_history_file(path, self.warn))
            count = _up_to_last(self.history_run, [row.get("run_id") for row in rows])
            if count is not None:
                return rows[:count]
        return []

    def series(self, metric: str) -> MetricSeries:
        """``metric`` through the reports that :meth:`history` gives, read without parsing them
        whole (``plot`` of 500 versions reads half a million)."""
        for path in self._history_files():
            series = read_metric_series(path, metric, self.warn)
            count = _up_to_last(self.history_run, series.run_ids)
            if count is not None:
                return MetricSeries(*(column[:count] for column in series))
        return MetricSeries([], [], [])

    @property
    def history_run(self) -> Any:
        """The run whose reports this row's history ends with: its own, or, for early stopping's
        stop of a paused version (a decision, no run), the run that paused it."""
        early = self.row.get("early_stopping")
        return early.get("history_run") if isinstance(early, dict) and early.get("history_run") else self.row.get("run_id")

    def _history_files(self) -> Iterator[str]:
        """The model's current history, then those kept aside when a fresh run started over
        (looked for only when the current lacks this run)."""
        model_dir, run_id = self.row.get("model_dir"), self.history_run
        if not model_dir or not run_id or not isinstance(model_dir, str):
            return
        # Strings, not history_path's Path: compare --best reads 10,000 of them, and pathlib
        # was a third of that.
        folder = os.path.join(model_dir, RECORD_DIR)
        yield os.path.join(folder, HISTORY_FILE)
        try:
            kept = sorted(Path(folder).glob("metrics-*.jsonl"))
        except (OSError, ValueError) as exc:  # a model_dir no folder can have (too long, a NUL in it)
            self.warn(f"{self.label}: its model_dir {model_dir!r} cannot be looked in ({getattr(exc, 'strerror', None) or exc})")
            return
        for path in kept:
            yield str(path)


def _up_to_last(run_id: Any, run_ids: List[Any]) -> Optional[int]:
    """How many reports reach the last of ``run_id``'s; None when it has none."""
    if run_id not in run_ids:
        return None
    return len(run_ids) - run_ids[::-1].index(run_id)


# The head of a results.jsonl row as records/ends.py writes it: the version and how it ended
# are read without parsing the rest, so only each version's latest row is parsed whole.
_ROW_HEAD = re.compile(r'^\{"time": "[^"]*", "host": "(?:[^"\\]|\\.)*", "script": ("(?:[^"\\]|\\.)*"), '
                       r'"version": ("(?:[^"\\]|\\.)*"), "status": "(\w+)"')


COMPARED = ("finished", "stopped")
"""The ends compare and plot show without --any-state: a version's final word (early stopping's
stop of a version is one, with its values up to the rung)."""


def select_runs(
    project: ProjectConfig, select: Sequence[str], any_state: bool = False, warn: Callable[[str], None] = warn_on_stderr
) -> List[RecordedRun]:
    """The latest finished run (or, with ``any_state``, the latest run) of each version that
    ``select`` names (``script.py`` or ``script.py:version``; all when empty), in the order
    the versions first appear in results.jsonl. A line that is no record is skipped, with a
    warning to ``warn`` naming its line."""
    entries = [parse_entry(item, project.models_dir, "the selection") for item in select]
    latest: Dict[Tuple[str, str], Tuple[int, bytes]] = {}  # the latest wanted line of each version, in first-seen order
    names: Dict[str, str] = {}  # the script and version names met, decoded once each
    results = OutputPaths(project.outputs_dir, host="").results  # host: only for the per-host logs
    try:
        handle = open(results, "rb", opener=regular_file_opener)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigError(str(results), f"cannot be read ({exc.strerror or exc})") from None
    with handle:
        number = 0
        try:
            for number, line in iter_lines(handle):  # a last line without its newline: being written, or cut short
                found = _version_and_status(line, names)
                if found is None:
                    if line is None or line.strip():
                        warn(f"{results.name}:{number}: not a version's record; skipped")
                    continue
                key, status = found
                if key[1] is None:
                    continue  # a script's row: its versions could not be learned
                if (any_state or status in COMPARED) and (not entries or _selected(key, entries)):
                    latest[key] = (number, line)
            if _cut_off_at_the_end(handle):
                warn(f"{results.name}:{number + 1}: last line is cut off (written during a crash?); skipped")
        except OSError as exc:
            raise ConfigError(str(results), f"cannot be read ({exc.strerror or exc})") from None
    runs = []
    for (script, version), (number, line) in latest.items():
        try:
            row = decode_object(line)
        except RecordError:
            warn(f"{results.name}:{number}: not a version's record; skipped")
            continue
        if (row.get("script"), row.get("version")) != (script, version) or not (any_state or row.get("status") in COMPARED):
            # Its head names one version and its whole another: a key written twice, by hand.
            warn(f"{results.name}:{number}: names its version or state twice, differently; skipped")
            continue
        runs.append(RecordedRun(row, warn))
    return runs


TORN_AFTER_S = 10.0
"""A last line without its newline this long after the file last changed is no append in
progress (one takes microseconds, under the writers' lock) but the end a crash left."""


def _cut_off_at_the_end(handle: BinaryIO) -> bool:
    status = os.fstat(handle.fileno())
    if status.st_size == 0:
        return False
    handle.seek(-1, os.SEEK_END)
    return handle.read(1) != b"\n" and time.time() - status.st_mtime > TORN_AFTER_S


def _version_and_status(line: Optional[bytes], names: Dict[str, str]) -> Optional[Tuple[Tuple[str, Optional[str]], str]]:
    """The (script, version) and status of a results.jsonl row, or None for a line that is none.
    The version is None in the row of a script whose versions could not be learned.
    The head as records/ends.py writes it is read without parsing the rest of the row, so only
    each version's latest row is parsed whole."""
    if line is None:
        return None
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return None
    head = _ROW_HEAD.match(text)
    if head is not None:
        try:
            return (_name(head.group(1), names), _name(head.group(2), names)), head.group(3)
        except ValueError:
            return None
    try:
        row = decode_object(line)
    except RecordError:
        return None
    script, version, status = row.get("script"), row.get("version"), row.get("status")
    if not isinstance(script, str) or not isinstance(version, (str, type(None))) or not isinstance(status, str):
        return None
    return (script, version), status


def _name(literal: str, names: Dict[str, str]) -> str:
    """A JSON string literal, decoded once: 100,000 rows name a few hundred versions."""
    name = names.get(literal)
    if name is None:
        name = json.loads(literal)
        if holds_lone_surrogate(name):
            raise ValueError("a lone surrogate: no name")
        names[literal] = name
    return name


def _selected(key: Tuple[str, str], entries: Sequence[QueueEntry]) -> bool:
    script, version = key
    return any(entry.script == script and entry.version in (None, version) for entry in entries)


def missing_selections(select: Sequence[str], runs: Sequence[RecordedRun], project: ProjectConfig) -> List[str]:
    """The items of ``select`` that matched no run."""
    found = {(str(run.row.get("script")), str(run.row.get("version"))) for run in runs}
    missing = []
    for item in select:
        entry = parse_entry(item, project.models_dir, "the selection")
        if not any(_selected(key, [entry]) for key in found):
            missing.append(item)
    return missing
