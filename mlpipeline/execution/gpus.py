"""GPUs for running versions: each gets its own through CUDA_VISIBLE_DEVICES, none shared unasked.

A version says what it needs with its ``gpus`` parameter: a whole number of GPUs (default 1
when the daemon has GPUs), 0 for none (it never holds a GPU), or a fraction below 1 to share
one GPU with other fractional versions whose shares add up to at most 1.
"""
from __future__ import annotations

import math
import os
import shutil
import subprocess
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import psutil

from mlpipeline.execution.gpu_placement import GpuLoad, holders, memory_bytes, never_fits, place, shown_bytes
from mlpipeline.executors.gpu_usage import GpuReading, GpuUsage, within_deadline
from mlpipeline.queue.project_keys import GPU_ID
from mlpipeline.records.text import one_line

VERSION_PARAMETER = "gpus"
MEMORY_PARAMETER = "gpu_memory"
DEFAULT_BUSY_SHARE = 0.1
"""gpu_busy_memory's default: a GPU whose memory other processes hold beyond a tenth of it gets no version."""
_EPSILON = 1e-9


def detect_gpus() -> Tuple[List[str], Optional[str]]:
    """The GPUs this daemon may hand out with ``gpus = "auto"``, and what to warn of them.

    The daemon's own CUDA_VISIBLE_DEVICES when it is set (a daemon started on GPUs 2 and 3
    shares those), read as CUDA reads it: up to its first entry that is no GPU id, or names
    a GPU again, which hides the rest. Otherwise what ``nvidia-smi`` lists, otherwise none.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return _visible_devices(visible)
    if shutil.which("nvidia-smi") is None:
        return [], None
    try:
        # A process stuck in the driver outlives its kill, and subprocess.run waits for it.
        done = within_deadline(
            lambda: subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True, timeout=20),
            timeout=25,
        )
    except (subprocess.TimeoutExpired, TimeoutError):
        return [], "nvidia-smi did not answer in 20 s; versions run with no GPU"
    except (OSError, subprocess.SubprocessError) as exc:
        return [], f"nvidia-smi could not be run ({exc}); versions run with no GPU"
    said = one_line(done.stdout.decode("utf-8", "replace").strip() or done.stderr.decode("utf-8", "replace").strip())[:300]
    listed = [line.strip() for line in done.stdout.decode("utf-8", "replace").splitlines() if line.strip()]
    if done.returncode != 0 or not all(GPU_ID.fullmatch(line) and line.isdigit() for line in listed):
        return [], f"nvidia-smi did not list GPUs (exit {done.returncode}: {said or 'no output'}); versions run with no GPU"
    return list(dict.fromkeys(listed)), None


def _visible_devices(visible: str) -> Tuple[List[str], Optional[str]]:
    ids: List[str] = []
    for item in (entry.strip() for entry in visible.split(",")):
        known = str(int(item)) if item.isascii() and item.isdigit() and len(item) <= 9 else item
        if not GPU_ID.fullmatch(item) or known in ids:
            if item in ("", "-1") and not ids:
                return [], None  # the usual ways to hide every GPU
            why = "names a GPU again" if known in ids else "is no GPU id"
            kept = ", ".join(ids) or "none"
            return ids, f'CUDA_VISIBLE_DEVICES="{one_line(visible)[:200]}": "{one_line(item)[:60]}" {why}, and CUDA sees no GPU from there on; GPUs handed out: {kept}'
        ids.append(known)
    return ids, None


def requested(value: Any, label: str) -> float:
    """What a version's ``gpus`` parameter asks for, checked; ValueError names the version."""
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    # Past 2**31 GPUs is no request (and 10**400 no float).
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value > 2**31 or not math.isfinite(value) or value < 0:
        raise ValueError(f"{label}: gpus must be 0, a fraction below 1, or a whole number of GPUs, not {shown}")
    if value > 1 and not float(value).is_integer():
        raise ValueError(f"{label}: gpus above 1 must be a whole number, not {value!r}")
    return float(value)


def gpu_request_problems(label: str, gpus: Any, gpu_memory: Any) -> List[str]:
    """What is wrong with a version's ``gpus`` and ``gpu_memory`` parameters (None: not set),
    as execution mode would refuse them."""
    problems = []
    for check, value in ((requested, gpus), (memory_bytes, gpu_memory)):
        if value is not None:
            try:
                check(value, label)
            except ValueError as exc:
                problems.append(str(exc))
    return problems


class GpuPool:
    """Which share (and, for versions that state ``gpu_memory``, how much memory) of each GPU
    the running versions hold; with ``usage``, what other processes hold on each too, read at
    every look (gpu_placement.py decides)."""

    def __init__(self, ids: Sequence[str], usage: Optional[GpuUsage] = None, busy_share: float = DEFAULT_BUSY_SHARE) -> None:
        self.ids = list(ids)
        self._used: Dict[str, float] = {gpu: 0.0 for gpu in self.ids}
        self._reserved: Dict[str, int] = {gpu: 0 for gpu in self.ids}
        self._usage = usage if self.ids else None
        self.busy_share = busy_share
        self._readings: Optional[Dict[str, GpuReading]] = None

    def default_request(self) -> float:
        return 1.0 if self.ids else 0.0

    def fits_ever(self, amount: float, memory: Optional[int] = None) -> bool:
        """Whether ``amount`` (and ``memory`` on each) could be granted at all, with every GPU free."""
        if memory is not None and never_fits(self._loads(read=True), amount, memory) is not None:
            return False
        return amount == 0 or (amount < 1 and bool(self.ids)) or amount <= len(self.ids)

    def free_for(self, amount: float, memory: Optional[int] = None) -> Optional[Tuple[str, ...]]:
        """The GPUs ``amount`` (and ``memory`` on each) would be granted now, or None when they
        are not free; takes nothing. Reads what other processes hold now."""
        if not self.ids:
            return ()
        return place(self._loads(read=True), amount, memory, self.busy_share)

    def acquire(self, amount: float, memory: Optional[int] = None) -> Optional[Tuple[str, ...]]:
        """The GPUs granted for ``amount`` (and ``memory``), or None when they are not free now."""
        granted = place(self._loads(read=False), amount, memory, self.busy_share) if self.ids else ()
        for gpu in granted or ():
            self._used[gpu] = self._used[gpu] + _share(amount, memory)
            self._reserved[gpu] += memory or 0
        return granted

    def release(self, granted: Sequence[str], amount: float, memory: Optional[int] = None) -> None:
        for gpu in granted:
            self._used[gpu] = max(self._used[gpu] - _share(amount, memory), 0.0)
            self._reserved[gpu] = max(self._reserved[gpu] - (memory or 0), 0)

    def busy_gpus(self) -> List[str]:
        """The GPUs other processes hold past ``gpu_busy_memory`` at the last look, each with
        who holds it: ``GPU 0: pid 4242 (20.1 GiB), ...`` (for the log and status)."""
        found = []
        for load in self._loads(read=False):
            if load.busy(self.busy_share):
                reading = self._reading_of(load.id)
                held = [item for item in (reading.processes if reading else ()) if not is_ours(item[0])]
                who = ", ".join(holders(load, held)) or "processes this host does not show"
                found.append(f"GPU {load.id}: {who}, {shown_bytes(load.others_bytes)} of {shown_bytes(load.total_bytes or 0)}")
        return found

    def loads(self) -> List[GpuLoad]:
        """What each GPU holds, as the last look saw it."""
        return self._loads(read=False)

    def _loads(self, read: bool) -> List[GpuLoad]:
        if read and self._usage is not None:
            self._readings = self._usage.read()
        loads = []
        for gpu in self.ids:
            reading = self._reading_of(gpu)
            total = others = None
            ours = 0
            if reading is not None:
                ours = sum(amount for pid, amount in reading.processes if is_ours(pid))
                total, others = reading.total_bytes, max(reading.used_bytes - ours, 0)
            loads.append(
                GpuLoad(
                    gpu, share_used=self._used[gpu], whole=self._used[gpu] >= 1 - _EPSILON and self._reserved[gpu] == 0,
                    reserved_bytes=self._reserved[gpu], total_bytes=total, others_bytes=others or 0, ours_bytes=ours,
                )
            )  # fmt: skip
        return loads

    def _reading_of(self, gpu: str) -> Optional[GpuReading]:
        """The last look's reading of ``gpu``, named by its index or its UUID."""
        readings = self._readings or {}
        found = readings.get(gpu)
        if found is None and gpu.startswith(("GPU-", "MIG-")):
            found = next((reading for reading in readings.values() if reading.uuid == gpu), None)
        return found

    def reading_problem(self) -> Optional[str]:
        """Why the GPUs are not read any more (a driver that hung), or None."""
        return self._usage.gave_up if self._usage is not None else None

    def capacity(self) -> str:
        """What there is, in words, for a version that asks for more."""
        return f"this daemon has {len(self.ids)}"

    def describe(self) -> str:
        return ", ".join(self.ids) or "none"


class ClusterGpus(GpuPool):
    """GPUs that a cluster's scheduler hands out (Ray's ``num_gpus``, Slurm's gres): the daemon grants none
    itself, and only checks that some node could ever give a version what it asks for.

    ``node_gpus()`` says how many GPUs each live node has.
    """

    def __init__(self, node_gpus: Callable[[], List[float]], cluster: str = "the Ray cluster") -> None:
        super().__init__(())
        self._node_gpus = node_gpus
        self._cluster = cluster
        self._had_gpus = False

    def _largest(self) -> float:
        largest = max(self._node_gpus(), default=0.0)
        self._had_gpus = self._had_gpus or largest >= 1
        return largest

    def default_request(self) -> float:
        # A cluster that had a GPU node in this session still has one, though it is restarting:
        # a version that says nothing keeps asking for a GPU, not silently for none.
        self._largest()
        return 1.0 if self._had_gpus else 0.0

    def fits_ever(self, amount: float, memory: Optional[int] = None) -> bool:
        largest = self._largest()
        return amount == 0 or (amount < 1 and largest >= 1) or amount <= largest

    def free_for(self, amount: float, memory: Optional[int] = None) -> Optional[Tuple[str, ...]]:
        return ()  # the scheduler places the version where its GPUs are free

    def acquire(self, amount: float, memory: Optional[int] = None) -> Optional[Tuple[str, ...]]:
        return ()

    def release(self, granted: Sequence[str], amount: float, memory: Optional[int] = None) -> None:
        pass

    def busy_gpus(self) -> List[str]:
        return []

    def capacity(self) -> str:
        counts = sorted(self._node_gpus(), reverse=True)
        if not counts or counts[0] == 0:
            return f"no node of {self._cluster} has a GPU"
        return f"the largest node of {self._cluster} has {counts[0]:g} (GPUs per node: {', '.join(f'{c:g}' for c in counts)})"

    def describe(self) -> str:
        total = sum(self._node_gpus())
        return f"{total:g} on the nodes of {self._cluster}, placed by its scheduler"


def _share(amount: float, memory: Optional[int]) -> float:
    """The share of each GPU granted that a version holds: a fraction, or the whole GPU; one
    packed by its ``gpu_memory`` holds memory, not a share (0)."""
    if memory is not None:
        return 0.0
    return amount if amount < 1 else 1.0


def is_ours(pid: int) -> bool:
    """Whether process ``pid`` is below this daemon (a version, its keeper, the preload server):
    what it holds on a GPU is this daemon's, not another user's."""
    try:
        return any(parent.pid == os.getpid() for parent in psutil.Process(pid).parents())
    except (psutil.Error, ValueError):  # ValueError: a pid no process has (0, negative)
        return False


def visible_devices(granted: Sequence[str]) -> str:
    """The CUDA_VISIBLE_DEVICES value for ``granted``: empty hides every GPU from the version."""
    return ",".join(granted)
