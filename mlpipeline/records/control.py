"""``outputs/control.jsonl``: what people asked of the queue from the command line while it
runs: cancel a script or a version, pause, resume. One JSON line a request, appended under
a lock of its own; every daemon on the folder, on any host, reads the new lines as it reads
the journal, so a request made anywhere reaches them all."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Set

from mlpipeline.records.file_lock import FileLock
from mlpipeline.records.files import NotRegularFile, ends_with_newline, json_text, now_iso, regular_file_opener
from mlpipeline.records.identity import hostname
from mlpipeline.records.lines import FileTail, RecordError, decode_object
from mlpipeline.records.paths import OutputPaths

CONTROL_FILE = "control.jsonl"
CANCEL, PAUSE, RESUME = "cancel", "pause", "resume"
REQUEST_LINE_LIMIT = 64 << 10
"""The longest request line read (64 KiB); a longer line is garbage, skipped without being held."""


@dataclass(frozen=True)
class ControlRequest:
    action: str
    script: Optional[str] = None
    version: Optional[str] = None
    time: str = ""
    host: str = ""

    def matches(self, script: str, version: str) -> bool:
        """Whether this cancel names ``script:version`` (a whole script names all its versions)."""
        return self.script == script and self.version in (None, version)

    @property
    def target(self) -> str:
        return str(self.script) if self.version is None else f"{self.script}:{self.version}"


def control_path(outputs_dir: Path) -> Path:
    return Path(outputs_dir) / CONTROL_FILE


COMPACT_AT_BYTES = 1 << 20
"""control.jsonl is compacted when a request finds it this large (about 8,000 requests)."""

KEEP_RECENT_S = 600.0
"""What a compaction keeps as written: the requests of the last ten minutes, which a running
daemon (it reads every half second) may not have read yet."""


def append_request(outputs_dir: Path, action: str, script: Optional[str] = None, version: Optional[str] = None) -> ControlRequest:
    """Append one request, durably, and return it; compact the file first when it has grown."""
    request = ControlRequest(action, script, version, now_iso(), hostname())
    record: Dict[str, Any] = {"time": request.time, "action": action, "host": request.host, "pid": os.getpid()}
    if script is not None:
        record.update(script=script, version=version)
    path = control_path(outputs_dir)
    with FileLock(str(OutputPaths.lock_for(path))):
        _compact_if_grown(path)
        with open(path, "a+b", opener=regular_file_opener) as handle:
            handle.seek(0, os.SEEK_END)
            ends_cut = handle.tell() > 0 and not ends_with_newline(path)
            # A line a crash cut short stays apart from this request.
            handle.write((("\n" if ends_cut else "") + json_text(record) + "\n").encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
    return request


def compact_if_grown(outputs_dir: Path) -> None:
    """Compact control.jsonl if it has grown past COMPACT_AT_BYTES: a daemon does it as it
    starts, before it reads the file, so that a file grown by an older release is read once."""
    path = control_path(outputs_dir)
    try:
        if path.stat().st_size < COMPACT_AT_BYTES:
            return
        with FileLock(str(OutputPaths.lock_for(path))):
            _compact_if_grown(path)
    except OSError:
        pass


def _compact_if_grown(path: Path) -> None:
    try:
        if path.stat().st_size >= COMPACT_AT_BYTES:
            compact(path)
    except OSError:
        pass  # not compacted now: whatever was to happen next matters more


def compact(path: Path) -> None:
    """Rewrite control.jsonl (under its lock) with what can still matter to a reader: the pause
    in force, if any, and the requests of the last KEEP_RECENT_S seconds, as they were written.
    The file as it was stays beside it, ``control-<time>.jsonl``, which nothing reads: nothing
    written to it is lost (a file that cannot be kept so is not compacted).

    A daemon that started earlier has read every line; a daemon that starts later reads only
    the pause in force. Readers know a request by its line (ControlReader), so the lines kept
    are not applied twice when the rewritten file is read from its start."""
    from datetime import datetime

    from mlpipeline.records.files import write_bytes_atomic

    now = datetime.now().astimezone()
    kept: List[bytes] = []
    pause: Optional[bytes] = None
    # Read as readers read it: a line past REQUEST_LINE_LIMIT is never held whole.
    for _, line in FileTail(path, REQUEST_LINE_LIMIT).read_new().lines:
        request = _request(line) if line is not None else None
        if request is None:
            continue  # garbage, warned about when it was read (and kept aside with the rest)
        try:
            age = (now - datetime.fromisoformat(request.time)).total_seconds()
        except (ValueError, TypeError):
            age = KEEP_RECENT_S + 1
        if request.action == PAUSE:
            pause = line
        elif request.action == RESUME:
            pause = None
        if age <= KEEP_RECENT_S:
            kept.append(line)
    if pause is not None and pause not in kept:
        kept.insert(0, pause)
    kept_aside = path.with_name(f"control-{now.strftime('%Y%m%dT%H%M%S%f')}.jsonl")
    os.link(path, kept_aside)  # the same file under a second name: no copy, and no moment without it
    write_bytes_atomic(path, b"".join(line + b"\n" for line in kept))


class ControlReader:
    """Reads the requests appended since the last read; a line still being written waits. A
    file deleted or replaced since (compact) is read again from its start, and of it only the
    requests not read before are new. A line that is no request (edited by hand, cut short,
    garbage) is skipped with a warning naming its line."""

    def __init__(self, outputs_dir: Path, warn: Optional[Callable[[str], None]] = None) -> None:
        self._outputs_dir = outputs_dir
        self._tail = FileTail(control_path(outputs_dir), REQUEST_LINE_LIMIT)
        self._warn = warn or (lambda message: None)
        self._seen: Set[bytes] = set()  # the lines read, to know them again in a rewritten file
        self._said_unreadable = False

    def read_new(self) -> List[ControlRequest]:
        try:
            read = self._tail.read_new()
            rewritten = read.changed is not None
            if rewritten:
                read = self._tail.read_new()
        except OSError as exc:  # read again on the next pass; said once while it lasts
            if not self._said_unreadable:
                why = "not a regular file" if isinstance(exc, NotRegularFile) else f"cannot be read ({exc.strerror or exc})"
                self._warn(f"{exc.filename or control_path(self._outputs_dir)}: {why}; no pause, resume or cancel can be read from it")
                self._said_unreadable = True
            return []
        self._said_unreadable = False
        requests = []
        present: Set[bytes] = set()
        for number, line in read.lines:
            if line is not None:
                present.add(line)
                if rewritten and line in self._seen:
                    continue
            request = _request(line) if line is not None else None
            if request is not None:
                requests.append(request)
            elif line is None or line.strip():
                self._warn(f"{CONTROL_FILE}:{number}: not a request of `mlpipeline cancel`, `pause` or `resume`; skipped")
        # Only the lines of the file as it is now can come back in a rewrite of it.
        self._seen = present if rewritten else self._seen | present
        return requests


def _request(line: bytes) -> Optional[ControlRequest]:
    """The request on ``line``, or None for a line that is not one (cut short, or edited by hand)."""
    try:
        record = decode_object(line)
    except RecordError:
        return None
    if record.get("action") not in (CANCEL, PAUSE, RESUME):
        return None
    script, version = record.get("script"), record.get("version")
    if not isinstance(script, (str, type(None))) or not isinstance(version, (str, type(None))):
        return None
    if record["action"] == CANCEL and script is None:
        return None
    return ControlRequest(record["action"], script, version, str(record.get("time", "")), str(record.get("host", "")))


def paused_by(requests: List[ControlRequest]) -> Optional[ControlRequest]:
    """The pause in force after ``requests`` (the last pause with no resume after it), if any."""
    state: Optional[ControlRequest] = None
    for request in requests:
        if request.action == PAUSE:
            state = request
        elif request.action == RESUME:
            state = None
    return state
