"""The executor contract: start a child for a request, report how it ended.

The base keeps the bookkeeping (the runs in flight, the placed and finished queues,
timeouts); an executor only starts and signals, in :meth:`Executor._start` and
:meth:`Executor._signal`, and calls :meth:`Executor._finish` once a child has ended, with the
child's result however it came (a run folder's result.json, a Ray task's stream). What it
holds for one run it keeps in the run's ``handle``. The executors: ``local`` (a keeper
process per version), ``preloaded`` (workers forked from the preload server), ``ray`` (a Ray
task per version) and ``in_process`` (this very process, for --pdb and the loop's own tests).
tests/test_executor_contract.py holds every executor to this contract.
"""
from __future__ import annotations

import os
import queue
import signal
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from mlpipeline.executors.protocol import ENDED_EPOCH, ChildRequest, ChildResult

LineSink = Callable[[str, List[str]], None]
"""Receives the lines a child printed, as they were read together: (``"stdout"`` or
``"stderr"``, the lines), so that a version printing as fast as it can costs a write a read."""

EventSink = Callable[[Dict[str, Any]], None]
"""Receives each event a child sends (``log``, ``report``)."""


class SchedulerUnreachable(OSError):
    """The cluster's scheduler does not answer now (slurmctld down or restarting): a version
    that could not be submitted is not at fault, and no other would be submitted either."""


@dataclass
class ChildOutcome:
    """How a child ended: its result.json if it wrote one, else its exit status or signal."""

    result: Optional[ChildResult]
    returncode: Optional[int]
    wall_s: float
    cpu_s: Optional[float] = None
    peak_rss_bytes: Optional[int] = None
    stop_signal: Optional[int] = None
    timed_out: bool = False
    peak_gpu_bytes: Optional[int] = None  # what its processes held on GPUs at most (None: not read)
    gpu_utilization: Optional[float] = None  # the mean utilization of the GPUs it held memory on

    @property
    def signal_name(self) -> Optional[str]:
        if self.returncode is None or self.returncode >= 0:
            return None
        try:
            return signal.Signals(-self.returncode).name
        except ValueError:
            return f"signal {-self.returncode}"

    @property
    def exit_description(self) -> str:
        """How the process ended, as a phrase: ``exited with status 3``, ``was killed by SIGSEGV``."""
        if self.signal_name:
            return f"was killed by {self.signal_name}"
        return f"exited with status {self.returncode}"


@dataclass(eq=False)  # one run is one object: kept in sets, never compared by value
class ChildRun:
    """One child in flight; ``tag`` is the caller's, handed back when it finishes."""

    request: ChildRequest
    on_lines: LineSink
    on_event: EventSink
    tag: Any = None
    pid: Optional[int] = None
    started: float = field(default_factory=time.monotonic)
    started_epoch: float = field(default_factory=time.time)  # the same moment, by the host's clock
    outcome: Optional[ChildOutcome] = None
    stop_signal: Optional[int] = None
    timeout: Optional[float] = None
    timed_out: bool = False
    env: Dict[str, str] = field(default_factory=dict)
    done: threading.Event = field(default_factory=threading.Event)
    to_queue: bool = True
    lifeline: Optional[int] = None  # the write end of the child's lifeline pipe, held until it ends
    gpus: float = 0.0  # what a scheduler that places the child (Ray) gives it; local children get env's
    placement: Optional[Dict[str, Any]] = None  # where the child runs, once it does (pid; a Ray node)
    handle: Any = None  # what the executor holds for this run: its process tree, its Ray task


class Executor(ABC):
    """Runs child requests; several may be in flight at once."""

    where = "this host"
    """Where the children run, in words for the log."""

    adopts_earlier_runs = False
    """Whether a run a dead daemon left still running is followed to its end (a Slurm job) rather
    than ended before its version starts again."""

    queues_children = False
    """Whether a child submitted may wait in a scheduler's queue before it runs (Ray, Slurm):
    its start is said when it is placed."""

    isolated = True
    """Whether each child is a process of its own, which a stop reaches and whose exit is its
    own; not so only for the in-process executor, whose versions run in the caller's process."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir  # the children's working directory: the project folder
        self._finished: "queue.Queue[ChildRun]" = queue.Queue()
        self._running: Set[ChildRun] = set()
        self._unreported: Set[ChildRun] = set()
        self._placed: "queue.Queue[ChildRun]" = queue.Queue()
        self._lifeline_lock = threading.Lock()

    def submit(
        self,
        request: ChildRequest,
        on_lines: LineSink,
        on_event: EventSink,
        tag: Any = None,
        timeout: Optional[float] = None,
        env: Optional[Dict[str, str]] = None,
        gpus: float = 0.0,
    ) -> ChildRun:
        """Start a child for ``request``; where it runs comes back through :meth:`newly_placed`,
        its end through :meth:`next_finished`.

        Past ``timeout`` seconds of running its process tree is killed and its outcome says
        ``timed_out``. ``env`` adds to the child's environment (CUDA_VISIBLE_DEVICES, say);
        ``gpus`` is what an executor that places children itself asks its scheduler for.
        """
        return self._submit(request, on_lines, on_event, tag, timeout, to_queue=True, env=env, gpus=gpus)

    def _submit(
        self,
        request: ChildRequest,
        on_lines: LineSink,
        on_event: EventSink,
        tag: Any,
        timeout: Optional[float],
        to_queue: bool,
        env: Optional[Dict[str, str]] = None,
        gpus: float = 0.0,
    ) -> ChildRun:
        run = ChildRun(
            request=request,
            on_lines=on_lines,
            on_event=on_event,
            tag=tag,
            timeout=timeout or None,
            to_queue=to_queue,
            env=dict(env or {}),
            gpus=gpus,
        )
        self._running.add(run)
        if to_queue:
            self._unreported.add(run)
        try:
            self._start(run)
        except BaseException:
            self._running.discard(run)
            self._unreported.discard(run)
            raise
        return run

    def call(
        self,
        request: ChildRequest,
        on_lines: LineSink,
        on_event: EventSink,
        cancel: Callable[[], bool] = lambda: False,
        timeout: Optional[float] = None,
        env: Optional[Dict[str, str]] = None,
    ) -> ChildOutcome:
        """Run one child to its end and return how it ended (listing a script's versions, say).

        When ``cancel()`` turns true (Ctrl-C), the child's process tree is killed.
        """
        run = self._submit(request, on_lines, on_event, None, timeout, to_queue=False, env=env)
        while not run.done.wait(0.1):
            if cancel() and run.stop_signal is None:
                self.stop(run, signal.SIGKILL)
            self._enforce_timeout(run)
        assert run.outcome is not None
        return run.outcome

    def newly_placed(self) -> List[ChildRun]:
        """The submitted children that started running since the last call, each with its
        ``placement``; a child is always here before :meth:`next_finished` hands it back."""
        placed = []
        while True:
            try:
                placed.append(self._placed.get_nowait())
            except queue.Empty:
                return placed

    def next_finished(self, timeout: float) -> Optional[ChildRun]:
        """The next submitted child that ended, waiting up to ``timeout`` seconds.

        Also where running children past their own timeout are killed: call it often.
        """
        for run in self.running:
            self._enforce_timeout(run)
        try:
            run = self._finished.get(timeout=timeout)
        except queue.Empty:
            return None
        self._unreported.discard(run)
        return run

    @property
    def running(self) -> List[ChildRun]:
        """The submitted children that have not ended yet (a snapshot)."""
        return list(self._running)

    @property
    def outstanding(self) -> int:
        """Submitted runs not yet handed back by :meth:`next_finished`, ended or not.

        A run that has ended but whose end the caller has not taken still counts, so a loop
        that stops when this is 0 never leaves an end unrecorded.
        """
        return len(self._unreported)

    def _enforce_timeout(self, run: ChildRun) -> None:
        # A child not yet placed (a task waiting in a cluster's queue) has not started to run.
        if run.placement is None:
            return
        if run.timeout and not run.timed_out and time.monotonic() - run.started > run.timeout:
            run.timed_out = True
            self.stop(run, signal.SIGKILL)

    def stop(self, run: ChildRun, signum: int, cause: Optional[int] = None) -> None:
        """Pass ``signum`` to the run's whole process tree, remembering that it was asked to stop
        and why: ``cause``, the signal the daemon got, where it passes on another (SIGTERM for
        a SIGHUP)."""
        if run.stop_signal is None:
            run.stop_signal = cause or signum
        self._signal(run, signum)

    def let_go(self, run: ChildRun) -> None:
        """Another daemon took the run's version over: end the run here. An executor whose
        child that daemon follows instead of starting another (a Slurm job) leaves it running."""
        self.stop(run, signal.SIGKILL)

    def stop_all(self, signum: int, cause: Optional[int] = None) -> None:
        for run in self.running:
            self.stop(run, signum, cause)

    def close(self) -> None:
        """Give back what the executor holds beyond its children (a preload server, say)."""

    def _close_lifeline(self, run: ChildRun) -> None:
        """Close the run's end of its lifeline once, whichever thread asks first."""
        with self._lifeline_lock:
            lifeline, run.lifeline = run.lifeline, None
        if lifeline is not None:
            os.close(lifeline)

    def _place(self, run: ChildRun, placement: Dict[str, Any]) -> None:
        """Called once by the subclass, from any thread, when the child runs: where, and as what."""
        run.placement = placement
        if run.to_queue:
            self._placed.put(run)

    def _finish(
        self,
        run: ChildRun,
        returncode: Optional[int],
        cpu_s: Optional[float],
        peak_rss_bytes: Optional[int] = None,
        result: Optional[ChildResult] = None,
        gpu: Tuple[Optional[int], Optional[float]] = (None, None),
        wall_s: Optional[float] = None,
    ) -> None:
        """Called once by the subclass when the child has ended and its output is drained;
        ``result``: what the child said of its end, None when it said nothing; ``gpu``: the
        peak GPU memory of its processes and the mean utilization of their GPUs, where read;
        ``wall_s``: how long it ran, where measured where it ran (else from its start here)."""
        self._close_lifeline(run)
        if isinstance(result, dict):
            result.pop(ENDED_EPOCH, None)  # read by the local executors (wall_from_child); no record field
        run.outcome = ChildOutcome(
            result=result,
            returncode=returncode,
            wall_s=time.monotonic() - run.started if wall_s is None else wall_s,
            cpu_s=cpu_s,
            peak_rss_bytes=peak_rss_bytes,
            stop_signal=run.stop_signal,
            timed_out=run.timed_out,
            peak_gpu_bytes=gpu[0],
            gpu_utilization=gpu[1],
        )
        self._running.discard(run)
        run.done.set()
        if run.to_queue:
            self._finished.put(run)

    @abstractmethod
    def _start(self, run: ChildRun) -> None:
        """Start the child; call :meth:`_finish` from any thread once it has ended."""

    @abstractmethod
    def _signal(self, run: ChildRun, signum: int) -> None:
        """Send ``signum`` to the run's process tree (SIGKILL kills it)."""
