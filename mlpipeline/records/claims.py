"""Who runs what: claims in the journal, heartbeats, and taking over a dead daemon's claims.

Several daemons may work on one project folder, on one host or on several sharing it. A
version is claimed in the journal, checked and appended under the journal's lock, before it
starts, and only when nobody holds it, so exactly one daemon runs it. A claim whose daemon
is gone (its pid, where this daemon can see it; its heartbeat, elsewhere) is ended as
interrupted, and a live daemon resumes it in the same session.

Daemons that run at the same time share one session: one that starts while others run
joins their session, so that without ``-u`` a version one of them already ran is not run
again by another.
"""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import AbstractSet, Any, Dict, Iterable, List, Optional, Set, Tuple

from mlpipeline.records.ends import new_run_id
from mlpipeline.records.heartbeat import Heartbeat, Liveness, LivenessJudge, heartbeat_interval, live_daemons, session_of
from mlpipeline.records.identity import DaemonIdentity
from mlpipeline.records.journal import Journal, state_of
from mlpipeline.records.states import CARRIED_FIELDS, JournalEvent, RunState

Takeover = Tuple[Dict[str, Any], str]
"""A claim taken over: (the claim's record, why it was ended)."""

VersionKey = Tuple[str, str]


class ClaimResult(Enum):
    """What a claim came to."""

    WON = "won"
    TAKEN = "taken"  # another daemon claimed the version first, or holds it
    MODEL_DIR_HELD = "model_dir held"  # another version (of any daemon) runs in its model_dir


class Claims:
    """This daemon's side of sharing a journal with other daemons."""

    def __init__(self, journal: Journal, identity: DaemonIdentity, heartbeat_dir: Path) -> None:
        self.interval = heartbeat_interval()
        self._journal = journal
        self._identity = identity
        self._heartbeat_dir = heartbeat_dir
        self._heartbeat = Heartbeat(heartbeat_dir, identity, self.interval)
        self._judge = LivenessJudge(heartbeat_dir, identity, self.interval)
        self._session_start = 0
        self._session_daemons: Set[str] = set()
        self._taken: Set[Tuple[str, str, Optional[str]]] = set()
        self._taken_by: Dict[VersionKey, Tuple[str, str, Optional[str]]] = {}
        self._cut_off: Set[VersionKey] = set()
        self._resume_allowed: Set[VersionKey] = set()

    def start(self) -> None:
        """Begin beating, note where in the journal this session starts, and join the session
        of the daemons running now (judged after the first beat, whose file's mtime is the
        folder's "now": live_daemons)."""
        self._heartbeat.start()
        # The live daemons' session, with those of it that have ended: a version any of them
        # ran is the session's (without -u it is not run again).
        self._session_daemons = session_of(live_daemons(self._heartbeat_dir, self._identity))
        self._session_daemons.discard(self._identity.key)
        self._say_session()
        self._journal.refresh()
        self._session_start = self._journal.lines_read

    def stop(self) -> None:
        self._heartbeat.stop()

    def beat_failing(self) -> Optional[str]:
        """Why this daemon's heartbeat cannot be written, while it cannot (Heartbeat.failing)."""
        return self._heartbeat.failing

    def heartbeat_for_children(self) -> Dict[str, Any]:
        """What a child's keeper needs to watch this daemon's heartbeat."""
        return {
            "file": str(self._heartbeat.path),
            "folder": str(self._heartbeat_dir),
            "interval": self.interval,
            "daemon": self._identity.key,
            "namespace": self._identity.namespace,
        }

    def claim(self, expected: Optional[Dict[str, Any]], script: str, version: str, sha256: str, model_dir: str, **extra: Any) -> "ClaimResult":
        """Claim ``script:version`` to run in ``model_dir`` (relative to outputs_dir, as every
        host names it) if its latest event is still ``expected``, nobody holds it, and no
        other version runs in that folder (under any daemon: two versions in one model_dir
        would clean or overwrite each other's files)."""
        if expected is not None and state_of(expected) is RunState.RUNNING:
            return ClaimResult.TAKEN
        fields = self._identity.event_fields(script, version, sha256)
        claimed = self._journal.append_if_latest(expected, JournalEvent.CLAIMED, model_dir_free=True, **fields, model_dir=model_dir, **extra)
        if claimed is None:
            holder = self._journal.model_dir_holder(model_dir)
            return ClaimResult.TAKEN if holder in (None, (script, version)) else ClaimResult.MODEL_DIR_HELD
        self._resume_allowed.discard((script, version))  # the leave to resume is used up
        return ClaimResult.WON

    def is_dead(self, host: str, daemon: str, namespace: Optional[str] = None) -> bool:
        """Whether the daemon ``daemon`` on ``host`` is known to be gone."""
        record = {"host": host, "daemon": daemon}
        if namespace is not None:
            record["namespace"] = namespace
        return self._judge.judge(record) is Liveness.DEAD

    def session(self) -> Tuple[AbstractSet[Tuple[str, str, Optional[str]]], AbstractSet[VersionKey]]:
        """This session as the journal tells it: (the (script, version, sha256) that daemons of
        the session claimed, which this one must not run again; the versions of the session
        that were cut off, which it resumes). Kept up to date from the journal's changes, so
        that each dispatch costs what changed, not the whole journal; the sets are this
        object's own, to read, not to change."""
        changed = self._journal.take_changes()
        keys: Iterable[VersionKey] = self._all_claimed() if changed is None else changed
        joined = False
        for key in keys:
            claim = self._journal.claim_of(*key)
            if claim is not None and claim[0] > self._session_start and claim[2] is not None and claim[2] not in self._session_daemons:
                self._session_daemons.add(claim[2])
                joined = True
        if joined:
            self._say_session()
        if changed is None or joined:
            # A daemon that joined the session makes its older claims the session's too.
            self._taken_by.clear()
            self._taken.clear()
            self._cut_off.clear()
            keys = self._all_claimed()
        for key in keys:
            self._follow(key)
        return self._taken, self._cut_off

    def _say_session(self) -> None:
        self._heartbeat.session = sorted(self._session_daemons)
        self._heartbeat.beat_now()

    def _all_claimed(self) -> List[VersionKey]:
        return [key for key, _, _, _ in self._journal.claims()]

    def _follow(self, key: VersionKey) -> None:
        old = self._taken_by.pop(key, None)
        if old is not None:
            self._taken.discard(old)
        self._cut_off.discard(key)
        claim = self._journal.claim_of(*key)
        if claim is None:
            return
        _, sha256, daemon = claim
        ours = daemon == self._identity.key
        if not ours and daemon not in self._session_daemons:
            return
        latest = self._journal.latest(*key)
        interrupted = latest is not None and latest["event"] == JournalEvent.INTERRUPTED.value
        if ours:
            # Its own cut-off versions resume only as recording their ends decided (a few times
            # a session at most: resume_allowed); claiming the version again uses the leave up.
            if interrupted and key in self._resume_allowed:
                self._cut_off.add(key)
            return
        if interrupted:
            self._cut_off.add(key)
        else:
            taken = (key[0], key[1], sha256)
            self._taken_by[key] = taken
            self._taken.add(taken)

    def resume_allowed(self, script: str, version: str) -> None:
        """This daemon's own version, cut off just now, resumes in this session (its end's
        recording said so): it counts as cut off until it is claimed again."""
        self._resume_allowed.add((script, version))
        self._follow((script, version))

    def held_elsewhere(self) -> List[Dict[str, Any]]:
        """The claims other daemons hold now (alive, or not yet judged)."""
        return [record for record in self._journal.unfinished() if record.get("daemon") != self._identity.key]

    def take_over_stale(self) -> List[Takeover]:
        """End, as interrupted, every claim whose daemon is gone; returns those ended."""
        taken: List[Takeover] = []
        for record in self.held_elsewhere():
            if self._judge.judge(record) is not Liveness.DEAD:
                continue
            if self._identity.sees(record):
                reason = f"its daemon (pid {record.get('pid')}) ended without recording an end"
            else:
                reason = f"its daemon on {record.get('host')} (pid {record.get('pid')}) stopped heartbeating"
            fields = self._identity.event_fields(record["script"], record["version"], record.get("sha256"))
            fields.update({key: record[key] for key in CARRIED_FIELDS if key in record})
            if "attempt" in record:
                fields["attempt"] = record["attempt"]
            # A run id of its own, as every event has: not the dead run's, whose end, if its daemon
            # died committing it, recovery (records/ends.py) tells by that id from one never written.
            ended = self._journal.append_if_latest(
                record, JournalEvent.INTERRUPTED, **fields, reason=reason, taken_over_from=record.get("daemon"), run_id=new_run_id()
            )
            if ended is not None:
                taken.append((record, reason))
        return taken
