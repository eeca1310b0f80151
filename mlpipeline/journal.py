"""history.jsonl: the append-only journal that ``-u`` trusts.

Every event is one JSON line, appended under a file lock, flushed and fsynced before the
daemon goes on. Reading is incremental: each refresh parses only what was appended since.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple

from filelock import FileLock

from mlpipeline.files import naming_file, now_iso
from mlpipeline.paths import OutputPaths
from mlpipeline.states import STATE_AFTER, JournalEvent, RunState

VersionKey = Tuple[str, str]

TORN_LINE_END = b" -- cut off by a crash --\n"

_DECODER = json.JSONDecoder()
# Event names to states, looked up by string: Enum calls cost a third of reading a large journal.
_STATE_OF = {event.value: STATE_AFTER[event] for event in JournalEvent}
_CLAIM_EVENTS = (JournalEvent.CLAIMED.value, JournalEvent.STARTED.value)


def state_of(record: Dict[str, Any]) -> RunState:
    """The state a journal event leaves its version in."""
    return _STATE_OF[record["event"]]


class Journal:
    """The journal of one outputs folder: what happened to every script:version, in order."""

    def __init__(self, path: Path, warn: Callable[[str], None]) -> None:
        self.path = path
        self._warn = warn
        self._lock = FileLock(str(OutputPaths.lock_for(path)))
        self._offset = 0
        self._lines_read = 0
        self._after_torn_line = False
        self._latest: Dict[VersionKey, Dict[str, Any]] = {}
        self._claims: Dict[VersionKey, Tuple[int, Optional[str]]] = {}
        self._ended_runs: Set[str] = set()

    def refresh(self) -> None:
        """Read the events appended since the last refresh (by this or any other daemon)."""
        with self._lock:
            self._read_new()

    def read_without_lock(self) -> None:
        """Read what is there without taking the lock, so a running daemon is never held up.

        A last line without its newline may be an append in progress here, not a tear: it is
        left unread, without a warning.
        """
        self._read_new(tail_is_torn=False)

    def append(self, event: JournalEvent, **fields: Any) -> Dict[str, Any]:
        """Append one event durably and return it; it is visible to :meth:`latest` at once."""
        record = {"time": now_iso(), "event": event.value, **fields}
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        with naming_file(self.path), self._lock:
            self._read_new()
            with open(self.path, "ab") as handle:
                if handle.tell() > 0 and not self._ends_with_newline():
                    # A torn last line (a power cut mid-write) is closed with a marker that no JSON
                    # can end in: every reader, before and after this append, skips it alike.
                    handle.write(TORN_LINE_END)
                handle.write(line.encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())
            self._read_new()
        return record

    def append_if_latest(
        self, expected: Optional[Dict[str, Any]], event: JournalEvent, **fields: Any
    ) -> Optional[Dict[str, Any]]:
        """Append ``event`` for ``fields``' script:version only if its latest event is still
        ``expected`` (None: it never ran). Checked and appended under one lock, so of several
        daemons claiming one version, exactly one wins. Returns the event, or None if beaten."""
        key = (fields["script"], fields["version"])
        with self._lock:
            self._read_new()
            if self._latest.get(key) is not expected:
                return None
            return self.append(event, **fields)

    def has_ended(self, run_id: str) -> bool:
        """Whether the journal holds the end event of run ``run_id``."""
        return run_id in self._ended_runs

    @property
    def lines_read(self) -> int:
        """How many lines have been read so far: a position in the journal."""
        return self._lines_read

    def claimed_since(self, line: int) -> Set[Tuple[str, str, Optional[str]]]:
        """(script, version, sha256) of the versions claimed or started after journal line ``line``."""
        return {(key[0], key[1], sha) for key, (number, sha) in self._claims.items() if number > line}

    def latest(self, script: str, version: str) -> Optional[Dict[str, Any]]:
        """The last event of ``script:version``, or None if it never ran."""
        return self._latest.get((script, version))

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
        for record in list(self._latest.values()):
            if _STATE_OF[record["event"]] is RunState.RUNNING:
                yield record

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) == b"\n"

    def _read_new(self, tail_is_torn: bool = True) -> None:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except FileNotFoundError:
            return
        if self._after_torn_line:
            # The rest of a torn line, already counted and warned about: skip to its end.
            newline = data.find(b"\n")
            if newline < 0:
                return
            data = data[newline + 1 :]
            self._offset += newline + 1
            self._after_torn_line = False
        end = data.rfind(b"\n") + 1
        for raw in data[:end].splitlines():
            self._lines_read += 1
            self._fold(raw, self._lines_read)
        self._offset += end
        tail = data[end:]
        if tail and tail_is_torn:
            # Read under the lock, so a line without its newline is not being written: it was cut off.
            self._lines_read += 1
            self._warn(f"{self.path.name}:{self._lines_read}: last line is cut off (written during a crash?); skipped")
            self._offset += len(tail)
            self._after_torn_line = True

    def _fold(self, raw: bytes, number: int) -> None:
        text = raw.strip()
        if not text:
            return
        try:
            # raw_decode on the decoded line: json.loads' encoding detection, paid 100,000 times,
            # is a quarter of reading a large journal. What follows the object must be nothing.
            line = text.decode("utf-8")
            record, end = _DECODER.raw_decode(line)
            if end != len(line):
                raise ValueError("more than one value on the line")
            event = record["event"]
            if event not in _STATE_OF:
                raise KeyError(event)
            key = (record["script"], record["version"])
            hash(key)  # a list where a name belongs is as corrupt as a missing name
        except (ValueError, KeyError, TypeError):
            self._warn(f"{self.path.name}:{number}: not a journal event (corrupt or cut off); skipped")
            return
        if key[1] is not None:
            self._latest[key] = record
            if event in _CLAIM_EVENTS:
                self._claims[key] = (number, record.get("sha256"))
            elif "run_id" in record:
                self._ended_runs.add(record["run_id"])
