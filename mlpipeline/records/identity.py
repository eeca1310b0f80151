"""Who is running: this host's name, where its processes can be seen, and this daemon's identity.

A host name alone does not say whether a pid can be checked: containers on one machine may
share a name, and pids restart at 1 in each pid namespace. So a daemon's records carry its
*namespace* (host name, boot id, pid namespace): only a daemon of the same namespace is
judged by its pid; any other by its heartbeat (heartbeat.py).
"""
from __future__ import annotations

import os
import re
import secrets
import socket
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional

import psutil

HOSTNAME_VARIABLE = "MLPIPELINE_HOSTNAME"

_USABLE_HOSTNAME = re.compile(r"[\w.-]{1,100}")
_KEY = re.compile(r":(\d+):(\d+(?:\.\d+)?)(?::[0-9a-f]+)?$")


class HostnameError(ValueError):
    """A host name that cannot name files: outputs/log-<host> must stay a file in outputs/."""


def hostname() -> str:
    """This host's name; ``MLPIPELINE_HOSTNAME`` overrides it (tests of several hosts use it)."""
    override = os.environ.get(HOSTNAME_VARIABLE)
    if override:
        if not _USABLE_HOSTNAME.fullmatch(override) or override in (".", ".."):
            raise HostnameError(
                f"{HOSTNAME_VARIABLE}={override[:40]!r} cannot be part of a file name (log-<host>); "
                "use up to 100 letters, digits, '.', '-' and '_'"
            )
        return override
    return file_safe(socket.gethostname())


def file_safe(name: str) -> str:
    """``name`` with anything that could leave a file name (a '/', a NUL) replaced by '_'."""
    cleaned = re.sub(r"[^\w.-]", "_", name)[:100]
    return cleaned if cleaned not in ("", ".", "..") else "_"


def process_namespace(host: str) -> str:
    """Where this process's pids mean something: host name, boot id and pid namespace.

    Two daemons with the same value see each other's processes; any other pair does not.
    """
    parts = [host]
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            parts.append(handle.read().strip())
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    except OSError:
        pass  # not Linux: the host name is all there is
    return "/".join(parts)


def shares_processes(record: Mapping[str, Any], namespace: str, host: str) -> bool:
    """Whether the process that wrote ``record`` (a journal event, a heartbeat) is visible here."""
    theirs = record.get("namespace")
    if theirs is None:
        return record.get("host") == host  # written before records named their namespace
    return theirs == namespace


@dataclass(frozen=True)
class DaemonIdentity:
    """A daemon process: host, pid, the pid's start time and a random part, so that neither a
    reused pid nor a daemon with the same pid in another namespace is mistaken for it."""

    host: str
    pid: int
    started: float
    namespace: str
    nonce: str

    @classmethod
    def current(cls) -> "DaemonIdentity":
        pid = os.getpid()
        host = hostname()
        return cls(
            host=host,
            pid=pid,
            started=round(psutil.Process(pid).create_time(), 2),
            namespace=process_namespace(host),
            nonce=secrets.token_hex(3),
        )

    @property
    def key(self) -> str:
        return f"{self.host}:{self.pid}:{self.started:.2f}:{self.nonce}"

    def event_fields(self, script: str, version: str, sha256: Optional[str]) -> Dict[str, Any]:
        """The fields every journal event of this daemon about ``script:version`` carries."""
        return {
            "host": self.host,
            "pid": self.pid,
            "daemon": self.key,
            "namespace": self.namespace,
            "script": script,
            "sha256": sha256,
            "version": version,
        }

    def sees(self, record: Mapping[str, Any]) -> bool:
        """Whether the daemon behind ``record`` runs where this one can check its pid."""
        return shares_processes(record, self.namespace, self.host)


def daemon_process_alive(key: str) -> bool:
    """Whether the daemon named by ``key`` still runs, by its pid and that pid's start time.

    Only meaningful for a key of this namespace; the caller checks that.
    """
    match = _KEY.search(key)
    if match is None:
        return False
    return process_alive(int(match.group(1)), float(match.group(2)))


def process_alive(pid: int, started: Optional[float]) -> bool:
    """Whether process ``pid`` runs and is the one that started at ``started`` (not a reused pid)."""
    try:
        process = psutil.Process(pid)
        if started is not None and abs(process.create_time() - started) >= 0.05:
            return False
        return process.status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, ValueError):
        return False
