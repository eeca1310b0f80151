"""Ctrl-C, SIGTERM and SIGHUP: the handlers only count; the dispatch loop decides what follows.

SIGHUP (the terminal or ssh session that started the daemon closed) is a stop like SIGTERM:
a daemon left running without anyone watching is what ``nohup`` or ``--wait`` under a service
manager are for.
"""
from __future__ import annotations

import signal
from types import FrameType
from typing import Any, Dict, Optional

EXIT_CODES = {signal.SIGHUP: 129, signal.SIGINT: 130, signal.SIGTERM: 143}


class StopSignals:
    """Counts SIGINT, SIGTERM and SIGHUP while installed: the first asks to drain, a second to kill."""

    def __init__(self) -> None:
        self.count = 0
        self.first: Optional[int] = None
        self._previous: Dict[int, Any] = {}

    def __enter__(self) -> "StopSignals":
        for signum in EXIT_CODES:
            if signum == signal.SIGHUP and signal.getsignal(signum) == signal.SIG_IGN:
                continue  # started with nohup: a closed terminal is to be ignored, as asked
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        self.count += 1
        if self.first is None:
            self.first = signum

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.first, 130) if self.first is not None else 0
