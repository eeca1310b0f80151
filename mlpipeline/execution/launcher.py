"""The middle step of a version's path: claim it in the journal and start its child on the
executor, with its GPUs, its model_dir and nothing of an earlier run of it still alive.
Returns what happened (Launched); a version that cannot run comes back as an Ending for the
recorder, and what a started one holds is given back by the loop when it ends."""
from __future__ import annotations

import errno
import os
import traceback
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Dict, Optional

import psutil

from mlpipeline.execution.early_stopping import rung_basis
from mlpipeline.execution.gpu_placement import memory_bytes, never_fits
from mlpipeline.execution.gpus import visible_devices
from mlpipeline.execution.listener import ChildListener
from mlpipeline.execution.outcome import Ending, VersionRun
from mlpipeline.execution.plan import PlannedRun, Start
from mlpipeline.execution.reporter import Reporter
from mlpipeline.execution.resources import Resources
from mlpipeline.executors.base import Executor, SchedulerUnreachable
from mlpipeline.executors.process_tree import end_processes, run_processes
from mlpipeline.executors.protocol import RUN_VERSION, ChildRequest, describe_node, version_environment
from mlpipeline.executors.protocol import missing_message
from mlpipeline.queue.catalog import ScriptCatalog, ScriptListing
from mlpipeline.queue.config import ProjectConfig
from mlpipeline.records.claims import ClaimResult, Claims
from mlpipeline.records.ends import new_run_id
from mlpipeline.records.files import now_iso
from mlpipeline.records.identity import DaemonIdentity
from mlpipeline.records.journal import Journal
from mlpipeline.records.paths import OutputPaths
from mlpipeline.records.provenance import dvc_state, find_dvc_root, find_repository, git_state
from mlpipeline.records.run_record import RECORD_DIR, RUN_FILE, read_run_record
from mlpipeline.records.states import JournalEvent
from mlpipeline.script_support.versions import shown_name

EARLIER_RUN_GRACE_S = 10.0
"""How long the processes of an earlier run of a version get to go before it starts again."""


class Launch(Enum):
    """What became of a version the loop asked to launch."""

    STARTED = "started"  # its child is submitted; it holds its GPUs and model_dir until it ends
    FAILED = "failed"  # it cannot run: its Ending is to be recorded
    ELSEWHERE = "elsewhere"  # another daemon claimed it first
    BLOCKED = "blocked"  # processes of an earlier run of it cannot be ended: not started, a failure
    WAITS = "waits"  # its GPUs or model_dir are busy: it waits for a running version to end


@dataclass(frozen=True)
class Launched:
    """What launching one version did; all but WAITS mean the version was handled."""

    how: Launch
    ending: Optional[Ending] = None  # with FAILED
    halts: Optional[str] = None  # why no version can start here (model_ckpts is no folder, the scheduler does not answer)


class Launcher:
    """Claims and starts versions, taking what they hold from ``resources``."""

    def __init__(
        self,
        project: ProjectConfig,
        identity: DaemonIdentity,
        paths: OutputPaths,
        journal: Journal,
        claims: Claims,
        catalog: ScriptCatalog,
        executor: Executor,
        resources: Resources,
        listener: ChildListener,
        reporter: Reporter,
    ) -> None:
        self._project = project
        self._identity = identity
        self._paths = paths
        self._journal = journal
        self._claims = claims
        self._catalog = catalog
        self._executor = executor
        self._resources = resources
        self._listener = listener
        self._say = reporter
        self._repository = find_repository(project.models_dir)
        self._dvc_root = find_dvc_root(project.models_dir)

    def launch(self, planned: PlannedRun) -> Launched:
        """Claim and start ``planned``, or say why it cannot run (an Ending to record)."""
        label = planned.label
        run_id = new_run_id()
        listing = self._catalog.listing(planned.script.path, planned.script.label, planned.script_content)
        problem = self._problem(planned, listing)
        suffix = listing.suffixes.get(planned.version) if listing else None
        model_dir = self._paths.model_dir(planned.script.label, suffix)
        if not problem and self._resources.model_dir_busy(str(model_dir)):
            return Launched(Launch.WAITS)  # versions that share a model_dir (no MODEL_DIR_SUFFIX) never run at once
        share = 0.0 if problem else self._gpu_share(planned, listing)
        memory = None if problem else self._gpu_memory(planned, listing)
        free = None if problem else self._resources.free_gpus_for(share, memory)
        gave_up = self._resources.gpus.reading_problem()  # a read that hung, given up just now or before
        if gave_up:
            self._say.warn_once(("gpu reading", gave_up), gave_up)
        if not problem and free is None:
            self._say_gpus_busy(label)
            return Launched(Launch.WAITS)
        if not self._end_earlier_run(planned):
            return Launched(Launch.BLOCKED)
        expected = self._journal.latest(planned.script.label, planned.version)
        claimed = self._claims.claim(
            expected, planned.script.label, planned.version, planned.sha256, self._paths.in_outputs(model_dir),
            attempt=planned.attempt, run_id=run_id, **self._halving_fields(planned),
        )  # fmt: skip
        if claimed is ClaimResult.MODEL_DIR_HELD:
            return Launched(Launch.WAITS)  # another daemon's version runs in its model_dir: after it ends
        if claimed is not ClaimResult.WON:
            self._say.log("INFO", label, "another daemon claimed it first")
            return Launched(Launch.ELSEWHERE)
        if problem:
            return Launched(Launch.FAILED, Ending(planned, run_id, JournalEvent.FAILED, {"error": {"message": problem}}))
        try:
            model_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            why = exc.strerror or str(exc)
            error = {"message": f"{label}: its model_dir {model_dir} cannot be made ({why})"}
            shared = _shared_folder_fault(self._paths.model_ckpts, exc)
            if shared is None:
                return Launched(Launch.FAILED, Ending(planned, run_id, JournalEvent.FAILED, {"error": error}))
            # Not the version's doing: every version would meet it. Resumable once it is mended.
            error["message"] += "; resumable with -u once it can"
            ending = Ending(planned, run_id, JournalEvent.INTERRUPTED, {"error": error})
            return Launched(Launch.FAILED, ending, halts=f"{shared}: cannot hold the versions' model_dirs ({why})")
        granted = self._resources.take(share, str(model_dir), planned.script.label, memory)
        resumed = planned.start is Start.RESUME
        how = "resuming" if resumed else "fresh"
        if planned.until_step is not None:
            how += f", up to step {planned.until_step}"  # an early-stopping rung
        elif planned.rungs and not planned.watched:
            how += ", to its end"  # promoted past the last rung
        if planned.attempt > 1:
            how += f", attempt {planned.attempt} of {1 + self._project.retries}"
        if granted:
            how += f", GPU {','.join(granted)}"
        # A queued child is only submitted now: "running as Slurm job ..." says when it runs.
        begun = "submitted" if self._executor.queues_children else "started"
        self._say.log("INFO", label, f"{begun} ({how}) in {model_dir}")
        self._say.view.version_started(label, how)
        version_run = VersionRun(
            planned=planned,
            model_dir=str(model_dir),
            started_at=now_iso(),
            run_id=run_id,
            gpus=granted,
            gpu_share=share,
            gpu_memory=memory,
            git=git_state(self._repository, planned.script.path) if self._repository else None,
            dvc=dvc_state(self._dvc_root, self._repository) if self._dvc_root else None,
            rungs=list(planned.rungs),
        )
        try:
            self._listener.started(version_run)  # before any report of it can arrive
            self._executor.submit(
                self._request(version_run, resumed),
                on_lines=lambda stream, lines: self._listener.lines(label, stream, lines),
                on_event=lambda event: self._listener.event(version_run, event),
                tag=version_run,
                timeout=self._project.version_timeout,
                env={
                    "CUDA_VISIBLE_DEVICES": visible_devices(granted),
                    **version_environment(run_id, planned.script.label, planned.version, str(model_dir)),
                },
                gpus=share,
            )
        except SchedulerUnreachable as exc:
            # No version could be submitted now: this one is resumable, and none other starts.
            error = {"message": f"{label} could not be submitted ({exc}); resumable with -u once the cluster answers", "phase": "start"}
            ending = Ending(planned, run_id, JournalEvent.INTERRUPTED, {"error": error}, version_run)
            return Launched(Launch.FAILED, ending, halts=f"{self._executor.where}: its scheduler does not answer ({exc})")
        except Exception as exc:  # noqa: BLE001 - what stops one version's start fails that version alone
            # An OSError is the system's word (no such file, too many processes); anything else
            # is a bug of ours, recorded with its traceback so that it can be reported.
            ours = not isinstance(exc, OSError)
            cause = f"{type(exc).__name__}: {exc}" if ours else str(exc)
            error = {"message": f"{label} could not be started: {cause}", "traceback": traceback.format_exc() if ours else "", "phase": "start"}
            return Launched(Launch.FAILED, Ending(planned, run_id, JournalEvent.FAILED, {"error": error}, version_run))
        return Launched(Launch.STARTED)

    def record_placements(self) -> None:
        """Append the started event of each child that began to run since the last call: at
        once for a local child, when its node runs it for a Ray task or a Slurm job. Called before
        any end is recorded, so a version's started event always comes before its end."""
        for run in self._executor.newly_placed():
            version_run: VersionRun = run.tag
            planned = version_run.planned
            version_run.placement = dict(run.placement or {})
            where = {key: value for key, value in version_run.placement.items() if key != "gpus"}
            gpus = version_run.placement.get("gpus", list(version_run.gpus))
            on_gpus = f", GPU {','.join(str(gpu) for gpu in gpus)}" if gpus else ""
            if "node_id" in where:
                self._say.log("INFO", planned.label, f"running on node {describe_node(where)}{on_gpus}")
            elif "slurm_job" in where:
                adopted = f", followed from its earlier run {where['adopted_from']}" if where.get("adopted_from") else ""
                node = where.get("slurm_node") or where.get("node_host")
                self._say.log("INFO", planned.label, f"running as Slurm job {where['slurm_job']} on node {node}{on_gpus}{adopted}")
            # Not synced: its claim is, and a power cut that loses a started event leaves a
            # claim never ended, which -u resumes just the same.
            self._journal.append(
                JournalEvent.STARTED,
                durable=False,
                **self._identity.event_fields(planned.script.label, planned.version, planned.sha256),
                resumed=planned.start is Start.RESUME,
                attempt=planned.attempt,
                run_id=version_run.run_id,
                model_dir=self._paths.in_outputs(Path(version_run.model_dir)),
                **self._halving_fields(planned),
                gpus=gpus,
                **where,
            )

    def _request(self, version_run: VersionRun, resumed: bool) -> ChildRequest:
        planned = version_run.planned
        return ChildRequest(
            action=RUN_VERSION,
            script_path=str(planned.script.path),
            script_label=planned.script.label,
            version=planned.version,
            model_dir=version_run.model_dir,
            execution_mode=True,
            fresh=not resumed,
            models_dir=str(self._project.models_dir),
            heartbeat=self._claims.heartbeat_for_children(),
            sha256=planned.script_content,
            until_step=planned.until_step,
            run_record={
                "script": planned.script.label,
                "version": planned.version,
                "run_id": version_run.run_id,
                "attempt": planned.attempt,
                "resumed": resumed,
                "started_at": version_run.started_at,
                "host": self._identity.host,
                "daemon": self._identity.key,
                "git": version_run.git,
                **({"dvc": version_run.dvc} if version_run.dvc else {}),
            },
        )

    def _halving_fields(self, planned: PlannedRun) -> Dict[str, Any]:
        """What every journal event of a version under early stopping carries (halving.py)."""
        if self._project.early_stopping is None:
            return {}
        fields: Dict[str, Any] = {
            "rungs": list(planned.rungs), "rung_basis": rung_basis(self._project.early_stopping), "until_step": planned.until_step,
        }
        if planned.watched:
            fields["watched"] = True
        return fields

    def _end_earlier_run(self, planned: PlannedRun) -> bool:
        """Make sure no process of an earlier run of ``planned`` still runs before it starts again
        (the earlier run's daemon died, and its keeper was killed with it, say): the journal names
        the earlier child, where its pid means something here, and a process's environment the
        run, wherever it started. False when one could not be ended: then the version does not start."""
        started = self._journal.last_started(planned.script.label, planned.version)
        if started is None:
            return True
        latest = self._journal.latest(planned.script.label, planned.version) or {}
        taken_over = "taken_over_from" in latest
        if self._identity.sees(started) and isinstance(started.get("child_pid"), int):
            leftovers = run_processes(started["child_pid"], started.get("child_started"), started.get("run_id"), search_all=taken_over)
        elif taken_over and not self._executor.adopts_earlier_runs:
            # Its daemon's pids are not this namespace's (another host, or this one under an
            # earlier host name): a worker of that run seen here is known by the run id it carries.
            leftovers = run_processes(None, None, started.get("run_id"), search_all=True)
        else:
            return True
        if not leftovers:
            return True
        pids = ", ".join(str(process.pid) for process in leftovers)
        self._say.log("WARNING", planned.label, f"processes of its earlier run {started.get('run_id')} still run (pid {pids}); ended first")
        end_processes(None, include_root=False, known=leftovers)
        _, alive = psutil.wait_procs(leftovers, timeout=EARLIER_RUN_GRACE_S)
        if alive:
            message = f"{planned.label}: processes of its earlier run (pid {', '.join(str(p.pid) for p in alive)}) cannot be ended; not started"
            self._say.log("ERROR", planned.label, message)
            self._say.view.error(message)
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
        if planned.version in listing.invalid:
            return listing.invalid[planned.version]
        suffix = listing.suffixes.get(planned.version)
        problem = self._paths.model_dir_problem(label, planned.script.label, suffix)
        if problem:
            return problem
        model_dir = self._paths.model_dir(planned.script.label, suffix)
        owner, said_by = self._resources.model_dir_owner(str(model_dir)), ""
        if not owner:
            owner = (read_run_record(model_dir) or {}).get("script")
            owner = owner if isinstance(owner, str) else None  # a record edited by hand names no script
            said_by = f" (so says {RECORD_DIR}/{RUN_FILE} in it)"
        if owner and owner != planned.script.label:
            return (
                f"{label}: its model_dir {model_dir} is {owner if owner.isprintable() else shown_name(owner)}'s{said_by} (a script name with a '-' and a "
                "MODEL_DIR_SUFFIX can name the same folder); rename the script or give the version another MODEL_DIR_SUFFIX"
            )
        try:
            share = self._gpu_share(planned, listing)
            memory = self._gpu_memory(planned, listing)
        except ValueError as exc:
            return str(exc)
        if not self._resources.gpus.fits_ever(share, memory):
            reason = never_fits(self._resources.gpus_now(), share, memory) if memory is not None else None
            return f"{label} {reason}" if reason else f"{label} asks for {share:g} GPU{'' if share == 1 else 's'}; {self._resources.gpus.capacity()}"
        return None

    def _gpu_share(self, planned: PlannedRun, listing: Optional[ScriptListing]) -> float:
        return self._resources.gpu_share(planned.label, listing.gpus.get(planned.version) if listing else None)

    def _gpu_memory(self, planned: PlannedRun, listing: Optional[ScriptListing]) -> Optional[int]:
        """The ``gpu_memory`` the version states, in bytes (None: none stated, or no GPUs to pack)."""
        value = listing.gpu_memory.get(planned.version) if listing else None
        memory = memory_bytes(value, planned.label)  # checked with no GPU too: a typo shows before a GPU host
        return memory if self._resources.gpus.ids else None

    def _say_gpus_busy(self, label: str) -> None:
        """Say, once for each state of them, which GPUs other processes hold: a version waits."""
        busy = self._resources.gpus.busy_gpus()
        if busy:
            self._say.warn_once(
                ("gpus busy", "; ".join(busy)),
                f"GPUs held by other processes past gpu_busy_memory ({self._resources.gpus.busy_share:.0%} of their memory): "
                f"{'; '.join(busy)}; no version goes there until they free up ({label} waits)",
            )


def _shared_folder_fault(model_ckpts: Path, exc: OSError) -> Optional[Path]:
    """``model_ckpts`` (or the first of its parents that is no folder) when it, not the one
    version's model_dir below it, is why ``exc`` refused the model_dir: a file standing where
    it should be, a full, read-only or failing disk, no permission. None for the version's own
    fault (a file where its model_dir, or a script's subfolder in it, should be)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.ESTALE, errno.ETIMEDOUT):
        return model_ckpts
    place = next((path for path in (model_ckpts, *model_ckpts.parents) if path.exists() or path.is_symlink()), None)
    if place is None:
        return None
    if not place.is_dir():
        return place
    if place != model_ckpts or not os.access(model_ckpts, os.W_OK | os.X_OK):
        return model_ckpts  # it could not be made, or takes nothing: no version's model_dir can be
    return None
