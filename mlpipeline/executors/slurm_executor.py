"""Runs each version as one Slurm job: ``executor = "slurm"`` in mlp.config.

The daemon stays on the login node; sbatch places each version where Slurm chooses, with the
GPUs it asks for as its gres. The job (child/slurm_job.py) runs the same keeper and worker as
the local executor and speaks through its folder in the shared outputs folder
(job_folder.py); the daemon reads every running job's folder and asks squeue once per look,
however many jobs run (site rules forbid polling per job).

The journal stays the one source of truth. A job that Slurm ends before its version did
(preempted, requeued, its time limit, its node down) is recorded cut off and resumed by the
daemon from its checkpoint, as a new job; Slurm's own rerun of a requeued job is cancelled and,
should it start anyway, runs nothing. A daemon that dies leaves its jobs running: the next one
that claims their versions follows the jobs still running (adopts them) and records the ends
of those that ended meanwhile, instead of submitting them again.
"""
from __future__ import annotations

import math
import os
import shlex
import shutil
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Set, Tuple

from mlpipeline.executors import slurm_commands as slurm
from mlpipeline.executors.base import ChildRun, Executor
from mlpipeline.executors.job_folder import JOBS_FOLDER, JobFolder, OutputReader
from mlpipeline.executors.local import deliver
from mlpipeline.executors.protocol import EVENT, RUN_VERSION, ChildRequest, TaskEnd, cancelled_result, cut_off_result, failed_result
from mlpipeline.executors.slurm_commands import JobState, SlurmUnavailable
from mlpipeline.queue.project_keys import seconds_of_slurm_time
from mlpipeline.records.files import write_json_atomic
from mlpipeline.records.lines import read_object

POLL_S = 0.5
"""How often the daemon looks at its jobs: one squeue, and each running job's folder."""

END_GRACE_S = 5.0
"""How long a job Slurm says is over may take to show its end in its folder (a shared file
system shows another node's files late) before it is recorded without it."""

WARN_S = 60
"""How long before its time limit a job is warned (SIGUSR1: the bases save a checkpoint); at
most a quarter of the limit."""

KILL_AGAIN_S = 10.0
"""How long a job asked to end may go on running before scancel is sent again."""

SLURM_WORD_WAIT_S = 60.0
"""How long a job Slurm stopped (its end says SIGTERM) waits for Slurm to say how (requeued,
cancelled, its time limit) past COMPLETING, and a job squeue leaves out waits for an answer
about it alone, before it is recorded with what is known."""

ALONE_EVERY_S = 5.0
"""How often a job squeue leaves out is asked of alone."""

NODE_GPUS_TTL_S = 30.0

PROBE_WAIT_S = 20.0
"""How long the start's probe job may wait in Slurm's queue before the daemon goes on without it."""

ORDINARY_WAITS = {"", "None", "Priority", "Resources", "BeginTime", "Prolog", "Reservation"}
"""squeue's reasons for a job that waits its turn: nothing to say of them."""

WAIT_HINTS = {
    "JobHeldAdmin": "held by the cluster's admins: it runs once they release it",
    "JobHeldUser": "held by `scontrol hold`: `scontrol release {job}` lets it run",
    "DependencyNeverSatisfied": "its --dependency can never be met: it will never run; `mlpipeline cancel` the version",
    "PartitionDown": "its partition is down",
    "PartitionInactive": "its partition is inactive",
    "ReqNodeNotAvail": "the nodes it may run on are not available (drained, down, reserved)",
    "QOSMaxJobsPerUserLimit": "your QOS allows no more running jobs now",
    "AssocMaxJobsLimit": "your account allows no more running jobs now",
}
"""What a person can do about the reasons a job waits longer than its turn."""

ENV_FILE = "env.json"
"""The version's own environment variables (its run id, its model_dir), in its job's folder
(child/slurm_job.py reads it)."""


@dataclass
class SlurmJob:
    """What the daemon holds for one run (its ``handle``): its job, its folder, how far its
    output was read, and since when Slurm has said the job is over with no end in the folder."""

    job_id: str
    folder: JobFolder
    reader: OutputReader
    over_since: Optional[float] = None
    kill_sent: Optional[float] = None
    adopted_from: Optional[str] = None  # the run id of a dead daemon's run whose job this follows
    submitted_at: float = field(default_factory=time.monotonic)  # or taken over, by this daemon
    stop_failed: bool = False  # scancel failed to stop it (said once)
    waits_for: str = ""  # why squeue last said it waits, where that was said
    placed_at: float = 0.0  # when its placement was read; 0 until then
    end_seen_at: float = 0.0  # when its end was first read; 0 until then
    missing_since: Optional[float] = None  # since when squeue's answers leave it out
    alone: Optional[Tuple[float, Optional[JobState]]] = None  # the last answer about it alone, and when it was asked
    alone_wanted: bool = False  # the squeue thread asks about it alone


class SlurmExecutor(Executor):
    """Each child as one Slurm job, with ``ceil(run.gpus)`` GPUs as its gres."""

    adopts_earlier_runs = True
    queues_children = True

    def __init__(self, work_dir: Path, outputs_dir: Path, partition: Optional[str], time_limit: Optional[str], sbatch_args: Tuple[str, ...], daemon: str) -> None:
        super().__init__(work_dir)
        slurm.check_commands()
        self._options = (partition, time_limit, tuple(sbatch_args))
        self._limit_s = seconds_of_slurm_time(time_limit) if time_limit else None
        self._warn_s = min(WARN_S, max(1, self._limit_s // 4)) if self._limit_s else WARN_S
        counts = slurm.node_gpus()
        if counts is None:
            raise SlurmUnavailable("sinfo cannot say what GPUs the nodes have (is slurmctld up?): try `sinfo --Node --format=%N|%G`")
        self._probe_gpus = 0  # what the start's probe job asks for
        refused = slurm.test_submission(slurm.sbatch_options(partition, time_limit, 0, sbatch_args, self._warn_s))
        if refused and max(counts, default=0) >= 1:
            # Settings for GPU jobs (--mem-per-gpu, --cpus-per-gpu) are refused for a job that
            # asks for none: they are fine where a version asks for a GPU, and said where not.
            self._probe_gpus = 1
            refused = slurm.test_submission(slurm.sbatch_options(partition, time_limit, 1, sbatch_args, self._warn_s))
        if refused:
            raise SlurmUnavailable(f"sbatch refuses a job with these settings: {refused}")
        self._node_gpus: Tuple[float, List[float]] = (time.monotonic(), counts)
        self.where = f"the Slurm cluster (partition {partition})" if partition else "the Slurm cluster"
        self.jobs_dir = outputs_dir / JOBS_FOLDER
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self._daemon = daemon
        self._lock = threading.Lock()  # guards each run's handle
        self._mine: Set[str] = set()  # the job folders this daemon made
        self._others: Dict[str, Tuple[Any, Any]] = {}  # other job folders: (script, version)
        self._closed = threading.Event()
        self._states: Tuple[float, Optional[Dict[str, JobState]]] = (0.0, None)  # when the last squeue began, its answer
        self.check_shared_folder()
        threading.Thread(target=self._watch, daemon=True).start()
        threading.Thread(target=self._ask_squeue, daemon=True).start()

    def check_shared_folder(self) -> None:
        """A job on the cluster must see the outputs folder at the daemon's path: a probe job
        copies a file the daemon wrote there. SlurmUnavailable when it ends without doing so;
        when it has not run within PROBE_WAIT_S (a busy cluster), the daemon goes on, and each
        version's job finds out for itself."""
        content = uuid.uuid4().hex
        probe, seen = self.jobs_dir / f".probe-{content[:12]}", self.jobs_dir / f".probe-{content[:12]}.seen"
        probe.write_text(content, encoding="utf-8")
        partition, time_limit, extra = self._options
        copy = f"hostname > {shlex.quote(str(seen))}.tmp && cat {shlex.quote(str(probe))} >> {shlex.quote(str(seen))}.tmp && mv {shlex.quote(str(seen))}.tmp {shlex.quote(str(seen))}"
        options = slurm.sbatch_options(partition, time_limit, self._probe_gpus, extra, self._warn_s) + [
            "--job-name=mlp:folder-check", "--output=/dev/null", "--chdir=/", "--wrap", copy,
        ]
        try:
            job_id = slurm.submit(options, None)
            deadline = time.monotonic() + PROBE_WAIT_S
            while time.monotonic() < deadline:
                if seen.exists():
                    node, _, said = seen.read_text(encoding="utf-8", errors="replace").partition("\n")
                    if said.strip() != content:
                        raise SlurmUnavailable(f"node {node} sees another folder at {self.work_dir}: {probe} does not hold what the daemon wrote")
                    return
                state = (slurm.job_states() or {}).get(job_id)
                if state is not None and state.ended:
                    deadline = min(deadline, time.monotonic() + END_GRACE_S)  # its file may show late
                    if not _appears(seen, deadline):
                        raise SlurmUnavailable(
                            f"a job on node {state.node or '?'} could not read and write the outputs folder {self.jobs_dir} "
                            f"(it ended {state.state}): executor = \"slurm\" needs the project folder on a file system "
                            "the compute nodes mount at the same path; see docs/cluster.md"
                        )
                time.sleep(0.2)
            try:
                slurm.cancel(job_id)  # not run yet: the versions' jobs check for themselves
            except OSError:
                pass
        finally:
            for path in (probe, seen):
                try:
                    path.unlink()
                except OSError:
                    pass

    def node_gpus(self) -> List[float]:
        checked, counts = self._node_gpus
        if time.monotonic() - checked > NODE_GPUS_TTL_S:
            # sinfo that cannot answer now leaves the counts it last gave (the start needs one).
            counts = slurm.node_gpus() or counts
            self._node_gpus = (time.monotonic(), counts)
        return counts

    # -- the executor contract ---------------------------------------------------------------

    def _start(self, run: ChildRun) -> None:
        request = run.request.changed(heartbeat=None, check_sha256=True)
        # A job outlives its daemon (it is adopted by the next): no heartbeat ends it.
        if request.action == RUN_VERSION and self._take_earlier_job(run, request):
            return
        folder = JobFolder(self.jobs_dir / uuid.uuid4().hex[:16])
        folder.path.mkdir(parents=True)
        try:
            request.write(folder.path)
            write_json_atomic(folder.path / ENV_FILE, run.env, durable=False)
            command = [sys.executable, "-m", "mlpipeline.child.slurm_job", str(folder.path), str(self.work_dir)]
            if self._limit_s:
                command.append(str(self._limit_s - self._warn_s))
            label = f"{request.script_label}:{request.version}" if request.version else request.script_label
            folder.batch_script.write_text(
                f"#!/bin/sh\n# {label}: a version run by mlpipeline (docs/cluster.md)\nexec {shlex.join(command)}\n", encoding="utf-8"
            )
            partition, time_limit, extra = self._options
            options = slurm.sbatch_options(partition, time_limit, math.ceil(run.gpus), extra, self._warn_s) + [
                f"--job-name=mlp:{label}",
                f"--output={folder.slurm_output}",
                f"--chdir={self.work_dir}",
            ]
            job_id = slurm.submit(options, folder.batch_script)
            folder.write_submitted(job_id, self._daemon)
        except BaseException:
            shutil.rmtree(folder.path, ignore_errors=True)
            raise
        with self._lock:
            self._mine.add(folder.path.name)
            run.handle = SlurmJob(job_id, folder, OutputReader(folder))

    def _signal(self, run: ChildRun, signum: int) -> None:
        with self._lock:
            job: Optional[SlurmJob] = run.handle
        if job is None:
            return
        try:
            if signum == signal.SIGKILL or run.placement is None:
                job.kill_sent = time.monotonic()
                slurm.cancel(job.job_id)  # a job still waiting never starts
            else:
                slurm.send_signal(job.job_id, signal.Signals(signum).name.removeprefix("SIG"))
        except OSError as exc:
            # slurmctld does not answer now: a kill is sent again while the job runs; said once.
            if not job.stop_failed:
                job.stop_failed = True
                print(f"mlpipeline: Slurm job {job.job_id} could not be stopped ({exc}); mlpipeline tries again while it runs", file=sys.stderr)

    def let_go(self, run: ChildRun) -> None:
        """Another daemon took the version over, and follows its job: ended here, untouched."""
        with self._lock:
            job: Optional[SlurmJob] = run.handle
            if job is None or run.done.is_set():
                return
            run.handle = None
        self._finish(run, None, None, None, None)

    def close(self) -> None:
        """Wait a moment for the stopped jobs to be recorded, then stop looking."""
        deadline = time.monotonic() + 15
        while self.running and time.monotonic() < deadline:
            time.sleep(0.05)
        self._closed.set()

    # -- an earlier daemon's job of the same version ---------------------------------------

    def _take_earlier_job(self, run: ChildRun, request: ChildRequest) -> bool:
        """Whether ``run`` is a job an earlier daemon left: resumed, the version's job that still
        runs is followed, and one that ended meanwhile has its end taken as this run's. Any other
        job of the version is cancelled (a fresh run starts over) and its folder removed."""
        folder = self._earlier_folder(request)
        if folder is None:
            return False
        job_id = folder.job_id()
        states = slurm.job_states() if job_id else None
        state = (states or {}).get(job_id or "")
        end = folder.read_end()
        earlier_run = ((read_object(folder.request) or {}).get("run_record") or {}).get("run_id")
        # Where squeue cannot answer now, a job that may still run is followed, not left behind.
        unknown = job_id is not None and states is None
        if not request.fresh and job_id and (end is not None or unknown or (state is not None and not state.ended and state.restarts == 0)):
            job = SlurmJob(job_id, folder, OutputReader(folder, folder.delivered_offset()), adopted_from=str(earlier_run))
            with self._lock:
                self._mine.add(folder.path.name)
                self._others.pop(folder.path.name, None)
                run.handle = job
            placed = folder.read_placed()
            if placed is not None:
                self._place(run, dict(placed, adopted_from=job.adopted_from))
            return True
        if job_id and (unknown or (state is not None and not state.ended)):
            try:
                slurm.cancel(job_id)
            except OSError:
                pass
        shutil.rmtree(folder.path, ignore_errors=True)
        self._others.pop(folder.path.name, None)
        return False

    def _earlier_folder(self, request: ChildRequest) -> Optional[JobFolder]:
        try:
            entries = [entry.name for entry in os.scandir(self.jobs_dir) if entry.is_dir()]
        except OSError:
            return None
        for name in entries:
            if name in self._mine:
                continue
            if name not in self._others:
                record = read_object(self.jobs_dir / name / "request.json") or {}
                self._others[name] = (record.get("script_label"), record.get("version"))
            if self._others[name] == (request.script_label, request.version):
                return JobFolder(self.jobs_dir / name)
        return None

    # -- following the jobs ------------------------------------------------------------

    def _watch(self) -> None:
        while not self._closed.wait(POLL_S):
            try:
                self._look_at_all()
            except Exception as exc:  # noqa: BLE001 - a hiccup of the cluster or the folder: look again
                print(f"mlpipeline: could not look at the Slurm jobs: {type(exc).__name__}: {exc}", file=sys.stderr)

    def _ask_squeue(self) -> None:
        """One squeue every POLL_S while jobs run, in a thread of its own: what the jobs said,
        and the ends they wrote, are read from their folders without waiting on an squeue that
        takes its time (a busy controller answers within COMMAND_TIMEOUT_S). A job the answer
        left out is asked of alone, every ALONE_EVERY_S at most."""
        while not self._closed.wait(POLL_S):
            jobs = [job for job in (run.handle for run in self.running) if isinstance(job, SlurmJob)]
            if not jobs:
                continue
            try:
                began = time.monotonic()
                self._states = (began, slurm.job_states())
                for job in jobs:
                    asked = job.alone[0] if job.alone else 0.0
                    if job.alone_wanted and time.monotonic() - asked >= ALONE_EVERY_S:
                        began = time.monotonic()
                        job.alone = (began, slurm.job_state(job.job_id))
            except Exception as exc:  # noqa: BLE001 - an answer of a kind nobody foresaw: ask again
                print(f"mlpipeline: could not read squeue's answer: {type(exc).__name__}: {exc}", file=sys.stderr)

    def _look_at_all(self) -> None:
        runs = [run for run in self.running if run.handle is not None]
        asked_at, states = self._states
        for run in runs:
            self._look(run, states, asked_at)

    def _look(self, run: ChildRun, states: Optional[Dict[str, JobState]], asked_at: float) -> None:
        with self._lock:
            job: Optional[SlurmJob] = run.handle
        if job is None:
            return
        now = time.monotonic()
        if run.placement is None:
            placed = job.folder.read_placed()
            if placed is not None:
                run.started = job.placed_at = now  # a timeout counts from here, not from the queue
                self._place(run, dict(placed, adopted_from=job.adopted_from) if job.adopted_from else placed)
        end = job.folder.read_end()
        self._deliver(run, job)  # all the job said before its end
        if end is not None and not job.end_seen_at:
            job.end_seen_at = now
        # Slurm's word counts only when it was asked for after what the folder shows: after the
        # job was submitted, placed (PENDING before that is its wait, after it a requeue) and
        # ended. An older answer, reused while squeue takes its time, says nothing of it.
        if asked_at <= max(job.submitted_at, job.placed_at, job.end_seen_at):
            states = None
        state = self._state_of(job, states, now)
        if state is _NO_WORD:
            states, state = None, None
        over = states is not None and (state is None or state.ended or _requeued(state, run))
        if end is not None and end.get("result") is None and end.get("returncode") is None and not over:
            end = None  # what stands where its end goes says nothing, and the job runs: Slurm's word decides
        if over or end is not None:
            job.over_since = job.over_since or now
        elif states is not None:  # a look at the folder alone says nothing of Slurm's word
            job.over_since = None
        waited = job.over_since is not None and now - job.over_since >= END_GRACE_S
        if end is not None:
            # Ended by Slurm's SIGTERM: how (requeued, cancelled, its time limit) shows once
            # Slurm says the job is over, past COMPLETING.
            if not self._stopped_by_slurm(run, end) or over or now - job.end_seen_at >= SLURM_WORD_WAIT_S:
                self._end(run, job, end, state)
            return
        if states is None:
            return  # squeue cannot answer now: the job's files are still read
        if not over:
            if state is not None and state.state == "PENDING" and run.placement is None:
                self._say_why_it_waits(run, job, state.reason)
            if job.kill_sent is not None and now - job.kill_sent > KILL_AGAIN_S:
                self._signal(run, signal.SIGKILL)
            return
        if waited:
            if state is None:
                try:
                    slurm.cancel(job.job_id)  # gone from Slurm's answers: should any of it still run, it ends
                except OSError:
                    pass
            self._end(run, job, self._end_without_word(run, job, state), state)

    @staticmethod
    def _state_of(job: SlurmJob, states: Optional[Dict[str, JobState]], now: float) -> Any:
        """What Slurm says of ``job``: its state; None when it is over and Slurm knows it no
        more; _NO_WORD when that cannot be told yet. A job squeue's answer for every job left
        out is asked of alone (by the squeue thread) before it is taken as gone, or its version
        would be resumed beside a job that still runs it; past SLURM_WORD_WAIT_S with no answer
        either way, it is taken as gone."""
        if states is None:
            return _NO_WORD
        state = states.get(job.job_id)
        if state is not None:
            job.missing_since, job.alone_wanted = None, False
            return state
        job.missing_since = job.missing_since or now
        asked, alone = job.alone or (0.0, None)
        job.alone_wanted = True  # asked again while it stays left out: what it said may change
        if asked > job.missing_since and alone is not None:
            return None if alone.state == slurm.GONE else alone
        return None if now - job.missing_since >= SLURM_WORD_WAIT_S else _NO_WORD

    @staticmethod
    def _say_why_it_waits(run: ChildRun, job: SlurmJob, reason: str) -> None:
        """A job that waits for more than its turn (held, a dependency, a partition that is down)
        is said in the version's log, once for each reason: status alone says it waits."""
        if reason == job.waits_for or reason in ORDINARY_WAITS:
            return
        job.waits_for = reason
        hint = WAIT_HINTS.get(reason.split(",")[0].strip(), "")
        message = f"its Slurm job {job.job_id} waits in Slurm's queue: {reason}" + (f" ({hint})" if hint else "")
        deliver(run.on_event, {"type": "log", "level": "WARNING", "message": message.replace("{job}", job.job_id)})

    @staticmethod
    def _stopped_by_slurm(run: ChildRun, end: TaskEnd) -> bool:
        """Whether the job was sent a stop the daemon did not ask for (Slurm's SIGTERM when it
        preempts, requeues, or ends a job at its time limit; a scancel by hand), and its
        version did not finish."""
        stops = {"SIGTERM", "SIGINT", "SIGHUP"}
        return run.stop_signal is None and bool(stops & set(end.get("signals") or [])) and not (end.get("result") or {}).get("ok")

    def _deliver(self, run: ChildRun, job: SlurmJob) -> None:
        said = job.reader.read_new()
        for item in said:
            if item[0] == EVENT:
                deliver(run.on_event, item[1])
            else:
                deliver(run.on_lines, item[1], item[2])
        if said:
            job.reader.note_delivered()

    def _end(self, run: ChildRun, job: SlurmJob, end: TaskEnd, state: Optional[JobState]) -> None:
        with self._lock:
            if run.handle is not job or run.done.is_set():
                return
            run.handle = None
        result = end.get("result")
        returncode = end.get("returncode")
        if self._stopped_by_slurm(run, end):
            result = self._stopped_result(run, job, state)
        if run.stop_signal == signal.SIGKILL and not (result or {}).get("ok"):
            # Killed as asked: scancel ends a job by SIGTERM, then SIGKILL; its processes may
            # have died of the first, or ended before the job could say so.
            returncode = -signal.SIGKILL
        elif result is None and returncode is None and run.stop_signal is not None:
            returncode = -run.stop_signal  # stopped before its job could say so
        elif result is None and returncode is None:
            message = f"its Slurm job {job.job_id} on {self._node(run)} left an end that cannot be read ({job.folder.end})"
            result = failed_result(message, "node")
        if state is not None and _requeued(state, run):
            # Requeued: Slurm would run it again in a minute or two; the daemon resumes it itself.
            try:
                slurm.cancel(job.job_id)
            except OSError:
                pass
        shutil.rmtree(job.folder.path, ignore_errors=True)
        # The job's own measure: from the version's start on its node, wherever this daemon
        # began to follow it (a job adopted from a dead daemon, a short job seen late).
        self._finish(run, returncode, end.get("cpu_s"), end.get("peak_rss_bytes"), result, wall_s=end.get("wall_s"))

    def _end_without_word(self, run: ChildRun, job: SlurmJob, state: Optional[JobState]) -> TaskEnd:
        """How a job that left no end in its folder ended, from what Slurm says of it."""
        if run.stop_signal is not None:
            return TaskEnd(result=None, returncode=None)
        name = state.state if state is not None else "gone from squeue"
        if state is None or _requeued(state, run) or name in slurm.CUT_OFF_STATES:
            return TaskEnd(result=self._stopped_result(run, job, state), returncode=None)
        said = job.folder.slurm_output_tail()
        words = f"; Slurm's output of the job: {said}" if said else ""
        if run.placement is None:
            message = (
                f"its Slurm job {job.job_id} ended ({name}) without starting the version{words}. Does the node see the "
                f"project folder at {self.work_dir}, and the same Python ({sys.executable})? docs/cluster.md"
            )
        elif name == "OUT_OF_MEMORY":
            message = f"its Slurm job {job.job_id} ran out of the memory it asked for (give sbatch_args a larger --mem){words}"
        else:
            message = f"its Slurm job {job.job_id} ended ({name}) on {self._node(run)} without its version's end{words}"
        return TaskEnd(result=failed_result(message, "node"), returncode=None)

    def _stopped_result(self, run: ChildRun, job: SlurmJob, state: Optional[JobState]) -> Any:
        """How a job Slurm ended before its version did is recorded: cancelled where somebody
        ran ``scancel`` on it (Slurm's CANCELLED: preemption says PREEMPTED or requeues, the
        time limit TIMEOUT, a lost node NODE_FAIL), else cut off, to resume."""
        if state is not None and state.state == "CANCELLED" and not _requeued(state, run):
            message = (
                f"its Slurm job {job.job_id} on {self._node(run)} was cancelled outside mlpipeline (scancel by hand, or "
                "the cluster's admins); not resumed: `mlpipeline -r -u --retry-failed` runs it again"
            )
            return cancelled_result(message, "node")
        return cut_off_result(self._ended_by_slurm(run, job, state), "node")

    def _ended_by_slurm(self, run: ChildRun, job: SlurmJob, state: Optional[JobState]) -> str:
        if state is None:
            how = "is gone from squeue"
        elif _requeued(state, run):
            how = "was requeued by Slurm (preempted, its node lost, or `scontrol requeue`)"
        elif state.state == "TIMEOUT":
            how = "reached its time limit"
        elif state.state in ("NODE_FAIL", "BOOT_FAIL"):
            how = f"lost its node ({state.state})"
        else:
            how = f"was ended by Slurm ({state.state}{', ' + state.reason if state.reason and state.reason != 'None' else ''})"
        return f"its Slurm job {job.job_id} on {self._node(run)} {how}; cut off, to resume from its checkpoint"

    @staticmethod
    def _node(run: ChildRun) -> str:
        placement = run.placement or {}
        return f"node {placement.get('slurm_node') or placement.get('node_host') or '?'}"


_NO_WORD = object()
"""What :meth:`SlurmExecutor._state_of` gives while Slurm's word on a job cannot be told."""


def _requeued(state: JobState, run: ChildRun) -> bool:
    """Whether Slurm requeued the job after it started: it would run it again on its own."""
    return state.restarts > 0 or (state.state == "PENDING" and run.placement is not None)


def _appears(path: Path, deadline: float) -> bool:
    while not path.exists():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)
    return True
