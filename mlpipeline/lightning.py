"""A Model base for PyTorch Lightning: your LightningModule, trained by a Trainer for the
version's steps, checkpointed by Lightning's own ModelCheckpoint in model_dir and resumed
exactly from it.

Implement :meth:`LightningModel.build_module` (and give the versions a
:class:`LightningDataLoader` of your LightningDataModule). What the module logs with
``self.log`` reaches ``report()``: the progress bar, the metric history, ``compare``, ``plot``
and the trackers. A version cut off at step k and resumed with ``mlpipeline -r -u`` goes on
from the last checkpoint (``ckpt_path``) at step k + 1, with the optimizer's state, the random
states and the very batches an uninterrupted run would have trained on.

Lightning sees the whole training as one epoch of the version's steps: the batches come in
mlpipeline's order (epochs of the dataset laid end to end, shuffled by the version's
``seed``), which is what lets a run resumed mid-epoch see the batches it would have seen.
Use step-based learning-rate schedules (``"interval": "step"``).
"""
from __future__ import annotations

import logging
import os
import warnings
from typing import Any, Dict, Optional

from mlpipeline.helper import DataLoader, Model
from mlpipeline.script_support.checkpoint_request import checkpoint_asked
from mlpipeline.script_support.data_order import StreamOrder
from mlpipeline.script_support.extras import require
from mlpipeline.script_support.failures import ExplainedFailure
from mlpipeline.utils import ExecutionModeKeys

torch = require("torch", "torch", "mlpipeline.lightning")
lightning = require("lightning", "lightning", "mlpipeline.lightning")
from lightning.pytorch import Callback, LightningDataModule, LightningModule, Trainer  # noqa: E402
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402
from lightning.pytorch.plugins.environments import LightningEnvironment  # noqa: E402

from mlpipeline.pytorch import StepSampler, random_states, restore_random_states  # noqa: E402

CHECKPOINT_DIR = "lightning"
"""In model_dir: Lightning's checkpoints (``last.ckpt`` is the one a resume starts from)."""
LAST = "last.ckpt"

# Lightning's start-up lines ("GPU available: False", "You are using a CUDA device ...") are
# not the version's output; its warnings are, but for two about how mlpipeline runs it: on a
# Slurm node without srun (mlpipeline's job runs the version), and a deprecation inside
# Lightning itself that torch 2.13 raises at every step.
for _name in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric"):
    logging.getLogger(_name).setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message="The `srun` command is available on your system but is not used")
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


class CheckpointUnreadable(ExplainedFailure):
    """model_dir's last.ckpt cannot be loaded: the version fails saying so, and nothing is deleted."""


class LightningDataLoader(DataLoader):
    """The pipeline's DataLoader over a LightningDataModule (made by ``make_datamodule``, once
    in each version's process): its train dataloader for training, its test (else val)
    dataloader for the test evaluation."""

    def __init__(self, make_datamodule: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._make = make_datamodule
        self._module: Optional[LightningDataModule] = None

    @property
    def datamodule(self) -> LightningDataModule:
        if self._module is None:
            self._module = self._make()
            self._module.prepare_data()
            self._module.setup("fit")
        return self._module

    def get_train_input(self, mode: str = ExecutionModeKeys.TRAIN, **kwargs: Any) -> Any:
        return self.datamodule.train_dataloader()

    def get_test_input(self, **kwargs: Any) -> Any:
        module = self.datamodule
        if _overrides(module, "test_dataloader", LightningDataModule):
            module.setup("test")
            return module.test_dataloader()
        return module.val_dataloader()

    def get_train_sample_count(self) -> int:
        return len(self.datamodule.train_dataloader().dataset)

    def get_test_sample_count(self) -> int:
        return len(self.get_test_input().dataset)


class LightningModel(Model):
    """Subclass it and implement :meth:`build_module`; ``train_model`` and ``evaluate_model``
    are done for you. ``checkpoint_every`` steps (and at the end, and when a Slurm job is
    warned of its end) Lightning's ModelCheckpoint writes ``model_dir/lightning/last.ckpt``.
    ``trainer_options`` go to every Trainer (``precision``, ``gradient_clip_val`` ...)."""

    def __init__(
        self,
        versions: Any,
        allow_delete_model_dir: bool = True,
        reset_steps: bool = False,
        checkpoint_every: int = 100,
        trainer_options: Optional[Dict[str, Any]] = None,
    ) -> None:
        super().__init__(versions, allow_delete_model_dir=allow_delete_model_dir, reset_steps=reset_steps)
        self.checkpoint_every = checkpoint_every
        self.trainer_options = dict(trainer_options or {})
        self.module: Optional[LightningModule] = None
        self.seed = 0

    def build_module(self, version: Dict[str, Any]) -> LightningModule:
        """This version's LightningModule (a script implements it)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement build_module(version)")

    # -- the pipeline's hooks ------------------------------------------------------------

    def pre_execution_hook(self, version: Dict[str, Any], model_dir: str, exec_mode: str = ExecutionModeKeys.TEST) -> None:
        super().pre_execution_hook(version, model_dir, exec_mode)
        self.seed = int(version.get("seed", 0))
        lightning.seed_everything(self.seed, verbose=False)
        self.module = self.build_module(version)

    def get_trained_step_count(self) -> Optional[int]:
        path = self._last_checkpoint()
        if path is None:
            return None
        try:
            # Mapped, not read: only the step is wanted of what may be gigabytes of weights.
            return int(torch.load(path, map_location="cpu", weights_only=False, mmap=True)["global_step"])
        except Exception as exc:  # noqa: BLE001 - any way a file can fail to be a checkpoint
            raise CheckpointUnreadable(
                f"{path} is not a checkpoint Lightning can read ({type(exc).__name__}: {str(exc)[:300]}); "
                "move it away to train this version from the start"
            ) from None

    def clean_model_dir(self, model_dir: str) -> None:
        folder = os.path.join(model_dir, CHECKPOINT_DIR)
        for name in os.listdir(folder) if os.path.isdir(folder) else ():
            if name.endswith(".ckpt"):
                os.remove(os.path.join(folder, name))

    def train_model(self, input_fn: Any, steps: int) -> None:
        assert self.module is not None and self.model_dir is not None, "train_model() before pre_execution_hook()"
        done = self.get_trained_step_count() or 0
        total = done + steps
        loader = _ResumableLoader(input_fn, self._batch_size(input_fn), self.seed, first_step=done, total_steps=total)
        checkpoints = ModelCheckpoint(
            dirpath=os.path.join(self.model_dir, CHECKPOINT_DIR), save_last=True, save_top_k=0,
            every_n_train_steps=self.checkpoint_every, save_on_train_epoch_end=True,
        )
        trainer = self._trainer(max_steps=total, max_epochs=1, callbacks=[checkpoints, _Reporter(self, total), _RandomStates()])
        # Our own checkpoint, which holds the random states (NumPy's is no tensor): not only weights.
        trainer.fit(self.module, train_dataloaders=loader, ckpt_path=self._last_checkpoint(), weights_only=False)
        trainer.save_checkpoint(os.path.join(self.model_dir, CHECKPOINT_DIR, LAST))  # the end, whatever the cadence

    def evaluate_model(self, input_fn: Any, steps: int) -> Dict[str, float]:
        """The module's test_step (else validation_step) over the first ``steps`` samples of
        ``input_fn`` in order; what they log, averaged by Lightning."""
        assert self.module is not None
        loader = _in_order(input_fn, self._batch_size(input_fn))
        batches = max(1, -(-steps // (loader.batch_size or 1)))
        if _overrides(self.module, "test_step", LightningModule):
            found = self._trainer(limit_test_batches=batches).test(self.module, dataloaders=loader, verbose=False)
        else:
            found = self._trainer(limit_val_batches=batches).validate(self.module, dataloaders=loader, verbose=False)
        return {name: float(value) for results in found for name, value in results.items()}

    # -- inside ------------------------------------------------------------------------------

    def _trainer(self, **options: Any) -> Trainer:
        settings: Dict[str, Any] = {
            # The GPU mlpipeline gave the version is the only one it sees (CUDA_VISIBLE_DEVICES).
            "accelerator": "auto", "devices": 1,
            "logger": False, "enable_progress_bar": False, "enable_model_summary": False,
            "enable_checkpointing": "callbacks" in options, "num_sanity_val_steps": 0,
            # Not Lightning's Slurm handling: mlpipeline's job passes the warning on, and the
            # daemon, not Lightning, requeues.
            "plugins": [LightningEnvironment()],
        }
        settings.update(self.trainer_options)
        settings.update(options)
        return Trainer(**settings)

    def _last_checkpoint(self) -> Optional[str]:
        path = os.path.join(self.model_dir or "", CHECKPOINT_DIR, LAST)
        return path if self.model_dir and os.path.exists(path) else None

    def _batch_size(self, loader: Any) -> int:
        return int((self.current_version or {}).get("batch_size") or getattr(loader, "batch_size", None) or 1)


def _in_order(loader: Any, batch_size: int) -> Any:
    """``loader`` without its shuffling (the train dataloader is evaluated too)."""
    if not isinstance(loader, torch.utils.data.DataLoader):
        return torch.utils.data.DataLoader(loader, batch_size=batch_size)
    if isinstance(loader.sampler, torch.utils.data.SequentialSampler) and loader.batch_size:
        return loader
    return torch.utils.data.DataLoader(
        loader.dataset, batch_size=loader.batch_size or batch_size, collate_fn=loader.collate_fn, num_workers=loader.num_workers
    )


def _overrides(instance: Any, name: str, base: type) -> bool:
    return getattr(type(instance), name, None) is not getattr(base, name, None)


class _WholeTrainingSampler(StepSampler):
    """The batches from the step the run resumes at, its length the whole training's, so that
    Lightning's count of the one epoch goes on across a resume."""

    def __init__(self, order: StreamOrder, first: int, total: int) -> None:
        super().__init__(order, first, total - first)
        self.total = total

    def __len__(self) -> int:
        return self.total


class _ResumableLoader(torch.utils.data.DataLoader):
    """The user's train dataloader (its dataset, collate_fn and workers) in mlpipeline's batch
    order, from the step the run resumes at. Stateful to Lightning, which then trusts it to go
    on where the checkpoint stopped: it starts at the checkpoint's step, known before fit."""

    def __init__(self, loader: Any, batch_size: int, seed: int, first_step: int, total_steps: int) -> None:
        dataset = loader.dataset if isinstance(loader, torch.utils.data.DataLoader) else loader
        extra: Dict[str, Any] = {}
        if isinstance(loader, torch.utils.data.DataLoader):
            extra = {"collate_fn": loader.collate_fn, "num_workers": loader.num_workers, "pin_memory": loader.pin_memory}
        order = StreamOrder(len(dataset), batch_size, seed)
        super().__init__(
            dataset, batch_sampler=_WholeTrainingSampler(order, first_step, total_steps),
            generator=torch.Generator().manual_seed(seed + first_step), **extra,
        )
        self.first_step = first_step

    def state_dict(self) -> Dict[str, Any]:
        return {"first_step": self.first_step}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        pass  # where to start was known from the checkpoint's global_step before fit


class _Reporter(Callback):
    """What the module logged, to report() after each step; a checkpoint when one is asked."""

    def __init__(self, model: LightningModel, total: int) -> None:
        self.model, self.total = model, total

    def on_train_batch_end(self, trainer: Trainer, module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        metrics = {name: float(value) for name, value in trainer.callback_metrics.items() if _is_number(value)}
        self.model.report(step=trainer.global_step, total=self.total, **metrics)
        if checkpoint_asked() and self.model.model_dir:
            # A Slurm job's time limit is near: saved now, so that little is trained again.
            trainer.save_checkpoint(os.path.join(self.model.model_dir, CHECKPOINT_DIR, LAST))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) or (isinstance(value, torch.Tensor) and value.numel() == 1)


class _RandomStates(Callback):
    """The random states in the checkpoint, put back on resume: dropout and augmentation draw
    what an uninterrupted run would have drawn."""

    def state_dict(self) -> Dict[str, Any]:
        return random_states()

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        restore_random_states(state)
