"""What a version's Slurm job runs on its compute node: ``python -m mlpipeline.child.slurm_job
JOB_FOLDER PROJECT_DIR [WARN_AFTER_S]``, the batch script's only command (exec'd, so it is the batch step's
own process and gets the signals scancel and Slurm send it).

It starts the same child as the local executor (a keeper and its worker, through
:class:`LocalExecutor`; the keeper ends the version's tree if this process dies), and says
through the job folder (executors/job_folder.py) where it runs, everything the version says,
and how it ended. Signals are passed on to the version: SIGUSR1 (Slurm's warning before the
time limit, ``--signal=B:USR1@N``: the framework bases save a checkpoint), SIGINT and SIGTERM
(a stop from the daemon, or Slurm ending the job). Slurm's warning may come up to a minute
early; where the daemon knows the time limit, WARN_AFTER_S after its start the job warns the
version itself as well, at the time asked.

A job Slurm started again (requeued, preempted) runs nothing: the daemon decides resumes, from
the journal, and never lets Slurm rerun a version behind its back.
"""
from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import List, Optional

from mlpipeline.executors.job_folder import JobFolder, OutputWriter
from mlpipeline.executors.local import LocalExecutor
from mlpipeline.executors.protocol import ChildRequest, TaskEnd, failed_result
from mlpipeline.records.lines import read_object

PASSED_ON = (signal.SIGUSR1, signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def placement() -> dict:
    gpus = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    return {
        "slurm_job": os.environ.get("SLURM_JOB_ID", ""),
        "node_host": socket.gethostname(),
        "slurm_node": os.environ.get("SLURMD_NODENAME", ""),
        "node_pid": os.getpid(),
        "gpus": [gpu for gpu in gpus.split(",") if gpu],
    }


def main(argv: Optional[List[str]] = None) -> int:
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # a warning that came early: the version is not yet running
    args = sys.argv[1:] if argv is None else argv
    folder, project_dir = JobFolder(Path(args[0])), Path(args[1])
    warn_after = float(args[2]) if len(args) > 2 else None
    restarts = os.environ.get("SLURM_RESTART_COUNT", "0")
    if restarts not in ("", "0") or folder.placed.exists():
        print(
            f"mlpipeline: Slurm started this job again (restart {restarts or '?'}); its daemon resumes the version "
            "itself, from its checkpoint, so this attempt runs nothing",
            file=sys.stderr,
        )
        return 0
    where = placement()
    if not folder.request.exists():
        # The daemon removes a job's folder whole once it recorded the job's end; a folder
        # left without its request was emptied by something else while the job waited.
        message = f"the job on {where['node_host']} found no {folder.request}: it was removed while the job waited in Slurm's queue"
        try:
            folder.write_end(TaskEnd(result=failed_result(message, "start"), returncode=None))
        except OSError:
            pass  # the whole folder is gone: nobody reads it any more
        return 0
    try:
        request = ChildRequest.read(folder.path)
    except (OSError, ValueError, TypeError, RecursionError) as exc:
        message = f"the job on {where['node_host']} could not read {folder.request}: {exc}"
        folder.write_end(TaskEnd(result=failed_result(message, "start"), returncode=None))
        return 1
    if request.run_record is not None:
        # run.json names where the version ran: this node, this job.
        request.run_record.update(host=where["node_host"], slurm_job=where["slurm_job"])
    env = {key: str(value) for key, value in (read_object(folder.path / "env.json") or {}).items()}
    # As locally: a version given no GPU sees none (Slurm leaves the variable unset then).
    env["CUDA_VISIBLE_DEVICES"] = ",".join(where["gpus"])
    folder.write_placed(where)
    output = OutputWriter(folder)
    executor = LocalExecutor(project_dir)
    signals: List[int] = []
    run = None
    try:
        run = executor.submit(request, on_lines=output.lines, on_event=output.event, env=env)

        def pass_on(signum: int, frame: object) -> None:
            signals.append(signum)
            threading.Thread(target=executor.stop, args=(run, signum), daemon=True).start()

        for signum in PASSED_ON:
            signal.signal(signum, pass_on)
        if warn_after is not None:
            warning = threading.Timer(warn_after, executor.stop, (run, signal.SIGUSR1))
            warning.daemon = True
            warning.start()
        missing = 0
        while not run.done.wait(1.0):
            # The daemon removes the job's folder once it has recorded this run's end (it took
            # the job for over: left out of squeue, its node not answering) and may resume the
            # version elsewhere: a run that still goes on here ends itself, not trains beside it.
            missing = missing + 1 if _removed(folder.request) else 0
            if missing == LOOKS_BEFORE_ENDING:
                print(f"mlpipeline: {folder.path} was removed: its daemon recorded this run's end; ending it", file=sys.stderr)
                executor.stop(run, signal.SIGKILL)
        outcome = run.outcome
        assert outcome is not None
        try:
            output.close()
        except OSError:
            pass  # a folder removed by another host: ESTALE
        if missing >= LOOKS_BEFORE_ENDING:
            return 0  # no end to write: nobody reads the folder any more
        folder.write_end(
            TaskEnd(
                result=outcome.result,
                returncode=outcome.returncode,
                cpu_s=outcome.cpu_s,
                peak_rss_bytes=outcome.peak_rss_bytes,
                wall_s=outcome.wall_s,
                signals=[signal.Signals(signum).name for signum in signals],  # type: ignore[typeddict-unknown-key]
            )
        )
    finally:
        if run is not None and not run.done.is_set():
            executor.stop(run, signal.SIGKILL)  # asked of its keeper
            run.done.wait(30)
    return 0


LOOKS_BEFORE_ENDING = 5
"""Looks a second apart that must all find the job's folder gone before its run ends itself:
a shared file system that fails a moment (an automount, a server restarting) ends nothing."""


def _removed(path: Path) -> bool:
    """Whether the job file ``path`` is gone while its folder's parent is there: opened, not
    stat()ed, as NFS checks with its server on an open, not on a stat from its cache."""
    try:
        os.close(os.open(path.parent.parent, os.O_RDONLY | os.O_DIRECTORY))
    except OSError:
        return False  # the jobs' folder itself cannot be seen now: the file system, not the daemon
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return False


if __name__ == "__main__":
    sys.exit(main())
