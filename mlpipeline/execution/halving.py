"""The chooser's early-stopping side: how each version of a script stands in its halving, read
from the journal (never only from memory: a daemon that starts again goes on where the last
one was), and what that makes the next run: how far it trains, or which paused version is
promoted, and which are stopped. The rules themselves are early_stopping.py's.

Every journal event of a version under early stopping carries its values at the rungs it
passed (``rungs``), its total steps once known, and ``watched`` for a script whose model
cannot resume, so that the version's latest event alone tells where it stands.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import AbstractSet, Any, Callable, Container, Dict, List, Optional, Sequence, Tuple

from mlpipeline.execution.early_stopping import (
    Moves,
    Promotion,
    Standing,
    Stop,
    VersionStanding,
    finite,
    moves,
    rung_basis,
    until_step,
)
from mlpipeline.execution.plan import HistoryPolicy, PlannedRun, Start, decide
from mlpipeline.queue.config import EarlyStoppingSettings
from mlpipeline.queue.queue_file import QueuedScript
from mlpipeline.records.journal import Journal
from mlpipeline.records.states import RunState

Fingerprint = Callable[[str], str]


MAX_RUNGS = 64
"""More rungs than any halving has (grace_steps * 2 ** 64 steps): a longer list is no record."""


def recorded_rungs(event: Optional[Dict[str, Any]], settings: EarlyStoppingSettings) -> Tuple[Optional[float], ...]:
    """The rung values a journal event carries; none when it carries none that make sense (the
    journal may hold any bytes), or values taken with other settings than ``settings`` (an
    event of a release before the basis was written is taken as of these)."""
    if other_basis(event, settings):
        return ()
    values = event.get("rungs") if isinstance(event, dict) else None
    if not isinstance(values, list) or len(values) > MAX_RUNGS:
        return ()
    kept: List[Optional[float]] = []
    for value in values:
        number = finite(value)
        if value is not None and number is None:
            return ()
        kept.append(number)
    return tuple(kept)


def other_basis(event: Optional[Dict[str, Any]], settings: EarlyStoppingSettings) -> bool:
    """Whether ``event``'s values at the rungs were taken with another metric or other rungs."""
    basis = event.get("rung_basis") if isinstance(event, dict) else None
    return basis is not None and basis != rung_basis(settings)


def paused_readable(event: Dict[str, Any], rungs: Tuple[Optional[float], ...]) -> bool:
    """Whether a pause event says where its version stands: its values up to the rung it
    paused at, that rung last."""
    rung = event.get("rung")
    return bool(rungs) and isinstance(rung, int) and not isinstance(rung, bool) and rung == len(rungs) - 1


def recorded_total(event: Optional[Dict[str, Any]]) -> Optional[int]:
    total = event.get("total_steps") if isinstance(event, dict) else None
    return total if isinstance(total, int) and not isinstance(total, bool) and total > 0 else None


@dataclass(frozen=True)
class JudgedOut:
    """A paused version early stopping judged out, for the loop to record as stopped."""

    script: QueuedScript
    stop: Stop
    sha256: str
    model_dir: str
    basis: Tuple[Dict[str, Any], ...] = ()
    """The latest event of each version of the script when it was judged: a stop is recorded
    only while none of them was cancelled since (a cancel takes its version out of the
    ranking; the stops of one rung are recorded one by one, and a cancel may come between)."""


class HalvingPlanner:
    """Reads the halving of each script from the journal and says what runs next in it."""

    def __init__(self, settings: EarlyStoppingSettings, journal: Journal, policy: HistoryPolicy) -> None:
        self.settings = settings
        self._journal = journal
        self._policy = policy

    def first_run(self, planned: PlannedRun, watched: bool) -> PlannedRun:
        """``planned`` (a fresh start, or a cut-off run resumed) with how far it trains: up to the
        next rung, or, ``watched`` (its model cannot resume), to its end with the rule applied
        while it runs."""
        latest = self._journal.latest(planned.script.label, planned.version)
        resumed = planned.start is Start.RESUME and latest is not None and latest.get("sha256") == planned.sha256
        rungs = recorded_rungs(latest, self.settings) if resumed else ()
        total = recorded_total(latest) if resumed else None
        if watched:
            return replace(planned, rungs=rungs, until_step=None, watched=True)
        return replace(planned, rungs=rungs, until_step=until_step(self.settings, len(rungs), total))

    def is_watched(self, script: QueuedScript, names: Sequence[str], fingerprint: Fingerprint) -> bool:
        """Whether the script's model cannot resume (at this content): a run of it paused at a
        rung said so, or its versions already run watched."""
        for name in names:
            latest = self._journal.latest(script.label, name)
            if latest is not None and latest.get("sha256") == fingerprint(name):
                if latest.get("watched") or latest.get("resumable") is False:
                    return True
        return False

    def standings(
        self,
        script: QueuedScript,
        names: Sequence[str],
        fingerprint: Fingerprint,
        handled: Container[Tuple[str, str, str]],
        cut_off: AbstractSet[Tuple[str, str]],
    ) -> List[VersionStanding]:
        """Each version of ``script``, as it stands in the halving: ``handled`` and ``cut_off``
        as the chooser has them (what ran in this session, what resumes). A version the queue
        does not ask for now (``--only``, a cancel) is judged against, never promoted or stopped."""
        found = []
        for name in names:
            sha256 = fingerprint(name)
            latest = self._journal.latest(script.label, name)
            same = latest is not None and latest.get("sha256") == sha256
            rungs, total = recorded_rungs(latest, self.settings), recorded_total(latest)
            if not script.wants(name):
                found.append(VersionStanding(name, Standing.DONE, rungs if same else (), total))
                continue
            start = (
                None if (script.label, name, sha256) in handled
                else decide(self._journal, script.label, name, sha256, self._policy, cut_off)
            )  # fmt: skip
            state = self._journal.state(script.label, name) if latest is not None else RunState.PENDING
            if start is Start.FRESH or latest is None:
                found.append(VersionStanding(name, Standing.PENDING))
            elif state is RunState.RUNNING or start is Start.RESUME:
                found.append(VersionStanding(name, Standing.RUNNING, rungs, total))
            elif state is RunState.PAUSED and latest.get("resumable") is not False:
                found.append(VersionStanding(name, Standing.PAUSED, rungs, total, judged=paused_readable(latest, rungs)))
            elif state is RunState.PAUSED:
                found.append(VersionStanding(name, Standing.PENDING))  # it cannot resume: it runs again, watched
            else:
                found.append(VersionStanding(name, Standing.DONE, rungs, total))
        return found

    def moves(self, standings: Sequence[VersionStanding]) -> Moves:
        return moves(self.settings, standings)

    def promoted(self, script: QueuedScript, promotion: Promotion, fingerprint: Fingerprint, script_sha256: str) -> PlannedRun:
        """The run that resumes a paused version from its rung."""
        latest = self._journal.latest(script.label, promotion.version) or {}
        sha256 = fingerprint(promotion.version)
        own = "" if sha256 == script_sha256 else script_sha256
        rungs = recorded_rungs(latest, self.settings)
        if not paused_readable(latest, rungs):
            rungs = ()  # values that cannot be read are carried on by none of its events: they count nowhere
        return PlannedRun(
            script, promotion.version, sha256, Start.RESUME,
            script_sha256=own, rungs=rungs, until_step=promotion.until_step,
        )  # fmt: skip

    def restarted(self, script: QueuedScript, name: str, fingerprint: Fingerprint, script_sha256: str) -> PlannedRun:
        """A version paused at a rung whose model said it cannot resume: it starts again from a
        clean model_dir, watched."""
        sha256 = fingerprint(name)
        own = "" if sha256 == script_sha256 else script_sha256
        return PlannedRun(script, name, sha256, Start.FRESH, script_sha256=own, watched=True)

    def judged_with_other_settings(self, script: str, version: str) -> bool:
        """Whether the version's values at the rungs were taken with other [EARLY_STOPPING]
        settings than these (edited since)."""
        return other_basis(self._journal.latest(script, version), self.settings)

    def paused_fields(self, script: str, version: str) -> Optional[Dict[str, Any]]:
        """The latest event of a paused version (what a stop is appended after)."""
        latest = self._journal.latest(script, version)
        return latest if latest is not None and self._journal.state(script, version) is RunState.PAUSED else None

