"""Runs each child as a local process: ``python -m mlpipeline.child.keeper RUN_DIR``, a
keeper that forks the worker. (preloaded.py forks workers from the preload server instead.)

Either way the child leads a process group and a session of its own, and the version's
processes stay below a keeper (keeper.py), so a signal reaches its whole tree (DataLoader
workers included), and nothing of it outlives the version. The keeper is the one killer of
the tree: a kill is asked of it (its lifeline closed, or ``kill`` on a preload server's
connection), and this daemon kills only what a keeper can no longer, one gone or frozen.
Each keeper watches the read end of a lifeline pipe whose write end only this daemon holds:
when the daemon dies, however it dies, the keeper ends its versions.
"""
from __future__ import annotations

import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from mlpipeline.executors.base import ChildRun, Executor
from mlpipeline.executors.gpu_usage import GpuUsage

from mlpipeline.executors.output_lines import MAX_EVENT_BYTES, READ_BYTES, LineCutter, RecordCutter
from mlpipeline.executors.process_tree import SAMPLE_INTERVAL_S, ProcessTree, start_time
from mlpipeline.executors.protocol import ENDED_EPOCH, LIFELINE_FD_VARIABLE, RUN_FOLDER_PREFIX, new_run_folder, take_result
from mlpipeline.records.lines import RecordError, decode_object
from mlpipeline.script_support.channel import EVENTS_FD_VARIABLE


OUTPUT_AFTER_END_S = 10.0
"""How long the output of a child that ended is read on (what its pipes still hold, or a
process of its that kept them open) before its end is recorded."""

KEEPER_ANSWER_S = 5.0
"""How long a keeper asked to kill its tree may take before this daemon kills it itself: the
keeper is frozen (SIGSTOP) or cannot run."""


ABANDONED_AFTER_S = 60.0
"""A run folder whose maker is gone is removed once it is this old: its keeper, which kills
its worker when the daemon dies, has had time to."""


def remove_abandoned_run_folders() -> int:
    """Remove the run folders in the temporary folder that a process killed outright (a daemon
    given SIGKILL with its whole tree) left behind: its pid runs no more, or runs a process
    started after the folder was made. A folder of an older release, which names no pid, is
    left alone. Returns how many were removed."""
    import stat
    import tempfile

    import psutil

    base = tempfile.gettempdir()
    try:
        names = [name for name in os.listdir(base) if name.startswith(RUN_FOLDER_PREFIX)]
    except OSError:
        return 0
    removed, now = 0, time.time()
    for name in names:
        pid = name[len(RUN_FOLDER_PREFIX) :].split("-", 1)[0]
        path = os.path.join(base, name)
        try:
            made = os.lstat(path)
        except OSError:
            continue
        if not pid.isdigit() or not stat.S_ISDIR(made.st_mode) or made.st_uid != os.getuid() or now - made.st_mtime < ABANDONED_AFTER_S:
            continue
        try:
            if psutil.Process(int(pid)).create_time() <= made.st_mtime:
                continue  # its maker still runs: a version's result may yet come
        except (psutil.Error, ValueError, OverflowError):
            pass  # no such process
        shutil.rmtree(path, ignore_errors=True)
        removed += 1
    return removed


@dataclass
class LocalChild:
    """What a local executor holds for one run (its ``handle``): the run folder, the process
    tree once it runs, and, forked by a preload server, the connection to its keeper."""

    run_dir: Path
    tree: Optional[ProcessTree] = None
    keeper: Optional[socket.socket] = None


class LocalExecutor(Executor):
    """Children on this host, each in its own process group below a keeper of its own.

    ``gpu_usage``, when set, is read as each child's tree is sampled: what its processes hold
    on the GPUs (its record's peak GPU memory and the GPUs' mean utilization)."""

    gpu_usage: Optional[GpuUsage] = None

    def _start(self, run: ChildRun) -> None:
        run.handle = LocalChild(new_run_folder(run.request))
        lifeline_read, lifeline_write = os.pipe()
        run.lifeline = lifeline_write
        try:
            self._start_process(run, lifeline_read)
        except BaseException:
            os.close(lifeline_write)
            run.lifeline = None
            shutil.rmtree(run.handle.run_dir, ignore_errors=True)
            raise
        finally:
            os.close(lifeline_read)

    def _start_process(self, run: ChildRun, lifeline: int) -> None:
        started: List[subprocess.Popen] = []

        def start(out: int, err: int, events: int) -> int:
            env = dict(os.environ)
            env.update(run.env)
            env[EVENTS_FD_VARIABLE] = str(events)
            env[LIFELINE_FD_VARIABLE] = str(lifeline)
            env["PYTHONUNBUFFERED"] = "1"  # so prints reach the log line by line
            started.append(
                subprocess.Popen(
                    [sys.executable, "-m", "mlpipeline.child.keeper", str(run.handle.run_dir)],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    pass_fds=(events, lifeline),
                    env=env,
                    cwd=str(self.work_dir),
                    start_new_session=True,
                )
            )
            return started[0].pid

        # The keeper runs no user code: its own memory is not the version's.
        tree, output_ended = self._spawn(run, start, count_root=False)
        run_thread(self._wait, run, started[0], tree, output_ended)

    def _spawn(self, run: ChildRun, start: Callable[[int, int, int], int], count_root: bool) -> Tuple[ProcessTree, threading.Event]:
        """Start the child with ``start(stdout, stderr, events)``, the write ends of three pipes,
        which returns its pid; then read its output and sample its tree, in one thread. Returns
        the tree and the Event set when the output has ended."""
        pipes = [os.pipe() for _ in range(3)]
        try:
            run.pid = start(*(write for _, write in pipes))
        except BaseException:
            for read, _ in pipes:
                os.close(read)
            raise
        finally:
            for _, write in pipes:
                os.close(write)
        tree = run.handle.tree = ProcessTree(run.pid, count_root=count_root)
        self._place(run, {"child_pid": run.pid, "child_started": start_time(run.pid)})
        return tree, read_child_output(run, *(read for read, _ in pipes), tree=tree, gpu_usage=self.gpu_usage)

    def _wait(self, run: ChildRun, process: subprocess.Popen, tree: ProcessTree, output_ended: threading.Event) -> None:
        pid = process.pid
        # Wait without reaping, so the process group id cannot be reused before the kill below.
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        end_what_the_keeper_left(tree)
        _, status, usage = os.wait4(pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        output_ended.wait(timeout=OUTPUT_AFTER_END_S)
        # ru_maxrss (KiB on Linux) is exact for the largest single process; the tree's sum is sampled.
        peak = max(tree.peak_rss_bytes, usage.ru_maxrss * 1024)
        gpu = (tree.peak_gpu_bytes, tree.gpu_utilization)
        result = take_result(run.handle.run_dir)
        self._finish(run, process.returncode, usage.ru_utime + usage.ru_stime, peak, result, gpu, wall_s=wall_from_child(run, result))

    def _signal(self, run: ChildRun, signum: int) -> None:
        child: Optional[LocalChild] = run.handle
        if child is None or child.tree is None:
            return
        if signum != signal.SIGKILL:
            child.tree.signal(signum)  # a stop, for the worker to handle
            return
        # One killer per tree, the keeper, which is never killed here while it can do it: this
        # process may itself be killed at any moment (a Ray task's), and a kill left half done
        # would leave processes frozen or orphaned.
        if not self._ask_keeper_to_kill(run):
            self._kill_past_keeper(run)
            return
        run_thread(self._kill_if_unanswered, run)

    def _ask_keeper_to_kill(self, run: ChildRun) -> bool:
        """Ask the run's keeper to kill its tree (its lifeline closes, as at this daemon's
        death); whether it could be asked."""
        self._close_lifeline(run)
        return True

    def _kill_if_unanswered(self, run: ChildRun) -> None:
        if not run.done.wait(KEEPER_ANSWER_S):
            self._kill_past_keeper(run)  # its keeper did not answer: frozen, or gone

    def _kill_past_keeper(self, run: ChildRun) -> None:
        """Kill the run's tree here, the keeper that cannot do it with it."""
        run.handle.tree.signal(signal.SIGKILL)


def end_what_the_keeper_left(tree: ProcessTree) -> None:
    """After a keeper's end: the keeper killed all it kept before it ended, unless it was
    killed itself (by hand, by the out-of-memory killer); then what it kept ends here."""
    tree.sample()
    if tree.still_running():
        tree.signal(signal.SIGKILL)


def read_child_output(
    run: ChildRun, out: int, err: int, events: int, tree: Optional[ProcessTree] = None, gpu_usage: Optional[GpuUsage] = None
) -> threading.Event:
    """Read a child's stdout, stderr and event pipes (their read ends) to their ends, handing
    what comes to the run's sinks, and close them; with ``tree``, sample the tree's memory
    every SAMPLE_INTERVAL_S until the run is done. One thread does it all: a thread per pipe
    and one to sample, five a version with the waiter, cost the daemon's loop about 10 ms a
    version in thread starts. Returns the Event set once all three pipes have ended."""
    ended = threading.Event()

    def oversized(size: int) -> None:
        deliver(run.on_lines, "stderr", [f"mlpipeline: an event of {size} bytes was left out (at most {MAX_EVENT_BYTES})"])

    cutters: Dict[int, Any] = {
        out: LineCutter(lambda lines: deliver(run.on_lines, "stdout", lines)),
        err: LineCutter(lambda lines: deliver(run.on_lines, "stderr", lines)),
        events: RecordCutter(lambda raw: _deliver_event(run.on_event, raw), oversized),
    }
    run_thread(_follow_output, run, cutters, tree, ended, gpu_usage)
    return ended


def _follow_output(
    run: ChildRun, cutters: Dict[int, Any], tree: Optional[ProcessTree], ended: threading.Event, gpu_usage: Optional[GpuUsage]
) -> None:
    selector = selectors.DefaultSelector()
    try:
        for fd in cutters:
            selector.register(fd, selectors.EVENT_READ)
        next_sample = 0.0
        while cutters:
            if tree is not None and time.monotonic() >= next_sample:
                _sample(tree, gpu_usage)
                next_sample = time.monotonic() + SAMPLE_INTERVAL_S
            for key, _ in selector.select(SAMPLE_INTERVAL_S if tree is not None else None):
                data = os.read(key.fd, READ_BYTES)
                if data:
                    cutters[key.fd].feed(data)
                    continue
                selector.unregister(key.fd)
                os.close(key.fd)
                cutters.pop(key.fd).close()
    finally:
        selector.close()
        for fd in cutters:
            os.close(fd)
        ended.set()
    # A version may close its output and run on: its memory is followed to its end.
    while tree is not None and not run.done.wait(SAMPLE_INTERVAL_S):
        _sample(tree, gpu_usage)


def _sample(tree: ProcessTree, gpu_usage: Optional[GpuUsage]) -> None:
    tree.sample()
    if gpu_usage is None:
        return
    try:
        readings = gpu_usage.recent(SAMPLE_INTERVAL_S)
        if readings:
            tree.sample_gpus(
                {gpu: reading.processes for gpu, reading in readings.items()},
                {gpu: reading.utilization for gpu, reading in readings.items()},
            )
    except Exception:  # noqa: BLE001 - a driver that stops answering costs the record its GPU figures, never the run
        pass


def wall_from_child(run: ChildRun, result: Optional[Dict[str, Any]]) -> Optional[float]:
    """How long the run took by the time its child said it ended, where it said so: this
    daemon, stopped (SIGSTOP) while its version ran on, counts the stop too. None: measured here."""
    ended = result.pop(ENDED_EPOCH, None) if isinstance(result, dict) else None
    if type(ended) not in (int, float):
        return None
    wall_s = ended - run.started_epoch
    return wall_s if 0 <= wall_s <= time.monotonic() - run.started else None


def run_thread(target: Callable[..., None], *args: Any) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def deliver(sink: Callable[..., None], *item: Any) -> None:
    """Hand ``item`` to ``sink``; a sink that fails is reported, never raised: a reader that
    died would leave the child blocked on a full pipe, so reading goes on whatever happens."""
    try:
        sink(*item)
    except Exception as exc:  # noqa: BLE001
        try:
            print(f"mlpipeline: could not record a child's output: {exc}", file=sys.stderr)
        except OSError:
            pass


def _deliver_event(sink: Callable[[Dict[str, Any]], None], raw: bytes) -> None:
    try:
        event = decode_object(raw)
    except RecordError:
        return
    if isinstance(event, dict):
        deliver(sink, event)
