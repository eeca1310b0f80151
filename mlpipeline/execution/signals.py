"""Ctrl-C, SIGTERM and SIGHUP, at every moment of a command's life.

While a loop runs (execution mode, test mode), the handlers only count (``StopSignals``); the
loop decides what follows. Before that, from the first moment mlpipeline's code runs, and
after it, a stop signal raises ``Interrupted`` wherever the program is (``raise_on_stop_signals``),
and ``cli.main`` ends with the signal's exit code: any exception that follows a stop signal is
that signal's doing, however it surfaces (a KeyboardInterrupt wrapped in a RuntimeError by a
class's ``__set_name__``, a pipe broken by a process that got the same Ctrl-C). Once the exit
code is decided, a signal is only noted (``settle``): it cannot turn an exit into a traceback,
and in the interpreter's last moments it is ignored.

SIGHUP (the terminal or ssh session that started the daemon closed) is a stop like SIGTERM:
a daemon left running without anyone watching is what ``nohup`` or ``--wait`` under a service
manager are for.

Nothing here imports ``typing``: this module is loaded first of all, and every millisecond
before its handlers are in place is one in which SIGTERM kills outright.
"""
from __future__ import annotations

import atexit
import os
import signal
import sys
from types import FrameType

EXIT_CODES = {signal.SIGHUP: 129, signal.SIGINT: 130, signal.SIGTERM: 143}

_received: list[int] = []
"""Every stop signal this process has had, in order, whichever handler took it."""

_hooks_installed = False
_python_unraisablehook = sys.unraisablehook

REDELIVERY_S = 0.05
"""How long after an Interrupted that could not be raised its signal is sent again."""


class Interrupted(KeyboardInterrupt):
    """A stop signal that came while no loop was counting them.

    A KeyboardInterrupt, so that code which cleans up on Ctrl-C does so for SIGTERM too; but
    not KeyboardInterrupt itself: once one of those has left code that ``exec`` ran (every
    dataclass's generated ``__init__``), CPython ends the process by SIGINT at exit, whatever
    exit code it was given."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = EXIT_CODES.get(signum, 130)


def _stop_signals() -> list[int]:
    """The stop signals to handle: SIGHUP not when it is ignored (started with nohup: a closed
    terminal is to be ignored, as asked)."""
    return [signum for signum in EXIT_CODES if not (signum == signal.SIGHUP and signal.getsignal(signum) == signal.SIG_IGN)]


def raise_on_stop_signals() -> None:
    """From now on, a stop signal raises Interrupted where the program is."""
    global _hooks_installed, _python_unraisablehook
    try:
        for signum in _stop_signals():
            signal.signal(signum, _interrupt)
    except ValueError:
        return  # not the main thread (cli imported by a program's thread): that program's signals
    if _hooks_installed:
        return
    _hooks_installed = True
    # Registered first, so it runs last: after the other exit functions (Ray's shutdown, which
    # Ctrl-C pressed twice may still cut short), just before the interpreter is torn down,
    # which restores the default actions first (a signal in the milliseconds that follow
    # would end the process by that signal, not by its exit code).
    atexit.register(_ignore_at_exit)
    _python_unraisablehook = sys.unraisablehook
    sys.unraisablehook = _unraisable


def _interrupt(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    raise Interrupted(signum)


def _unraisable(unraisable: "sys.UnraisableHookArgs") -> None:
    """An Interrupted raised where Python cannot raise it (a weakref callback, a ``__del__``,
    which the import machinery runs at any moment) would be printed and lost: its signal is
    sent again a moment later, from a thread, so that it lands in ordinary code (sent at
    once, it would land in this very hook)."""
    if not isinstance(unraisable.exc_value, Interrupted):
        _python_unraisablehook(unraisable)
        return
    import threading

    if _received:
        _received.pop()  # counted again when it lands
    again = threading.Timer(REDELIVERY_S, os.kill, (os.getpid(), unraisable.exc_value.signum))
    again.daemon = True
    again.start()


def settle() -> None:
    """The command's exit code is decided: a signal from now on is only noted; unless one came
    before, and then, as a second Ctrl-C does, it ends the process at once (an exit that hangs,
    in a library's exit function say, still yields to Ctrl-C pressed twice)."""
    try:
        for signum in _stop_signals():
            signal.signal(signum, _note)
    except ValueError:
        pass  # not the main thread: nothing of ours was installed


def _note(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    if len(_received) > 1:
        os._exit(EXIT_CODES.get(_received[0], 130))


def _ignore_at_exit() -> None:
    for signum in _stop_signals():
        signal.signal(signum, signal.SIG_IGN)


def first_stop_signal() -> int | None:
    """The first stop signal this process had, whichever handler took it; None if none came."""
    return _received[0] if _received else None


class StopSignals:
    """Counts SIGINT, SIGTERM and SIGHUP while installed: the first asks to drain, a second to kill."""

    def __init__(self) -> None:
        self.count = 0
        self.first: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopSignals":
        for signum in _stop_signals():
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        _received.append(signum)
        self.count += 1
        if self.first is None:
            self.first = signum

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.first, 130) if self.first is not None else 0
