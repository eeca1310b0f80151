"""``<model_dir>/.mlpipeline/metrics.jsonl``: every ``report()`` of the model in that folder.

One JSON line per report, in the order they came: ``{"time", "run_id", "step", "total",
"metrics"}``. A resumed run appends to its folder's file, so the file is the model's whole
curve; a fresh run starts a new file, and the old one stays as ``metrics-<its last run
id>.jsonl``. The daemon writes the reports as they arrive, through a buffer written out at
least every second (by a thread of its own): a crash of the version loses nothing it sent, a
crash of the daemon at most the last second.
"""
from __future__ import annotations

import os
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

from mlpipeline.records.files import ends_with_newline, json_text, regular_file_opener
from mlpipeline.records.lines import RecordError, decode_object, read_objects
from mlpipeline.records.run_record import record_dir

HISTORY_FILE = "metrics.jsonl"
FLUSH_INTERVAL_S = 1.0
"""At most this long between a report's arrival and its line reaching the file."""


def history_path(model_dir: Path) -> Path:
    return record_dir(model_dir) / HISTORY_FILE


class HistoryWriter:
    """Appends one run's reports to its model_dir's history; safe from several threads."""

    def __init__(self, model_dir: str, run_id: str, on_error: Callable[[str], None]) -> None:
        self._path = history_path(Path(model_dir))
        self._run_id = run_id
        self._on_error = on_error
        self._lock = threading.Lock()
        self._pending: List[str] = []
        self._handle: Optional[Any] = None
        self._last_flush = time.monotonic()
        self._broken = False
        self._clock = IsoClock()
        self._count: Optional[int] = None

    def add(self, step: Any, total: Any, metrics: Dict[str, Any]) -> int:
        """One report, kept in memory until the next flush (at most FLUSH_INTERVAL_S away);
        returns its place in the model's history (1 for the first), which stands for its step
        where it gave none."""
        line = json_text({"time": self._clock.now(), "run_id": self._run_id, "step": step, "total": total, "metrics": metrics})
        with self._lock:
            if self._count is None:
                self._count = _lines(self._path)
            self._count += 1
            if not self._broken:
                self._pending.append(line + "\n")
                if time.monotonic() - self._last_flush >= FLUSH_INTERVAL_S:
                    self._flush()
            return self._count

    def flush_if_due(self) -> None:
        with self._lock:
            if self._pending and time.monotonic() - self._last_flush >= FLUSH_INTERVAL_S:
                self._flush()

    def close(self) -> None:
        with self._lock:
            self._flush()
            if self._handle is not None:
                handle, self._handle = self._handle, None
                try:
                    handle.close()  # what a full disk refused is still in its buffer: refused again
                except OSError as exc:
                    if not self._broken:
                        self._broken = True
                        self._on_error(f"its last reports could not be written to {self._path} ({exc.strerror or exc})")

    def discard(self) -> None:
        """Drop what is not written yet, and write nothing more: the run lost its version to
        another daemon, whose run appends to the same history now."""
        with self._lock:
            self._pending.clear()
            self._broken = True  # nothing is written from here on, and nothing said of it
            if self._handle is not None:
                handle, self._handle = self._handle, None
                try:
                    handle.close()
                except OSError:
                    pass  # what it held was written already, or is dropped with the rest

    def _flush(self) -> None:
        self._last_flush = time.monotonic()
        if not self._pending or self._broken:
            return
        try:
            if self._handle is not None and not _still_at(self._handle, self._path):
                # Removed or replaced under the run (by hand, by the script's own cleaning):
                # what follows goes to a file at its path again, not to one nobody can read.
                self._handle.close()
                self._handle = None
                self._on_error(f"{self._path} was removed or replaced while its run wrote it; its next reports go to a new one")
            if self._handle is None:
                self._handle = self._open()
            self._handle.write("".join(self._pending))
            self._handle.flush()
        except OSError as exc:
            self._broken = True
            self._on_error(f"its metric history cannot be written to {self._path} ({exc.strerror or exc}); the run goes on without it")
        self._pending.clear()

    def _open(self) -> Any:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self._path, "a", encoding="utf-8", opener=regular_file_opener)
        if handle.tell() > 0 and not ends_with_newline(self._path):
            handle.write("\n")  # a line a crash cut short stays apart from the next report
        return handle


def _still_at(handle: Any, path: Path) -> bool:
    """Whether the open ``handle`` is still the file at ``path``."""
    try:
        mine, there = os.fstat(handle.fileno()), os.stat(path)
    except OSError:
        return False
    return (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)


def set_aside(model_dir: str, run_id: str) -> None:
    """A fresh run starts a new history: the folder's earlier one is kept as
    metrics-<its last run id>.jsonl. Called as the run starts, reports or not."""
    path = history_path(Path(model_dir))
    if path.exists():
        last = last_run_id(path) or f"before-{run_id}"
        os.replace(path, path.with_name(f"metrics-{last}.jsonl"))


def _lines(path: Path) -> int:
    try:
        with open(path, "rb", opener=regular_file_opener) as handle:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    except OSError:
        return 0


class IsoClock:
    """now_iso() at a fraction of its cost: the date, time and offset are formatted once a
    second, the milliseconds each time (a loop may report thousands of times a second)."""

    def __init__(self) -> None:
        self._second = -1
        self._head = ""
        self._offset = ""

    def now(self) -> str:
        moment = time.time()
        second = int(moment)
        if second != self._second:
            local = datetime.fromtimestamp(second).astimezone()
            self._head = local.strftime("%Y-%m-%dT%H:%M:%S")
            self._offset = local.isoformat()[19:]
            self._second = second
        return f"{self._head}.{int((moment - second) * 1000):03d}{self._offset}"


def last_run_id(path: Path) -> Optional[str]:
    """The run id on the last whole line of the history at ``path`` that is a report."""
    try:
        with open(path, "rb", opener=regular_file_opener) as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 65536))
            tail = handle.read()
    except OSError:
        return None
    for line in reversed(tail.splitlines()):
        try:
            run_id = decode_object(line).get("run_id")
        except RecordError:
            continue
        if isinstance(run_id, str):
            return run_id
    return None


def read_history(model_dir: Path, warn: Optional[Callable[[str], None]] = None) -> Iterator[Dict[str, Any]]:
    """The reports of the model in ``model_dir``, in order; a line cut short by a crash is left out."""
    return read_history_file(history_path(model_dir), warn)


def read_history_file(path: Path, warn: Optional[Callable[[str], None]] = None) -> Iterator[Dict[str, Any]]:
    """The reports in the history file ``path`` (the current one, or one kept aside). A line
    that is no report is skipped, with a warning to ``warn`` naming file and line."""
    try:
        for number, row in read_objects(path):
            if isinstance(row, dict) and isinstance(row.get("metrics"), dict):
                yield row
            elif warn is not None:
                why = row if isinstance(row, RecordError) else "no metrics"
                warn(f"{path}:{number}: not a report ({why}); skipped")
    except (OSError, ValueError) as exc:  # ValueError: a NUL in a path a record gave
        if warn is not None:
            warn(f"{path}: cannot be read ({getattr(exc, 'strerror', None) or exc}); its reports are left out")
