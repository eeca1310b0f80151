"""Who is running: this host's name and this daemon's identity in the journal."""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any, Dict, Optional

import psutil

HOSTNAME_VARIABLE = "MLPIPELINE_HOSTNAME"


def hostname() -> str:
    """This host's name; ``MLPIPELINE_HOSTNAME`` overrides it (tests of several hosts use it)."""
    return os.environ.get(HOSTNAME_VARIABLE) or socket.gethostname()


@dataclass(frozen=True)
class DaemonIdentity:
    """A daemon process: host, pid and the pid's start time, so a reused pid is not mistaken."""

    host: str
    pid: int
    started: float

    @classmethod
    def current(cls) -> "DaemonIdentity":
        pid = os.getpid()
        return cls(host=hostname(), pid=pid, started=round(psutil.Process(pid).create_time(), 2))

    @property
    def key(self) -> str:
        return f"{self.host}:{self.pid}:{self.started:.2f}"

    def event_fields(self, script: str, version: str, sha256: Optional[str]) -> Dict[str, Any]:
        """The fields every journal event of this daemon about ``script:version`` carries."""
        return {
            "host": self.host,
            "pid": self.pid,
            "daemon": self.key,
            "script": script,
            "sha256": sha256,
            "version": version,
        }

    @staticmethod
    def is_alive_on_this_host(key: str) -> bool:
        """Whether the daemon named by ``key`` (from a journal event) still runs on this host.

        Only meaningful for keys whose host is this one; the caller checks that.
        """
        try:
            _, pid, started = key.rsplit(":", 2)
            process = psutil.Process(int(pid))
            return abs(process.create_time() - float(started)) < 0.05
        except (ValueError, psutil.Error):
            return False
