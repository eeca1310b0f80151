"""The original package's utilities for model scripts: versions, mode keys, logging."""
from __future__ import annotations

import logging
import os
import sys
from typing import Any, Optional

from mlpipeline.script_support import channel
from mlpipeline.script_support.versions import VersionParameters, Versions, version_parameters

__all__ = [
    "ExecutionModeKeys",
    "ModeKeys",
    "VersionParameters",
    "Versions",
    "add_script_dir_to_PATH",
    "console_colors",
    "log",
    "version_parameters",
]


class ExecutionModeKeys:
    """What the pipeline is doing: a real run (TRAIN) or a test-mode dry run (TEST)."""

    TRAIN = "train"
    TEST = "test"


class ModeKeys:
    """What an input is for, passed to ``DataLoader.get_train_input(mode=...)``."""

    TRAIN = "train"
    PREDICT = "predict"
    EVALUATE = "evaluate"


class console_colors:  # noqa: N801 - original API name
    """ANSI codes scripts may use in messages; mlpipeline strips them before writing files."""

    RESET = "\033[0m"
    BOLD = "\033[1m"
    RED_FG = "\033[31m"
    GREEN_FG = "\033[32m"
    YELLOW_FG = "\033[33m"
    BLUE_FG = "\033[34m"
    MAGENTA_FG = "\033[35m"
    CYAN_FG = "\033[36m"
    WHITE_FG = "\033[37m"


_LEVEL_NAMES = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "CRITICAL",
}


def log(message: Any, level: Any = logging.INFO, **_ignored: Any) -> None:
    """Write ``message`` to the pipeline's log under the running script and version.

    ``level`` is a :mod:`logging` level or its name. The original's extra keyword arguments
    (``log_to_file``, ``agent``, colour modifiers) are accepted and ignored.
    """
    if isinstance(level, int):
        name = _LEVEL_NAMES.get(level, "INFO")
    else:
        name = str(level).upper()
    channel.log(str(message), name)


def add_script_dir_to_PATH(current_dir: Optional[str] = None) -> None:  # noqa: N802
    """Put the calling script's folder (or ``current_dir``) first on ``sys.path``."""
    if current_dir is None:
        caller = sys._getframe(1).f_code.co_filename
        current_dir = os.path.dirname(os.path.abspath(caller))
    if current_dir not in sys.path:
        sys.path.insert(0, current_dir)
