"""Who runs what: claims in the journal, heartbeats, and taking over a dead daemon's claims.

Several daemons may work on one project folder, on one host or on several sharing it. A
version is claimed in the journal, checked and appended under the journal's lock, before it
starts, so exactly one daemon runs it. A claim whose daemon is gone (its pid, on this host;
its heartbeat, elsewhere) is ended as interrupted, which ``-u`` resumes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Optional, Set, Tuple

from mlpipeline.heartbeat import Heartbeat, Liveness, LivenessJudge, heartbeat_interval
from mlpipeline.identity import DaemonIdentity
from mlpipeline.journal import Journal
from mlpipeline.states import JournalEvent

TakeoverReport = Callable[[Dict[str, Any], str], None]
"""Told (the claim's record, why it was ended) for each claim taken over."""


class Claims:
    """This daemon's side of sharing a journal with other daemons."""

    def __init__(self, journal: Journal, identity: DaemonIdentity, heartbeat_dir: Path, report: TakeoverReport) -> None:
        interval = heartbeat_interval()
        self._journal = journal
        self._identity = identity
        self._heartbeat = Heartbeat(heartbeat_dir, identity, interval)
        self._judge = LivenessJudge(heartbeat_dir, identity.host, interval)
        self._report = report
        self._session_start = 0
        self.undecided = 0

    def start(self) -> None:
        """Begin beating, and note where in the journal this session starts."""
        self._heartbeat.start()
        self._journal.refresh()
        self._session_start = self._journal.lines_read

    def stop(self) -> None:
        self._heartbeat.stop()

    def claim(self, expected: Optional[Dict[str, Any]], script: str, version: str, sha256: str, **extra: Any) -> bool:
        """Claim ``script:version`` if its latest event is still ``expected``; False if another daemon won."""
        fields = self._identity.event_fields(script, version, sha256)
        return self._journal.append_if_latest(expected, JournalEvent.CLAIMED, **fields, **extra) is not None

    def is_dead(self, host: str, daemon: str) -> bool:
        """Whether the daemon ``daemon`` on ``host`` is known to be gone."""
        return self._judge.judge({"host": host, "daemon": daemon}) is Liveness.DEAD

    def claimed_by_others(self) -> Set[Tuple[str, str, Optional[str]]]:
        """(script, version, sha256) claimed during this session: this session must not run them too."""
        return self._journal.claimed_since(self._session_start)

    def take_over_stale(self) -> None:
        """End, as interrupted, every claim whose daemon is gone; count those not yet judged."""
        undecided = 0
        for record in list(self._journal.unfinished()):
            if record.get("daemon") == self._identity.key:
                continue
            liveness = self._judge.judge(record)
            if liveness is Liveness.UNKNOWN:
                undecided += 1
            if liveness is not Liveness.DEAD:
                continue
            if record.get("host") == self._identity.host:
                reason = f"its daemon (pid {record.get('pid')}) ended without recording an end"
            else:
                reason = f"its daemon on {record.get('host')} (pid {record.get('pid')}) stopped heartbeating"
            fields = self._identity.event_fields(record["script"], record["version"], record.get("sha256"))
            ended = self._journal.append_if_latest(
                record, JournalEvent.INTERRUPTED, **fields, reason=reason, taken_over_from=record.get("daemon")
            )
            if ended is not None:
                self._report(record, reason)
        self.undecided = undecided
