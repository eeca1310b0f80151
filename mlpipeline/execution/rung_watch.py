"""Early stopping for a script whose model cannot resume (its versions run "watched"): the rule
is applied while a version runs, each time its reports pass a rung, and a version judged out
there is stopped, never paused. Returns what it found; the loop records the rungs passed and
stops the runs judged out (early_stopping.goes_on_while_running is the rule)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

from mlpipeline.execution.early_stopping import finite, goes_on_while_running, rung_step
from mlpipeline.execution.halving import recorded_rungs
from mlpipeline.execution.outcome import VersionRun
from mlpipeline.executors.base import ChildRun
from mlpipeline.queue.config import EarlyStoppingSettings
from mlpipeline.records.journal import Journal


@dataclass
class RungCheck:
    """What one look found: runs that passed a rung and go on (with their value there, None
    when they reported no value of the metric), and runs judged out, with why."""

    passed: List[Tuple[ChildRun, int, Optional[float]]] = field(default_factory=list)
    stops: List[Tuple[ChildRun, str]] = field(default_factory=list)


class RungWatch:
    """Looks at the watched versions' latest reports against the rungs."""

    def __init__(self, settings: EarlyStoppingSettings, journal: Journal) -> None:
        self.settings = settings
        self._journal = journal

    def check(self, running: Iterable[ChildRun]) -> RungCheck:
        found = RungCheck()
        for run in running:
            version_run: VersionRun = run.tag
            if not version_run.planned.watched or version_run.stop_reason is not None:
                continue
            rung = len(version_run.rungs)
            step = rung_step(self.settings, rung)
            total = (version_run.steps or {}).get("total")
            if version_run.last_step is None or version_run.last_step < step or (isinstance(total, int) and step >= total):
                continue
            # Its value as it passed the rung (the listener keeps it), else its latest.
            value = finite(version_run.crossings.get(rung, version_run.metrics.get(self.settings.metric)))
            if value is None:
                found.passed.append((run, rung, None))  # unjudged there; it goes on
                continue
            values = self._values_at(version_run.planned.script.label, version_run.planned.version, rung)
            values[version_run.planned.version] = value
            if goes_on_while_running(self.settings, values, version_run.planned.version):
                found.passed.append((run, rung, value))
            else:
                found.stops.append((run, self._why(rung, value, values)))
        return found

    def _values_at(self, script: str, version: str, rung: int) -> Dict[str, float]:
        """The other versions of ``script`` that have a value at ``rung``, as the journal says."""
        values: Dict[str, float] = {}
        for key in self._journal.versions():
            if key[0] != script or key[1] == version:
                continue
            rungs = recorded_rungs(self._journal.latest(*key), self.settings)
            if len(rungs) > rung and rungs[rung] is not None:
                values[key[1]] = rungs[rung]  # type: ignore[assignment]
        return values

    def _why(self, rung: int, value: float, values: Dict[str, float]) -> str:
        step = rung_step(self.settings, rung)
        if self.settings.rule == "median":
            return (
                f"stopped by the median rule at rung {rung} (step {step}), while it ran: "
                f"{self.settings.metric}={value:g} is worse than the median of the other {len(values) - 1} versions there"
            )
        return (
            f"stopped by asha at rung {rung} (step {step}), while it ran: {self.settings.metric}={value:g} is not "
            f"among the best 1/{self.settings.reduction_factor} of the {len(values)} values there"
        )
