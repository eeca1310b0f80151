"""One voice for the execution loop's parts: a line in log-<host>, and what the console shows."""
from __future__ import annotations

from typing import List, Optional, Set, Tuple

from mlpipeline.records.logs import DAEMON_SOURCE, RunLog
from mlpipeline.watch.console import ConsoleView


class Reporter:
    """Writes to log-<host> (once the records exist) and to the console."""

    def __init__(self, view: ConsoleView) -> None:
        self.view = view
        self.log_file: Optional[RunLog] = None  # set once outputs/ is known to take writes
        self._said: Set[Tuple[str, str]] = set()

    def log(self, level: str, source: str, message: str) -> None:
        """A line of log-<host> about ``source`` (a script, a version, or the daemon)."""
        if self.log_file is not None:
            self.log_file.write(level, source, message)

    def log_lines(self, level: str, source: str, lines: List[str]) -> None:
        """Lines of log-<host> from ``source`` at one moment, in one append."""
        if self.log_file is not None and lines:
            self.log_file.write_lines(level, source, lines)

    def daemon(self, level: str, message: str) -> None:
        """A line of log-<host> about the daemon itself."""
        self.log(level, DAEMON_SOURCE, message)

    def warn(self, message: str) -> None:
        """A warning, in the log and on the console."""
        self.daemon("WARNING", message)
        self.view.warning(message)

    def warn_once(self, key: Tuple[str, str], message: str) -> None:
        """A warning given once per ``key`` in this session (a queue line naming no such version, say)."""
        if key not in self._said:
            self._said.add(key)
            self.warn(message)

    def first_time(self, key: Tuple[str, str]) -> bool:
        """True the first time ``key`` is asked about in this session."""
        if key in self._said:
            return False
        self._said.add(key)
        return True
