"""A Model base for PyTorch: checkpoints in model_dir, exact resume, seeding, the device it was given.

The training loop stays yours. Build your modules and optimizers in :meth:`TorchModel.build`;
iterate :meth:`TorchModel.batches` in ``train_model``, which hands you the batches of the steps
still to train, already on the device, and checkpoints every ``checkpoint_every`` steps and at
the end. A version cut off and resumed with ``mlpipeline -r -u`` restores the last checkpoint
(modules, optimizers, schedulers, random states) and sees the same batches the uninterrupted
run would have seen, so on the CPU it ends with the same weights.
"""
from __future__ import annotations

import glob
import os
import random
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

from mlpipeline.helper import SplitDataLoader
from mlpipeline.records.files import fsync_dir
from mlpipeline._checkpointed import CheckpointedModel
from mlpipeline.script_support.data_order import StreamOrder
from mlpipeline.script_support.extras import require
from mlpipeline.utils import ExecutionModeKeys

torch = require("torch", "torch", "mlpipeline.pytorch")

CHECKPOINT_FILE = "mlpipeline-checkpoint.pt"


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's (when installed) and torch's random generators."""
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy

        numpy.random.seed(seed % 2**32)
    except ImportError:
        pass


def random_states() -> Dict[str, Any]:
    """Python's, NumPy's (when installed), torch's and CUDA's (when in use) random states."""
    states: Dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    try:
        import numpy

        states["numpy"] = numpy.random.get_state()
    except ImportError:
        pass
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_random_states(states: Dict[str, Any]) -> None:
    """Put back what :func:`random_states` took."""
    random.setstate(states["python"])
    torch.set_rng_state(states["torch"].cpu())
    if "numpy" in states:
        import numpy

        numpy.random.set_state(states["numpy"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([state.cpu() for state in states["cuda"]])


class TorchDataLoader(SplitDataLoader):
    """The pipeline's DataLoader over a torch Dataset (or DataLoader) for training and one for testing."""

    def count(self, data: Any) -> int:
        return len(_dataset_of(data))


def _dataset_of(data: Any) -> Any:
    return data.dataset if isinstance(data, torch.utils.data.DataLoader) else data


class StepSampler(torch.utils.data.Sampler):
    """Batches of sample indices for steps ``first`` to ``first + count - 1`` of a StreamOrder."""

    def __init__(self, order: StreamOrder, first: int, count: int) -> None:
        self.order, self.first, self.count = order, first, count

    def __iter__(self) -> Iterator[list]:
        for step in range(self.first, self.first + self.count):
            yield self.order.indices(step)

    def __len__(self) -> int:
        return self.count


class TorchModel(CheckpointedModel):
    """Subclass it, build your modules in :meth:`build`, train with :meth:`batches`.

    Every attribute with ``state_dict()`` and ``load_state_dict()`` (modules, optimizers,
    learning-rate schedulers, grad scalers) is checkpointed. The version's ``seed`` parameter
    (default 0) seeds Python, NumPy and torch, and orders the batches. ``clean_model_dir``
    removes only mlpipeline's checkpoint, so ``allow_delete_model_dir`` defaults to True here.
    """

    device: Any = torch.device("cpu")  # the version's own from pre_execution_hook on

    # -- what a script implements ------------------------------------------------------

    def build(self, version: Dict[str, Any]) -> None:
        """Create this version's modules and optimizers as attributes (``self.net = ...``)."""
        super().build(version)

    # -- the pipeline's hooks ------------------------------------------------------------

    def pre_execution_hook(self, version: Dict[str, Any], model_dir: str, exec_mode: str = ExecutionModeKeys.TEST) -> None:
        super().pre_execution_hook(version, model_dir, exec_mode)
        seed_everything(self.seed)
        # The GPU mlpipeline assigned is the only one visible (CUDA_VISIBLE_DEVICES): it is cuda:0.
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.build(version)
        for module in self._stateful().values():
            if isinstance(module, torch.nn.Module):
                module.to(self.device)
        self._restore()

    def clean_model_dir(self, model_dir: str) -> None:
        for path in [os.path.join(model_dir, CHECKPOINT_FILE)] + glob.glob(os.path.join(model_dir, f".{CHECKPOINT_FILE}.*")):
            if os.path.exists(path):
                os.remove(path)

    # -- what the training loop uses -----------------------------------------------------

    def batches(
        self, data: Any, steps: int, batch_size: Optional[int] = None, shuffle: bool = True, num_workers: int = 0
    ) -> Iterator[Tuple[int, Any]]:
        """Yield ``(step, batch)`` for the next ``steps`` steps, batches on ``self.device``.

        ``step`` counts from 1 over the whole training, resumes included. A checkpoint is
        saved every ``checkpoint_every`` steps and after the last one.
        """
        dataset = _dataset_of(data)
        collate = data.collate_fn if isinstance(data, torch.utils.data.DataLoader) else None
        size = self._batch_size_for(batch_size)
        order = StreamOrder(len(dataset), size, self.seed, shuffle)
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_sampler=StepSampler(order, self.step, steps),
            collate_fn=collate,
            num_workers=num_workers,
            # A generator of its own: a DataLoader draws a seed when it starts, which from the
            # global generator would make a resumed run's random numbers differ from here on.
            generator=torch.Generator().manual_seed(self.seed + self.step),
        )
        yield from self._numbered_steps(self.to_device(batch) for batch in loader)

    def eval_batches(self, data: Any, batch_size: Optional[int] = None, limit: Optional[int] = None) -> Iterator[Any]:
        """The samples of ``data`` in order, in batches on ``self.device``; at most ``limit`` samples."""
        dataset = _dataset_of(data)
        if limit is not None:
            dataset = torch.utils.data.Subset(dataset, range(min(limit, len(dataset))))
        size = self._batch_size_for(batch_size)
        for batch in torch.utils.data.DataLoader(dataset, batch_size=size, shuffle=False):
            yield self.to_device(batch)

    def to_device(self, batch: Any) -> Any:
        """``batch`` (tensors in tuples, lists or dicts) moved to ``self.device``."""
        if isinstance(batch, torch.Tensor):
            return batch.to(self.device)
        if isinstance(batch, (list, tuple)):
            return type(batch)(self.to_device(item) for item in batch)
        if isinstance(batch, dict):
            return {key: self.to_device(value) for key, value in batch.items()}
        return batch

    def save_checkpoint(self) -> str:
        """Write the checkpoint atomically: a kill during the save leaves the previous one whole."""
        assert self.model_dir is not None, "save_checkpoint() before pre_execution_hook()"
        state = {
            "step": self.step,
            "seed": self.seed,
            "objects": {name: obj.state_dict() for name, obj in self._stateful().items()},
            "random": random_states(),
        }
        target = os.path.join(self.model_dir, CHECKPOINT_FILE)
        handle, temporary = tempfile.mkstemp(dir=self.model_dir, prefix=f".{CHECKPOINT_FILE}.")
        try:
            with os.fdopen(handle, "wb") as stream:
                torch.save(state, stream)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, target)
            fsync_dir(Path(self.model_dir))
            self.saved_at = self.step
        except BaseException:
            if os.path.exists(temporary):
                os.remove(temporary)
            raise
        return target

    # -- inside ------------------------------------------------------------------------------

    def _stateful(self) -> Dict[str, Any]:
        return {
            name: value
            for name, value in vars(self).items()
            if callable(getattr(value, "state_dict", None)) and callable(getattr(value, "load_state_dict", None))
        }

    def _restore(self) -> None:
        assert self.model_dir is not None
        # Temporary files of a save that was cut off are never a checkpoint.
        for leftover in glob.glob(os.path.join(self.model_dir, f".{CHECKPOINT_FILE}.*")):
            os.remove(leftover)
        path = os.path.join(self.model_dir, CHECKPOINT_FILE)
        if not os.path.exists(path):
            return
        state = torch.load(path, map_location=self.device, weights_only=False)
        objects = self._stateful()
        for name, saved in state["objects"].items():
            if name in objects:
                objects[name].load_state_dict(saved)
        restore_random_states(state["random"])
        self.step = int(state["step"])
        self.restored_from = path
        self.log(f"restored step {self.step} from {path}")
