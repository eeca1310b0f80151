"""The processes of one version: sampled for peak memory, and ended together, none escaping.

A version's child (its keeper, keeper.py) leads a process group and is the subreaper of
everything the version starts, so every process of the version stays below it however it
forks. To end them, :func:`end_processes` first stops (SIGSTOP) every process it finds,
round after round until no new one appears, and only then kills them all: a stopped process
can neither fork nor exit, so nothing is reparented away or started between the look and the
kill (a double fork, fork-setsid-fork, escapes a plain kill of the group).
"""
from __future__ import annotations

import os
import signal
import threading
from typing import Dict, Iterable, List, Optional, Tuple

import psutil

from mlpipeline.executors.child_pids import children_of

SAMPLE_INTERVAL_S = 0.5

FREEZE_ROUNDS = 50
"""Looks for new processes while freezing; each round finds only what forked during the last."""


def descendants(root: psutil.Process) -> List[psutil.Process]:
    """Every process below ``root`` (see :func:`children_of`)."""
    found: List[psutil.Process] = []
    pending = [root.pid]
    while pending:
        for child in children_of(pending.pop()):
            try:
                found.append(psutil.Process(child))
            except psutil.Error:
                continue
            pending.append(child)
    return found


def end_processes(root: Optional[psutil.Process], include_root: bool, known: Iterable[psutil.Process] = ()) -> List[psutil.Process]:
    """Freeze, then kill, every descendant of ``root`` (and ``root`` itself if ``include_root``)
    and every process of ``known`` still running; returns those signalled.

    psutil handles carry the start time, so a pid reused since is never signalled.
    """
    frozen: Dict[int, psutil.Process] = {}
    looked_at = set()
    for _ in range(FREEZE_ROUNDS):
        found: List[psutil.Process] = list(known)
        if root is not None:
            if include_root:
                found.append(root)
            found.extend(descendants(root))
        new = [process for process in found if process.pid not in looked_at]
        if not new:
            break
        for process in new:
            looked_at.add(process.pid)
            try:
                process.send_signal(signal.SIGSTOP)
            except psutil.Error:
                continue  # gone already
            frozen[process.pid] = process
    for process in frozen.values():
        try:
            process.send_signal(signal.SIGKILL)  # a stopped process dies of SIGKILL too
        except psutil.Error:
            continue
    return list(frozen.values())


def start_time(pid: Optional[int]) -> Optional[float]:
    """When process ``pid`` started, so that a later check never mistakes a reused pid for it."""
    try:
        return round(psutil.Process(pid).create_time(), 2) if pid else None
    except psutil.Error:
        return None


def run_processes(pid: Optional[int], started: Optional[float], run_id: Optional[str], search_all: bool) -> List[psutil.Process]:
    """The processes of a run that may have outlived its daemon: its keeper ``pid`` (if it is
    still the process that started at ``started``; None where the pid is not this namespace's)
    with all below it, and, with ``search_all``, every process whose environment names the run
    (one that escaped to init), whatever its parent."""
    found: Dict[int, psutil.Process] = {}
    try:
        if pid is None:
            raise psutil.NoSuchProcess(0)
        root = psutil.Process(pid)
        # Without its start time (a journal of an older mlpipeline) a pid proves nothing.
        if started is not None and abs(root.create_time() - started) < 0.05:
            for process in [root] + descendants(root):
                found[process.pid] = process
    except psutil.Error:
        pass
    if search_all and run_id:
        from mlpipeline.executors.protocol import RUN_ID_VARIABLE

        for process in psutil.process_iter():
            try:
                environment = process.environ()
            except psutil.Error:
                continue
            # An on_version_end command carries the run id too, but also its state: it is no version process.
            if environment.get(RUN_ID_VARIABLE) == run_id and "MLPIPELINE_STATE" not in environment:
                found.setdefault(process.pid, process)
    me = os.getpid()
    return [process for process in found.values() if process.pid != me and _running(process)]


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class ProcessTree:
    """One version's process tree, rooted at its child: a keeper (left out of the memory sum
    with ``count_root=False``: it runs no user code), or a worker forked by the preload server."""

    def __init__(self, pid: int, count_root: bool = True) -> None:
        self.pid = pid
        self.count_root = count_root
        self.peak_rss_bytes = 0
        self.peak_gpu_bytes: Optional[int] = None  # None: never seen on a GPU (or nothing read them)
        self._gpu_busy_sum = 0.0
        self._gpu_samples = 0
        self._members: Dict[int, psutil.Process] = {}
        self._lock = threading.Lock()
        try:
            self._root: Optional[psutil.Process] = psutil.Process(pid)
        except psutil.NoSuchProcess:
            self._root = None

    def sample(self) -> None:
        """Note every process now in the tree and add up their resident memory."""
        found = descendants(self._root) if self._root is not None else []
        if self.count_root and self._root is not None:
            found.append(self._root)
        with self._lock:
            for process in found:
                self._members.setdefault(process.pid, process)
            members = list(self._members.values())
        total = 0
        for process in members:
            try:
                if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                    total += process.memory_info().rss
            except psutil.Error:
                continue
        self.peak_rss_bytes = max(self.peak_rss_bytes, total)

    def sample_gpus(self, processes: Dict[str, Iterable[Tuple[int, int]]], utilization: Dict[str, Optional[int]]) -> None:
        """Add up the GPU memory the tree's processes hold now (``processes``: per GPU, each
        compute process's pid and bytes, as NVML says), and note how busy the GPUs it is on are."""
        with self._lock:
            mine = set(self._members)
        total, busy = 0, []
        for gpu, held in processes.items():
            here = sum(amount for pid, amount in held if pid in mine)
            if here:
                total += here
                if utilization.get(gpu) is not None:
                    busy.append(utilization[gpu])
        self.peak_gpu_bytes = max(self.peak_gpu_bytes or 0, total) if (total or self.peak_gpu_bytes is not None) else None
        if busy:
            self._gpu_busy_sum += sum(busy) / len(busy)
            self._gpu_samples += 1

    @property
    def gpu_utilization(self) -> Optional[float]:
        """The mean utilization (percent) of the GPUs the tree held memory on, over the samples it did."""
        return self._gpu_busy_sum / self._gpu_samples if self._gpu_samples else None

    def still_running(self) -> bool:
        """Whether a process ever seen below the root still runs."""
        with self._lock:
            members = list(self._members.values())
        return any(process.pid != self.pid and _running(process) for process in members)

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the process group and every member ever seen that still runs
        outside it, each once (a worker given SIGINT twice in a moment would be interrupted
        again while it ends); SIGKILL freezes and kills the whole tree instead
        (:func:`end_processes`)."""
        self.sample()  # a fresh look first: what started since the last sample is signalled too
        with self._lock:
            members = list(self._members.values())
        if signum == signal.SIGKILL:
            end_processes(self._root, include_root=True, known=members)
            return
        try:
            os.killpg(self.pid, signum)
            reached_group = self.pid
        except (ProcessLookupError, PermissionError):
            reached_group = None
        for process in members:
            try:
                if process.is_running() and os.getpgid(process.pid) != reached_group:
                    process.send_signal(signum)
            except (psutil.Error, OSError):
                continue
