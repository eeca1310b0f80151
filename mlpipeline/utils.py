"""The original package's utilities for model scripts: versions, mode keys, logging."""
from __future__ import annotations

import os
import sys
from typing import Any, List, Optional

from mlpipeline.script_support import channel, related_files
from mlpipeline.script_support.checkpoint_request import checkpoint_asked
from mlpipeline.script_support.metrics import Metric, MetricContainer
from mlpipeline.script_support.versions import VersionParameters, Versions, version_parameters

__all__ = [
    "ExecutionModeKeys",
    "Metric",
    "MetricContainer",
    "ModeKeys",
    "VersionParameters",
    "Versions",
    "add_script_dir_to_PATH",
    "checkpoint_asked",
    "console_colors",
    "copy_related_files",
    "log",
    "version_parameters",
]


class ExecutionModeKeys:
    """What the pipeline is doing: a real run (TRAIN) or a test-mode dry run (TEST)."""

    TRAIN = "Train"
    TEST = "Test"


class ModeKeys:
    """What an input is for, passed to ``DataLoader.get_train_input(mode=...)``.

    The values are the original's. EVALUATE equals ExecutionModeKeys.TEST: the original
    asked for the evaluation input with ``mode=ExecutionModeKeys.TEST``, so scripts test
    for either.
    """

    TRAIN = "Train"
    PREDICT = "Predict"
    EVALUATE = ExecutionModeKeys.TEST


class console_colors:  # noqa: N801 - original API name
    """ANSI codes scripts may use in messages; mlpipeline strips them before writing files.

    The original's spellings (MEGENTA_FG, MEGENTA_BG) are here beside the corrected ones.
    """

    RESET = "\033[0m"
    BOLD = "\033[1m"
    BLACK_FG = "\033[30m"
    RED_FG = "\033[31m"
    GREEN_FG = "\033[32m"
    YELLOW_FG = "\033[33m"
    BLUE_FG = "\033[34m"
    MAGENTA_FG = MEGENTA_FG = "\033[35m"
    CYAN_FG = "\033[36m"
    WHITE_FG = "\033[37m"
    BLACK_BG = "\033[40m"
    RED_BG = "\033[41m"
    GREEN_BG = "\033[42m"
    YELLOW_BG = "\033[43m"
    BLUE_BG = "\033[44m"
    MAGENTA_BG = MEGENTA_BG = "\033[45m"
    CYAN_BG = "\033[46m"
    WHITE_BG = "\033[47m"


_INFO = 20
"""logging.INFO, without importing logging into every version's child (6 ms) for its numbers."""

_LEVEL_NAMES = {10: "DEBUG", _INFO: "INFO", 30: "WARNING", 40: "ERROR", 50: "CRITICAL"}  # logging's levels


def log(
    message: Any,
    level: Any = _INFO,
    log_to_file: Any = True,
    modifier_1: Optional[str] = None,
    modifier_2: Optional[str] = None,
    **_ignored: Any,
) -> None:
    """Write ``message`` to the pipeline's log under the running script and version.

    ``level`` is a :mod:`logging` level or its name. The original's ``log_to_file`` and
    colour modifiers (and any other keyword) are accepted and ignored: the log gets every
    message, and colours are stripped from files anyway.
    """
    if isinstance(level, bool):
        # Model.log(message, True) in the original meant log_to_file=True.
        name = "INFO"
    elif isinstance(level, int):
        name = _LEVEL_NAMES.get(level, "INFO")
    else:
        name = str(level).upper()
    channel.log(channel.as_text(message), name)


def add_script_dir_to_PATH(current_dir: Optional[str] = None) -> None:  # noqa: N802
    """Put the calling script's folder (or ``current_dir``) first on ``sys.path``."""
    if current_dir is None:
        caller = sys._getframe(1).f_code.co_filename
        current_dir = os.path.dirname(os.path.abspath(caller))
    if current_dir not in sys.path:
        sys.path.insert(0, current_dir)


def copy_related_files(model: Any, dst_dir: str) -> List[str]:
    """``model.copy_related_files(dst_dir)``, as release 1.1a3.post8's utils had it."""
    return related_files.copy_related_files(model, dst_dir)
