"""A running version asked to save a checkpoint soon: SIGUSR1, which a Slurm job gets before
its time limit (``--signal=B:USR1@N``; the Slurm executor asks for it, and its job passes it
on). The framework bases save at their next step when asked; a script of its own checks
:func:`checkpoint_asked` in its loop. A version not listening would be killed by the signal:
the worker listens for every version it runs."""
from __future__ import annotations

import signal
import threading

_asked = threading.Event()


def listen() -> None:
    """Note SIGUSR1 from now on (the main thread's to call, as Python's signals are)."""
    signal.signal(signal.SIGUSR1, lambda signum, frame: _asked.set())


def checkpoint_asked() -> bool:
    """Whether a checkpoint was asked for since the last call (which answers it)."""
    if not _asked.is_set():
        return False
    _asked.clear()
    return True
