"""What is on this host's GPUs now: each GPU's memory, and which processes hold how much of it.

Read through NVML (``nvidia-ml-py``, the ``nvml`` extra), imported on first use; through
``nvidia-smi`` where NVML is not installed; not at all where neither is (then the daemon
hands out GPUs by its own count alone, as before). GPUs are numbered in PCI bus order, as
CUDA_VISIBLE_DEVICES numbers them for versions (protocol.version_environment sets
CUDA_DEVICE_ORDER=PCI_BUS_ID), which is NVML's order too.
"""
from __future__ import annotations

import math
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple


@dataclass(frozen=True)
class GpuReading:
    """One GPU now: its memory, and the compute processes on it with what each holds."""

    index: str
    total_bytes: int
    used_bytes: int
    processes: Tuple[Tuple[int, int], ...] = ()  # (pid, bytes)
    utilization: Optional[int] = None  # percent of the last sample period it was busy
    uuid: Optional[str] = None  # "GPU-...": how gpus = [...] or CUDA_VISIBLE_DEVICES may name it


READ_TIMEOUT_S = 10.0
"""How long one read of the GPUs may take: a driver that hangs (NVML or nvidia-smi) is given up
on, and the GPUs are handed out by count alone, as where nothing can read them."""


class GpuUsage:
    """Reads the GPUs; answers None when nothing can read them."""

    def __init__(self) -> None:
        self._nvml: Any = None
        self._source: Optional[str] = None  # "nvml", "nvidia-smi", or "none" once decided
        self._lock = threading.Lock()
        self._recent: Optional[Tuple[float, Optional[Dict[str, GpuReading]]]] = None
        self.gave_up: Optional[str] = None
        """Why the GPUs are no longer read, once a read hung: for the daemon to say."""

    @property
    def source(self) -> Optional[str]:
        return self._source

    def recent(self, max_age: float) -> Optional[Dict[str, GpuReading]]:
        """A reading at most ``max_age`` seconds old, shared by the samplers of every running
        version (what each version holds on the GPUs); through NVML only: nvidia-smi would be
        a process every look."""
        with self._lock:
            if self._source is None:
                self.read()
            if self._source != "nvml":
                return None
            now = time.monotonic()
            if self._recent is None or now - self._recent[0] > max_age:
                self._recent = (now, self.read())
            return self._recent[1]

    def read(self) -> Optional[Dict[str, GpuReading]]:
        try:
            if self._source is None:
                try:
                    started = within_deadline(self._start_nvml)
                except TimeoutError:
                    if not shutil.which("nvidia-smi"):
                        raise
                    started = False  # NVML slow to start (many GPUs, no persistence mode): nvidia-smi may answer
                self._source = "nvml" if started else ("nvidia-smi" if shutil.which("nvidia-smi") else "none")
            if self._source == "nvml":
                return _sane(within_deadline(self._read_nvml))
            if self._source == "nvidia-smi":
                # A process stuck in the driver outlives its kill, and subprocess waits for it.
                return _sane(within_deadline(_read_nvidia_smi))
        except (TimeoutError, subprocess.TimeoutExpired):
            what = "NVML" if self._source in (None, "nvml") else "nvidia-smi"
            self._source = "none"
            self.gave_up = (
                f"{what} did not answer in {READ_TIMEOUT_S:g} s; GPUs are handed out by count from now on, "
                "without what other processes hold on them"
            )
        except Exception:  # noqa: BLE001 - a driver that stops answering: placement goes on by count
            return None
        return None

    def _start_nvml(self) -> bool:
        try:
            import pynvml

            pynvml.nvmlInit()
        except Exception:  # noqa: BLE001 - not installed, no driver, no GPU
            return False
        self._nvml = pynvml
        return True

    def _read_nvml(self) -> Dict[str, GpuReading]:
        nvml = self._nvml
        found: Dict[str, GpuReading] = {}
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            processes = tuple(
                (int(process.pid), int(process.usedGpuMemory or 0)) for process in nvml.nvmlDeviceGetComputeRunningProcesses(handle)
            )
            try:
                utilization: Optional[int] = int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            except nvml.NVMLError:
                utilization = None
            try:
                uuid: Optional[str] = nvml.nvmlDeviceGetUUID(handle)
            except nvml.NVMLError:
                uuid = None
            uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
            found[str(index)] = GpuReading(str(index), int(memory.total), int(memory.used), processes, utilization, uuid)
        return found


def within_deadline(call: Callable[[], Any], timeout: float = READ_TIMEOUT_S) -> Any:
    """``call()``, or TimeoutError past ``timeout``: a driver call cannot be interrupted, so it
    runs in a thread of its own, which a hung call leaves behind (a daemon thread)."""
    box: Dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller
            box["error"] = exc

    thread = threading.Thread(target=run, name="mlpipeline-gpu-read", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError
    if "error" in box:
        raise box["error"]
    return box["value"]


def _sane(found: Dict[str, GpuReading]) -> Dict[str, GpuReading]:
    """The readings that can be true: a GPU with no memory, or more used than it has, is read
    as unknown (no reading), and a process that is no process left out."""
    kept = {}
    for key, reading in found.items():
        if reading.total_bytes <= 0 or not 0 <= reading.used_bytes <= reading.total_bytes:
            continue
        processes = tuple((pid, amount) for pid, amount in reading.processes if pid > 0 and 0 <= amount <= reading.total_bytes)
        kept[key] = GpuReading(reading.index, reading.total_bytes, reading.used_bytes, processes, reading.utilization, reading.uuid)
    return kept


def _read_nvidia_smi() -> Dict[str, GpuReading]:
    gpus = _csv(["nvidia-smi", "--query-gpu=index,uuid,memory.total,memory.used,utilization.gpu", "--format=csv,noheader,nounits"])
    apps = _csv(["nvidia-smi", "--query-compute-apps=gpu_uuid,pid,used_memory", "--format=csv,noheader,nounits"])
    by_uuid: Dict[str, List[Tuple[int, int]]] = {}
    for row in apps:
        used = _mib(row[2]) if len(row) == 3 else None
        if used is not None and row[1].isdigit():
            by_uuid.setdefault(row[0], []).append((int(row[1]), used))
    found: Dict[str, GpuReading] = {}
    for row in gpus:
        if len(row) != 5 or not row[0].isdigit():
            continue
        total, used = _mib(row[2]), _mib(row[3])
        if total is None or used is None:
            continue  # "[N/A]", "[Not Supported]": not known, which is not 0
        utilization = int(row[4]) if row[4].isdigit() else None
        found[row[0]] = GpuReading(row[0], total, used, tuple(by_uuid.get(row[1], ())), utilization, row[1] or None)
    return found


def _csv(command: List[str]) -> List[List[str]]:
    output = subprocess.run(command, capture_output=True, timeout=READ_TIMEOUT_S, check=True).stdout.decode("utf-8", "replace")
    return [[field.strip() for field in line.split(",")] for line in output.splitlines() if line.strip()]


def _mib(text: str) -> Optional[int]:
    """A count of MiB as bytes; None for what is no count ("[N/A]")."""
    try:
        amount = float(text)
    except ValueError:
        return None
    return int(amount * 2**20) if math.isfinite(amount) and amount >= 0 else None
