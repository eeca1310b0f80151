"""Which GPUs a version gets, on plain data: what each GPU holds of this daemon's versions
(shares, memory), what other processes hold on it (from NVML, gpu_usage.py), and what the
version asks for (``gpus``, ``gpu_memory``). A GPU whose memory other processes hold beyond
``gpu_busy_memory`` of it gets no new version; versions that state ``gpu_memory`` are packed
by it, several on one GPU. The pool (gpus.py) keeps the state; this decides.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

_EPSILON = 1e-9

_UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
    "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40,
}  # fmt: skip
_MAX_BYTES = 2**50
"""A PiB: past any GPU's memory, and a number an int holds (1e400 GB is infinity as a float)."""
_MEMORY = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*")


@dataclass(frozen=True)
class GpuLoad:
    """One GPU as the placement sees it."""

    id: str
    share_used: float = 0.0  # the shares (fractional ``gpus``) this daemon's versions hold on it
    whole: bool = False  # a version of this daemon holds it whole
    reserved_bytes: int = 0  # the ``gpu_memory`` this daemon's versions on it stated
    total_bytes: Optional[int] = None  # None: not known (no NVML, no nvidia-smi)
    others_bytes: int = 0  # what processes that are not this daemon's versions hold on it
    ours_bytes: int = 0  # what this daemon's versions hold on it now, stated or not

    def busy(self, busy_share: float) -> bool:
        """Whether other processes hold more of it than ``busy_share``: no new version goes there."""
        return self.total_bytes is not None and self.others_bytes > busy_share * self.total_bytes

    def free_bytes(self) -> Optional[int]:
        if self.total_bytes is None:
            return None
        # A version that stated no gpu_memory holds what it holds; one that did may not have
        # taken it all yet. The larger of the two sums is an estimate, low where both kinds
        # share the GPU (what is held is not told apart by version).
        return self.total_bytes - self.others_bytes - max(self.reserved_bytes, self.ours_bytes)


def memory_bytes(value: Any, label: str) -> Optional[int]:
    """A version's ``gpu_memory`` in bytes: a number of bytes, or text such as "20GB", "512 MiB"
    (GB is 10^9 bytes, GiB 2^30; a bare G is GiB, as nvidia-smi counts); None when not set.
    ValueError names the version."""
    if value is None:
        return None
    amount: Optional[float] = None
    if isinstance(value, int) and not isinstance(value, bool) and value > _MAX_BYTES:
        amount = math.inf  # 10**400 is no float
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        amount = float(value) if value == value else None  # NaN: no amount
    elif isinstance(value, str):
        match = _MEMORY.fullmatch(value)
        if match is not None and match.group(2).lower() in _UNITS:
            amount = float(match.group(1)) * _UNITS[match.group(2).lower()]
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    if amount is None or not amount >= 1:
        raise ValueError(
            f'{label}: gpu_memory must be an amount such as "20GB", "512MiB" or a number of bytes (at least 1), '
            f"in B, KB, MB, GB, TB, KiB, MiB, GiB or TiB (K, M, G and T are the binary ones), not {shown}"
        )
    if amount > _MAX_BYTES:
        raise ValueError(f"{label}: gpu_memory {shown} is more than any GPU has ({shown_bytes(_MAX_BYTES)} at most)")
    return int(amount)


def shown_bytes(amount: int) -> str:
    return f"{amount / 2**30:.1f} GiB"


def place(loads: Sequence[GpuLoad], share: float, memory: Optional[int], busy_share: float) -> Optional[Tuple[str, ...]]:
    """The GPUs a version asking for ``share`` GPUs (0, a fraction, or a whole number) and
    ``memory`` bytes on each gets now, or None when it must wait.

    With ``memory``, it goes where that much is free (what the GPU has, less what others and
    this daemon's versions hold or stated), the fullest GPU that fits first, so that small
    versions pack onto one GPU and leave others whole; a share below 1 then counts as one GPU.
    Without, as before: a fraction shares a GPU with other fractions, a whole number takes
    GPUs no version of this daemon uses. A busy GPU takes neither.
    """
    if share == 0 and memory is None:
        return ()
    open_gpus = [load for load in loads if not load.busy(busy_share) and not load.whole]
    if memory is not None:
        count = max(int(share), 1)
        fits = [
            load for load in open_gpus
            if (load.free_bytes() is None or load.free_bytes() >= memory)  # type: ignore[operator]
            and load.share_used < 1 - _EPSILON
        ]  # fmt: skip
        fits.sort(key=lambda load: (load.free_bytes() is None, load.free_bytes() or 0))
        return tuple(load.id for load in fits[:count]) if len(fits) >= count else None
    if share < 1:
        for load in open_gpus:
            if load.share_used + share <= 1 + _EPSILON and load.share_used < 1 - _EPSILON:
                return (load.id,)
        return None
    free = [load.id for load in open_gpus if load.share_used < _EPSILON and load.reserved_bytes == 0]
    return tuple(free[: int(share)]) if len(free) >= share else None


def never_fits(loads: Sequence[GpuLoad], share: float, memory: Optional[int]) -> Optional[str]:
    """Why a version asking for ``share`` GPUs and ``memory`` bytes on each can never run on
    these GPUs, or None: said at once, not waited for."""
    if memory is None:
        return None
    sizes = sorted((load.total_bytes for load in loads if load.total_bytes is not None), reverse=True)
    count = max(int(share), 1)
    if len(sizes) >= count and sizes[count - 1] < memory:
        largest = ", ".join(shown_bytes(size) for size in sizes[:count])
        return f"asks for {shown_bytes(memory)} of GPU memory on {count} GPU{'s' if count > 1 else ''}; the largest here have {largest}"
    return None


def holders(load: GpuLoad, processes: Sequence[Tuple[int, int]]) -> List[str]:
    """Who holds a busy GPU, for the log and status: ``pid 4242 (20.1 GiB)`` each."""
    return [f"pid {pid} ({shown_bytes(amount)})" for pid, amount in processes]
