"""Base classes a model script extends: :class:`Model` and :class:`DataLoader`."""
from __future__ import annotations

from typing import Any, Dict, Optional

from mlpipeline.script_support import channel
from mlpipeline.script_support.versions import Versions
from mlpipeline.utils import ExecutionModeKeys, ModeKeys

__all__ = ["DataLoader", "Model", "SplitDataLoader"]


class _Summary:
    """The ``summery`` text a model or data loader collects for the output file."""

    # A class attribute, so subclasses whose __init__ skips super().__init__() still work.
    summery = ""

    def add_to_summery(self, text: Any) -> None:
        """Append a line to the summary written with this version's results."""
        self.summery += f"{text}\n"

    add_to_summary = add_to_summery

    @property
    def summary(self) -> str:
        return self.summery

    def log(self, message: Any, level: str = "INFO") -> None:
        """Write ``message`` to the pipeline's log under the running script and version."""
        channel.log(str(message), level)


class Model(_Summary):
    """A model script's ``MODEL``: its versions and the hooks the pipeline calls for each.

    For every version, in order: ``clean_model_dir`` (fresh runs, when allowed),
    ``pre_execution_hook``, ``get_trained_step_count``, ``train_model`` (skipped for 0 steps),
    ``evaluate_model`` on the train input and then on the test input.
    """

    def __init__(self, versions: Versions, allow_delete_model_dir: bool = False, reset_steps: bool = False) -> None:
        if not isinstance(versions, Versions):
            raise ValueError(
                f"Model needs a mlpipeline.utils.Versions object as `versions`, not {type(versions).__name__}"
            )
        self.versions = versions
        self.allow_delete_model_dir = allow_delete_model_dir
        self.reset_steps = reset_steps
        self.current_version: Optional[Dict[str, Any]] = None
        self.model_dir: Optional[str] = None
        self.exec_mode = ExecutionModeKeys.TEST

    def pre_execution_hook(self, version: Dict[str, Any], model_dir: str, exec_mode: str = ExecutionModeKeys.TEST) -> None:
        """Called first for each version, with its parameters and the folder it may write to.

        The base remembers them as ``current_version``, ``model_dir`` and ``exec_mode``.
        """
        self.current_version = version
        self.model_dir = model_dir
        self.exec_mode = exec_mode

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
        channel.send({"type": "report", "step": channel.to_plain(step), "total": channel.to_plain(total), "metrics": channel.to_plain(metrics)})


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
