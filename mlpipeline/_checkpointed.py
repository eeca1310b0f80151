"""What the framework Model bases (pytorch.py, tensorflow.py) share: the step count over the
whole training, the version's seed, the checkpoint cadence, and where a resume began."""
from __future__ import annotations

import os
from typing import Any, Dict, Iterable, Iterator, Optional, Tuple

from mlpipeline.helper import Model
from mlpipeline.script_support.checkpoint_request import checkpoint_asked
from mlpipeline.script_support.failures import ExplainedFailure
from mlpipeline.script_support.versions import Versions
from mlpipeline.utils import ExecutionModeKeys

DEFAULT_SEED = 0


class MissingBuild(ExplainedFailure, NotImplementedError):
    """A model of a framework base whose script defines no ``build``: nothing of ours to debug."""


def _where_defined(cls: type) -> str:
    """``file:line: `` of the class statement of ``cls``, where Python can tell."""
    import inspect

    try:
        lines = inspect.getsourcelines(cls)[1]
        return f"{os.path.basename(inspect.getsourcefile(cls) or '?')}:{lines}: "
    except (OSError, TypeError):
        return ""


class CheckpointedModel(Model):
    """A Model that trains in numbered steps and checkpoints every ``checkpoint_every`` of them.

    A framework base implements :meth:`save_checkpoint` and, in its ``pre_execution_hook``
    after this one's, builds the version and restores the last checkpoint, setting ``step``
    and ``restored_from``.
    """

    def __init__(
        self,
        versions: Versions,
        allow_delete_model_dir: bool = True,
        reset_steps: bool = False,
        checkpoint_every: int = 100,
    ) -> None:
        super().__init__(versions, allow_delete_model_dir=allow_delete_model_dir, reset_steps=reset_steps)
        self.checkpoint_every = checkpoint_every
        self.step = 0
        self.seed = DEFAULT_SEED
        self.restored_from: Optional[str] = None
        self.saved_at: Optional[int] = None  # the step of the last checkpoint this run saved
        self.stepped = False  # whether this run trained a step

    def build(self, version: Dict[str, Any]) -> None:
        """Create this version's model (a script implements it)."""
        raise MissingBuild(_where_defined(type(self)) + f"{type(self).__name__} has no build(version): define it to create the "
                           "version's model (and its optimizer) from its parameters; see docs/frameworks.md")

    def pre_execution_hook(self, version: Dict[str, Any], model_dir: str, exec_mode: str = ExecutionModeKeys.TEST) -> None:
        super().pre_execution_hook(version, model_dir, exec_mode)
        self.seed = int(version.get("seed", DEFAULT_SEED))
        self.step = 0
        self.restored_from = None
        self.saved_at = None
        self.stepped = False

    def get_trained_step_count(self) -> Optional[int]:
        """The step of the checkpoint restored, or saved since (a run paused at an early-stopping
        rung is asked after it trained, to know that it can resume); None when there is none."""
        if self.saved_at is not None:
            return self.saved_at
        return self.step if self.restored_from else None

    def save_checkpoint(self) -> str:
        """Save the training state at ``step``; returns where."""
        raise NotImplementedError

    def save_unsaved_steps(self) -> None:
        """Save the steps trained since the last checkpoint, if any: mlpipeline calls it once
        train_model has returned, so that a loop left early (``break``, the script's own early
        stopping) keeps what it trained, as a loop run to its end does."""
        if self.stepped and self.saved_at != self.step:
            self.save_checkpoint()

    def _batch_size_for(self, asked: Optional[int] = None) -> int:
        """``asked``, else the version's ``batch_size``, else 1."""
        return int(asked or (self.current_version or {}).get("batch_size") or 1)

    def _numbered_steps(self, batches: Iterable[Any]) -> Iterator[Tuple[int, Any]]:
        """``(step, batch)`` for each batch, with a checkpoint every ``checkpoint_every`` steps
        and after the last."""
        for batch in batches:
            self.step += 1
            self.stepped = True
            yield self.step, batch
            # Asked (a Slurm job's time limit is near): saved now, so that little is trained again.
            if self.step % self.checkpoint_every == 0 or checkpoint_asked():
                self.save_checkpoint()
        self.save_checkpoint()
