"""A running version asked to save a checkpoint soon: SIGUSR1, which a Slurm job gets before
its time limit (``--signal=B:USR1@N``; the Slurm executor asks for it, and its job passes it
on). The framework bases save at their next step when asked; a script of its own checks
:func:`checkpoint_asked` in its loop. A version not listening would be killed by the signal:
the worker listens for every version it runs.

The handler only sets a flag: Python runs a handler between any two bytecodes of the main
thread, a handler inside a handler too, so one that took a lock (``threading.Event.set``
does) would wait forever on a lock its own thread holds when two signals come close together,
and the version would hang mid-step."""
from __future__ import annotations

import signal
from types import FrameType
from typing import Optional


class _Request:
    asked = False


def _note(signum: int, frame: Optional[FrameType]) -> None:
    _Request.asked = True


def listen() -> None:
    """Note SIGUSR1 from now on (the main thread's to call, as Python's signals are)."""
    signal.signal(signal.SIGUSR1, _note)


def checkpoint_asked() -> bool:
    """Whether a checkpoint was asked for since the last call (which answers it); a signal
    that comes while it answers is answered by the checkpoint it asks for anyway."""
    if not _Request.asked:
        return False
    _Request.asked = False
    return True
