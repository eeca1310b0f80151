"""What is on this host's GPUs now: each GPU's memory, and which processes hold how much of it.

Read through NVML (``nvidia-ml-py``, the ``nvml`` extra), imported on first use; through
``nvidia-smi`` where NVML is not installed; not at all where neither is (then the daemon
hands out GPUs by its own count alone, as before). GPUs are numbered in PCI bus order, as
CUDA_VISIBLE_DEVICES numbers them for versions (protocol.version_environment sets
CUDA_DEVICE_ORDER=PCI_BUS_ID), which is NVML's order too.
"""
from __future__ import annotations

import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple


@dataclass(frozen=True)
class GpuReading:
    """One GPU now: its memory, and the compute processes on it with what each holds."""

    index: str
    total_bytes: int
    used_bytes: int
    processes: Tuple[Tuple[int, int], ...] = ()  # (pid, bytes)
    utilization: Optional[int] = None  # percent of the last sample period it was busy


class GpuUsage:
    """Reads the GPUs; answers None when nothing can read them."""

    def __init__(self) -> None:
        self._nvml: Any = None
        self._source: Optional[str] = None  # "nvml", "nvidia-smi", or "none" once decided
        self._lock = threading.Lock()
        self._recent: Optional[Tuple[float, Optional[Dict[str, GpuReading]]]] = None

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
        if self._source is None:
            self._source = "nvml" if self._start_nvml() else ("nvidia-smi" if shutil.which("nvidia-smi") else "none")
        try:
            if self._source == "nvml":
                return self._read_nvml()
            if self._source == "nvidia-smi":
                return _read_nvidia_smi()
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
            found[str(index)] = GpuReading(str(index), int(memory.total), int(memory.used), processes, utilization)
        return found


def _read_nvidia_smi() -> Dict[str, GpuReading]:
    gpus = _csv(["nvidia-smi", "--query-gpu=index,uuid,memory.total,memory.used,utilization.gpu", "--format=csv,noheader,nounits"])
    apps = _csv(["nvidia-smi", "--query-compute-apps=gpu_uuid,pid,used_memory", "--format=csv,noheader,nounits"])
    by_uuid: Dict[str, List[Tuple[int, int]]] = {}
    for row in apps:
        if len(row) == 3 and row[1].isdigit():
            by_uuid.setdefault(row[0], []).append((int(row[1]), _mib(row[2])))
    found: Dict[str, GpuReading] = {}
    for row in gpus:
        if len(row) != 5 or not row[0].isdigit():
            continue
        utilization = int(row[4]) if row[4].isdigit() else None
        found[row[0]] = GpuReading(row[0], _mib(row[2]), _mib(row[3]), tuple(by_uuid.get(row[1], ())), utilization)
    return found


def _csv(command: List[str]) -> List[List[str]]:
    output = subprocess.run(command, capture_output=True, text=True, timeout=10, check=True).stdout
    return [[field.strip() for field in line.split(",")] for line in output.splitlines() if line.strip()]


def _mib(text: str) -> int:
    try:
        return int(float(text) * 2**20)
    except ValueError:
        return 0
