"""A Model base for Keras on TensorFlow: checkpoints in model_dir, exact resume, seeding, the device.

Build and compile your Keras model in :meth:`KerasModel.build`; iterate
:meth:`KerasModel.batches` in ``train_model`` (``self.model.train_on_batch(x, y)``, say). The
base keeps checkpoints with ``tf.train.Checkpoint`` and ``tf.train.CheckpointManager``, whose
index file is replaced atomically, so a kill during a save leaves the previous checkpoint in
force. It tracks the model, its optimizer and the models' random seed generators (dropout),
so a resumed run continues as the uninterrupted one would have.
"""
from __future__ import annotations

import glob
import math
import os
import shutil
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

from mlpipeline.helper import SplitDataLoader
from mlpipeline.records.files import fsync_dir
from mlpipeline._checkpointed import CheckpointedModel
from mlpipeline.script_support.data_order import StreamOrder
from mlpipeline.script_support.extras import require
from mlpipeline.utils import ExecutionModeKeys, Versions

tf = require("tensorflow", "tensorflow", "mlpipeline.tensorflow")
keras = require("keras", "tensorflow", "mlpipeline.tensorflow")

CHECKPOINT_NAME = "mlpipeline-ckpt"


class KerasDataLoader(SplitDataLoader):
    """The pipeline's DataLoader over training and test data.

    Each is a tuple of NumPy arrays of equal length, ``(x, y)``, or a finite
    ``tf.data.Dataset`` of single (unbatched) samples.
    """

    def count(self, data: Any) -> int:
        return sample_count(data)


def sample_count(data: Any) -> int:
    """How many samples ``data`` holds: arrays' length, or a dataset's known cardinality."""
    if isinstance(data, tf.data.Dataset):
        count = int(data.cardinality())
        if count < 0:
            raise ValueError("a tf.data.Dataset for mlpipeline must be finite with a known length (cardinality)")
        return count
    return len(data[0])


class KerasModel(CheckpointedModel):
    """Subclass it, create and compile ``self.model`` in :meth:`build`, train with :meth:`batches`.

    The version's ``seed`` parameter (default 0) seeds Python, NumPy and TensorFlow (through
    ``keras.utils.set_random_seed``) and orders the batches; TensorFlow's op determinism is
    turned on in the version's process. Checkpointed: every Keras model attribute with its
    optimizer and seed generators, and every ``tf.Variable`` or ``tf.Module`` attribute.
    ``clean_model_dir`` removes only mlpipeline's checkpoints, so ``allow_delete_model_dir``
    defaults to True here.
    """

    def __init__(
        self,
        versions: Versions,
        allow_delete_model_dir: bool = True,
        reset_steps: bool = False,
        checkpoint_every: int = 100,
        max_to_keep: int = 2,
    ) -> None:
        super().__init__(versions, allow_delete_model_dir, reset_steps, checkpoint_every)
        self.max_to_keep = max_to_keep
        self.device = "/CPU:0"
        self._manager: Any = None
        self._step_variable: Any = None

    def build(self, version: Dict[str, Any]) -> None:
        """Create and compile this version's model as ``self.model`` (built, e.g. with keras.Input)."""
        super().build(version)

    # -- the pipeline's hooks ------------------------------------------------------------

    def pre_execution_hook(self, version: Dict[str, Any], model_dir: str, exec_mode: str = ExecutionModeKeys.TEST) -> None:
        super().pre_execution_hook(version, model_dir, exec_mode)
        keras.utils.set_random_seed(self.seed)
        try:
            tf.config.experimental.enable_op_determinism()
        except (AttributeError, RuntimeError):
            pass
        # The GPU mlpipeline assigned is the only one visible (CUDA_VISIBLE_DEVICES).
        self.device = "/GPU:0" if tf.config.list_physical_devices("GPU") else "/CPU:0"
        self.build(version)
        self._step_variable = tf.Variable(0, dtype=tf.int64, trainable=False)
        # A save cut off half way: TensorFlow names a checkpoint, and rewrites its `checkpoint`
        # index, only once each is whole, from a `_temp` folder and a `checkpoint.tmp<hex>` file.
        for partial in glob.glob(os.path.join(model_dir, f"{CHECKPOINT_NAME}-*_temp")):
            shutil.rmtree(partial, ignore_errors=True)
        for partial in glob.glob(os.path.join(model_dir, "checkpoint.tmp*")):
            os.remove(partial)
        checkpoint = tf.train.Checkpoint(step=self._step_variable, **self._trackables())
        self._manager = tf.train.CheckpointManager(
            checkpoint, model_dir, max_to_keep=self.max_to_keep, checkpoint_name=CHECKPOINT_NAME
        )
        latest = self._manager.latest_checkpoint
        if latest:
            checkpoint.restore(latest).assert_existing_objects_matched()
            self.step = int(self._step_variable.numpy())
            self.restored_from = latest
            self.log(f"restored step {self.step} from {latest}")

    def clean_model_dir(self, model_dir: str) -> None:
        for path in glob.glob(os.path.join(model_dir, f"{CHECKPOINT_NAME}-*")) + glob.glob(os.path.join(model_dir, "checkpoint.tmp*")):
            if os.path.isdir(path):  # a save cut off half way leaves its `_temp` folder
                shutil.rmtree(path)
            else:
                os.remove(path)
        index = os.path.join(model_dir, "checkpoint")
        if os.path.exists(index):
            with open(index, encoding="utf-8") as handle:
                ours = CHECKPOINT_NAME in handle.read()
            if ours:
                os.remove(index)

    # -- what the training loop uses -----------------------------------------------------

    def batches(self, data: Any, steps: int, batch_size: Optional[int] = None, shuffle: bool = True) -> Iterator[Tuple[int, Any]]:
        """Yield ``(step, batch)`` for the next ``steps`` steps; checkpoints every ``checkpoint_every`` steps and at the end.

        ``step`` counts from 1 over the whole training, resumes included. For arrays a batch
        is a tuple of array slices; for a dataset, a batched element.
        """
        yield from self._numbered_steps(self._stream(data, self._batch_size_for(batch_size), shuffle, steps))

    def eval_batches(self, data: Any, batch_size: Optional[int] = None, limit: Optional[int] = None) -> Iterator[Any]:
        """The samples of ``data`` in order, in batches; at most ``limit`` samples."""
        size = self._batch_size_for(batch_size)
        total = sample_count(data) if limit is None else min(limit, sample_count(data))
        if isinstance(data, tf.data.Dataset):
            yield from data.take(total).batch(size)
            return
        for start in range(0, total, size):
            yield tuple(part[start : min(start + size, total)] for part in data)

    def save_checkpoint(self) -> str:
        """Save a checkpoint numbered by the step (the manager keeps the last ``max_to_keep``)."""
        assert self._manager is not None, "save_checkpoint() before pre_execution_hook()"
        self._step_variable.assign(self.step)
        path = self._manager.save(checkpoint_number=self.step)
        # TensorFlow writes without fsync: sync the new files, then the folder that names them.
        for written in [f"{path}.index", *glob.glob(f"{path}.data-*"), os.path.join(self._manager.directory, "checkpoint")]:
            with open(written, "rb") as handle:
                os.fsync(handle.fileno())
        fsync_dir(Path(self._manager.directory))
        self.saved_at = self.step
        return path

    # -- inside --------------------------------------------------------------------------------

    def _stream(self, data: Any, size: int, shuffle: bool, steps: int) -> Iterator[Any]:
        count = sample_count(data)
        if not isinstance(data, tf.data.Dataset):
            order = StreamOrder(count, size, self.seed, shuffle)
            for step in range(self.step, self.step + steps):
                indices = order.indices(step)
                yield tuple(part[indices] for part in data)
            return
        # A dataset has no random access: each epoch is the dataset shuffled with a seed of its
        # own, epochs are chained, and a resumed run skips to where the stream stood.
        start = self.step * size
        end = (self.step + steps) * size
        stream = None
        for epoch in range(start // count, math.ceil(end / count)):
            part = data.shuffle(count, seed=self.seed * 1_000_003 + epoch, reshuffle_each_iteration=False) if shuffle else data
            stream = part if stream is None else stream.concatenate(part)
        if stream is None:
            return
        yield from stream.skip(start % count).batch(size).take(steps)

    def _trackables(self) -> Dict[str, Any]:
        found: Dict[str, Any] = {}
        for name, value in vars(self).items():
            if name.startswith("_"):
                continue
            if isinstance(value, keras.Model):
                found[name] = value
                optimizer = getattr(value, "optimizer", None)
                if optimizer is not None:
                    if not optimizer.built:
                        # Built now, so that restoring fills its slots instead of waiting for them.
                        optimizer.build(value.trainable_variables)
                    found[f"{name}_optimizer"] = optimizer
                generators = [
                    attribute
                    for layer in value._flatten_layers()
                    for attribute in vars(layer).values()
                    if isinstance(attribute, keras.random.SeedGenerator)
                ]
                for index, generator in enumerate(generators):
                    found[f"{name}_seed_generator_{index}"] = generator.state.value
            elif isinstance(value, (tf.Variable, tf.Module)):
                found[name] = value
        return found
