"""mlp.config's ``on_version_end``: a command run after each version, told which and how it ended.

The command runs beside the queue, not in its way: in a thread of its own, in its own
session (a Ctrl-C meant for the daemon does not reach it), with a time limit. What it prints
and how it ends go to the log; a command that fails never fails the queue.
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import Callable, Dict, List, Sequence

HOOK_TIMEOUT_S = 60.0
"""A command still running after this many seconds is killed (and the log says so)."""

LogLine = Callable[[str, str, str], None]
"""Receives (level, source, message) for the log."""


class VersionEndHook:
    """Runs the command of ``on_version_end`` once per ended version."""

    def __init__(self, command: Sequence[str], project_dir: Path, log: LogLine) -> None:
        self._command = list(command)
        self._project_dir = project_dir
        self._log = log
        self._threads: List[threading.Thread] = []

    def run(self, label: str, variables: Dict[str, str]) -> None:
        """Start the command for ``label`` with ``variables`` added to the environment."""
        if not self._command:
            return
        thread = threading.Thread(target=self._run, args=(label, variables), name="mlpipeline-on-version-end", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def wait(self, timeout: float = HOOK_TIMEOUT_S) -> None:
        """Let the commands still running end (each is killed at its own time limit anyway)."""
        for thread in self._threads:
            thread.join(timeout)

    def _run(self, label: str, variables: Dict[str, str]) -> None:
        name = self._command[0]
        try:
            process = subprocess.Popen(
                self._command,
                cwd=str(self._project_dir),
                env=dict(os.environ, **variables),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            self._log("WARNING", label, f"on_version_end: {name} could not be started ({exc.strerror or exc})")
            return
        try:
            output, _ = process.communicate(timeout=HOOK_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except OSError:
                pass
            output, _ = process.communicate()
            self._log("WARNING", label, f"on_version_end: {name} ran past {HOOK_TIMEOUT_S:g} s and was killed")
        for line in output.decode("utf-8", "replace").splitlines():
            self._log("INFO", label, f"on_version_end: {line}")
        if process.returncode:
            how = f"exit status {process.returncode}" if process.returncode > 0 else f"signal {-process.returncode}"
            self._log("WARNING", label, f"on_version_end: {name} ended with {how}")
