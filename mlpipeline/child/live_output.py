"""The worker's stdout: written in blocks, flushed at least every FLUSH_INTERVAL_S.

A version that prints a million lines should cost no more than printing them to a file, where
Python buffers in blocks; a version that prints a line a minute should show it at once (people
``tail -f`` the log). Line buffering gives the second at one ``write`` a line (a million lines:
2.5 s more here), block buffering the first but holds a slow version's lines back. So stdout is
block-buffered and a thread flushes it every FLUSH_INTERVAL_S: a line is in the log within
that time whatever the rate. What a version killed outright (SIGKILL, a segfault) printed in
its last FLUSH_INTERVAL_S may be lost; every ending the worker sees (an exception, a stop
signal, the end of train_model, ``os._exit``) flushes first. stderr stays line-buffered: the
traceback, the warning a person reads first, is never held back.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from typing import Callable, NoReturn, Optional, TextIO

FLUSH_INTERVAL_S = 0.1
"""The most a printed line waits before it is written to the daemon's pipe."""

_flusher: Optional["_Flusher"] = None


class _Flusher:
    """A daemon thread flushing ``stream`` every FLUSH_INTERVAL_S for the process's life."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        threading.Thread(target=self._run, name="mlpipeline-stdout-flush", daemon=True).start()

    def _run(self) -> None:
        while True:
            time.sleep(FLUSH_INTERVAL_S)
            try:
                self.stream.flush()
            except (OSError, ValueError):
                return  # closed, or the daemon's end of the pipe is gone: nothing more to do
            except Exception:  # noqa: BLE001 - a flush racing the interpreter's shutdown
                return


def buffer_output() -> None:
    """Block-buffer stdout with a flushing thread, line-buffer stderr (see the module's text).

    Also in every process this one forks (a DataLoader's workers), whose copy of the buffer
    would otherwise wait until it fills: threads do not survive a fork.
    """
    global _flusher
    stdout = sys.stdout
    try:
        stdout.reconfigure(line_buffering=False, write_through=False)  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        stdout = None  # not a text stream of ours (replaced before this ran): left as it is
    try:
        sys.stderr.reconfigure(line_buffering=True, write_through=False)  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        pass
    if stdout is None:
        return
    first = _flusher is None
    _flusher = _Flusher(stdout)
    if first:
        os.register_at_fork(after_in_child=_restart_in_child)
        os._exit = _flushing_exit(os._exit)


def _flushing_exit(exit_now: Callable[[int], NoReturn]) -> Callable[[int], NoReturn]:
    """``os._exit`` that writes out what waits in stdout first: a script that prints its last
    line and ends with ``os._exit`` (to skip a slow teardown) still has that line logged, as
    it had with line buffering. Nothing else of the interpreter's shutdown runs."""

    def _exit(status: int) -> NoReturn:
        for stream in (sys.stdout, sys.__stdout__):
            try:
                if stream is not None:
                    stream.flush()
            except Exception:  # noqa: BLE001 - exiting matters more than the last lines
                pass
        exit_now(status)

    return _exit


def _restart_in_child() -> None:
    global _flusher
    if _flusher is not None:
        _flusher = _Flusher(_flusher.stream)
