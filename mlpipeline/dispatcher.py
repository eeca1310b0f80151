"""Execution mode: work through models.config, one child per version, keeping every record.

The loop re-reads the queue before each dispatch, chooses the next version from the queue
and the journal, starts it on the executor, and records how it ended. It is written for N
slots; this release runs one.
"""
from __future__ import annotations

import os
import signal
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

from mlpipeline.catalog import Fingerprints, ScriptCatalog, ScriptListing
from mlpipeline.child import missing_message
from mlpipeline.claims import Claims
from mlpipeline.config import EXECUTION_QUEUE, ConfigError, ProjectConfig, QueueEntry
from mlpipeline.console import ConsoleView
from mlpipeline.executor import ChildRun, Executor
from mlpipeline.files import now_iso
from mlpipeline.identity import DaemonIdentity
from mlpipeline.journal import Journal
from mlpipeline.local_executor import LocalExecutor
from mlpipeline.outcome import (
    VersionRun,
    classify,
    describe_report,
    exit_fields,
    version_end,
)
from mlpipeline.paths import OutputPaths
from mlpipeline.plan import HistoryPolicy, PlannedRun, Start, choose_next
from mlpipeline.protocol import RUN_VERSION, ChildRequest, ScriptError
from mlpipeline.queue import QueuedScript, QueueFile
from mlpipeline.record_keeper import RecordKeeper, new_run_id
from mlpipeline.records import DAEMON_SOURCE
from mlpipeline.signals import StopSignals
from mlpipeline.states import JournalEvent

STOP_GRACE_S = 10.0
"""Seconds the running versions get to end after the first Ctrl-C or SIGTERM, before the kill."""

EXIT_RECORDS_UNWRITABLE = 2

REPORT_LOG_INTERVAL_S = 10.0
"""At most one log line per version per this many seconds from ``Model.report()``."""


@dataclass(frozen=True)
class ExecutionOptions:
    """The command line's say in execution mode."""

    use_history: bool = False
    retry_failed: bool = False
    fail_fast: bool = False
    no_log: bool = False
    only: Tuple[QueueEntry, ...] = ()


def prepare_outputs(paths: OutputPaths) -> None:
    """Make the outputs folder and prove it takes writes, before any version runs."""
    try:
        paths.outputs_dir.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=str(paths.outputs_dir), prefix=".write-test-")
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(
            str(paths.outputs_dir), f"outputs folder cannot be written ({exc.strerror or exc}); nothing was run"
        ) from None


class Dispatcher:
    """Runs the execution-mode queue of one project to its end."""

    def __init__(
        self,
        project: ProjectConfig,
        options: ExecutionOptions,
        view: ConsoleView,
        executor: Optional[Executor] = None,
        slots: int = 1,
    ) -> None:
        self.project = project
        self.options = options
        self.view = view
        self.slots = slots
        self.identity = DaemonIdentity.current()
        self.queue = QueueFile(
            project.project_dir / EXECUTION_QUEUE,
            EXECUTION_QUEUE,
            project.models_dir,
            project.outputs_dir,
            warn=self._warn,
            only=options.only,
        )
        self.queue.load()
        self.paths = OutputPaths(project.outputs_dir, self.identity.host)
        prepare_outputs(self.paths)
        self.journal = Journal(self.paths.journal, warn=self._warn)
        self.records = RecordKeeper(self.paths, self.journal, self.identity.key, not options.no_log, self._warn)
        self.claims = Claims(self.journal, self.identity, self.paths.heartbeats, self._report_takeover)
        self.executor = executor or LocalExecutor(project.project_dir)
        self.signals = StopSignals()
        self.fingerprints = Fingerprints()
        self.catalog = ScriptCatalog(
            self.executor, self._listing_line, self._listing_event, cancel=lambda: self.signals.count > 0
        )
        self.policy = HistoryPolicy(options.use_history, options.retry_failed, project.on_script_change)
        self.handled: Set[Tuple[str, str]] = set()
        self.rows: List[Tuple[str, str, float]] = []
        self.any_failed = False
        self._retries: List[PlannedRun] = []
        self._reported: Set[Tuple[str, str]] = set()

    # -- the loop -----------------------------------------------------------------------

    def run(self) -> int:
        """Run until the queue has nothing left (or a stop); returns the exit code."""
        with self.signals:
            try:
                self.claims.start()
                # What the journal shows as started by a daemon that is gone is ended before anything runs.
                self.claims.take_over_stale()
                self.records.recover(self.claims.is_dead)
                self._daemon_log("INFO", f"execution mode started by {self.identity.key} (pid {self.identity.pid})")
                self._loop()
            except OSError as exc:
                # A record that cannot be written: running on would do work nobody could find.
                where = exc.filename or self.paths.outputs_dir
                self.view.error(f"{where}: cannot be written ({exc.strerror or exc}); stopped dispatching")
                return EXIT_RECORDS_UNWRITABLE
            finally:
                # Whatever ended the loop, no version outlives its daemon.
                self.executor.stop_all(signal.SIGKILL)
                self.claims.stop()
        return self._finish()

    def _loop(self) -> None:
        stop_asked: Optional[float] = None
        killed = False
        while True:
            if self.signals.count and stop_asked is None:
                stop_asked = time.monotonic()
                name = signal.Signals(self.signals.first).name if self.signals.first else "a signal"
                self._daemon_log("WARNING", f"{name} received: no new versions; stopping the running ones")
                self.view.warning(f"{name}: stopping (press Ctrl-C again to kill at once)")
                self.executor.stop_all(self.signals.first or signal.SIGINT)
            if stop_asked is not None and not killed:
                if self.signals.count > 1 or time.monotonic() - stop_asked > STOP_GRACE_S:
                    self.executor.stop_all(signal.SIGKILL)
                    killed = True
            if stop_asked is None and not (self.options.fail_fast and self.any_failed):
                self._fill_slots()
            if not self.executor.running:
                if stop_asked is not None or not self.claims.undecided:
                    break
                # Another host's claim not judged yet: if its daemon is dead, this one resumes it.
                time.sleep(0.2)
                continue
            finished = self.executor.next_finished(timeout=0.2)
            if finished is not None:
                self._record(finished)

    def _fill_slots(self) -> None:
        while len(self.executor.running) < self.slots and not self.signals.count:
            if self.options.fail_fast and self.any_failed:
                return
            planned = self._plan()
            if planned is None or self.signals.count:
                return
            self._launch(planned)

    def _plan(self) -> Optional[PlannedRun]:
        self.journal.refresh()
        self.claims.take_over_stale()
        self.records.recover(self.claims.is_dead)
        if self._retries:
            return self._retry(self._retries.pop(0))
        scripts = self.queue.current()
        handled = self.handled | self.claims.claimed_by_others()
        return choose_next(self._candidates(scripts), self.journal, self.policy, handled)

    def _retry(self, failed: PlannedRun) -> Optional[PlannedRun]:
        """The next attempt of a failed version: it continues in its model_dir, unless the script changed."""
        listing = self._listing(failed.script)
        if listing is None or failed.version not in listing.names:
            return None
        start = Start.RESUME if listing.sha256 == failed.sha256 else Start.FRESH
        return PlannedRun(failed.script, failed.version, listing.sha256, start, failed.attempt + 1)

    def _candidates(self, scripts: List[QueuedScript]) -> Iterator[Tuple[QueuedScript, str, List[str]]]:
        for script in scripts:
            listing = self._listing(script)
            if listing is None:
                if self.signals.count:
                    return
                continue
            yield script, listing.sha256, listing.names

    def _listing(self, script: QueuedScript) -> Optional[ScriptListing]:
        try:
            sha256 = self.fingerprints.sha256(script.path)
        except OSError as exc:
            self._warn_once((script.label, "unreadable"), f"{script.label} cannot be read ({exc.strerror}); skipped")
            return None
        listing = self.catalog.listing(script.path, script.label, sha256)
        if listing is None:
            return None
        if listing.error is not None:
            self._report_broken_script(script, listing)
            return None
        for version, line in script.entry_lines:
            if version and version not in listing.names:
                where = EXECUTION_QUEUE if line is None else f"{EXECUTION_QUEUE}:{line}"
                known = ", ".join(listing.names) or "none"
                self._warn_once(
                    (script.label, f"unknown:{version}:{listing.sha256}"),
                    f"{where}: {script.label} has no version '{version}' (its versions: {known}); skipped",
                )
        return listing

    # -- starting and recording ------------------------------------------------------------

    def _launch(self, planned: PlannedRun) -> None:
        label = planned.label
        run_id = new_run_id()
        self.handled.add((planned.script.label, planned.version))
        expected = self.journal.latest(planned.script.label, planned.version)
        claimed = self.claims.claim(
            expected, planned.script.label, planned.version, planned.sha256, attempt=planned.attempt, run_id=run_id
        )
        if not claimed:
            self._log("INFO", label, "another daemon claimed it first")
            return
        listing = self.catalog.listing(planned.script.path, planned.script.label, planned.sha256)
        missing = listing.missing.get(planned.version) if listing else None
        if missing:
            error = ScriptError(message=missing_message(label, missing), phase="parameters")
            self._record_end(planned, None, JournalEvent.FAILED, {"error": error.__dict__}, 0.0, None, None, run_id)
            return
        suffix = listing.suffixes.get(planned.version) if listing else None
        if suffix is not None and (set(suffix) & {"/", "\\"} or suffix in (".", "..")):
            message = f"{label}: MODEL_DIR_SUFFIX {suffix!r} must be a plain name, not a path"
            self._record_end(planned, None, JournalEvent.FAILED, {"error": {"message": message}}, 0.0, None, None, run_id)
            return
        model_dir = self.paths.model_dir(planned.script.label, suffix)
        model_dir.mkdir(parents=True, exist_ok=True)
        resumed = planned.start is Start.RESUME
        how = "resuming" if resumed else "fresh"
        if planned.attempt > 1:
            how += f", attempt {planned.attempt} of {1 + self.project.retries}"
        self._log("INFO", label, f"started ({how}) in {model_dir}")
        self.view.version_started(label, how)
        version_run = VersionRun(planned=planned, model_dir=str(model_dir), started_at=now_iso(), run_id=run_id)
        request = ChildRequest(
            action=RUN_VERSION,
            script_path=str(planned.script.path),
            script_label=planned.script.label,
            version=planned.version,
            model_dir=str(model_dir),
            execution_mode=True,
            fresh=not resumed,
        )
        try:
            run = self.executor.submit(
                request,
                on_line=lambda stream, line: self._child_line(label, stream, line),
                on_event=lambda event: self._child_event(version_run, event),
                tag=version_run,
                timeout=self.project.version_timeout,
            )
        except OSError as exc:
            error = {"message": f"{label} could not be started: {exc}", "traceback": "", "phase": "start"}
            self._record_end(planned, version_run, JournalEvent.FAILED, {"error": error}, 0.0, None, None, run_id)
            return
        self.journal.append(
            JournalEvent.STARTED,
            **self._event_fields(planned.script.label, planned.version, planned.sha256),
            resumed=resumed,
            attempt=planned.attempt,
            run_id=run_id,
            child_pid=run.pid,
        )

    def _record(self, run: ChildRun) -> None:
        version_run: VersionRun = run.tag
        assert run.outcome is not None
        event, result = classify(run.outcome, version_run.planned.label, self.project.version_timeout)
        self._record_end(
            version_run.planned,
            version_run,
            event,
            result,
            run.outcome.wall_s,
            run.outcome.cpu_s,
            exit_fields(run.outcome),
            version_run.run_id,
        )

    def _record_end(
        self,
        planned: PlannedRun,
        version_run: Optional[VersionRun],
        event: JournalEvent,
        result: Dict[str, Any],
        wall_s: float,
        cpu_s: Optional[float],
        exit_info: Optional[Dict[str, Any]],
        run_id: str,
    ) -> None:
        label = planned.label
        error = result.get("error") or {}
        reason = error.get("message")
        end = version_end(
            self.identity, planned, version_run, event, result, wall_s, cpu_s, exit_info, run_id, not self.options.no_log
        )
        self.records.commit(end)
        self.view.version_ended(label, event.value, wall_s, reason)
        if error.get("traceback"):
            self.view.block(error["traceback"])
        self.rows.append((label, event.value, wall_s))
        if event in (JournalEvent.FAILED, JournalEvent.TIMED_OUT):
            if version_run is not None and planned.attempt <= self.project.retries and not self.signals.count:
                self._log("WARNING", label, f"attempt {planned.attempt} of {1 + self.project.retries} failed; retrying")
                self._retries.append(planned)
            else:
                self.any_failed = True

    def _report_broken_script(self, script: QueuedScript, listing: ScriptListing) -> None:
        """A script whose versions cannot be learned: reported once per content, counted as failed."""
        key = (script.label, listing.sha256)
        if key in self._reported:
            return
        self._reported.add(key)
        assert listing.error is not None
        self.any_failed = True
        self._log("ERROR", script.label, listing.error.message)
        if listing.error.traceback:
            self._log("ERROR", script.label, listing.error.traceback)
        self.view.error(listing.error.message)
        if listing.error.traceback:
            self.view.block(listing.error.traceback)
        self.records.results.write(
            {
                "time": now_iso(),
                "host": self.identity.host,
                "script": script.label,
                "version": None,
                "status": "failed",
                "reason": listing.error.message,
                "sha256": listing.sha256,
            }
        )
        self.rows.append((script.label, "failed", 0.0))

    def _report_takeover(self, record: Dict[str, Any], reason: str) -> None:
        label = f"{record['script']}:{record['version']}"
        hint = "; it resumes first with -u" if self.options.use_history else ""
        self._log("WARNING", label, f"was cut off: {reason}{hint}")
        self.view.warning(f"{label} was cut off: {reason}{hint}")

    def _finish(self) -> int:
        counts: Dict[str, int] = {}
        for _, state, _ in self.rows:
            counts[state] = counts.get(state, 0) + 1
        parts = [f"{n} {state}" for state, n in sorted(counts.items())]
        if self.options.use_history and not self.signals.count:
            skipped = self._count_skipped()
            if skipped:
                parts.append(f"{skipped} skipped by -u")
        summary = ", ".join(parts) or "nothing to run"
        self._daemon_log("INFO", f"execution mode ended: {summary}")
        self.view.summary("execution mode", self.rows, [f"{summary}; records in {self.paths.outputs_dir}"])
        if self.signals.count:
            return self.signals.exit_code
        return 1 if self.any_failed else 0

    def _count_skipped(self) -> int:
        """Queued versions that -u left out because the journal has their end for this content."""
        skipped = 0
        for script in self.queue.current():
            listing = self._listing(script)
            for name in listing.names if listing else ():
                if script.wants(name) and (script.label, name) not in self.handled:
                    skipped += 1
        return skipped

    # -- what children say ---------------------------------------------------------------

    def _child_line(self, label: str, stream: str, line: str) -> None:
        self._log("OUT" if stream == "stdout" else "ERR", label, line)
        self.view.child_line(label, line)

    def _child_event(self, version_run: VersionRun, event: Dict[str, Any]) -> None:
        label = version_run.planned.label
        if event.get("type") == "log":
            self._log(str(event.get("level", "INFO")), label, str(event.get("message", "")))
            self.view.child_line(label, str(event.get("message", "")))
        elif event.get("type") == "report":
            metrics = event.get("metrics") or {}
            version_run.metrics.update(metrics)
            now = time.monotonic()
            if now - version_run.last_report_logged >= REPORT_LOG_INTERVAL_S:
                version_run.last_report_logged = now
                self._log("INFO", label, describe_report(event.get("step"), event.get("total"), metrics))

    def _listing_line(self, script: str, stream: str, line: str) -> None:
        self._log("OUT" if stream == "stdout" else "ERR", script, line)

    def _listing_event(self, script: str, event: Dict[str, Any]) -> None:
        if event.get("type") == "log":
            self._log(str(event.get("level", "INFO")), script, str(event.get("message", "")))

    # -- small helpers ---------------------------------------------------------------------

    def _event_fields(self, script: str, version: str, sha256: Optional[str]) -> Dict[str, Any]:
        return self.identity.event_fields(script, version, sha256)

    def _log(self, level: str, source: str, message: str) -> None:
        self.records.log.write(level, source, message)

    def _daemon_log(self, level: str, message: str) -> None:
        self.records.log.write(level, DAEMON_SOURCE, message)

    def _warn(self, message: str) -> None:
        self._daemon_log("WARNING", message)
        self.view.warning(message)

    def _warn_once(self, key: Tuple[str, str], message: str) -> None:
        if key not in self._reported:
            self._reported.add(key)
            self._warn(message)
