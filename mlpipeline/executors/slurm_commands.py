"""The Slurm commands the daemon uses, and what their answers mean: sbatch to submit, one
squeue for the state of every job, scancel to stop or signal one. Slurm's own commands, not a
library: they are on every login node, and work without slurmdbd (sacct does not, and
submitit polls with it: docs/cluster.md)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence

from mlpipeline.executors.base import SchedulerUnreachable

COMMANDS = ("sbatch", "squeue", "scancel", "sinfo")

COMMAND_TIMEOUT_S = 60.0
"""How long one Slurm command may take: a busy slurmctld answers slowly, not never."""

GONE = "GONE"
"""The state :func:`job_state` gives a job Slurm no longer knows at all (past MinJobAge)."""

ENDED_STATES = {
    "BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
    "SPECIAL_EXIT", "TIMEOUT", "REVOKED", GONE,
}
"""Job states in which nothing of the job runs any more."""

CUT_OFF_STATES = {"BOOT_FAIL", "DEADLINE", "NODE_FAIL", "PREEMPTED", "TIMEOUT", "CANCELLED"}
"""Endings that are Slurm's doing, not the version's: a version ended so is resumed."""


UNREACHABLE = ("unable to contact slurm controller", "socket timed out", "temporarily unable to accept job", "connection refused")
"""Words of sbatch's that say the controller does not answer now, not that it refuses the job."""


class SlurmUnavailable(Exception):
    """Slurm cannot be used from here; the message says why and what to do."""


class JobState(NamedTuple):
    """What squeue says of one job."""

    state: str  # RUNNING, PENDING, COMPLETING, TIMEOUT, ...
    node: str  # the node it runs on (empty while pending)
    reason: str  # why it waits, or how it ended
    restarts: int  # how often Slurm requeued it

    @property
    def ended(self) -> bool:
        return self.state in ENDED_STATES


def environment() -> Dict[str, str]:
    """The daemon's environment less the SLURM_* variables of a job it may itself run in (an
    interactive allocation): sbatch would take them for its own options. SLURM_CONF stays."""
    return {key: value for key, value in os.environ.items() if not key.startswith("SLURM_") or key == "SLURM_CONF"}


def check_commands() -> None:
    missing = [command for command in COMMANDS if shutil.which(command) is None]
    if missing:
        raise SlurmUnavailable(
            f"{', '.join(missing)} not found on PATH: run mlpipeline on a login node of the Slurm cluster "
            "(`module load slurm`, or add Slurm's bin folder to PATH)"
        )


def _run(arguments: Sequence[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            list(arguments), env=environment(), capture_output=True, text=True, errors="replace", timeout=COMMAND_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise OSError(f"{arguments[0]} did not answer within {COMMAND_TIMEOUT_S:g} s (is slurmctld up?)") from None
    except OSError as exc:
        raise OSError(f"{arguments[0]} could not be run: {exc.strerror or exc}") from None


def _said(done: subprocess.CompletedProcess) -> str:
    lines = [line.strip() for line in (done.stderr or done.stdout or "").splitlines() if line.strip()]
    words = "; ".join(re.sub(r"^\w+: (error: )?", "", line) for line in lines)
    return words or f"exit status {done.returncode}"


def submit(options: Sequence[str], script: Optional[Path]) -> str:
    """Submit ``script`` (None: options end with ``--wrap COMMAND``) with sbatch; the job's id.
    OSError with sbatch's words when it refuses."""
    try:
        done = _run(["sbatch", "--parsable", *options, *([str(script)] if script is not None else [])])
    except OSError as exc:
        raise SchedulerUnreachable(str(exc)) from None  # it did not answer in time
    job_id = done.stdout.strip().split(";")[0]
    if done.returncode != 0 or not job_id.isdigit():
        said = _said(done)
        if any(words in said.lower() for words in UNREACHABLE):
            raise SchedulerUnreachable(f"sbatch could not reach the controller: {said}")
        raise OSError(f"sbatch refused the job: {said}")
    return job_id



def test_submission(options: Sequence[str]) -> Optional[str]:
    """Why sbatch would refuse a job with ``options`` (a partition or account that does not
    exist, a time limit too long), or None; nothing is submitted."""
    done = _run(["sbatch", "--test-only", *options, "--wrap", "true"])
    return None if done.returncode == 0 else _said(done)


def job_states() -> Optional[Dict[str, JobState]]:
    """Every job of this user that Slurm still knows (ended ones until MinJobAge), by id: one
    squeue, however many jobs. None when squeue cannot answer now."""
    try:
        done = _run(["squeue", "--me", "--noheader", "--states=all", "--Format=JobID:|,State:|,NodeList:|,Reason:|,RestartCnt:|"])
    except OSError:
        return None
    if done.returncode != 0:
        return None
    states: Dict[str, JobState] = {}
    for line in done.stdout.splitlines():
        fields = [field.strip() for field in line.split("|")]
        if len(fields) < 5 or not fields[0]:
            continue
        restarts = int(fields[4]) if fields[4].isdigit() else 0
        states[fields[0]] = JobState(fields[1], fields[2], fields[3], restarts)
    return states


def job_state(job_id: str) -> Optional[JobState]:
    """What Slurm says of one job, asked of it alone: where the one squeue of every job left it
    out, before its run is taken as over. ``JobState(GONE, ...)`` when Slurm says it knows no
    such job; None when squeue cannot answer now or says nothing either way."""
    try:
        done = _run(["squeue", "--noheader", "--states=all", f"--jobs={job_id}", "--Format=JobID:|,State:|,NodeList:|,Reason:|,RestartCnt:|"])
    except OSError:
        return None
    if done.returncode != 0:
        return JobState(GONE, "", "", 0) if "invalid job id" in (done.stderr or "").lower() else None
    for line in done.stdout.splitlines():
        fields = [field.strip() for field in line.split("|")]
        if len(fields) >= 5 and fields[0] == job_id:
            return JobState(fields[1], fields[2], fields[3], int(fields[4]) if fields[4].isdigit() else 0)
    return None


def node_gpus() -> Optional[List[float]]:
    """How many GPUs (gres ``gpu``) each node has, as sinfo tells; None when it cannot answer."""
    try:
        done = _run(["sinfo", "--noheader", "--Node", "--format=%N|%G"])
    except OSError:
        return None
    if done.returncode != 0 or not done.stdout.strip():
        return None
    counts: Dict[str, float] = {}
    for line in done.stdout.splitlines():
        node, _, gres = line.partition("|")
        total = 0
        for item in gres.split(","):
            # gpu:2, gpu:a100:4, gpu:a100:4(S:0-1)
            parts = item.split("(")[0].split(":")
            if parts[0] == "gpu" and len(parts) > 1 and parts[-1].isdigit():
                total += int(parts[-1])
        counts[node.strip()] = float(total)
    return list(counts.values())


def cancel(job_id: str) -> None:
    """End the job: Slurm sends it SIGTERM, then SIGKILL after its KillWait. OSError with
    scancel's words when it could not (a job already over is no error)."""
    _checked(_run(["scancel", job_id]))


def send_signal(job_id: str, signal_name: str) -> None:
    """Send ``signal_name`` (``TERM``, ``INT``, ``USR1``) to the job's batch script, which
    passes it to the version's processes. OSError as for :func:`cancel`."""
    _checked(_run(["scancel", "--batch", f"--signal={signal_name}", job_id]))


def _checked(done: subprocess.CompletedProcess) -> None:
    said = _said(done)
    over = ("already completing or completed", "invalid job id")
    if done.returncode != 0 and not any(words in said.lower() for words in over):
        raise OSError(f"scancel: {said}")


def sbatch_options(partition: Optional[str], time: Optional[str], gpus: int, extra: Sequence[str], warn_s: int) -> List[str]:
    """The options of one version's job: its partition and time limit, its GPUs (none asked
    for, none given), the warning before the time limit, and the user's own."""
    options = [f"--signal=B:USR1@{warn_s}", "--nodes=1", "--ntasks=1"]
    if partition:
        options.append(f"--partition={partition}")
    if time:
        options.append(f"--time={time}")
    if gpus:
        options.append(f"--gres=gpu:{gpus}")
    return options + list(extra)
