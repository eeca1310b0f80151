"""A version's end, written to the journal and to the files people read, exactly once.

The journal's end event is the commit point. Before it, the whole record goes to a pending
file under ``outputs/.pending/``; after it, to results.jsonl, output-<host> and log-<host>;
then the pending file goes. A daemon that dies in between leaves the pending file, and the
next daemon finishes the job: if the journal has the commit, whatever of the record is not
yet in a file (found by its run id) is written; if not, the pending file is dropped and the
version, still open in the journal, is resumed.
"""
from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from mlpipeline.records.files import now_iso, regular_file_opener, remove_quietly, write_json_atomic
from mlpipeline.records.journal import Journal
from mlpipeline.records.lines import load_object
from mlpipeline.records.logs import OutputFile, ResultsFile, RunLog, format_output_block
from mlpipeline.records.outputs_folder import OutputsFolder
from mlpipeline.records.paths import OutputPaths
from mlpipeline.records.states import JournalEvent

TAIL_BYTES = 8 * 2**20
"""How far back from the end of a file recovery looks for a record already written."""


def new_run_id() -> str:
    """A short id for one attempt at one version, unique enough to find its lines by."""
    return uuid.uuid4().hex[:12]


@dataclass
class VersionEnd:
    """Everything recorded when a version ends."""

    run_id: str
    host: str
    daemon: str
    event: str
    journal_fields: Dict[str, Any]
    record: Dict[str, Any]
    log_lines: List[Tuple[str, str, str]] = field(default_factory=list)  # (level, source, message)
    write_log: bool = True
    namespace: Optional[str] = None  # the daemon's (identity.py); absent in records of older daemons


class RecordKeeper:
    """Commits version ends, and finishes the commits a dead daemon left half done."""

    def __init__(
        self,
        paths: OutputPaths,
        journal: Journal,
        daemon: str,
        write_log: bool,
        warn: Callable[[str], None],
        folder: Optional[OutputsFolder] = None,
    ) -> None:
        """With ``folder``, nothing is written once the outputs folder is gone (OSError)."""
        self._folder = folder
        self._paths = paths
        self._journal = journal
        self._daemon = daemon
        self._write_log = write_log
        self._warn = warn
        self.results = ResultsFile(paths.results)
        self.log = RunLog(paths.log if write_log else None)
        self.output = OutputFile(paths.output if write_log else None)

    def commit(self, end: VersionEnd, after: Optional[Dict[str, Any]] = None, not_cancelled: Sequence[Dict[str, Any]] = ()) -> bool:
        """Journal the end durably, then write the record everywhere else.

        Only while the run still holds its version: False, with nothing written, when another
        daemon took it over (this one was paused past the heartbeat window, say). With
        ``after``, the end is a decision about a version no run holds (early stopping's
        stop of a paused one): only while ``after`` is still its latest event, and while none of
        the versions of ``not_cancelled`` (the standings it was decided by) was cancelled since.
        """
        self.check_folder()
        pending = self._pending_path(end)
        pending.parent.mkdir(parents=True, exist_ok=True)
        # vars, not asdict: asdict copies the whole record deeply, 1 ms a version for nothing.
        write_json_atomic(pending, vars(end), for_people=False)
        if after is None:
            committed = self._journal.append_if_owner(JournalEvent(end.event), **end.journal_fields, run_id=end.run_id)
        else:
            committed = self._journal.append_if_latest(
                after, JournalEvent(end.event), not_cancelled=not_cancelled, **end.journal_fields, run_id=end.run_id
            )
        if committed is not None:
            self._publish(end, self.results, self.output, self.log, check_first=False)
        pending.unlink()
        return committed is not None

    def check_folder(self) -> None:
        """OSError when the outputs folder this daemon started with is gone."""
        if self._folder is not None:
            self._folder.check()

    def script_failed(self, script: str, reason: str, sha256: str, host: str) -> None:
        """A script whose versions cannot be learned: one row in results.jsonl, no journal event
        (no version of it was claimed; the next session lists it again)."""
        row = {"time": now_iso(), "host": host, "script": script, "version": None, "status": "failed", "reason": reason, "sha256": sha256}
        self.check_folder()
        self.results.write(row)

    def recover(self, is_dead: Callable[[str, str, Optional[str]], bool]) -> int:
        """Finish the commits of dead daemons (``is_dead(host, daemon, namespace)``); returns how many."""
        folder = self._paths.pending
        if not folder.is_dir():
            return 0
        finished = 0
        for path in sorted(folder.glob("*.json")):
            try:
                end = VersionEnd(**load_object(path))
                if not isinstance(end.host, str) or not isinstance(end.daemon, str) or not isinstance(end.namespace, (str, type(None))):
                    raise TypeError("no daemon named")
                if end.daemon == self._daemon or not is_dead(end.host, end.daemon, end.namespace):
                    continue  # a live daemon's, written or being committed now
                _check_pending_end(end)
            except (OSError, ValueError, TypeError):
                # Its version's end is in the journal: only its results row and output block
                # are lost with it, so its bytes are kept for a person to look at.
                aside = path.with_name(path.name + ".unreadable")
                try:
                    os.replace(path, aside)
                    self._warn(f"{path}: an unreadable pending record; set aside as {aside.name}")
                except OSError:
                    remove_quietly(path)
                    self._warn(f"{path}: an unreadable pending record; removed")
                continue
            self._journal.refresh()
            if self._journal.has_ended(end.run_id):
                paths = OutputPaths(self._paths.outputs_dir, end.host)
                write_log = end.write_log
                self._publish(
                    end,
                    self.results,
                    OutputFile(paths.output if write_log else None),
                    RunLog(paths.log if write_log else None),
                    check_first=True,
                    output_path=paths.output,
                    log_path=paths.log,
                )
                finished += 1
            remove_quietly(path)
        return finished

    def _publish(
        self,
        end: VersionEnd,
        results: ResultsFile,
        output: OutputFile,
        log: RunLog,
        check_first: bool,
        output_path: Path = Path(os.devnull),
        log_path: Path = Path(os.devnull),
    ) -> None:
        needle = f"run {end.run_id}"
        if not check_first or not _tail_contains(self._paths.results, f'"run_id": "{end.run_id}"'):
            results.write(end.record)
        if not check_first or not _tail_contains(output_path, needle):
            output.write(end.record)
        if not check_first or not _tail_contains(log_path, needle):
            for level, source, message in end.log_lines:
                log.write(level, source, message)

    def _pending_path(self, end: VersionEnd) -> Path:
        daemon = re.sub(r"[^\w.-]", "_", end.daemon)
        return self._paths.pending / f"{daemon}--{end.run_id}.json"


_RECORD_TEXTS = ("script", "status", "time", "host")


def _check_pending_end(end: VersionEnd) -> None:
    """TypeError where a field of a dead daemon's pending end has not the type it is written
    with (the file was edited, or is another program's): its row would go to results.jsonl and
    its log lines to log-<host> as they are."""
    record, lines = end.record, end.log_lines
    if not isinstance(end.run_id, str) or not isinstance(end.event, str):  # host, daemon: checked before
        raise TypeError("run_id and event are text")
    if end.event not in {event.value for event in JournalEvent} or not isinstance(end.journal_fields, dict):
        raise TypeError("no journal event")
    if not isinstance(record, dict) or not all(isinstance(record.get(key), str) for key in _RECORD_TEXTS):
        raise TypeError("no results row")
    if not all(isinstance(record.get(key), (str, type(None))) for key in ("version", "reason", "run_id")):
        raise TypeError("no results row")
    if not isinstance(lines, list) or not all(isinstance(line, list) and len(line) == 3 and all(isinstance(part, str) for part in line) for line in lines):
        raise TypeError("log lines are (level, source, message) texts")
    if not isinstance(end.write_log, bool):
        raise TypeError("write_log is true or false")
    try:
        format_output_block(record)  # what output-<host> will get: checked before anything is written
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
        raise TypeError("no results row") from exc


def _tail_contains(path: Path, needle: str) -> bool:
    try:
        with open(path, "rb", opener=regular_file_opener) as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(handle.tell() - TAIL_BYTES, 0))
            return needle.encode("utf-8") in handle.read(TAIL_BYTES)
    except OSError:
        return False
