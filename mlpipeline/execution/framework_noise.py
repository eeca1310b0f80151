"""What frameworks print as a version starts that says nothing about the run: TensorFlow's
C++ start-up lines. Unless the user set TF_CPP_MIN_LOG_LEVEL, versions run with it at 1
(TensorFlow's INFO lines left out; its warnings, such as a GPU library it could not load,
and its errors kept), and the daemon leaves out
the lines that would still come with every Keras version: absl's notice that it logs to
stderr, the INFO lines TensorFlow prints before it reads that variable (in absl's format,
``I1202 10:00:00.123456 8665 port.cc:153] oneDNN custom operations are on...``), and a
graph-attribute message TensorFlow itself calls expected and ignores. Any other
line, errors included, reaches the console and the log as printed."""
from __future__ import annotations

import os
import re
from typing import List

QUIET_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"

_HARMLESS = re.compile(
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"
    # An INFO line in absl's format (I, month and day, time, thread, file:line), which TensorFlow
    # prints before it has read TF_CPP_MIN_LOG_LEVEL: "oneDNN custom operations are on", say.
    r"|^I\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.\-/]+:\d+\] "
    r"|node_def_util\.cc:\d+\] NodeDef mentions attribute \w+ which is not in the op definition: .*"
    r"Unknown attributes will be ignored\."
)

_quieted = False


def quiet_frameworks() -> None:
    """Set TF_CPP_MIN_LOG_LEVEL=1 for this process and its children, unless the user set it;
    called once as a mode starts, before any child."""
    global _quieted
    if QUIET_VARIABLE not in os.environ:
        os.environ[QUIET_VARIABLE] = "1"
        _quieted = True


def without_noise(lines: List[str]) -> List[str]:
    """``lines`` less the start-up lines left out (the list itself while nothing is left out)."""
    if not _quieted:
        return lines
    return [line for line in lines if _HARMLESS.search(line) is None]


def is_noise(line: str) -> bool:
    """Whether ``line`` is one of the start-up lines left out (only while mlpipeline chose the quiet)."""
    return _quieted and _HARMLESS.search(line) is not None
