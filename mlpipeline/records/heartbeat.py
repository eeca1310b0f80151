"""Daemon liveness across hosts: each daemon beats a file; others watch the beats change.

A daemon whose processes this one can see (the same namespace: identity.py) is alive while
its pid (with its start time) runs. Any other daemon is judged by its heartbeat file under
``outputs/.heartbeats/``: alive once the beat is seen to change, dead once it has not changed
for STALE_BEATS intervals of our own clock. Only changes are compared, never timestamps, so
clocks that disagree between hosts (or an NFS server's) do not matter.
"""
from __future__ import annotations

import math
import os
import re
import threading
import time
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Set, Tuple

from mlpipeline.records.files import now_iso, read_regular_bytes, write_json_atomic
from mlpipeline.records.lines import FILE_LIMIT, RecordError, decode_object, read_object

if TYPE_CHECKING:
    from mlpipeline.records.identity import DaemonIdentity

INTERVAL_VARIABLE = "MLPIPELINE_HEARTBEAT_S"
DEFAULT_INTERVAL_S = 5.0
STALE_BEATS = 6


def declared_interval(beat: Any) -> float:
    """The interval a beat file's writer beats at (``interval`` in it), else this process's
    own: a daemon is stale after STALE_BEATS of *its* intervals, whatever the reader's are."""
    value = beat.get("interval") if isinstance(beat, dict) else None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0.05 <= value <= 3600:
        return float(value)
    return heartbeat_interval()


INTERVAL_RANGE_S = (0.05, 3600.0)


def heartbeat_interval() -> float:
    """Seconds between beats: 5, or ``MLPIPELINE_HEARTBEAT_S`` (tests shorten it); a value
    heartbeat_problem() refuses counts as unset."""
    given = os.environ.get(INTERVAL_VARIABLE)
    return DEFAULT_INTERVAL_S if given is None or heartbeat_problem() else float(given)


def heartbeat_problem() -> Optional[str]:
    """Why ``MLPIPELINE_HEARTBEAT_S`` cannot be used (the command refuses to start), or None."""
    given = os.environ.get(INTERVAL_VARIABLE)
    if given is None:
        return None
    try:
        seconds = float(given)
    except ValueError:
        seconds = math.nan
    low, high = INTERVAL_RANGE_S
    if not low <= seconds <= high:  # NaN too
        return f"{INTERVAL_VARIABLE}={given[:40]!r} must be a number of seconds from {low:g} to {high:g}"
    return None


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
        self._failed: Tuple[int, str] = (0, "")  # beats failed in a row, and why the last did
        self.session: List[str] = []
        """The other daemons of this one's session, said in each beat: a daemon that joins it
        later learns of those that have ended already (their versions are the session's)."""

    @property
    def failing(self) -> Optional[str]:
        """Why this daemon's beat cannot be written, once it has failed STALE_BEATS // 2 times in
        a row (a moment's hiccup of a shared folder is no failure): daemons on other hosts would
        soon take this one for dead and its versions over."""
        count, why = self._failed
        return why if count >= STALE_BEATS // 2 else None

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._beat()
        self._thread = threading.Thread(target=self._run, name="mlpipeline-heartbeat", daemon=True)
        self._thread.start()

    def beat_now(self) -> None:
        """One beat at once (the session changed); a failure is the next beat's to tell. None
        once stopped: the file is gone, and a beat would make an ended daemon seem alive."""
        if self._stop.is_set():
            return
        try:
            self._beat()
        except OSError:
            pass

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
                self._failed = (0, "")
            except OSError as exc:
                self._failed = (self._failed[0] + 1, f"{self.path}: cannot be written ({exc.strerror or exc})")

    def _beat(self) -> None:
        self._count += 1
        beat = {
            "daemon": self._identity.key,
            "namespace": self._identity.namespace,
            "beat": self._count,
            "time": now_iso(),
            "interval": self._interval,  # judged by the period it keeps, not the reader's
        }
        if self.session:
            beat["session"] = self.session[-SESSION_LIMIT:]
        write_json_atomic(self.path, beat, durable=False)  # a view of liveness: nothing to keep after a power cut


class LivenessJudge:
    """Tells whether the daemon behind a journal record still runs."""

    def __init__(self, folder: Path, identity: DaemonIdentity, interval: float) -> None:
        self._folder = folder
        self._identity = identity
        self._stale_after = interval * STALE_BEATS
        self._seen: Dict[str, Tuple[Optional[bytes], float, bool]] = {}

    def judge(self, record: Dict[str, Any]) -> Liveness:
        key = str(record.get("daemon", ""))
        if self._identity.sees(record):
            from mlpipeline.records.identity import daemon_process_alive

            return Liveness.ALIVE if daemon_process_alive(key) else Liveness.DEAD
        try:
            content: Optional[bytes] = read_regular_bytes(beat_path(self._folder, key), FILE_LIMIT)
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
        if now - since >= self._stale_after_for(content):
            return Liveness.DEAD
        return Liveness.ALIVE if changed_before else Liveness.UNKNOWN


    def _stale_after_for(self, content: Optional[bytes]) -> float:
        """STALE_BEATS of the beat's own interval, where the beat says it; else of this daemon's."""
        if content is None:
            return self._stale_after
        try:
            beat = decode_object(content)
        except RecordError:
            return self._stale_after
        return declared_interval(beat) * STALE_BEATS if "interval" in beat else self._stale_after


def beats_elsewhere(folder: Path, own_key: str, namespace: str) -> bool:
    """Whether a daemon of another namespace than ``namespace`` beats in ``folder``: one that
    judges ``own_key``'s daemon by its heartbeat, and so could take its claims over."""
    own = beat_path(folder, own_key).name
    try:
        names = os.listdir(folder)
    except OSError:
        return False
    for name in names:
        if name == own or name.startswith("."):  # "." names: atomic writes in progress
            continue
        beat = read_object(folder / name)
        if beat is not None and beat.get("namespace") != namespace:
            return True
    return False


REMOTE_CLOCK_SLACK_S = 60.0
"""How far another host's clock (or a file server's) may be off before its daemon's heartbeat
file looks older than it is."""


def seems_alive(record: Dict[str, Any], identity: DaemonIdentity, folder: Path) -> bool:
    """Whether the daemon behind ``record`` looks alive at a single glance: its pid where this
    process can see it, else a heartbeat file rewritten within STALE_BEATS intervals plus
    REMOTE_CLOCK_SLACK_S. For views and for joining a session; taking a claim over waits for
    a :class:`LivenessJudge` to watch the beat instead."""
    from mlpipeline.records.identity import daemon_process_alive

    key = str(record.get("daemon", ""))
    if identity.sees(record):
        return daemon_process_alive(key)
    try:
        age = time.time() - beat_path(folder, key).stat().st_mtime
    except OSError:
        return False
    return age < heartbeat_interval() * STALE_BEATS + REMOTE_CLOCK_SLACK_S


SESSION_LIMIT = 500
"""At most this many daemons of a session are said in a beat (a file of about 30 KB); a session
of more leaves some out."""


def session_of(beats: Dict[str, Dict[str, Any]]) -> Set[str]:
    """The daemons of the session that ``beats`` (live_daemons) belong to: they, and the
    daemons each says it shares its session with."""
    found = set(beats)
    for beat in beats.values():
        said = beat.get("session")
        if isinstance(said, list):
            found.update(key for key in said[-SESSION_LIMIT:] if isinstance(key, str) and key)
    return found


def live_daemons(folder: Path, identity: DaemonIdentity) -> Dict[str, Dict[str, Any]]:
    """The daemons (by key, with their last beat) that seem alive now, this one left out.

    Once this daemon has beaten in ``folder``, its own beat file's mtime is "now" on the clock
    that stamps every beat file there (the file server's, on a shared folder): another
    namespace's daemon then seems alive only if its beat is less than STALE_BEATS intervals
    older than that, with no slack for clocks that disagree. A daemon killed with -9 leaves its
    beat file behind; judged by this process's own clock with REMOTE_CLOCK_SLACK_S, it would
    seem alive for a minute after its death, and a daemon started meanwhile would join its
    session (and leave what it failed alone, even with --retry-failed).
    """
    found: Dict[str, Dict[str, Any]] = {}
    try:
        names = os.listdir(folder)
    except OSError:
        return found
    try:
        now: Optional[float] = beat_path(folder, identity.key).stat().st_mtime
    except OSError:
        now = None  # not beating (yet): a single glance with the slack
    for name in names:
        if name.startswith("."):
            continue
        beat = read_object(folder / name)
        if beat is None or beat.get("daemon") in (None, identity.key):
            continue
        record = {"daemon": beat["daemon"], "namespace": beat.get("namespace"), "host": str(beat["daemon"]).split(":")[0]}
        if now is not None and not identity.sees(record):
            try:
                alive = now - (folder / name).stat().st_mtime < declared_interval(beat) * STALE_BEATS
            except OSError:
                continue
        else:
            alive = seems_alive(record, identity, folder)
        if alive:
            found[str(beat["daemon"])] = beat
    return found
