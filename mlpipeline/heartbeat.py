"""Daemon liveness across hosts: each daemon beats a file; others watch the beats change.

On this host a daemon is alive while its pid (with its start time) runs. Another host's
daemon is judged by its heartbeat file under ``outputs/.heartbeats/``: alive once the beat
is seen to change, dead once it has not changed for STALE_BEATS intervals of our own clock.
Only changes are compared, never timestamps, so clocks that disagree between hosts (or an
NFS server's) do not matter.
"""
from __future__ import annotations

import os
import re
import threading
import time
from enum import Enum
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from mlpipeline.files import now_iso, write_json_atomic
from mlpipeline.identity import DaemonIdentity

INTERVAL_VARIABLE = "MLPIPELINE_HEARTBEAT_S"
DEFAULT_INTERVAL_S = 5.0
STALE_BEATS = 6


def heartbeat_interval() -> float:
    """Seconds between beats: 5, or ``MLPIPELINE_HEARTBEAT_S`` (tests shorten it)."""
    try:
        return max(float(os.environ.get(INTERVAL_VARIABLE, DEFAULT_INTERVAL_S)), 0.05)
    except ValueError:
        return DEFAULT_INTERVAL_S


def beat_path(folder: Path, daemon_key: str) -> Path:
    return folder / re.sub(r"[^\w.-]", "_", daemon_key)


class Liveness(Enum):
    ALIVE = "alive"
    DEAD = "dead"
    UNKNOWN = "unknown"  # another host's daemon not watched long enough to tell


class Heartbeat:
    """This daemon's beat: a small file rewritten every interval until :meth:`stop`."""

    def __init__(self, folder: Path, identity: DaemonIdentity, interval: float) -> None:
        self.path = beat_path(folder, identity.key)
        self._identity = identity
        self._interval = interval
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._count = 0

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._beat()
        self._thread = threading.Thread(target=self._run, name="mlpipeline-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self.path.unlink()
        except OSError:
            pass

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._beat()
            except OSError:
                pass  # the journal's own writes fail too then, and the daemon stops on those

    def _beat(self) -> None:
        self._count += 1
        write_json_atomic(self.path, {"daemon": self._identity.key, "beat": self._count, "time": now_iso()})


class LivenessJudge:
    """Tells whether the daemon behind a journal record still runs."""

    def __init__(self, folder: Path, host: str, interval: float) -> None:
        self._folder = folder
        self._host = host
        self._stale_after = interval * STALE_BEATS
        self._seen: Dict[str, Tuple[Optional[bytes], float, bool]] = {}

    def judge(self, record: Dict[str, Any]) -> Liveness:
        key = str(record.get("daemon", ""))
        if record.get("host") == self._host:
            return Liveness.ALIVE if DaemonIdentity.is_alive_on_this_host(key) else Liveness.DEAD
        try:
            content: Optional[bytes] = beat_path(self._folder, key).read_bytes()
        except OSError:
            content = None
        now = time.monotonic()
        previous = self._seen.get(key)
        if previous is None:
            self._seen[key] = (content, now, False)
            return Liveness.UNKNOWN
        last_content, since, changed_before = previous
        if content != last_content:
            self._seen[key] = (content, now, True)
            return Liveness.ALIVE
        if now - since >= self._stale_after:
            return Liveness.DEAD
        return Liveness.ALIVE if changed_before else Liveness.UNKNOWN
