"""Execution mode: work through models.config, one child per version, keeping every record.

The loop re-reads the queue before each dispatch, chooses the next version from the queue
and the journal, starts it on the executor with the GPUs it asks for, and records how it
ended. ``workers`` versions run at once; a freed slot takes the next version in queue order.
"""
from __future__ import annotations

import os
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

import psutil

from mlpipeline.queue.catalog import Fingerprints, ListingStore, ScriptCatalog, ScriptListing
from mlpipeline.executors.worker import missing_message
from mlpipeline.records.claims import Claims
from mlpipeline.queue.config import EXECUTION_QUEUE, ConfigError, ProjectConfig, QueueEntry
from mlpipeline.watch.console import ConsoleView
from mlpipeline.executors.base import ChildOutcome, ChildRun, Executor
from mlpipeline.records.files import now_iso, write_json_atomic
from mlpipeline.execution.gpus import GpuPool, detect_gpus, requested, visible_devices
from mlpipeline.records.identity import DaemonIdentity
from mlpipeline.executors.process_tree import end_processes, run_processes
from mlpipeline.records.journal import Journal
from mlpipeline.executors.local import LocalExecutor
from mlpipeline.execution.outcome import VersionRun, classify, describe_report, version_end
from mlpipeline.records.paths import OutputPaths
from mlpipeline.execution.plan import HistoryPolicy, PlannedRun, Start, choose_next, decide
from mlpipeline.executors.preload_server import start_preload
from mlpipeline.executors.protocol import RUN_VERSION, ChildRequest, ScriptError, version_environment
from mlpipeline.records.provenance import find_repository, git_state
from mlpipeline.queue.queue_file import QueuedScript, QueueFile, outside_models_dir
from mlpipeline.records.ends import RecordKeeper, new_run_id
from mlpipeline.records.logs import DAEMON_SOURCE
from mlpipeline.records.run_record import read_run_record, update_run_record
from mlpipeline.execution.signals import StopSignals
from mlpipeline.records.states import JournalEvent
from mlpipeline.execution.end_hook import HOOK_TIMEOUT_S, VersionEndHook

STOP_GRACE_S = 10.0
"""Seconds the running versions get to end after the first Ctrl-C or SIGTERM, before the kill."""

EXIT_RECORDS_UNWRITABLE = 2

WAIT_POLL_S = 2.0
"""With --wait and an empty queue, how often the queue file and the scripts are looked at."""

REPORT_LOG_INTERVAL_S = 10.0
"""At most one log line per version per this many seconds from ``Model.report()``."""

PROGRESS_FILE_INTERVAL_S = 1.0
"""At most one rewrite per version per this many seconds of its progress file for ``status``."""

CLAIM_CHECK_INTERVAL_S = 0.5
"""How often the journal is read for claims: another daemon's to take over, this one's lost."""

EARLIER_RUN_GRACE_S = 10.0
"""How long the processes of an earlier run of a version get to go before it starts again."""


@dataclass(frozen=True)
class ExecutionOptions:
    """The command line's say in execution mode."""

    use_history: bool = False
    retry_failed: bool = False
    fail_fast: bool = False
    no_log: bool = False
    only: Tuple[QueueEntry, ...] = ()
    workers: Optional[int] = None  # --workers; mlp.config's workers otherwise
    wait: bool = False


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
    ) -> None:
        self.project = project
        self.options = options
        self.view = view
        self.slots = options.workers or project.workers
        self.gpu_pool = GpuPool(detect_gpus() if project.gpus is None else project.gpus)
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
        heartbeat = self.claims.heartbeat_for_children()
        self.preload = start_preload(list(project.preload), self._warn, heartbeat) if executor is None else None
        self.executor = executor or LocalExecutor(project.project_dir, self.preload)
        self.signals = StopSignals()
        self.fingerprints = Fingerprints()
        self.catalog = ScriptCatalog(
            self.executor,
            self._listing_line,
            self._listing_event,
            cancel=lambda: self.signals.count > 0,
            store=ListingStore(self.paths.listings, readable=False, writable=True),
            timeout=project.listing_timeout,
            models_dir=project.models_dir,
        )
        self.policy = HistoryPolicy(options.use_history, options.retry_failed, project.on_script_change)
        self.handled: Set[Tuple[str, str, str]] = set()
        self.rows: List[Tuple[str, str, float]] = []
        self.any_failed = False
        self._retries: List[PlannedRun] = []
        self._busy_model_dirs: Set[str] = set()
        self._model_dir_owners: Dict[str, str] = {}  # model_dir -> the script whose versions use it
        self._reported: Set[Tuple[str, str]] = set()
        self._claims_checked = 0.0
        self._waiting_for_others = False
        self.repository = find_repository(project.models_dir)
        self.end_hook = VersionEndHook(project.on_version_end, project.project_dir, self._log)

    # -- the loop -----------------------------------------------------------------------

    def run(self) -> int:
        """Run until the queue has nothing left (or a stop); returns the exit code."""
        with self.signals:
            try:
                self.claims.start()
                # What the journal shows as started by a daemon that is gone is ended before anything runs.
                self.claims.take_over_stale()
                self.records.recover(self.claims.is_dead)
                self._drop_old_progress()
                self._claims_checked = time.monotonic()
                gpus = ", ".join(self.gpu_pool.ids) or "none"
                self._daemon_log(
                    "INFO",
                    f"execution mode started by {self.identity.key} (pid {self.identity.pid}); "
                    f"workers {self.slots}, GPUs {gpus}",
                )
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
                if self.preload is not None:
                    self.preload.stop()
                # The last version's on_version_end still runs, unless a second Ctrl-C said: now.
                self.end_hook.wait(0 if self.signals.count > 1 else HOOK_TIMEOUT_S)
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
                self.executor.stop_all(self._signal_for_versions())
            if stop_asked is not None and not killed:
                if self.signals.count > 1 or time.monotonic() - stop_asked > STOP_GRACE_S:
                    self.executor.stop_all(signal.SIGKILL)
                    killed = True
            self._check_claims()
            # Taken before planning, so that a change made while the plan is made still wakes --wait;
            # only when nothing is outstanding, the one case in which this pass can end in idling.
            idle_possible = self.options.wait and not self.executor.outstanding
            watched = self._watched_state() if idle_possible else ()
            if stop_asked is None and not (self.options.fail_fast and self.any_failed):
                self._fill_slots()
            if not self.executor.outstanding:
                if stop_asked is not None:
                    break
                if self._held_elsewhere():
                    # Another daemon runs a version of this queue: if that daemon dies, this one
                    # resumes the version, so it stays until the version ends.
                    time.sleep(0.2)
                    continue
                if not self.options.wait:
                    break
                self._idle_until_change(watched)
            finished = self.executor.next_finished(timeout=0.2)
            if finished is not None:
                self._record(finished)

    def _signal_for_versions(self) -> int:
        """What the running versions get when the daemon is asked to stop: the same signal, but
        SIGTERM for a SIGHUP (a closed terminal), which training code knows as "save and stop"."""
        first = self.signals.first or signal.SIGINT
        return signal.SIGTERM if first == signal.SIGHUP else first

    def _check_claims(self, force: bool = False) -> None:
        """Every CLAIM_CHECK_INTERVAL_S: take over the claims of dead daemons, and stop the versions
        whose claims this daemon lost (it was paused while another took them over)."""
        now = time.monotonic()
        if not force and now - self._claims_checked < CLAIM_CHECK_INTERVAL_S:
            return
        self._claims_checked = now
        self.journal.refresh()
        self.claims.take_over_stale()
        for run in list(self.executor.running.values()):
            version_run = run.tag
            if not isinstance(version_run, VersionRun) or version_run.lost:
                continue
            planned = version_run.planned
            if self.journal.holds(version_run.run_id, planned.script.label, planned.version):
                continue
            version_run.lost = True
            self._report_lost(planned)
            self.executor.stop(run, signal.SIGKILL)

    def _report_lost(self, planned: PlannedRun) -> None:
        latest = self.journal.latest(planned.script.label, planned.version) or {}
        message = (
            f"lost its claim to {latest.get('daemon') or 'another daemon'} (this daemon was silent too long: "
            "paused, or its host frozen?); stopped here, and nothing is recorded for this run"
        )
        self._log("WARNING", planned.label, message)
        self.view.warning(f"{planned.label} {message}")

    def _held_elsewhere(self) -> bool:
        """Whether another daemon holds a claim on a version this daemon's queue names."""
        held = self.claims.held_elsewhere()
        if not held:
            self._waiting_for_others = False
            return False
        scripts = self.queue.current()
        mine = [record for record in held if self._queued(record, scripts)]
        if mine and not self._waiting_for_others:
            self._waiting_for_others = True
            names = ", ".join(f"{r['script']}:{r['version']} on {r.get('host')}" for r in mine[:3])
            more = f" and {len(mine) - 3} more" if len(mine) > 3 else ""
            message = f"waiting while other daemons run {names}{more}: if one dies, its version resumes here"
            self._daemon_log("INFO", message)
            self.view.info(message)
        return bool(mine)

    def _queued(self, record: Dict[str, Any], scripts: Optional[List[QueuedScript]] = None) -> bool:
        """Whether this daemon's queue (``scripts``, else read now) names the version of a journal record."""
        queued = self.queue.current() if scripts is None else scripts
        script = next((script for script in queued if script.label == record["script"]), None)
        return script is not None and script.wants(record["version"])

    def _idle_until_change(self, before: Tuple[Any, ...]) -> None:
        """With --wait and nothing to run: sleep until models.config, a script or the journal changes.

        A stat of each file every WAIT_POLL_S seconds: no thread, no busy loop, no inotify
        dependency, and it works on network file systems where inotify sees nothing.
        """
        self._daemon_log("INFO", "nothing to run; waiting for models.config or a script to change (--wait)")
        self.view.info("nothing to run; waiting for models.config or a script to change")
        next_poll = time.monotonic() + WAIT_POLL_S
        while not self.signals.count:
            time.sleep(0.25)
            if time.monotonic() < next_poll:
                continue
            next_poll = time.monotonic() + WAIT_POLL_S
            self.journal.refresh()
            self.claims.take_over_stale()
            if self._watched_state() != before:
                return

    def _watched_state(self) -> Tuple[Any, ...]:
        files = [self.queue.path] + [self.project.models_dir / name for name in self.queue.discovered_scripts()]
        state: List[Any] = [self.journal.lines_read]
        for path in files:
            try:
                stat = os.stat(path)
                state.append((str(path), stat.st_mtime_ns, stat.st_size, stat.st_ino))
            except OSError:
                state.append((str(path), None))
        return tuple(state)

    def _fill_slots(self) -> None:
        while self.executor.outstanding < self.slots and not self.signals.count:
            if self.options.fail_fast and self.any_failed:
                return
            planned = self._plan()
            if planned is None or self.signals.count:
                return
            launched = self._launch(planned)
            if launched and planned.attempt > 1:
                self._retries.pop(0)  # a retry leaves the list only once it has started
            if not launched:
                return  # its GPUs or model_dir are busy: it waits for a running version to end

    def _plan(self) -> Optional[PlannedRun]:
        self._check_claims(force=True)
        self.records.recover(self.claims.is_dead)
        if self._retries:
            retry = self._retry(self._retries[0])
            if retry is not None:
                return retry
            self._retries.pop(0)  # the version is gone from its script: nothing to retry
        scripts = self.queue.current()
        taken, cut_off = self.claims.session()
        # A version cut off in this session (its daemon died) is this daemon's to resume.
        handled = {key for key in self.handled | taken if key[:2] not in cut_off}
        return choose_next(self._candidates(scripts), self.journal, self.policy, handled, cut_off)

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
            # A version whose model_dir a running version uses waits; later ones may go first.
            free = [
                name
                for name in listing.names
                if str(self.paths.model_dir(script.label, listing.suffixes.get(name))) not in self._busy_model_dirs
            ]
            yield script, listing.sha256, free

    def _listing(self, script: QueuedScript) -> Optional[ScriptListing]:
        elsewhere = outside_models_dir(script.path, self.project.models_dir)
        if elsewhere is not None:
            message = f"{script.label} is a link to {elsewhere}, outside models_dir ({self.project.models_dir}); only scripts inside it run"
            self._report_broken_script(script, ScriptListing(sha256=f"link:{elsewhere}", error=ScriptError(message, phase="import")))
            return None
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

    def _launch(self, planned: PlannedRun) -> bool:
        """Claim and start ``planned``, or record why it cannot run; False when its GPUs are busy."""
        label = planned.label
        run_id = new_run_id()
        listing = self.catalog.listing(planned.script.path, planned.script.label, planned.sha256)
        problem = self._problem(planned, listing)
        suffix = listing.suffixes.get(planned.version) if listing else None
        model_dir = self.paths.model_dir(planned.script.label, suffix)
        if not problem and str(model_dir) in self._busy_model_dirs:
            return False  # versions that share a model_dir (no MODEL_DIR_SUFFIX) never run at once
        share = 0.0 if problem else self._gpu_share(planned, listing)
        granted = self.gpu_pool.acquire(share) if not problem else ()
        if granted is None:
            return False
        self.handled.add((planned.script.label, planned.version, planned.sha256))
        if not self._end_earlier_run(planned):
            self.gpu_pool.release(granted, share)
            return True
        expected = self.journal.latest(planned.script.label, planned.version)
        claimed = self.claims.claim(
            expected, planned.script.label, planned.version, planned.sha256, attempt=planned.attempt, run_id=run_id
        )
        if not claimed:
            self.gpu_pool.release(granted, share)
            self._log("INFO", label, "another daemon claimed it first")
            return True
        if problem:
            self._record_end(planned, None, JournalEvent.FAILED, {"error": {"message": problem}}, None, run_id)
            return True
        try:
            model_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            error = {"message": f"{label}: its model_dir {model_dir} cannot be made ({exc.strerror or exc})"}
            self.gpu_pool.release(granted, share)
            self._record_end(planned, None, JournalEvent.FAILED, {"error": error}, None, run_id)
            return True
        self._model_dir_owners.setdefault(str(model_dir), planned.script.label)
        resumed = planned.start is Start.RESUME
        how = "resuming" if resumed else "fresh"
        if planned.attempt > 1:
            how += f", attempt {planned.attempt} of {1 + self.project.retries}"
        if granted:
            how += f", GPU {','.join(granted)}"
        self._log("INFO", label, f"started ({how}) in {model_dir}")
        self.view.version_started(label, how)
        version_run = VersionRun(
            planned=planned,
            model_dir=str(model_dir),
            started_at=now_iso(),
            run_id=run_id,
            gpus=granted,
            gpu_share=share,
            git=git_state(self.repository, planned.script.path) if self.repository else None,
        )
        self._busy_model_dirs.add(version_run.model_dir)
        request = ChildRequest(
            action=RUN_VERSION,
            script_path=str(planned.script.path),
            script_label=planned.script.label,
            version=planned.version,
            model_dir=str(model_dir),
            execution_mode=True,
            fresh=not resumed,
            models_dir=str(self.project.models_dir),
            heartbeat=self.claims.heartbeat_for_children(),
            run_record={
                "script": planned.script.label,
                "version": planned.version,
                "run_id": run_id,
                "attempt": planned.attempt,
                "resumed": resumed,
                "started_at": version_run.started_at,
                "host": self.identity.host,
                "daemon": self.identity.key,
                "git": version_run.git,
            },
        )
        try:
            run = self.executor.submit(
                request,
                on_line=lambda stream, line: self._child_line(label, stream, line),
                on_event=lambda event: self._child_event(version_run, event),
                tag=version_run,
                timeout=self.project.version_timeout,
                env={
                    "CUDA_VISIBLE_DEVICES": visible_devices(granted),
                    **version_environment(run_id, planned.script.label, planned.version, str(model_dir)),
                },
            )
        except OSError as exc:
            self.gpu_pool.release(granted, share)
            self._busy_model_dirs.discard(version_run.model_dir)
            error = {"message": f"{label} could not be started: {exc}", "traceback": "", "phase": "start"}
            self._record_end(planned, version_run, JournalEvent.FAILED, {"error": error}, None, run_id)
            return True
        self.journal.append(
            JournalEvent.STARTED,
            **self._event_fields(planned.script.label, planned.version, planned.sha256),
            resumed=resumed,
            attempt=planned.attempt,
            run_id=run_id,
            child_pid=run.pid,
            child_started=_start_time(run.pid),
            gpus=list(granted),
        )
        return True

    def _end_earlier_run(self, planned: PlannedRun) -> bool:
        """Make sure no process of an earlier run of ``planned`` still runs before it starts again
        (the earlier run's daemon died, and its keeper was killed with it, say). Only where their
        pids can be seen: the journal names the earlier child, and its environment the run.
        False when one could not be ended: then the version does not start."""
        started = self.journal.last_started(planned.script.label, planned.version)
        if started is None or not self.identity.sees(started) or not isinstance(started.get("child_pid"), int):
            return True
        latest = self.journal.latest(planned.script.label, planned.version) or {}
        leftovers = run_processes(
            started["child_pid"], started.get("child_started"), started.get("run_id"), search_all="taken_over_from" in latest
        )
        if not leftovers:
            return True
        pids = ", ".join(str(process.pid) for process in leftovers)
        self._log("WARNING", planned.label, f"processes of its earlier run {started.get('run_id')} still run (pid {pids}); ended first")
        end_processes(None, include_root=False, known=leftovers)
        _, alive = psutil.wait_procs(leftovers, timeout=EARLIER_RUN_GRACE_S)
        if alive:
            message = f"{planned.label}: processes of its earlier run (pid {', '.join(str(p.pid) for p in alive)}) cannot be ended; not started"
            self._log("ERROR", planned.label, message)
            self.view.error(message)
            self.any_failed = True
            return False
        return True

    def _problem(self, planned: PlannedRun, listing: Optional[ScriptListing]) -> Optional[str]:
        """Why ``planned`` cannot start at all (recorded as its failure), or None."""
        label = planned.label
        if listing is None:
            return f"{label}: its versions could not be learned"
        missing = listing.missing.get(planned.version)
        if missing:
            return missing_message(label, missing)
        suffix = listing.suffixes.get(planned.version)
        problem = self.paths.model_dir_problem(label, planned.script.label, suffix)
        if problem:
            return problem
        model_dir = self.paths.model_dir(planned.script.label, suffix)
        owner = self._model_dir_owners.get(str(model_dir)) or (read_run_record(model_dir) or {}).get("script")
        if owner and owner != planned.script.label:
            return (
                f"{label}: its model_dir {model_dir} is {owner}'s (a script name with a '-' and a MODEL_DIR_SUFFIX "
                "can name the same folder); rename the script or give the version another MODEL_DIR_SUFFIX"
            )
        try:
            share = self._gpu_share(planned, listing)
        except ValueError as exc:
            return str(exc)
        if not self.gpu_pool.fits_ever(share):
            return f"{label} asks for {share:g} GPUs; this daemon has {len(self.gpu_pool.ids)}"
        return None

    def _gpu_share(self, planned: PlannedRun, listing: Optional[ScriptListing]) -> float:
        value = listing.gpus.get(planned.version) if listing else None
        if value is None:
            return self.gpu_pool.default_request()
        return requested(value, planned.label)

    def _record(self, run: ChildRun) -> None:
        version_run: VersionRun = run.tag
        assert run.outcome is not None
        self.gpu_pool.release(version_run.gpus, version_run.gpu_share)
        self._busy_model_dirs.discard(version_run.model_dir)
        if version_run.lost:
            self._drop_lost(version_run, run.outcome.wall_s)
            return
        event, result = classify(run.outcome, version_run.planned.label, self.project.version_timeout)
        self._record_end(version_run.planned, version_run, event, result, run.outcome, version_run.run_id)
        if result.get("cut_off") and not self.signals.count:
            # Its keeper ended it while this daemon was silent, and no other daemon took it:
            # it is this session's to resume.
            self.handled.discard((version_run.planned.script.label, version_run.planned.version, version_run.planned.sha256))

    def _drop_lost(self, version_run: VersionRun, wall_s: float) -> None:
        """A run whose version another daemon took over: it ended here, and nothing is recorded."""
        label = version_run.planned.label
        _remove_quietly(self.paths.progress / f"{version_run.run_id}.json")
        self.view.progress_ended(label)
        self._log("WARNING", label, f"its run {version_run.run_id} here ended after {wall_s:.2f} s; another daemon has it now")
        self.view.version_ended(label, "lost", wall_s, "another daemon took it over; nothing recorded here")
        self.rows.append((label, "lost", wall_s))

    def _record_end(
        self,
        planned: PlannedRun,
        version_run: Optional[VersionRun],
        event: JournalEvent,
        result: Dict[str, Any],
        outcome: Optional[ChildOutcome],
        run_id: str,
    ) -> None:
        label = planned.label
        error = result.get("error") or {}
        reason = error.get("message")
        wall_s = outcome.wall_s if outcome else 0.0
        end = version_end(self.identity, planned, version_run, event, result, outcome, run_id, not self.options.no_log)
        if not self.records.commit(end):
            # Another daemon took the version over while this one was silent: its end is not ours.
            self._report_lost(planned)
            if version_run is not None:
                version_run.lost = True
                self._drop_lost(version_run, wall_s)
            return
        self.view.progress_ended(label)
        if version_run is not None:
            _remove_quietly(self.paths.progress / f"{run_id}.json")
            self._close_run_record(version_run, end.record)
        self.end_hook.run(
            label,
            {
                "MLPIPELINE_SCRIPT": planned.script.label,
                "MLPIPELINE_VERSION": planned.version,
                "MLPIPELINE_STATE": event.value,
                "MLPIPELINE_RUN_ID": run_id,
                "MLPIPELINE_MODEL_DIR": version_run.model_dir if version_run else "",
                "MLPIPELINE_DURATION_S": f"{wall_s:.3f}",
            },
        )
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
        self.view.queue_counts(*self._queue_counts())

    def _queue_counts(self) -> Tuple[Dict[str, int], int]:
        """This session's ends by state, what runs now, and what is still to run among the
        scripts already listed (listing the others would import them early): (counts, unlisted)."""
        counts: Dict[str, int] = {}
        for _, state, _ in self.rows:
            counts[state] = counts.get(state, 0) + 1
        counts["running"] = len(self.executor.running)
        pending = unlisted = 0
        for script in self.queue.current():
            try:
                listing = self.catalog.known(script.path, self.fingerprints.sha256(script.path))
            except OSError:
                continue
            if listing is None:
                unlisted += 1
                continue
            for name in listing.names:
                key = (script.label, name, listing.sha256)
                if script.wants(name) and key not in self.handled:
                    if decide(self.journal, script.label, name, listing.sha256, self.policy) is not None:
                        pending += 1
        counts["pending"] = pending + len(self._retries)
        return counts, unlisted

    def _close_run_record(self, version_run: VersionRun, record: Dict[str, Any]) -> None:
        """Add how the run ended to ``<model_dir>/.mlpipeline/run.json``, which its child began."""
        try:
            update_run_record(
                Path(version_run.model_dir),
                version_run.run_id,
                state=record["status"],
                ended_at=record["time"],
                duration_s=record["duration_s"],
                steps=record.get("steps"),
            )
        except OSError as exc:
            self._warn(f"{exc.filename or version_run.model_dir}: the run record cannot be completed ({exc.strerror or exc})")

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
        where = "it resumes here, from its checkpoint" if self._queued(record) else "this daemon's queue does not name it"
        self._log("WARNING", label, f"was cut off: {reason}; {where}")
        self.view.warning(f"{label} was cut off: {reason}; {where}")

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
                if script.wants(name) and (script.label, name, listing.sha256) not in self.handled:
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
            step, total = event.get("step"), event.get("total")
            version_run.metrics.update(metrics)
            self.view.progress(label, step, total, metrics)
            now = time.monotonic()
            if now - version_run.last_report_logged >= REPORT_LOG_INTERVAL_S:
                version_run.last_report_logged = now
                self._log("INFO", label, describe_report(step, total, metrics))
            if now - version_run.last_progress_written >= PROGRESS_FILE_INTERVAL_S:
                version_run.last_progress_written = now
                self._write_progress(version_run, step, total)

    def _drop_old_progress(self) -> None:
        """Progress files of runs no daemon runs any more (cut off before they could remove theirs)."""
        running = {record.get("run_id") for record in self.journal.unfinished()}
        for path in self.paths.progress.glob("*.json"):
            if path.stem not in running:
                _remove_quietly(path)

    def _write_progress(self, version_run: VersionRun, step: Any, total: Any) -> None:
        progress = {"time": now_iso(), "step": step, "total": total, "metrics": version_run.metrics}
        try:
            self.paths.progress.mkdir(exist_ok=True)
            write_json_atomic(self.paths.progress / f"{version_run.run_id}.json", progress, durable=False)
        except OSError:
            pass  # a view for `mlpipeline status`; the records never depend on it

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


def _start_time(pid: Optional[int]) -> Optional[float]:
    """When process ``pid`` started, so that a later check never mistakes a reused pid for it."""
    try:
        return round(psutil.Process(pid).create_time(), 2) if pid else None
    except psutil.Error:
        return None


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass
