"""history.jsonl: the append-only journal that ``-u`` trusts.

Every event is one JSON line, appended under a file lock, flushed and fsynced before the
daemon goes on. Reading is incremental: each refresh parses only what was appended since.

The file is watched, not trusted to stay: deleted, replaced or cut short while a daemon runs
(a careless ``rm``, a sync tool, a restored backup), it is rewritten with the last event of
every version the daemon knows, so that finished work stays finished and a later ``-u``
does not run it again from step 0.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple

from mlpipeline.records.file_lock import FileLock
from mlpipeline.records.files import ends_with_newline, fsync_dir, json_text, naming_file, now_iso, regular_file_opener
from mlpipeline.records.lines import LINE_LIMIT, FileTail, decode_object
from mlpipeline.records.paths import OutputPaths
from mlpipeline.records.states import STATE_AFTER, JournalEvent, RunState

VersionKey = Tuple[str, str]

TORN_LINE_END = b" -- cut off by a crash --\n"

# Event names to states, looked up by string: Enum calls cost a third of reading a large journal.
_STATE_OF = {event.value: STATE_AFTER[event] for event in JournalEvent}
_CLAIM_EVENTS = (JournalEvent.CLAIMED.value, JournalEvent.STARTED.value)
_RUNNING = RunState.RUNNING


def state_of(record: Dict[str, Any]) -> RunState:
    """The state a journal event leaves its version in."""
    return _STATE_OF[record["event"]]


FIELD_LIMIT = 16384
"""Characters of one text field (a failure's message, say) kept in a journal event: the whole
message is in log-<host>, and every event stays far below the readers' line limit."""


_IDENTITY_FIELDS = frozenset({"time", "event", "script", "version", "run_id", "daemon", "host", "sha256"})


def _event_line(record: Dict[str, Any]) -> str:
    line = json_text(record, ensure_ascii=False, separators=(",", ":")) + "\n"
    if len(line) <= FIELD_LIMIT * 4:
        return line
    shortened = {
        key: f"{value[:FIELD_LIMIT]} ... ({len(value) - FIELD_LIMIT} more characters in log-<host>)"
        if isinstance(value, str) and len(value) > FIELD_LIMIT and key not in _IDENTITY_FIELDS
        else value
        for key, value in record.items()
    }
    return json_text(shortened, ensure_ascii=False, separators=(",", ":")) + "\n"


_TEXT_OR_NONE = ("version", "run_id", "daemon", "host", "sha256", "time")
_PIDS = ("child_pid", "pid")


def _well_typed(record: Dict[str, Any]) -> bool:
    """Whether the fields that name and place an event have their types: a number where a
    version's name belongs (NaN, which no end matches) or a list where a run id does is as
    corrupt as a missing name."""
    if type(record["script"]) is not str:
        return False
    for field in _TEXT_OR_NONE:
        value = record.get(field)
        if value is not None and type(value) is not str:
            return False
    for field in _PIDS:
        value = record.get(field)
        if value is not None and (type(value) is not int or value <= 0):
            return False
    return True


def _signature(record: Dict[str, Any]) -> Tuple[Any, ...]:
    return (record.get("time"), record.get("event"), record.get("daemon"), record.get("run_id"))


def _still_latest(latest: Optional[Dict[str, Any]], expected: Optional[Dict[str, Any]]) -> bool:
    """Whether ``latest`` is the event ``expected`` (read again: an equal one)."""
    return latest is expected or (latest is not None and expected is not None and _signature(latest) == _signature(expected))


class Journal:
    """The journal of one outputs folder: what happened to every script:version, in order."""

    def __init__(self, path: Path, warn: Callable[[str], None]) -> None:
        self.path = path
        self._warn = warn
        self._lock = FileLock(str(OutputPaths.lock_for(path)))
        self._tail = FileTail(path)
        self._known_file = False  # whether events were read from the file now followed
        self._reset()
        self._lines_read = 0

    def _reset(self) -> None:
        self._latest: Dict[VersionKey, Dict[str, Any]] = {}
        self._started: Dict[VersionKey, Dict[str, Any]] = {}
        self._claims: Dict[VersionKey, Tuple[int, Optional[str], Optional[str]]] = {}
        self._model_dirs: Dict[VersionKey, str] = {}  # as the latest claim named it
        self._ended_runs: Set[str] = set()
        self._running: Dict[VersionKey, None] = {}  # claimed or started, not ended: in order, as a dict keeps it
        self._changes: Optional[List[VersionKey]] = None  # None: not followed, or read anew

    def refresh(self) -> None:
        """Read the events appended since the last refresh (by this or any other daemon)."""
        with self._lock:
            self._read_new()

    def read_without_lock(self) -> None:
        """Read what is there without taking the lock, so a running daemon is never held up.

        A last line without its newline may be an append in progress here, not a tear: it is
        left unread, without a warning.
        """
        self._read_new(locked=False)

    def append(self, event: JournalEvent, durable: bool = True, **fields: Any) -> Dict[str, Any]:
        """Append one event and return it; it is visible to :meth:`latest` at once.

        ``durable=False`` leaves out the fsync (the write still reaches every reader at once):
        for an event a power cut may lose without harm, such as ``started`` after its claim.
        """
        record = {"time": now_iso(), "event": event.value, **fields}
        with naming_file(self.path), self._lock:
            self._read_new()
            self._write([record], durable)
            self._read_new()
        return record

    def append_if_latest(
        self,
        expected: Optional[Dict[str, Any]],
        event: JournalEvent,
        not_cancelled: Sequence[Dict[str, Any]] = (),
        model_dir_free: bool = False,
        **fields: Any,
    ) -> Optional[Dict[str, Any]]:
        """Append ``event`` for ``fields``' script:version only if its latest event is still
        ``expected`` (None: it never ran), no version of the events ``not_cancelled`` (what a
        decision about this one was made from) has been cancelled since, and, with
        ``model_dir_free``, no other version runs in ``fields["model_dir"]``. Checked and
        appended under one lock, so of several daemons claiming one version, or versions that
        share a model_dir, exactly one wins. Returns the event, or None if beaten."""
        key = (fields["script"], fields["version"])
        with self._lock:
            self._read_new()
            if not _still_latest(self._latest.get(key), expected):
                return None
            if model_dir_free and self.model_dir_holder(fields["model_dir"]) not in (None, key):
                return None
            for other in not_cancelled:
                now = self._latest.get((other.get("script"), other.get("version")))
                if not _still_latest(now, other) and now is not None and now.get("event") == JournalEvent.CANCELLED.value:
                    return None
            return self.append(event, **fields)

    def append_if_owner(self, event: JournalEvent, **fields: Any) -> Optional[Dict[str, Any]]:
        """Append ``event`` only while its run (``fields["run_id"]``) still holds its version:
        its claim is the latest event, not ended and not taken over. None when it lost the
        version (its daemon was paused past the heartbeat window, say): then it must record nothing."""
        with self._lock:
            self._read_new()
            if not self.holds(fields["run_id"], fields["script"], fields["version"]):
                return None
            return self.append(event, **fields)

    def holds(self, run_id: str, script: str, version: str) -> bool:
        """Whether run ``run_id`` still holds ``script:version`` as far as read so far."""
        latest = self._latest.get((script, version))
        return latest is not None and latest.get("run_id") == run_id and _STATE_OF[latest["event"]] is _RUNNING

    def has_ended(self, run_id: str) -> bool:
        """Whether the journal holds the end event of run ``run_id``."""
        return run_id in self._ended_runs

    @property
    def lines_read(self) -> int:
        """How many lines have been read so far: a position that only grows, also when the file
        had to be rewritten."""
        return self._lines_read

    def take_changes(self) -> Optional[List[VersionKey]]:
        """The versions with events read since the last call, in order (repeats left in);
        None on the first call and after the file was read anew: then any may have changed.
        For one reader of the journal's changes (the daemon's claims); others never call it."""
        changes = self._changes
        self._changes = []
        return changes

    def claim_of(self, script: str, version: str) -> Optional[Tuple[int, Optional[str], Optional[str]]]:
        """The latest claim of ``script:version``: its line, sha256 and daemon; None if none."""
        return self._claims.get((script, version))

    def claims(self) -> Iterator[Tuple[VersionKey, int, Optional[str], Optional[str]]]:
        """The latest claim of each version: (script, version), its line, sha256 and daemon."""
        for key, (number, sha256, daemon) in self._claims.items():
            yield key, number, sha256, daemon

    def latest(self, script: str, version: str) -> Optional[Dict[str, Any]]:
        """The last event of ``script:version``, or None if it never ran."""
        return self._latest.get((script, version))

    def last_started(self, script: str, version: str) -> Optional[Dict[str, Any]]:
        """The last ``started`` event of ``script:version`` (with its child's pid), or None."""
        return self._started.get((script, version))

    def versions(self) -> List[VersionKey]:
        """Every (script, version) the journal has an event for."""
        return list(self._latest)

    def state(self, script: str, version: str) -> RunState:
        event = self.latest(script, version)
        if event is None:
            return RunState.PENDING
        return _STATE_OF[event["event"]]

    def unfinished(self) -> Iterator[Dict[str, Any]]:
        """Events of versions that were claimed or started and never ended."""
        for key in list(self._running):
            yield self._latest[key]

    def model_dir_holder(self, model_dir: str) -> Optional[VersionKey]:
        """The version that runs in ``model_dir`` (as claims name it: relative to outputs_dir)
        now, as far as read, under any daemon (versions of a script without MODEL_DIR_SUFFIX
        share one)."""
        for key in self._running:
            if self._model_dirs.get(key) == model_dir:
                return key
        return None

    def held_model_dirs(self) -> Set[str]:
        """The model_dirs that versions claimed or started, and not ended, run in."""
        held = (self._model_dirs.get(key) for key in self._running)
        return {folder for folder in held if folder}

    # -- the file ------------------------------------------------------------------------

    def _write(self, records: List[Dict[str, Any]], durable: bool = True) -> None:
        data = "".join(_event_line(record) for record in records)
        created = not self.path.exists()
        with open(self.path, "ab", opener=regular_file_opener) as handle:
            if handle.tell() > 0 and not ends_with_newline(self.path):
                # A torn last line (a power cut mid-write) is closed with a marker that no JSON
                # can end in: every reader, before and after this append, skips it alike.
                handle.write(TORN_LINE_END)
            handle.write(data.encode("utf-8"))
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        if created:
            fsync_dir(self.path.parent)  # a new file is durable once its folder names it

    def _read_new(self, locked: bool = True) -> None:
        read = self._tail.read_new()
        if read.changed is not None:
            if self._known_file:
                self._lost(read.changed, locked)
                return
            read = self._tail.read_new()
        self._known_file = self._known_file or self._tail.offset > 0
        for number, raw in read.lines:
            self._lines_read += 1
            if raw is None:
                self._warn(f"{self.path.name}:{number}: a line longer than {LINE_LIMIT >> 20} MiB, not a journal event; skipped")
            else:
                self._fold(raw, number, self._lines_read)
        if locked:
            # Read under the lock, so a line without its newline is not being written: it was
            # cut off. It and the rest of it, should any come, are skipped.
            torn = self._tail.splitter.abandon_partial()
            if torn is not None:
                self._lines_read += 1
                self._warn(f"{self.path.name}:{torn}: last line is cut off (written during a crash?); skipped")

    def _lost(self, how: str, locked: bool) -> None:
        """The file was deleted, replaced or cut short under us: read what is there now, and
        (holding the lock) write back the last event of each version this reader knew that
        the file no longer holds."""
        known = self._latest
        self._known_file = False
        self._reset()
        if not locked:
            self._read_new(locked=False)
            return
        self._read_new()
        present: Set[Tuple[Any, ...]] = set()
        if self.path.exists():
            present = {_signature(record) for record in self._latest.values()}
        missing = [dict(record, restored=True) for record in known.values() if _signature(record) not in present]
        if missing:
            self._write(missing)
            self._read_new()
        self._warn(
            f"{self.path}: the journal was {how} while this daemon ran; the last event of each of the "
            f"{len(known)} versions it knew is kept ({len(missing)} written back); older events are gone"
        )

    def _fold(self, raw: bytes, line: int, number: int) -> None:
        if not raw.strip():
            return
        try:
            record = decode_object(raw)
            event = record["event"]
            if event not in _STATE_OF:
                raise KeyError(event)
            key = (record["script"], record["version"])
            if not _well_typed(record):
                raise TypeError("a field of the wrong type")
        except (ValueError, KeyError, TypeError):
            self._warn(f"{self.path.name}:{line}: not a journal event (corrupt or cut off); skipped")
            return
        if key[1] is not None:
            self._latest[key] = record
            if _STATE_OF[event] is _RUNNING:
                self._running[key] = None
            else:
                self._running.pop(key, None)
            if self._changes is not None:
                self._changes.append(key)
            if event in _CLAIM_EVENTS:
                self._claims[key] = (number, record.get("sha256"), record.get("daemon"))
                model_dir = record.get("model_dir")
                if event == "claimed" or type(model_dir) is str:
                    self._model_dirs[key] = model_dir if type(model_dir) is str else ""
                if event == "started":
                    self._started[key] = record
            elif "run_id" in record and _STATE_OF[event] is not _RUNNING:  # a rung event is no end
                self._ended_runs.add(record["run_id"])
