"""Base classes a model script extends: :class:`Model` and :class:`DataLoader`.

:class:`Experiment` is release 1.1a3.post8's name for a Model, kept for its scripts.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from mlpipeline.script_support import channel, related_files
from mlpipeline.script_support.versions import Versions
from mlpipeline.utils import _INFO, ExecutionModeKeys, ModeKeys, log

__all__ = ["DataLoader", "Experiment", "Model", "SplitDataLoader"]


class _Summary:
    """The ``summery`` text a model or data loader collects for the output file."""

    # A class attribute, so subclasses whose __init__ skips super().__init__() still work.
    summery = ""

    def add_to_summery(self, text: Any) -> None:
        """Append a line to the summary written with this version's results."""
        self.summery += f"{channel.as_text(text)}\n"

    add_to_summary = add_to_summery

    @property
    def summary(self) -> str:
        return self.summery

    def log(self, message: Any, log_to_file: Any = None, *, level: Any = _INFO, **_ignored: Any) -> None:
        """Write ``message`` to the pipeline's log under the running script and version.

        ``level`` (by keyword) is a :mod:`logging` level or its name. The second argument is
        the original's ``log_to_file``, accepted and ignored like its colour modifiers:
        everything logged reaches the log file.
        """
        log(message, level)


class Model(_Summary):
    """A model script's ``MODEL``: its versions and the hooks the pipeline calls for each.

    For every version, in order: ``clean_model_dir`` (fresh runs, when allowed),
    ``pre_execution_hook``, ``get_trained_step_count``, ``train_model`` (skipped for 0 steps),
    ``evaluate_model`` on the train input and then on the test input.
    """

    # Class-level too, as in the original: a subclass whose __init__ sets only self.versions
    # and skips super().__init__() still has them.
    versions: Optional[Versions] = None
    allow_delete_model_dir = False
    reset_steps = False
    current_version: Optional[Dict[str, Any]] = None
    model_dir: Optional[str] = None
    exec_mode = ExecutionModeKeys.TEST

    def __init__(self, versions: Versions, allow_delete_model_dir: bool = False, reset_steps: bool = False) -> None:
        if not isinstance(versions, Versions):
            raise ValueError(
                f"Model needs a mlpipeline.utils.Versions object as `versions`, not {type(versions).__name__}"
            )
        self.versions = versions
        self.allow_delete_model_dir = allow_delete_model_dir
        self.reset_steps = reset_steps

    def pre_execution_hook(self, version: Dict[str, Any], model_dir: str, exec_mode: str = ExecutionModeKeys.TEST) -> None:
        """Called first for each version, with its parameters and the folder it may write to.

        The base remembers them as ``current_version``, ``model_dir`` and ``exec_mode``.
        """
        self.current_version = version
        self.model_dir = model_dir
        self.exec_mode = exec_mode

    def get_current_version(self) -> Optional[Dict[str, Any]]:
        """The parameters of the version running (what pre_execution_hook was given)."""
        return self.current_version

    def copy_related_files(self, dst_dir: str) -> List[str]:
        """Copy this script and the modules it imported from its folder into ``dst_dir``.

        Paths below the script's folder are kept (``lib/layers.py`` lands in
        ``dst_dir/lib/layers.py``). Returns the paths written.
        """
        return related_files.copy_related_files(self, dst_dir)

    def get_trained_step_count(self) -> Optional[int]:
        """Steps already trained in ``model_dir`` (None when unknown); the pipeline trains the rest."""
        return None

    def clean_model_dir(self, model_dir: str) -> None:
        """Remove what an earlier run left in ``model_dir``. The base deletes nothing, on purpose."""

    def train_model(self, input_fn: Any, steps: int) -> Any:
        """Train for ``steps`` steps on ``input_fn`` (what the DataLoader returned)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement train_model(input_fn, steps)")

    def evaluate_model(self, input_fn: Any, steps: int) -> Any:
        """Evaluate on ``input_fn``; the return value (a dict of metrics, say) is recorded."""
        raise NotImplementedError(f"{type(self).__name__} does not implement evaluate_model(input_fn, steps)")

    def report(self, step: Optional[int] = None, total: Optional[int] = None, **metrics: Any) -> None:
        """Tell the pipeline how far training is and the latest metrics (``loss=0.3``).

        Moves the version's progress bar, reaches the log (at most a line every 10 s) and
        ``mlpipeline status``; the last value of each metric goes into the version's record.
        A tensor or numpy scalar is sent as its number.
        """
        channel.report(step, total, metrics)


class DataLoader(_Summary):
    """A dataset as the pipeline sees it: inputs for training and testing and their sizes."""

    def __init__(self, **kwargs: Any) -> None:
        pass

    def get_train_input(self, mode: str = ModeKeys.TRAIN, **kwargs: Any) -> Any:
        """The training input; ``mode`` is ModeKeys.TRAIN for training, EVALUATE for evaluation."""
        raise NotImplementedError(f"{type(self).__name__} does not implement get_train_input")

    def get_test_input(self, **kwargs: Any) -> Any:
        """The test input."""
        raise NotImplementedError(f"{type(self).__name__} does not implement get_test_input")

    def get_dataloader_summery(self, **kwargs: Any) -> str:
        """What add_to_summery() collected (the original's name; the pipeline never needed it)."""
        return self.summery

    def get_train_sample_count(self) -> int:
        """Number of training samples; sets the step count with BATCH_SIZE and EPOC_COUNT."""
        raise NotImplementedError(f"{type(self).__name__} does not implement get_train_sample_count")

    def get_test_sample_count(self) -> int:
        """Number of test samples."""
        raise NotImplementedError(f"{type(self).__name__} does not implement get_test_sample_count")


class SplitDataLoader(DataLoader):
    """A DataLoader over a training input and a test input given whole; subclasses count samples."""

    def __init__(self, train: Any, test: Any) -> None:
        self.train = train
        self.test = test

    def get_train_input(self, mode: str = ModeKeys.TRAIN, **kwargs: Any) -> Any:
        return self.train

    def get_test_input(self, **kwargs: Any) -> Any:
        return self.test

    def get_train_sample_count(self) -> int:
        return self.count(self.train)

    def get_test_sample_count(self) -> int:
        return self.count(self.test)

    def count(self, data: Any) -> int:
        """How many samples ``data`` holds."""
        return len(data)


class Experiment(Model):
    """Release 1.1a3.post8's Model: a script sets ``EXPERIMENT`` to one.

    Its hooks are ``train_loop``, ``evaluate_loop`` and ``clean_experiment_dir``, its folder
    ``experiment_dir``, and before the first hook its script and the modules it imported
    from its folder are copied into that folder, as that release did.
    """

    def __init__(self, versions: Versions, allow_delete_experiment_dir: bool = False, reset_steps: bool = False) -> None:
        super().__init__(versions, allow_delete_model_dir=allow_delete_experiment_dir, reset_steps=reset_steps)

    @property
    def allow_delete_experiment_dir(self) -> bool:
        return self.allow_delete_model_dir

    @allow_delete_experiment_dir.setter
    def allow_delete_experiment_dir(self, value: bool) -> None:
        self.allow_delete_model_dir = value

    @property
    def experiment_dir(self) -> Optional[str]:
        """The folder this version may write to (``model_dir``)."""
        return self.model_dir

    @experiment_dir.setter
    def experiment_dir(self, value: Optional[str]) -> None:
        self.model_dir = value

    def pre_execution_hook(self, version: Dict[str, Any], experiment_dir: str, exec_mode: str = ExecutionModeKeys.TEST) -> None:
        super().pre_execution_hook(version, experiment_dir, exec_mode)

    def clean_experiment_dir(self, experiment_dir: str) -> None:
        """Remove what an earlier run left in ``experiment_dir``. The base deletes nothing."""

    def train_loop(self, input_fn: Any, steps: int) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not implement train_loop(input_fn, steps)")

    def evaluate_loop(self, input_fn: Any, steps: int) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not implement evaluate_loop(input_fn, steps)")

    def clean_model_dir(self, model_dir: str) -> None:
        self.clean_experiment_dir(model_dir)

    def train_model(self, input_fn: Any, steps: int) -> Any:
        return self.train_loop(input_fn, steps)

    def evaluate_model(self, input_fn: Any, steps: int) -> Any:
        return self.evaluate_loop(input_fn, steps)
