"""The last step of a version's path: how its run ended, recorded once (journal, results,
logs, its run record), then the on_version_end hook; returns what follows (a retry, a resume
in this session, or nothing), which the loop carries out."""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

from mlpipeline.execution.claim_watch import lost_claim_message
from mlpipeline.execution.end_hook import VersionEndHook
from mlpipeline.execution.listener import ChildListener
from mlpipeline.execution.early_stopping import finite, rung_basis, rung_value
from mlpipeline.execution.halving import JudgedOut, recorded_total
from mlpipeline.execution.outcome import Ending, RunPhase, VersionRun, cancelled_at_rest, classify, version_end
from mlpipeline.execution.plan import PlannedRun, Start
from mlpipeline.execution.reporter import Reporter
from mlpipeline.executors.base import ChildRun
from mlpipeline.queue.catalog import ScriptListing
from mlpipeline.queue.queue_file import QueuedScript
from mlpipeline.queue.config import ProjectConfig
from mlpipeline.records.control import ControlRequest
from mlpipeline.records.ends import RecordKeeper, new_run_id
from mlpipeline.records.identity import DaemonIdentity
from mlpipeline.records.journal import Journal, state_of
from mlpipeline.records.run_record import parameters_of_run, run_record_unreadable, update_run_record
from mlpipeline.records.states import CARRIED_FIELDS, JournalEvent, RunState
from mlpipeline.watch.console import describe_report


MAX_RESUMES_IN_SESSION = 3
"""How often a version cut off (its node lost, its daemon silent) is resumed in one session:
one that takes its node down each time must not go round the cluster forever."""


class FollowUp(Enum):
    """What the loop does next about a version whose run was recorded."""

    NONE = "none"
    RETRY = "retry"  # it failed with attempts left: its next attempt goes before new versions
    RESUME = "resume"  # it was cut off, and no other daemon took it: it resumes in this session


@dataclass(frozen=True)
class Recorded:
    """What recording one end did, for the loop's tally and its next choice."""

    label: str
    state: Optional[str]  # how it ended, as results.jsonl says it; "lost": another daemon has it; None: not counted
    wall_s: float
    follow_up: FollowUp = FollowUp.NONE
    failed: bool = False  # failed for good (no retry follows): what --fail-fast stops at
    planned: Optional[PlannedRun] = None  # None for a script whose versions cannot be learned
    no_space: Optional[str] = None  # the file a full disk refused it: nothing more starts


class EndRecorder:
    """Records each run's end exactly once, unless another daemon holds its version now."""

    def __init__(
        self,
        project: ProjectConfig,
        identity: DaemonIdentity,
        journal: Journal,
        records: RecordKeeper,
        write_log: bool,
        listener: ChildListener,
        reporter: Reporter,
        stopping: Callable[[], bool],
    ) -> None:
        self._project = project
        self._identity = identity
        self._journal = journal
        self._records = records
        self._write_log = write_log
        self._listener = listener
        self._say = reporter
        self._stopping = stopping
        self.end_hook = VersionEndHook(project.on_version_end, project.project_dir, reporter.log)
        self._cut_offs: Dict[Tuple[str, str], int] = {}

    def finished(self, run: ChildRun) -> Recorded:
        """A started version's child ended: record how."""
        version_run: VersionRun = run.tag
        assert run.outcome is not None
        if version_run.phase is RunPhase.LOST:
            return self._drop_lost(version_run, run.outcome.wall_s)
        error = (run.outcome.result or {}).get("error")
        # A full /tmp, or a node's own scratch disk, is the version's failure; the queue's disk is not.
        disk_full = isinstance(error, dict) and self._our_disk(error.get("no_space"), version_run)
        event, result = classify(
            run.outcome, version_run.planned.label, self._project.version_timeout, version_run.cancel_reason, version_run.stop_reason,
            disk_full=disk_full, stopped_in_training=version_run if version_run.stopped_in_training else None,
        )
        if result.get("parameters") is None and version_run.model_dir:
            # Ended before its result (Ctrl-C, a cancel, a kill): its record still names the
            # parameters it ran with, as its child wrote them at its start.
            parameters = parameters_of_run(Path(version_run.model_dir), version_run.run_id)
            if parameters is not None:
                result = dict(result, parameters=parameters)
        halving = self._halving_fields(version_run, event, result)
        recorded = self.record(Ending(version_run.planned, version_run.run_id, event, result, version_run, run.outcome, halving))
        if result.get("cut_off") and recorded.state != "lost" and not self._stopping():
            # Its keeper ended it while this daemon was silent, or its Ray node was lost, and no
            # other daemon took it: it is this session's to resume, a few times at most.
            planned = version_run.planned
            key = (planned.script.label, planned.version)
            self._cut_offs[key] = self._cut_offs.get(key, 0) + 1
            if self._cut_offs[key] <= MAX_RESUMES_IN_SESSION:
                return replace(recorded, follow_up=FollowUp.RESUME)
            self._say.log(
                "WARNING", planned.label,
                f"cut off {self._cut_offs[key]} times in this session: not resumed again now; `mlpipeline -r -u` resumes it",
            )  # fmt: skip
        return recorded

    def record(self, ending: Ending) -> Recorded:
        """Commit ``ending`` to the records, then tell the console and the hook."""
        planned, version_run = ending.planned, ending.version_run
        label = planned.label
        reason = ending.error.get("message")
        end = version_end(self._identity, ending, self._write_log)
        if not self._records.commit(end):
            # Another daemon took the version over while this one was silent: its end is not ours.
            self._say_lost(planned)
            if version_run is None:
                return Recorded(label, None, ending.wall_s, planned=planned)  # it never ran here
            version_run.phase = RunPhase.LOST
            return self._drop_lost(version_run, ending.wall_s)
        if version_run is not None:
            self._listener.ended(version_run, end.record)
            self._close_run_record(version_run, end.record)
        else:
            self._say.view.progress_ended(label)
        self.end_hook.run(
            label,
            {
                "MLPIPELINE_SCRIPT": planned.script.label,
                "MLPIPELINE_VERSION": planned.version,
                "MLPIPELINE_STATE": ending.event.value,
                "MLPIPELINE_RUN_ID": ending.run_id,
                "MLPIPELINE_MODEL_DIR": version_run.model_dir if version_run else "",
                "MLPIPELINE_DURATION_S": f"{ending.wall_s:.3f}",
            },
        )
        last = describe_report(version_run.last_step, None, version_run.metrics) if version_run is not None else ""
        self._say.view.version_ended(label, ending.event.value, ending.wall_s, reason, last)
        if ending.error.get("traceback"):
            self._say.view.block(ending.error["traceback"])
        recorded = Recorded(label, ending.event.value, ending.wall_s, planned=planned)
        no_space = ending.error.get("no_space")
        if ending.event is JournalEvent.INTERRUPTED and isinstance(no_space, str):
            return replace(recorded, no_space=no_space or (version_run.model_dir if version_run else ""))
        if ending.event not in (JournalEvent.FAILED, JournalEvent.TIMED_OUT):
            return recorded
        if version_run is not None and planned.attempt <= self._project.retries and not self._stopping():
            how = "timed out" if ending.event is JournalEvent.TIMED_OUT else "failed"
            self._say.log("WARNING", label, f"attempt {planned.attempt} of {1 + self._project.retries} {how}; retrying")
            return replace(recorded, follow_up=FollowUp.RETRY)
        return replace(recorded, failed=True)

    def stopped(self, judged: JudgedOut) -> Recorded:
        """Record a paused version early stopping judged out: a decision, no run; only while
        its pause is still its latest event (of two daemons, one records it)."""
        settings = self._project.early_stopping
        assert settings is not None
        stop, script = judged.stop, judged.script
        planned = PlannedRun(script, stop.version, judged.sha256, Start.RESUME)
        paused = self._journal.latest(script.label, stop.version)
        if paused is None or paused.get("event") != JournalEvent.PAUSED.value:
            return Recorded(planned.label, None, 0.0, planned=planned)  # it moved on meanwhile
        halving = {
            **{key: paused[key] for key in CARRIED_FIELDS if key in paused and key != "until_step"},
            "rung": stop.rung, "step": paused.get("step"), "metric": settings.metric, "value": stop.value,
            "rule": settings.rule, "history_run": paused.get("run_id"), "model_dir": judged.model_dir,
        }  # fmt: skip
        total = recorded_total(paused)
        result = {"sha256": judged.sha256, "error": {"message": stop.reason}, "steps": {"trained": 0, "total": total}}
        # The version's parameters, as its model_dir's run record has them from its last run.
        parameters = parameters_of_run(Path(judged.model_dir))
        if parameters is not None:
            result["parameters"] = parameters
        ending = Ending(planned, new_run_id(), JournalEvent.STOPPED, result, early_stopping=halving)
        end = version_end(self._identity, ending, self._write_log)
        if not self._records.commit(end, after=paused, not_cancelled=judged.basis):
            # Another daemon recorded it, or a version it was judged against was cancelled since.
            return Recorded(planned.label, None, 0.0, planned=planned)
        self._listener.decided(planned, ending.run_id, judged.model_dir, end.record)
        self.end_hook.run(
            planned.label,
            {
                "MLPIPELINE_SCRIPT": script.label, "MLPIPELINE_VERSION": stop.version,
                "MLPIPELINE_STATE": JournalEvent.STOPPED.value, "MLPIPELINE_RUN_ID": ending.run_id,
                "MLPIPELINE_MODEL_DIR": judged.model_dir, "MLPIPELINE_DURATION_S": "0.000",
            },
        )  # fmt: skip
        self._say.view.version_ended(planned.label, JournalEvent.STOPPED.value, 0.0, stop.reason)
        return Recorded(planned.label, JournalEvent.STOPPED.value, 0.0, planned=planned)

    def cancelled_at_rest(self, script: str, version: str, request: ControlRequest) -> Recorded:
        """A version a cancel names that is paused at a rung or cut off, with no run of it
        anywhere: recorded cancelled after that (only while it is its latest event), as
        `mlpipeline cancel` records one it finds so, so that no later run promotes or resumes
        it. The cancel came before its daemon had read it, or as its run was pausing, or its
        daemon died (or stopped heartbeating) after the command saw it alive."""
        label = f"{script}:{version}"
        latest = self._journal.latest(script, version)
        state = state_of(latest) if latest is not None else None
        if latest is None or state not in (RunState.PAUSED, RunState.INTERRUPTED):
            return Recorded(label, None, 0.0)
        how = "while paused at a rung" if state is RunState.PAUSED else "while cut off"
        reason = f"cancelled by `mlpipeline cancel {request.target}` on {request.host} at {request.time} {how}"
        writer = self._identity.event_fields(script, version, None)
        if not self._records.commit(cancelled_at_rest(writer, latest, reason, self._write_log), after=latest):
            return Recorded(label, None, 0.0)  # another daemon moved it on meanwhile
        self._say.view.version_ended(label, JournalEvent.CANCELLED.value, 0.0, reason)
        return Recorded(label, JournalEvent.CANCELLED.value, 0.0)

    def rung_passed(self, version_run: VersionRun, rung: int, value: Optional[float]) -> None:
        """A watched version went past a rung and goes on: its value there joins its record in
        the journal, where the others are judged against it."""
        version_run.rungs.append(value)
        planned = version_run.planned
        self._journal.append_if_owner(
            JournalEvent.RUNG,
            durable=False,  # its run's end carries the same values
            **self._identity.event_fields(planned.script.label, planned.version, planned.sha256),
            run_id=version_run.run_id, rung=rung, value=value, rungs=list(version_run.rungs), watched=True,
            rung_basis=rung_basis(self._project.early_stopping) if self._project.early_stopping is not None else None,
        )  # fmt: skip
        settings = self._project.early_stopping
        metric = settings.metric if settings is not None else "the metric"
        shown = "not reported" if value is None else f"{metric}={value:g}"
        self._say.log("INFO", planned.label, f"passed rung {rung} ({shown}); it goes on")

    def _halving_fields(self, version_run: VersionRun, event: JournalEvent, result: Dict[str, Any]) -> Dict[str, Any]:
        """Where a version under early stopping stands after this run: its values at the rungs,
        with the one it paused at (halving.py reads them back from the journal)."""
        settings = self._project.early_stopping
        if settings is None:
            return {}
        planned = version_run.planned
        fields: Dict[str, Any] = {"rungs": list(version_run.rungs), "rung_basis": rung_basis(settings)}
        steps = result.get("steps") if isinstance(result.get("steps"), dict) else {}
        total = steps.get("total")
        if isinstance(total, int) and not isinstance(total, bool):
            fields["total_steps"] = total
        if planned.watched:
            fields["watched"] = True
            # Rungs its reports passed that the rung watch did not look at before its end count too.
            for rung in sorted(version_run.crossings):
                if rung == len(fields["rungs"]):
                    fields["rungs"].append(version_run.crossings[rung])
        if event is JournalEvent.PAUSED:
            pause = result["pause"]
            # A run that trained nothing more (its checkpoint was at the rung already: its run
            # that got there was cut off) brings the reports that run saved at its pause.
            reported = version_run.metrics if version_run.reported else pause.get("reported")
            value = rung_value(settings, reported, result.get("eval_test"), result.get("eval_train"))
            if value is None and not version_run.reported:
                # Else where its model's history leaves it, if at the rung's own step (the last
                # second of reports before a kill may be missing: a value from before the rung
                # would judge it by another step's), else its last rung.
                if version_run.history_last_steps.get(settings.metric) == pause.get("step"):
                    value = finite(version_run.history_last.get(settings.metric))
                if value is None and version_run.rungs:
                    value = version_run.rungs[-1]
            fields.update(
                rung=len(version_run.rungs), step=pause.get("step"), metric=settings.metric, value=value,
                resumable=bool(pause.get("resumable")),
            )  # fmt: skip
            fields["rungs"].append(value)
        elif event is JournalEvent.STOPPED and version_run.rungs:
            fields.update(rung=len(version_run.rungs) - 1, metric=settings.metric, value=version_run.rungs[-1], rule=settings.rule)
        return fields

    def broken_script(self, script: QueuedScript, listing: ScriptListing) -> Recorded:
        """A script whose versions cannot be learned: said, and a row in results.jsonl."""
        assert listing.error is not None
        self._say.log("ERROR", script.label, listing.error.message)
        if listing.error.traceback:
            self._say.log("ERROR", script.label, listing.error.traceback)
        self._say.view.error(listing.error.message)
        if listing.error.traceback:
            self._say.view.block(listing.error.traceback)
        self._records.script_failed(script.label, listing.error.message, listing.sha256, self._identity.host)
        return Recorded(script.label, "failed", 0.0, failed=True)

    def _our_disk(self, refused: Any, version_run: VersionRun) -> bool:
        """Whether ``refused`` (the file a full disk refused a version; "" when its error named
        none) is one the queue itself needs room on: under outputs_dir or the version's model_dir."""
        if not isinstance(refused, str):
            return False
        if not refused:
            return True
        path = os.path.abspath(refused)
        folders = [os.path.abspath(folder) for folder in (str(self._project.outputs_dir), version_run.model_dir) if folder]
        return any(path == folder or path.startswith(folder.rstrip(os.sep) + os.sep) for folder in folders)

    def report_lost(self, version_run: VersionRun) -> None:
        """Say that this daemon lost its claim on ``version_run``'s version to another daemon,
        and drop its reports not written yet."""
        self._listener.lost(version_run)
        self._say_lost(version_run.planned)

    def _say_lost(self, planned: PlannedRun) -> None:
        message = lost_claim_message(self._journal, planned)
        self._say.log("WARNING", planned.label, message)
        self._say.view.warning(f"{planned.label} {message}")

    def _drop_lost(self, version_run: VersionRun, wall_s: float) -> Recorded:
        """A run whose version another daemon took over: it ended here, and nothing is recorded."""
        label = version_run.planned.label
        self._listener.lost(version_run)
        self._say.log("WARNING", label, f"its run {version_run.run_id} here ended after {wall_s:.2f} s; another daemon has it now")
        self._say.view.version_ended(label, "lost", wall_s, "another daemon took it over; nothing recorded here")
        return Recorded(label, "lost", wall_s, planned=version_run.planned)

    def _close_run_record(self, version_run: VersionRun, record: Dict[str, Any]) -> None:
        """Add how the run ended to ``<model_dir>/.mlpipeline/run.json``, which its child began."""
        try:
            updated = update_run_record(
                Path(version_run.model_dir),
                version_run.run_id,
                state=record["status"],
                ended_at=record["time"],
                duration_s=record["duration_s"],
                steps=record.get("steps"),
            )
            unreadable = None if updated else run_record_unreadable(Path(version_run.model_dir))
            if unreadable is not None:
                self._say.warn(f"{unreadable}: no run record can be read there; how the run ended is not added to it")
        except OSError as exc:
            self._say.warn(f"{exc.filename or version_run.model_dir}: the run record cannot be completed ({exc.strerror or exc})")
