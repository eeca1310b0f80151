"""From how a version's child ended to what is recorded about it."""
from __future__ import annotations

import signal
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Optional, Tuple

from mlpipeline.execution.plan import PlannedRun, Start
from mlpipeline.executors.base import ChildOutcome
from mlpipeline.records.ends import VersionEnd, new_run_id
from mlpipeline.records.files import json_text, now_iso
from mlpipeline.records.identity import DaemonIdentity
from mlpipeline.records.states import JournalEvent
from mlpipeline.records.text import without_addresses
from mlpipeline.watch.console import describe_report


JOURNAL_EVAL_LIMIT = 512
"""An evaluation result longer than this (as JSON) stays out of the journal; results.jsonl has it."""


class RunPhase(Enum):
    """Where a running version stands with this daemon; the loop alone moves it on."""

    RUNNING = "running"
    CANCELLED = "cancelled"  # `mlpipeline cancel` stopped it: recorded cancelled, unless it finished
    LOST = "lost"  # another daemon took the version over: this run records nothing
    STOPPED = "stopped"  # early stopping judged it out at a rung while it ran: recorded stopped


@dataclass
class VersionRun:
    """A version this daemon started: what was planned, and what it reported on the way."""

    planned: PlannedRun
    model_dir: str
    started_at: str
    run_id: str
    gpus: Tuple[str, ...] = ()
    gpu_share: float = 0.0
    gpu_memory: Optional[int] = None  # the gpu_memory it stated, in bytes, that it holds on its GPU
    git: Optional[Dict[str, Any]] = None
    dvc: Optional[Dict[str, Any]] = None  # the DVC data version, where the project has one
    metrics: Dict[str, Any] = field(default_factory=dict)
    last_report_logged: float = 0.0
    last_progress_written: float = 0.0
    placement: Dict[str, Any] = field(default_factory=dict)  # where its child runs: pid, or a Ray node
    phase: RunPhase = RunPhase.RUNNING
    steps: Optional[Dict[str, Any]] = None  # the worker's plan: trained (to be), total, already_trained
    last_step: Optional[int] = None  # the step of its latest report()
    last_total: Any = None  # the total its latest report() gave
    continued_from: Optional[int] = None  # a fresh run that went on from a checkpoint its model kept
    best: Dict[str, Any] = field(default_factory=dict)  # each metric's best value over its history
    reported: bool = False  # whether it sent a report of its own
    train_returned: bool = False  # its train_model returned (the worker's "trained" event came)
    stopped_in_training: bool = False  # the daemon's stop was sent before train_model returned
    cancel_reason: Optional[str] = None  # with RunPhase.CANCELLED: which cancel, from where
    stop_reason: Optional[str] = None  # with RunPhase.STOPPED: the rule's words
    rungs: List[Optional[float]] = field(default_factory=list)  # its values at the rungs passed, this run's too
    crossings: Dict[int, Optional[float]] = field(default_factory=dict)  # watched: its value as its reports passed each rung
    history_last: Dict[str, Any] = field(default_factory=dict)  # resumed: the last values its model's history holds
    history_last_steps: Dict[str, Any] = field(default_factory=dict)  # and the step of each (None: reported without one)


@dataclass
class Ending:
    """How one run of a version ended, before anything of it is recorded."""

    planned: PlannedRun
    run_id: str
    event: JournalEvent
    result: Dict[str, Any]
    version_run: Optional[VersionRun] = None  # None: it failed before it was started
    outcome: Optional[ChildOutcome] = None  # None: no process of it ran
    early_stopping: Dict[str, Any] = field(default_factory=dict)  # rung, value, rungs...: in the journal event and the record

    @property
    def wall_s(self) -> float:
        return self.outcome.wall_s if self.outcome else 0.0

    @property
    def error(self) -> Dict[str, Any]:
        return self.result.get("error") or {}


TRACEBACK_MOST_CHARS = 16_000
"""The most of a traceback a record keeps: its end, where the error is (the log has it whole)."""


def _kept_traceback(traceback: Any) -> Optional[str]:
    if not isinstance(traceback, str) or not traceback.strip():
        return None
    text = without_addresses(traceback.rstrip("\n"))
    if len(text) > TRACEBACK_MOST_CHARS:
        text = f"[{len(text) - TRACEBACK_MOST_CHARS:,} characters of its start left out]\n" + text[-TRACEBACK_MOST_CHARS:]
    return text


def trained_to_its_end(result: Dict[str, Any], version_run: VersionRun) -> Optional[bool]:
    """Whether a run whose train_model returned trained every step planned for it: as the
    framework base counted them, else as its last report says (when that report's total is
    the run's, so that its steps count the same), else None: not known."""
    planned = (version_run.steps or {}).get("trained")
    steps = result.get("steps") if isinstance(result.get("steps"), dict) else {}
    if not _whole(planned):
        return None
    if result.get("steps_counted") and _whole(steps.get("trained")):
        return steps["trained"] >= planned
    already = steps.get("already_trained") if _whole(steps.get("already_trained")) else 0
    if version_run.last_step is not None and version_run.last_total == steps.get("total") is not None:
        return version_run.last_step >= already + planned
    return None


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _trained_any(result: Dict[str, Any]) -> bool:
    """Whether the run's train_model was called: steps were planned for it."""
    steps = result.get("steps")
    planned = steps.get("trained") if isinstance(steps, dict) else None
    return isinstance(planned, int) and not isinstance(planned, bool) and planned > 0


def crash_message(label: str, outcome: ChildOutcome) -> str:
    """Why a version whose process died without a result failed, in words."""
    message = f"{label}: its process {outcome.exit_description} before it reported a result"
    if outcome.signal_name == "SIGKILL":
        message += " (a SIGKILL not sent by mlpipeline: the out-of-memory killer, or kill -9)"
    return message


def classify(
    outcome: ChildOutcome,
    label: str,
    version_timeout: float,
    cancel_reason: Optional[str] = None,
    stop_reason: Optional[str] = None,
    disk_full: bool = False,
    stopped_in_training: Optional["VersionRun"] = None,
) -> Tuple[JournalEvent, Dict[str, Any]]:
    """The journal event a child's end makes, and its result with the reason filled in.

    ``cancel_reason``: `mlpipeline cancel` stopped it, which is how it ended unless it
    finished; ``stop_reason``: early stopping did, likewise; ``disk_full``: its failure was a
    disk the queue needs (outputs_dir, its model_dir) refusing a write for want of room;
    ``stopped_in_training``: the run, where the daemon sent its stop before its train_model
    returned."""
    result = dict(outcome.result or {})
    if isinstance(result.get("error"), dict) and "no_space" in result["error"] and not disk_full:
        result["error"] = {key: value for key, value in result["error"].items() if key != "no_space"}
    if (
        result.get("ok") and stopped_in_training is not None and outcome.stop_signal is not None and _trained_any(result)
        and trained_to_its_end(result, stopped_in_training) is not True
    ):  # fmt: skip
        # The script took the stop as "stop here" (caught KeyboardInterrupt, or a SIGTERM
        # handler that ends its loop) and returned early: not trained to its end, so resumed.
        name = signal.Signals(outcome.stop_signal).name
        message = (
            f"stopped by {name} while train_model ran, which returned before its last step (the script took the signal as "
            "\"stop here\"); cut off, resumable with -u"
        )
        result = {key: value for key, value in result.items() if key not in ("ok", "pause")}
        if not result.get("steps_counted"):
            result["steps"] = dict(result["steps"], trained=None)  # the last step it reported, if any (steps_trained)
        result["error"] = {"message": message}
        return JournalEvent.INTERRUPTED, result
    if result.get("ok"):
        return (JournalEvent.PAUSED if isinstance(result.get("pause"), dict) else JournalEvent.FINISHED), result
    if cancel_reason is not None:
        result["error"] = {"message": cancel_reason}
        return JournalEvent.CANCELLED, result
    if stop_reason is not None:
        result["error"] = {"message": stop_reason}
        return JournalEvent.STOPPED, result
    if result.get("cancelled"):
        result.setdefault("error", {"message": "cancelled outside mlpipeline"})
        return JournalEvent.CANCELLED, result
    if result.get("cut_off"):
        # Its keeper ended it: this daemon was silent past the heartbeat window (error says why).
        result.setdefault("error", {"message": "cut off by its keeper"})
        return JournalEvent.INTERRUPTED, result
    if outcome.timed_out:
        message = f"{label} ran past version_timeout ({version_timeout:g} s); its process tree was killed"
        result["error"] = {"message": message}
        return JournalEvent.TIMED_OUT, result
    if outcome.stop_signal is not None:
        # A daemon's SIGHUP reaches its versions as SIGTERM (execution/loop.py).
        passed_on = " (passed on to it as SIGTERM)" if outcome.stop_signal == signal.SIGHUP else ""
        message = f"stopped by {signal.Signals(outcome.stop_signal).name}{passed_on}; resumable with -u"
        result["error"] = {"message": message}
        return JournalEvent.INTERRUPTED, result
    if not result.get("error"):
        result["error"] = {"message": crash_message(label, outcome)}
    elif disk_full and isinstance(result["error"], dict):
        # A full disk is the machine's state, not the script's fault: resumed once there is room.
        error = dict(result["error"])
        error["message"] = f"stopped: the disk is full ({error.get('message')}); resumable with -u once there is room"
        result["error"] = error
        return JournalEvent.INTERRUPTED, result
    return JournalEvent.FAILED, result


def exit_fields(outcome: ChildOutcome) -> Dict[str, Any]:
    """How the process ended and what it used, for the journal and the record."""
    fields: Dict[str, Any] = {"exit_code": outcome.returncode, "signal": outcome.signal_name}
    if outcome.peak_rss_bytes:
        fields["peak_memory_mb"] = round(outcome.peak_rss_bytes / 2**20, 1)
    if outcome.peak_gpu_bytes is not None:
        fields["gpu_peak_memory_mb"] = round(outcome.peak_gpu_bytes / 2**20, 1)
    if outcome.gpu_utilization is not None:
        fields["gpu_utilization"] = round(outcome.gpu_utilization, 1)
    return fields


NODE_FIELDS = ("node_id", "node_ip", "node_host", "slurm_job", "slurm_node")
"""What names the Ray node or the Slurm job a version ran on, in the journal's started event
and its record."""


def node_fields(version_run: Optional[VersionRun]) -> Dict[str, Any]:
    """The Ray node ``version_run`` ran on, for its record; nothing for a local child."""
    placement = version_run.placement if version_run else {}
    return {key: placement[key] for key in NODE_FIELDS if key in placement}


def steps_trained(
    steps: Optional[Dict[str, Any]], event: JournalEvent, version_run: Optional[VersionRun], counted: bool = False
) -> Optional[Dict[str, Any]]:
    """The steps a run trained, as they were: for a finished run what was planned, or where
    its train_model returned early what its framework base counted (``counted``: the child's
    figure is that) or its last report says; for any other end the last step it reported (less
    those trained before it, where report() counts from the version's start, as the framework
    bases do), else what its checkpoints said after it failed, else None (unknown)."""
    if not isinstance(steps, dict) or counted:
        return steps
    if event is JournalEvent.FINISHED:
        # A fresh run whose train_model returned before its last step (its own early stopping)
        # trained what its last report says, where that report counts as the run does.
        if version_run is not None and not steps.get("already_trained") and trained_to_its_end({"steps": steps}, version_run) is False:
            return dict(steps, trained=version_run.last_step)
        return steps
    truth = dict(steps)
    last = version_run.last_step if version_run else None
    if last is not None:
        before = truth.get("already_trained")
        before = before if isinstance(before, int) and not isinstance(before, bool) else 0  # the child's word
        truth["trained"] = last - before if last > before else last
    elif version_run is not None and steps is version_run.steps:
        truth["trained"] = None  # killed before any report: how far it got is not known
    return truth


def version_end(identity: DaemonIdentity, ending: Ending, write_log: bool) -> VersionEnd:
    """Everything written when a run ends: journal fields, the record, the log lines."""
    planned, version_run, outcome, result, event, run_id = (
        ending.planned, ending.version_run, ending.outcome, ending.result, ending.event, ending.run_id
    )
    label = planned.label
    wall_s = ending.wall_s
    cpu_s = outcome.cpu_s if outcome else None
    exit_info = exit_fields(outcome) if outcome else {}
    error = ending.error
    reason = error.get("message")
    sha256 = result.get("sha256") or planned.sha256
    fields = identity.event_fields(planned.script.label, planned.version, sha256)
    journal_fields = dict(fields, attempt=planned.attempt, duration_s=round(wall_s, 3), reason=reason, **exit_info, **ending.early_stopping)
    # What `mlpipeline status` shows as a version's last metrics, kept small: the journal is read whole.
    # A decision of early stopping (no run) shows the value it was judged by.
    early = ending.early_stopping
    metrics = version_run.metrics if version_run is not None else None
    if version_run is None and early.get("value") is not None:
        metrics = {early["metric"]: early["value"]}
    if metrics:
        journal_fields["metrics"] = metrics
    eval_test = result.get("eval_test")
    if eval_test is not None and len(json_text(eval_test)) <= JOURNAL_EVAL_LIMIT:
        journal_fields["eval_test"] = eval_test
    steps = steps_trained(
        result.get("steps") or (version_run.steps if version_run else None), event, version_run, counted=bool(result.get("steps_counted"))
    )
    record = {
        "time": now_iso(),
        "host": identity.host,
        "script": planned.script.label,
        "version": planned.version,
        "status": event.value,
        "reason": reason,
        # The user's code's frames of a failure (a day later the log may be gone, or -n wrote none).
        "traceback": _kept_traceback(error.get("traceback")),
        "sha256": sha256,
        "resumed": planned.start is Start.RESUME,
        "run_id": run_id,
        "attempt": planned.attempt,
        "started_at": version_run.started_at if version_run else None,
        "duration_s": round(wall_s, 3),
        "cpu_s": None if cpu_s is None else round(cpu_s, 3),
        **exit_info,
        "steps": steps,
        **({"continued_from": version_run.continued_from} if version_run and version_run.continued_from is not None else {}),
        **({"early_stopping": ending.early_stopping} if ending.early_stopping else {}),
        "epochs": result.get("epochs"),
        "eval_train": result.get("eval_train"),
        "eval_test": result.get("eval_test"),
        "metrics": metrics or None,
        # What `compare --best` shows: the best of the history up to this run, which has its
        # reports only if it reported (a run without reports has no best of its own).
        **({"best": version_run.best if version_run.reported else {}} if version_run else {}),
        "parameters": result.get("parameters"),
        "model_dir": version_run.model_dir if version_run else early.get("model_dir"),
        "git": version_run.git if version_run else None,
        **({"dvc": version_run.dvc} if version_run and version_run.dvc else {}),
        "gpus": version_run.placement.get("gpus", list(version_run.gpus)) if version_run else None,
        **node_fields(version_run),
        "model_summary": result.get("model_summary"),
        "dataloader_summary": result.get("dataloader_summary"),
    }
    # A stop that was asked for (a cancel, Ctrl-C, a cut-off to resume) is no error: nothing failed.
    level = {
        JournalEvent.FINISHED: "INFO", JournalEvent.PAUSED: "INFO", JournalEvent.STOPPED: "INFO",
        JournalEvent.CANCELLED: "WARNING", JournalEvent.INTERRUPTED: "WARNING",
    }.get(event, "ERROR")  # fmt: skip
    last = f", {describe_report(None, None, version_run.metrics)}" if version_run and version_run.metrics else ""
    log_lines = [(level, label, f"{event.value} in {wall_s:.2f} s (run {run_id}{last})")]
    if reason:
        log_lines.append((level, label, reason))
    if error.get("traceback"):
        log_lines.append(("ERROR", label, error["traceback"]))
    return VersionEnd(
        run_id=run_id,
        host=identity.host,
        daemon=identity.key,
        event=event.value,
        journal_fields=journal_fields,
        record=record,
        log_lines=log_lines,
        write_log=write_log,
        namespace=identity.namespace,
    )


def cancelled_at_rest(writer: Dict[str, Any], latest: Dict[str, Any], reason: str, write_log: bool = True) -> VersionEnd:
    """The end of a version no run holds (paused at a rung, or cut off) that a cancel ends:
    its journal event and a row of its own, so that results.jsonl and output-<host> say it is
    cancelled, not what its last run left. ``writer``: the journal fields that name who
    records it (a daemon's, or the cancel command's host and pid). Not its values at the
    rungs: a cancelled version no longer counts there, else it could take a promotion."""
    script, version = latest.get("script"), latest.get("version")
    sha256 = latest.get("sha256") if isinstance(latest.get("sha256"), str) else None
    # A run id of its own, as early stopping's stop has: recovery (records/ends.py) tells a
    # committed end by its run id, so the id of the run it ends would pass for that run's end.
    run_id = new_run_id()
    attempt = latest.get("attempt") if isinstance(latest.get("attempt"), int) and not isinstance(latest.get("attempt"), bool) else 1
    total = latest.get("total_steps")
    fields = dict(writer, script=script, version=version, sha256=sha256, attempt=attempt, duration_s=0.0, reason=reason)
    fields.update({key: latest[key] for key in ("total_steps", "watched") if key in latest})
    record = {
        "time": now_iso(), "host": writer.get("host"), "script": script, "version": version, "status": JournalEvent.CANCELLED.value,
        "reason": reason, "traceback": None, "sha256": sha256, "resumed": False, "run_id": run_id, "attempt": attempt,
        "started_at": None, "duration_s": 0.0, "cpu_s": None,
        "steps": {"trained": 0, "total": total} if isinstance(total, int) and not isinstance(total, bool) else None,
    }  # fmt: skip
    label = f"{script}:{version}"
    return VersionEnd(
        run_id=run_id, host=str(writer.get("host")), daemon=str(writer.get("daemon") or ""), event=JournalEvent.CANCELLED.value,
        journal_fields=fields, record=record, log_lines=[("WARNING", label, f"cancelled (run {run_id})"), ("WARNING", label, reason)],
        write_log=write_log, namespace=writer.get("namespace"),
    )  # fmt: skip
