"""Claims while the queue runs: take over the versions of daemons that died, find the runs
whose claims this daemon lost (it was paused while another took them) for the loop to stop,
and wait while other daemons run versions of this queue, which this daemon resumes if they die."""
from __future__ import annotations

import time
from typing import Any, Dict, Iterable, List, NamedTuple, Sequence

from mlpipeline.execution.chooser import VersionChooser
from mlpipeline.execution.control import ControlWatch
from mlpipeline.execution.outcome import RunPhase, VersionRun
from mlpipeline.execution.plan import PlannedRun
from mlpipeline.execution.reporter import Reporter
from mlpipeline.executors.base import ChildRun
from mlpipeline.records.claims import Claims
from mlpipeline.records.journal import Journal

CLAIM_CHECK_INTERVAL_S = 0.5
"""How often the journal is read for claims: another daemon's to take over, this one's lost."""


def lost_claim_message(journal: Journal, planned: PlannedRun) -> str:
    """Why a run of ``planned`` here stops with nothing recorded: another daemon has its version."""
    latest = journal.latest(planned.script.label, planned.version) or {}
    return (
        f"lost its claim to {latest.get('daemon') or 'another daemon'} (this daemon was silent too long: "
        "paused, or its host frozen?); stopped here, and nothing is recorded for this run"
    )


class ClaimsChecked(NamedTuple):
    """What a look at the claims found: this daemon's runs whose claims another daemon took,
    and the claims of dead daemons it ended (as interrupted)."""

    lost: Sequence[ChildRun] = ()
    taken_over: Sequence[Dict[str, Any]] = ()


class ClaimWatch:
    """Keeps this daemon's view of who runs what current, every CLAIM_CHECK_INTERVAL_S."""

    def __init__(self, journal: Journal, claims: Claims, chooser: VersionChooser, control: ControlWatch, reporter: Reporter) -> None:
        self._journal = journal
        self._claims = claims
        self._chooser = chooser
        self._control = control
        self._say = reporter
        self._checked = time.monotonic()
        self._waiting_for_others = False

    def check(self, running: Iterable[ChildRun], force: bool = False) -> "ClaimsChecked":
        """Take over the claims of dead daemons (said here); returns those taken over, and those
        of ``running`` whose claims this daemon lost, which are to be stopped with nothing recorded."""
        now = time.monotonic()
        if not force and now - self._checked < CLAIM_CHECK_INTERVAL_S:
            return ClaimsChecked()
        self._checked = now
        self._journal.refresh()
        # Who joined the session, followed while every slot is busy too: the heartbeat says the
        # members, so that a daemon joining later knows those that have ended by then.
        self._claims.session()
        taken_over = self.take_over_stale()
        lost: List[ChildRun] = []
        for run in running:
            version_run = run.tag
            if not isinstance(version_run, VersionRun) or version_run.phase is RunPhase.LOST:
                continue
            planned = version_run.planned
            if not self._journal.holds(version_run.run_id, planned.script.label, planned.version):
                lost.append(run)
        return ClaimsChecked(lost, taken_over)

    def take_over_stale(self) -> List[Dict[str, Any]]:
        """End the claims of dead daemons, and say whether each resumes here; returns the claims ended."""
        taken = self._claims.take_over_stale()
        for record, reason in taken:
            label = f"{record['script']}:{record['version']}"
            if self._control.cancel_since(record["script"], record["version"], record.get("time")) is not None:
                where = "a cancel asked while it ran names it, so it is recorded cancelled"
            elif self._control.paused:
                where = "the queue is paused: a daemon resumes it once `mlpipeline resume` is asked"
            elif self._chooser.queued(record):
                where = "it resumes here (from its checkpoint, where its model keeps one)"
            else:
                where = "this daemon's queue does not name it"
            self._say.log("WARNING", label, f"was cut off: {reason}; {where}")
            self._say.view.warning(f"{label} was cut off: {reason}; {where}")
        return [record for record, _ in taken]

    def held_elsewhere(self) -> bool:
        """Whether another daemon holds a claim on a version this daemon's queue names."""
        held = self._claims.held_elsewhere()
        if not held:
            self._waiting_for_others = False
            return False
        scripts = self._chooser.queue.current()
        mine = [record for record in held if self._chooser.queued(record, scripts)]
        if mine and not self._waiting_for_others:
            self._waiting_for_others = True
            names = ", ".join(f"{r['script']}:{r['version']} on {r.get('host')}" for r in mine[:3])
            more = f" and {len(mine) - 3} more" if len(mine) > 3 else ""
            message = f"waiting while other daemons run {names}{more}: if one dies, its version resumes here"
            self._say.daemon("INFO", message)
            self._say.view.info(message)
        return bool(mine)
