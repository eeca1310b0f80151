"""Whether a worker's KeyboardInterrupt is a signal's or the script's own ``raise``.

A worker takes SIGINT as Python does, as a KeyboardInterrupt raised where the script is; but a
script may raise KeyboardInterrupt itself (a training loop's own "stop here"), and that is a
failure of the version with its traceback, not a stop. The worker's SIGINT handler notes the
signal before it raises, so the two can be told apart.
"""
from __future__ import annotations

import signal
from typing import Any

_received = False


def on_sigint(signum: int, frame: Any) -> None:
    """The worker's SIGINT handler: Python's own, noting that the signal came."""
    global _received
    _received = True
    raise KeyboardInterrupt


def raised_by_script() -> bool:
    """Whether a KeyboardInterrupt caught now was raised by the script, not by a SIGINT: only
    answerable while :func:`on_sigint` is the handler (a script may install its own)."""
    return not _received and signal.getsignal(signal.SIGINT) is on_sigint
