"""What a running version holds on this host: its GPUs and its model_dir, none shared unasked."""
from __future__ import annotations

from typing import AbstractSet, Dict, List, Optional, Sequence, Set, Tuple

from mlpipeline.execution.gpu_placement import GpuLoad
from mlpipeline.execution.gpus import GpuPool, requested


class Resources:
    """GPUs and model dirs in use by this daemon's running versions."""

    def __init__(self, gpus: GpuPool) -> None:
        self.gpus = gpus
        self._busy_model_dirs: Set[str] = set()
        self._model_dir_owners: Dict[str, str] = {}  # model_dir -> the script whose versions use it

    def gpu_share(self, label: str, value: object) -> float:
        """What a version whose ``gpus`` parameter is ``value`` (None: not set) takes; ValueError if it is not a number of GPUs."""
        return self.gpus.default_request() if value is None else requested(value, label)

    def model_dir_busy(self, model_dir: str) -> bool:
        """Whether a running version uses ``model_dir``: versions sharing one never run at once."""
        return model_dir in self._busy_model_dirs

    def busy_model_dirs(self) -> AbstractSet[str]:
        """The model dirs running versions use."""
        return self._busy_model_dirs

    def model_dir_owner(self, model_dir: str) -> Optional[str]:
        """The script whose versions used ``model_dir`` in this session."""
        return self._model_dir_owners.get(model_dir)

    def free_gpus_for(self, share: float, memory: Optional[int] = None) -> Optional[Tuple[str, ...]]:
        """The GPU ids ``share`` GPUs (with ``memory`` bytes on each) would get now, or None while
        too few are free; takes nothing."""
        return self.gpus.free_for(share, memory)

    def gpus_now(self) -> List[GpuLoad]:
        """What each GPU holds, as the last look saw it (for messages)."""
        return self.gpus.loads()

    def take(self, share: float, model_dir: str, script: str, memory: Optional[int] = None) -> Tuple[str, ...]:
        """Take ``share`` GPUs (free, as free_gpus_for said just before) and ``model_dir``."""
        granted = self.gpus.acquire(share, memory)
        assert granted is not None, "take() after free_gpus_for() said they are free"
        self._model_dir_owners.setdefault(model_dir, script)
        self._busy_model_dirs.add(model_dir)
        return granted

    def release(self, granted: Sequence[str], share: float, model_dir: str, memory: Optional[int] = None) -> None:
        """Give back what take() gave a run; the execution loop calls it once, when the run ended."""
        self.gpus.release(granted, share, memory)
        self._busy_model_dirs.discard(model_dir)
