"""GPUs for running versions: each gets its own through CUDA_VISIBLE_DEVICES, none shared unasked.

A version says what it needs with its ``gpus`` parameter: a whole number of GPUs (default 1
when the daemon has GPUs), 0 for none (it never holds a GPU), or a fraction below 1 to share
one GPU with other fractional versions whose shares add up to at most 1.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

VERSION_PARAMETER = "gpus"
_EPSILON = 1e-9


def detect_gpus() -> List[str]:
    """The GPUs this daemon may hand out with ``gpus = "auto"``.

    The daemon's own CUDA_VISIBLE_DEVICES when it is set (a daemon started on GPUs 2 and 3
    shares those), otherwise what ``nvidia-smi`` lists, otherwise none.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [item.strip() for item in visible.split(",") if item.strip() and item.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listing = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in listing.splitlines() if line.strip()]


def requested(value: Any, label: str) -> float:
    """What a version's ``gpus`` parameter asks for, checked; ValueError names the version."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{label}: gpus must be 0, a fraction below 1, or a whole number of GPUs, not {value!r}")
    if value > 1 and not float(value).is_integer():
        raise ValueError(f"{label}: gpus above 1 must be a whole number, not {value!r}")
    return float(value)


class GpuPool:
    """Which share of each GPU the running versions hold."""

    def __init__(self, ids: Sequence[str]) -> None:
        self.ids = list(ids)
        self._used: Dict[str, float] = {gpu: 0.0 for gpu in self.ids}

    def default_request(self) -> float:
        return 1.0 if self.ids else 0.0

    def fits_ever(self, amount: float) -> bool:
        """Whether ``amount`` could be granted at all, with every GPU free."""
        return amount == 0 or (amount < 1 and bool(self.ids)) or amount <= len(self.ids)

    def free_for(self, amount: float) -> Optional[Tuple[str, ...]]:
        """The GPUs ``amount`` would be granted now, or None when they are not free; takes nothing."""
        if amount == 0 or not self.ids:
            return ()
        if amount < 1:
            for gpu in self.ids:
                if self._used[gpu] + amount <= 1 + _EPSILON and self._used[gpu] < 1 - _EPSILON:
                    return (gpu,)
            return None
        free = [gpu for gpu in self.ids if self._used[gpu] < _EPSILON]
        return tuple(free[: int(amount)]) if len(free) >= amount else None

    def acquire(self, amount: float) -> Optional[Tuple[str, ...]]:
        """The GPUs granted for ``amount``, or None when they are not free now."""
        granted = self.free_for(amount)
        for gpu in granted or ():
            self._used[gpu] = self._used[gpu] + amount if amount < 1 else 1.0
        return granted

    def release(self, granted: Sequence[str], amount: float) -> None:
        share = amount if amount < 1 else 1.0
        for gpu in granted:
            self._used[gpu] = max(self._used[gpu] - share, 0.0)

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

    def fits_ever(self, amount: float) -> bool:
        largest = self._largest()
        return amount == 0 or (amount < 1 and largest >= 1) or amount <= largest

    def free_for(self, amount: float) -> Optional[Tuple[str, ...]]:
        return ()  # the scheduler places the version where its GPUs are free

    def acquire(self, amount: float) -> Optional[Tuple[str, ...]]:
        return ()

    def release(self, granted: Sequence[str], amount: float) -> None:
        pass

    def capacity(self) -> str:
        counts = sorted(self._node_gpus(), reverse=True)
        if not counts or counts[0] == 0:
            return f"no node of {self._cluster} has a GPU"
        return f"the largest node of {self._cluster} has {counts[0]:g} (GPUs per node: {', '.join(f'{c:g}' for c in counts)})"

    def describe(self) -> str:
        total = sum(self._node_gpus())
        return f"{total:g} on the nodes of {self._cluster}, placed by its scheduler"


def visible_devices(granted: Sequence[str]) -> str:
    """The CUDA_VISIBLE_DEVICES value for ``granted``: empty hides every GPU from the version."""
    return ",".join(granted)
