"""Execution mode: work through models.config, one child per version, keeping every record.

The loop re-reads the queue before each dispatch and walks each version along one path, each
step returning what happened and the loop alone acting on it: the chooser returns the next
version (chooser.py), the launcher claims and starts it, or returns why it cannot run
(launcher.py), the listener takes what the child says (listener.py), and the recorder
records how it ended and returns what follows: a retry, a resume, or nothing (recorder.py).
Beside the path, the claim and control watches return the runs to stop (claim_watch.py,
control.py). The loop owns the running versions: it moves each one's phase (outcome.py),
and gives back what a run holds once, when its end is recorded. ``workers`` versions run at
once; a freed slot takes the next.
"""
from __future__ import annotations

import os
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import AbstractSet, Any, Callable, Dict, List, Optional, Sequence, Tuple

from mlpipeline.execution.chooser import VersionChooser
from mlpipeline.execution.claim_watch import ClaimWatch
from mlpipeline.execution.control import ControlWatch
from mlpipeline.execution.end_hook import HOOK_TIMEOUT_S
from mlpipeline.execution.executor_choice import Executors, choose_executors
from mlpipeline.execution.gpus import GpuPool, detect_gpus
from mlpipeline.execution.launcher import Launch, Launcher
from mlpipeline.execution.outcome import RunPhase, VersionRun
from mlpipeline.execution.listener import ChildListener
from mlpipeline.tracking.configured import tracking_bridge
from mlpipeline.execution.plan import HistoryPolicy, PlannedRun
from mlpipeline.execution.recorder import EndRecorder, FollowUp, Recorded
from mlpipeline.execution.reporter import Reporter
from mlpipeline.execution.resources import Resources
from mlpipeline.execution.rung_watch import RungWatch
from mlpipeline.execution.signals import EXIT_CODES, StopSignals
from mlpipeline.execution.tally import Tally
from mlpipeline.executors.base import ChildRun, Executor
from mlpipeline.queue.catalog import ListingStore, ScriptCatalog, check_named_versions
from mlpipeline.queue.config import EXECUTION_QUEUE, PROJECT_CONFIG, ConfigError, ProjectConfig, QueueEntry
from mlpipeline.queue.queue_file import QueueFile
from mlpipeline.records.claims import Claims
from mlpipeline.records.ends import RecordKeeper
from mlpipeline.records.identity import DaemonIdentity
from mlpipeline.records.journal import Journal
from mlpipeline.records.outputs_folder import OutputsFolder
from mlpipeline.records.paths import OutputPaths
from mlpipeline.records.states import JournalEvent, RunState, state_words
from mlpipeline.watch.console import ConsoleView

STOP_GRACE_S = 10.0
"""Seconds the running versions get to end after the first Ctrl-C or SIGTERM, before the kill."""

EXIT_HALTED = 2
"""The daemon stopped dispatching for what keeps every version from running here (records
that cannot be written, a full disk, a heartbeat that cannot be written, a model_ckpts that
is no folder, a scheduler that does not answer): nothing is lost, `-r -u` goes on after."""

EXIT_CLUSTER_GONE = 75
"""The Ray cluster went away mid-run: its versions are recorded interrupted, and `-r -u` on a
cluster that is back resumes them (75 is sysexits' EX_TEMPFAIL: try again later)."""

WAIT_POLL_S = 2.0
"""With --wait and an empty queue, how often the queue file and the scripts are looked at."""

QUEUE_COUNTS_INTERVAL_S = 1.0
"""At most one ``queue: ...`` line a second: counting what is pending walks the queue, which
at 16 versions ending a second over 10,000 queued cost more than the versions' dispatch."""

QUEUE_LOOK_S = 2.0
"""How often, while versions run, models.config is looked at for an edit the counts should show."""

TRACKING_CLOSE_S = 30.0
"""How long the daemon waits at its end for the tracker to take what is still queued."""


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


def prepare_outputs(paths: OutputPaths, set_on: Optional[int] = None) -> None:
    """Make the outputs folder and prove it takes writes, before any version runs; ``set_on``:
    the line of mlp.config that names it, where one does."""
    try:
        paths.outputs_dir.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=str(paths.outputs_dir), prefix=".write-test-")
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        where = f" (outputs_dir, {PROJECT_CONFIG}:{set_on})" if set_on else ""
        raise ConfigError(
            str(paths.outputs_dir), f"outputs folder cannot be written ({exc.strerror or exc}){where}; nothing was run"
        ) from None


class ExecutionLoop:
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
        self.identity = DaemonIdentity.current()
        self.signals = StopSignals()
        self._lost_said = False
        self.tally = Tally()
        self._counts_due = False
        self._waits = False  # the last fill found a version waiting (GPUs, a model_dir) with nothing running
        # What keeps every version from running here (a full disk, a heartbeat that cannot be
        # written, a model_ckpts that is no folder, a scheduler that does not answer): none
        # starts any more, those running finish.
        self._halted: Optional[str] = None
        self._counts_shown = 0.0
        self._queue_looked = time.monotonic()
        say = self.say = Reporter(view)
        self.queue = QueueFile(
            project.project_dir / EXECUTION_QUEUE,
            EXECUTION_QUEUE,
            project.models_dir,
            project.outputs_dir,
            warn=say.warn,
            only=options.only,
        )
        self.queue.load()
        self.paths = OutputPaths(project.outputs_dir, self.identity.host)
        prepare_outputs(self.paths, project.line_of("outputs_dir"))
        self.journal = Journal(self.paths.journal, warn=say.warn)
        self.records = RecordKeeper(self.paths, self.journal, self.identity.key, not options.no_log, say.warn, OutputsFolder(self.paths.outputs_dir))
        say.log_file = self.records.log
        self.claims = Claims(self.journal, self.identity, self.paths.heartbeats)
        self._own_executors = executor is None  # closed here only if made here
        self.executors = (
            choose_executors(project, say.warn, self.claims.heartbeat_for_children(), self.identity.key)
            if executor is None
            else Executors(executor, executor, GpuPool(detect_gpus()[0] if project.gpus is None else project.gpus))
        )
        self.executor = self.executors.runs
        self.resources = Resources(self.executors.gpus)
        stopping = lambda: self.signals.count > 0 or self._executor_lost() is not None  # noqa: E731
        self.tracking = tracking_bridge(project, lambda label, message: (say.log("WARNING", label, message), view.warning(f"{label}: {message}")))
        self.listener = ChildListener(say, self.paths, self.tracking, project.early_stopping)
        catalog = self.catalog = ScriptCatalog(
            self.executors.listings,
            self.listener.listing_lines,
            self.listener.listing_event,
            cancel=stopping,
            store=ListingStore(self.paths.listings, readable=False, writable=True),
            timeout=project.listing_timeout,
            models_dir=project.models_dir,
            warn=say.warn,  # a version refused for its name: on the console too, not only in the log
        )
        policy = HistoryPolicy(options.use_history, options.retry_failed, project.on_script_change, project.early_stopping is not None)
        self.chooser = VersionChooser(
            self.queue, catalog, self.journal, policy, self.paths, self._busy_model_dirs, say, stopping,
            project.early_stopping,
        )  # fmt: skip
        self.recorder = EndRecorder(project, self.identity, self.journal, self.records, not options.no_log, self.listener, say, stopping)
        self.launcher = Launcher(
            project, self.identity, self.paths, self.journal, self.claims, catalog, self.executor,
            self.resources, self.listener, say,
        )  # fmt: skip
        self.control = ControlWatch(self.paths, say)
        self.rung_watch = RungWatch(project.early_stopping, self.journal) if project.early_stopping is not None else None
        self.claim_watch = ClaimWatch(self.journal, self.claims, self.chooser, self.control, say)

    # -- the loop -----------------------------------------------------------------------

    def run(self) -> int:
        """Run until the queue has nothing left (or a stop); returns the exit code."""
        with self.signals:
            try:
                check_named_versions(self.queue.current(), self.catalog, EXECUTION_QUEUE)
                check_named_versions(self.queue.only_named(), self.catalog, "--only")
                self.claims.start()
                # What the journal shows as started by a daemon that is gone is ended before anything runs.
                self._cancel_taken_over(self.claim_watch.take_over_stale())
                self.records.recover(self.claims.is_dead)
                self.listener.drop_old_progress(self.journal)
                self.say.daemon(
                    "INFO",
                    f"execution mode started by {self.identity.key} (pid {self.identity.pid}); "
                    f"versions run on {self.executor.where}; "
                    f"workers {self.slots}, GPUs {self.resources.gpus.describe()}",
                )
                self._loop()
            except OSError as exc:
                # A record that cannot be written: running on would do work nobody could find.
                where = exc.filename or self.paths.outputs_dir
                self.view.error(f"{where}: cannot be written ({exc.strerror or exc}); stopped dispatching")
                return EXIT_HALTED
            finally:
                # Whatever ended the loop, no version outlives its daemon.
                self.executor.stop_all(signal.SIGKILL)
                self.claims.stop()
                if self._own_executors:
                    self.executors.close()
                # The last version's on_version_end still runs, unless a second Ctrl-C said: now.
                self.recorder.end_hook.wait(0 if self.signals.count > 1 else HOOK_TIMEOUT_S)
                self.listener.close()
                if self.tracking is not None:
                    self.tracking.close(timeout=0 if self.signals.count > 1 else TRACKING_CLOSE_S)
        return self._finish()

    def _loop(self) -> None:
        stop_asked: Optional[float] = None
        killed = False
        while True:
            if self._say_if_lost() and stop_asked is None:
                stop_asked = time.monotonic()  # its runs ended already; nothing new starts
            if self.signals.count and stop_asked is None:
                stop_asked = time.monotonic()
                name = signal.Signals(self.signals.first).name if self.signals.first else "a signal"
                self.say.daemon("WARNING", f"{name} received: no new versions; stopping the running ones")
                self.view.warning(f"{name}: stopping (press Ctrl-C again to kill at once)")
                for run in self.executor.running:
                    # A train_model that returns after this stop was cut short by it.
                    if isinstance(run.tag, VersionRun) and not run.tag.train_returned:
                        run.tag.stopped_in_training = True
                self.executor.stop_all(self._signal_for_versions(), cause=self.signals.first)
            if stop_asked is not None and not killed:
                if self.signals.count > 1 or time.monotonic() - stop_asked > STOP_GRACE_S:
                    self.executor.stop_all(signal.SIGKILL)
                    killed = True
            self._check_claims()
            self._check_heartbeat()
            self.records.check_folder()
            self._check_control()
            self._check_rungs()
            # Taken before planning, so that a change made while the plan is made still wakes --wait;
            # only when nothing is outstanding, the one case in which this pass can end in idling.
            idle_possible = self.options.wait and not self.executor.outstanding
            watched = self._watched_state() if idle_possible else ()
            if stop_asked is None and not self._stops_dispatching() and not self.control.paused:
                self._fill_slots()
            if not self.executor.outstanding:
                if stop_asked is not None or self._halted is not None:
                    break
                if self._waits:
                    # A version waits for GPUs other processes hold, or a model_dir another
                    # daemon's version runs in, and nothing of this daemon runs to free them: it
                    # looks again in a while, never ends the queue.
                    time.sleep(WAIT_POLL_S)
                    continue
                if self.control.paused and self.chooser.work_left(*self.claims.session()):
                    time.sleep(0.2)  # paused with work left: wait for `mlpipeline resume`
                    continue
                if self.claim_watch.held_elsewhere():
                    # Another daemon runs a version of this queue: if that daemon dies, this one
                    # resumes the version, so it stays until the version ends.
                    time.sleep(0.2)
                    continue
                if stop_asked is None and not self._stops_dispatching() and not self.control.paused:
                    # The fill above passed over versions whose model_dir another daemon's
                    # version ran in; none of this queue runs now, so they may start, or wait
                    # for a version of another queue in that model_dir.
                    self._fill_slots()
                    if self.executor.outstanding or self._waits:
                        continue
                    waiting = self.chooser.waiting_for_model_dir(*self.claims.session())
                    if waiting is not None:
                        message = f"{waiting.label} waits for its model_dir, which a version of another daemon's queue uses"
                        if self.say.first_time(("waits for model_dir", waiting.label)):
                            self.say.log("INFO", waiting.label, message)
                            self.view.info(message)
                        time.sleep(WAIT_POLL_S)  # that version may run for hours: a look every 2 s
                        continue
                if not self.options.wait:
                    break
                self._idle_until_change(watched)
            self._record_placements()
            finished = self.executor.next_finished(timeout=0.2)
            if finished is not None:
                self._say_if_lost()  # before the ends it brings, which name it
                self._stopped_as_it_started(finished)
                self._record_placements()  # its started event, should it have come with its end
                self._record_end(self.recorder.finished, finished, finished.tag)
            self._show_queue_counts(now=not self.executor.outstanding)

    def _fill_slots(self) -> None:
        self._waits = False
        while self.executor.outstanding < self.slots and not self.signals.count and not self._stops_dispatching():
            planned = self.next_version()
            if planned is None or self.signals.count:
                return
            # Choosing may have taken a while (listing a script): a pause or cancel asked
            # meanwhile holds before the version starts, not after.
            self._check_control(force=True)
            if self.control.paused:
                return
            if self.chooser.is_cancelled(planned):
                continue
            self.records.check_folder()  # its model_dir would be made anew where the folder was
            launched = self.launcher.launch(planned)
            if launched.how is Launch.WAITS:
                # Its GPUs or model_dir are busy: it waits for a running version to end, or for
                # other processes to let go of the GPUs.
                self._waits = not self.executor.outstanding
                return
            self.chooser.handled(planned)  # from here on, this session does not choose it again
            self.chooser.launched(planned)
            if launched.how is Launch.STARTED:
                self._record_placements()  # a local child runs already: its started event follows its claim at once
            elif launched.how is Launch.BLOCKED:
                self.tally.any_failed = self.tally.blocked = True
            elif launched.ending is not None:
                self._record_end(self.recorder.record, launched.ending, launched.ending.version_run)
                if launched.halts is not None:
                    self._halt(launched.halts)

    def next_version(self) -> Optional[PlannedRun]:
        """The next version to launch, with the journal's claims read just now."""
        self._check_claims(force=True)
        self.records.recover(self.claims.is_dead)
        planned = self.chooser.next(*self.claims.session())
        self._record_broken_scripts()
        for judged in self.chooser.take_stops():
            recorded = self.recorder.stopped(judged)
            if recorded.state is None:
                self.chooser.judge_again(judged)  # from the journal as it is now
            self._follow(recorded)
        return planned

    # -- acting on what the steps returned ------------------------------------------------

    def _record_end(self, record: Callable[[Any], Recorded], ended: Any, version_run: Optional[VersionRun]) -> None:
        """Record one end (a child's, or a version's that could not start) with ``record``; the
        one place where a run gives back what it held, and where what follows is done."""
        if version_run is not None:
            self.resources.release(version_run.gpus, version_run.gpu_share, version_run.model_dir, version_run.gpu_memory)
        self._follow(record(ended))

    def _follow(self, recorded: Recorded) -> None:
        if recorded.state is not None:
            self.tally.add(recorded.label, recorded.state, recorded.wall_s)
        if recorded.no_space is not None:
            # Every version after it would meet the same full disk.
            self._halt(f"{recorded.no_space or self.paths.outputs_dir}: cannot be written (No space left on device)")
        if recorded.failed:
            self.tally.any_failed = True
        if recorded.planned is not None and recorded.follow_up is FollowUp.RETRY:
            self.chooser.retry_later(recorded.planned)
        elif recorded.planned is not None and recorded.follow_up is FollowUp.RESUME:
            self.chooser.resume_in_session(recorded.planned)
            self.claims.resume_allowed(recorded.planned.script.label, recorded.planned.version)
        self._counts_due = True
        if recorded.state == JournalEvent.PAUSED.value and recorded.planned is not None:
            request = self.chooser.cancel_of(recorded.planned)
            if request is not None:  # read while its run was pausing
                self._follow(self.recorder.cancelled_at_rest(recorded.planned.script.label, recorded.planned.version, request))

    def _record_broken_scripts(self) -> None:
        for script, listing in self.chooser.take_broken():
            self._follow(self.recorder.broken_script(script, listing))

    def _record_placements(self) -> None:
        """The started events of the children placed since the last look: the one writer of
        them, called before any end is recorded, so a version's start comes before its end."""
        self.launcher.record_placements()

    def _check_claims(self, force: bool = False) -> None:
        """Stop the runs whose claims another daemon took: they record nothing. A version taken
        over from a dead daemon that a cancel named while that daemon held it (the cancel was
        that daemon's to record) is recorded cancelled, so -u leaves it."""
        checked = self.claim_watch.check(self.executor.running, force)
        for run in checked.lost:
            version_run: VersionRun = run.tag
            version_run.phase = RunPhase.LOST
            self.recorder.report_lost(version_run)
            self.executor.let_go(run)
        self._cancel_taken_over(checked.taken_over)

    def _cancel_taken_over(self, records: Sequence[Dict[str, Any]]) -> None:
        for record in records:
            # A cancel asked while the dead daemon held it was that daemon's to record.
            request = self.control.cancel_since(record["script"], record["version"], record.get("time"))
            if request is not None:
                self._follow(self.recorder.cancelled_at_rest(record["script"], record["version"], request))

    def _check_control(self, force: bool = False) -> None:
        """Apply `mlpipeline cancel`: what it names does not start again; its running versions stop."""
        asked = self.control.check(self.executor.running, force)
        for request in asked.cancels:
            self.chooser.cancel(request)
            self._counts_due = True  # what it names is pending no more
            last_words = self.tally.last_words()
            for script, version in self.journal.versions():
                if not request.matches(script, version):
                    continue
                state = self.journal.state(script, version)
                if state is RunState.PAUSED:
                    # Paused since the command looked (and saw it run): the daemon records the cancel.
                    self._follow(self.recorder.cancelled_at_rest(script, version, request))
                elif state is RunState.CANCELLED and last_words.get(f"{script}:{version}") == "paused":
                    # The command found it paused and recorded the cancel itself: counted as its last word here too.
                    self.tally.add(f"{script}:{version}", state.value, 0.0)
        for run, reason in asked.stops:
            version_run: VersionRun = run.tag
            version_run.phase, version_run.cancel_reason = RunPhase.CANCELLED, reason
            self.executor.stop(run, signal.SIGKILL)

    def _check_rungs(self) -> None:
        """Early stopping of watched versions (their model cannot resume): a rung passed is
        recorded; a version judged out there is stopped, and recorded stopped."""
        if self.rung_watch is None:
            return
        found = self.rung_watch.check(self.executor.running)
        for run, rung, value in found.passed:
            self.recorder.rung_passed(run.tag, rung, value)
        for run, reason in found.stops:
            version_run: VersionRun = run.tag
            version_run.rungs.append(version_run.metrics.get(self.rung_watch.settings.metric))
            version_run.phase, version_run.stop_reason = RunPhase.STOPPED, reason
            self.say.log("INFO", version_run.planned.label, reason)
            self.executor.stop(run, signal.SIGKILL)

    def _executor_lost(self) -> Optional[str]:
        """Why nothing can run on the executor any more (its cluster is gone), or None.

        The Ray executor's ``lost``; an executor without one is never lost."""
        return getattr(self.executor, "lost", None)

    def _say_if_lost(self) -> bool:
        """Whether the executor is lost; said once, in the log and on the console."""
        lost = self._executor_lost()
        if lost is not None and not self._lost_said:
            self._lost_said = True
            message = f"{lost}; the running versions are recorded interrupted; run `mlpipeline -r -u` again to resume them"
            self.say.daemon("ERROR", message)
            self.view.error(message)
        return lost is not None

    def _stopped_as_it_started(self, run: ChildRun) -> None:
        """A child started in the very moment of a Ctrl-C to the daemon's process group got it
        too: until it has a session of its own, which it makes just before it runs, it is in
        that group (and Python has reset its handlers by then). Dead of the daemon's own stop
        signal before the daemon passed the stop on, it was stopped, not failed: it resumes."""
        outcome = run.outcome
        if (
            self.signals.count
            and outcome is not None
            and outcome.stop_signal is None
            and outcome.returncode is not None
            and -outcome.returncode in EXIT_CODES
        ):
            outcome.stop_signal = -outcome.returncode

    def _stops_dispatching(self) -> bool:
        """--fail-fast after a failure, or a halt (_halt): the running versions finish, no other starts."""
        return (self.options.fail_fast and self.tally.any_failed) or self._halted is not None

    def _halt(self, why: str) -> None:
        """Start nothing more, for ``why`` (said once): those running finish, and the daemon
        exits 2 saying it again."""
        if self._halted is None:
            self._halted = why
            message = f"{why}; no more versions start, the running ones finish"
            self.say.daemon("ERROR", message)
            self.view.error(message)

    def _check_heartbeat(self) -> None:
        """A heartbeat that cannot be written: daemons on other hosts would take this one for
        dead, and its versions over, one by one."""
        failing = self.claims.beat_failing()
        if failing is not None:
            self._halt(f"{failing}: other hosts' daemons would take this one for dead")

    def _signal_for_versions(self) -> int:
        """What the running versions get when the daemon is asked to stop: the same signal, but
        SIGTERM for a SIGHUP (a closed terminal), which training code knows as "save and stop"."""
        first = self.signals.first or signal.SIGINT
        return signal.SIGTERM if first == signal.SIGHUP else first

    def _idle_until_change(self, before: Tuple[Any, ...]) -> None:
        """With --wait and nothing to run: sleep until models.config, a script or the journal changes.

        A stat of each file every WAIT_POLL_S seconds: no thread, no busy loop, no inotify
        dependency, and it works on network file systems where inotify sees nothing.
        """
        self.say.daemon("INFO", "nothing to run; waiting for models.config or a script to change (--wait)")
        self.view.info("nothing to run; waiting for models.config or a script to change")
        next_poll = time.monotonic() + WAIT_POLL_S
        while not self.signals.count and self._executor_lost() is None:
            time.sleep(0.25)
            if time.monotonic() < next_poll:
                continue
            next_poll = time.monotonic() + WAIT_POLL_S
            self.journal.refresh()
            self._cancel_taken_over(self.claim_watch.take_over_stale())
            if self._watched_state() != before:
                return

    def _watched_state(self) -> Tuple[Any, ...]:
        files = [self.queue.path] + [self.project.models_dir / name for name in self.queue.discovered_scripts()]
        files += [Path(path) for path in self.catalog.config_paths()]  # config-file versions, modules beside scripts
        state: List[Any] = [self.journal.lines_read]
        for path in files:
            try:
                stat = os.stat(path)
                state.append((str(path), stat.st_mtime_ns, stat.st_size, stat.st_ino))
            except OSError:
                state.append((str(path), None))
        return tuple(state)

    def _busy_model_dirs(self) -> AbstractSet[str]:
        """The model_dirs a version runs in now, here or under another daemon: the chooser
        passes over the versions that would share one."""
        return self.resources.busy_model_dirs() | {self.paths.of_outputs(folder) for folder in self.journal.held_model_dirs()}

    def _show_queue_counts(self, now: bool = False) -> None:
        if not self._counts_due and time.monotonic() - self._queue_looked >= QUEUE_LOOK_S:
            # An edit of models.config while every slot is busy changes what is pending before
            # any version ends: the counts say so then, not at the next end.
            self._queue_looked = time.monotonic()
            self._counts_due = self.queue.edited()
        if self._counts_due and (now or time.monotonic() - self._counts_shown >= QUEUE_COUNTS_INTERVAL_S):
            self._counts_due = False
            self._counts_shown = time.monotonic()
            self.view.queue_counts(*self._queue_counts())

    def _queue_counts(self) -> Tuple[dict, int]:
        counts = self.tally.counts()
        # A run that lost its claim is its version's past: the daemon that took it over runs or ended it.
        counts.pop(RunPhase.LOST.value, None)
        left = self.chooser.pending(*self.claims.session(), own_daemon=self.identity.key)
        counts["running"] = len(self.executor.running)
        # Another daemon's versions are neither this one's to run nor pending: said apart, but
        # for those whose last word this daemon wrote (a cancel of one cut off under another).
        ours = {label for label, state in self.tally.last_words().items() if state != RunPhase.LOST.value}
        counts["running under other daemons"] = left.running_elsewhere
        counts["ended under other daemons"] = len(left.ended_elsewhere - ours)
        if left.cancelled:
            counts["cancelled"] = counts.get("cancelled", 0) + left.cancelled
        counts["pending"] = left.pending
        return counts, left.unlisted

    def _finish(self) -> int:
        skipped = not_started = 0
        if self.options.use_history and not self.signals.count:
            skipped, not_started = self.chooser.skipped_by_history(self.claims.session()[0])
        if not self.signals.count:
            self._record_broken_scripts()  # one edited into a broken script at the very end, or listed while paused
        parts = [f"{n} {state_words(state)}" for state, n in sorted(self.tally.counts().items())]
        cancelled = self.chooser.pending(*self.claims.session()).cancelled
        if cancelled:
            parts.append(f"{cancelled} cancelled before {'they' if cancelled > 1 else 'it'} started")
        if skipped:
            parts.append(f"{skipped} skipped by -u")
        if not_started:
            parts.append(f"{not_started} not started")
        paused = self.chooser.paused() if self.project.early_stopping is not None else 0
        if paused:
            parts.append(f"{paused} paused at a rung (`mlpipeline -r -u` goes on with them)")
        if self.signals.count:
            # Said, so that a queue stopped while its scripts were listed is not "nothing to run".
            parts.append(f"stopped by {signal.Signals(self.signals.first).name if self.signals.first else 'a signal'}")
        summary = ", ".join(parts) or "nothing to run"
        self.say.daemon("INFO", f"execution mode ended: {summary}")
        self.view.summary("execution mode", self.tally.rows, [f"{summary}; records in {self.paths.outputs_dir}"])
        if self.signals.count:
            return self.signals.exit_code
        if self._executor_lost() is not None:
            return EXIT_CLUSTER_GONE
        if self._halted is not None:
            self.view.error(f"{self._halted}; stopped dispatching")
            return EXIT_HALTED
        return 1 if self.tally.ends_failed() else 0
