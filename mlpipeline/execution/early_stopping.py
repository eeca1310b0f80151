"""Early stopping ([EARLY_STOPPING]): the versions of one script judged against each other at
rungs of ``grace_steps * reduction_factor ** k`` steps. The decisions alone, on plain data:
the chooser gathers each version's standing from the journal, and the loop carries out what
these functions return (docs/early-stopping.md).

- ``asha`` (successive halving): a version trains up to a rung and pauses there, its model
  saved. Of the versions with a value at rung k, the best ``n // reduction_factor`` may go
  on to rung k + 1 (resumed from their checkpoints), and, once no other version can still
  reach rung k, at least the best one. A version paused at a rung it is not promoted from,
  once none can reach that rung any more, is stopped.
- ``median``: a paused version goes on when its value at the rung is at least as good as the
  median of the other versions' values there; once none can reach the rung any more, one
  that is worse is stopped, and one alone goes on.

A version that did not report the metric by a rung runs to its end (the caller warns). For
scripts whose model cannot resume, the rule is applied while a version runs, as Ray Tune's
ASHA applies it (:func:`goes_on_while_running`): it is stopped at a rung, never paused.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from mlpipeline.queue.config import EarlyStoppingSettings


class Standing(Enum):
    """Where a version stands in its script's halving."""

    PENDING = "pending"  # not started in this halving: it runs to the first rung first
    RUNNING = "running"  # running (or cut off, to be resumed) towards rung len(rungs)
    PAUSED = "paused"  # at rung len(rungs) - 1, waiting to be promoted or stopped
    DONE = "done"  # finished, stopped, failed: its values still count at the rungs it passed


@dataclass(frozen=True)
class VersionStanding:
    """One version of a script, as the halving sees it: its values at the rungs it reached, in
    order from rung 0 (None: it did not report the metric by then)."""

    version: str
    standing: Standing
    rungs: Tuple[Optional[float], ...] = ()
    total_steps: Optional[int] = None  # known once a run of it has said
    judged: bool = True  # False: where it stands cannot be read (the journal's values): not judged, not counted


@dataclass(frozen=True)
class Promotion:
    """A paused version to resume: from ``rung``, up to ``until_step`` (None: to its end)."""

    version: str
    rung: int
    until_step: Optional[int]
    unreported: bool = False  # it has no value at the rung: it runs to its end, unjudged


@dataclass(frozen=True)
class Stop:
    """A paused version judged out at ``rung``, with why."""

    version: str
    rung: int
    value: Optional[float]
    reason: str


@dataclass
class Moves:
    """What the halving of one script says to do now: promotions in the order to start them
    (the highest rung first, the best value first), and stops."""

    promotions: List[Promotion] = field(default_factory=list)
    stops: List[Stop] = field(default_factory=list)


def rung_basis(settings: EarlyStoppingSettings) -> List[object]:
    """What a version's values at the rungs were taken with: the metric and the rungs' steps.
    Every journal event carrying values carries it; values of another basis (the settings
    edited since) count nowhere: loss at step 1 is no value of accuracy at step 20."""
    return [settings.metric, settings.grace_steps, settings.reduction_factor]


def rung_step(settings: EarlyStoppingSettings, rung: int) -> int:
    """The step of rung ``rung``: grace_steps * reduction_factor ** rung."""
    return settings.grace_steps * settings.reduction_factor**rung


def until_step(settings: EarlyStoppingSettings, rung: int, total_steps: Optional[int]) -> Optional[int]:
    """How far a run heading to rung ``rung`` trains: to the rung, or to its end (None) when
    the rung is at or past its last step."""
    step = rung_step(settings, rung)
    return None if total_steps is not None and step >= total_steps else step


def better(settings: EarlyStoppingSettings, a: float, b: float) -> bool:
    """Whether ``a`` is strictly better than ``b``."""
    return a < b if settings.mode == "min" else a > b


def rung_value(settings: EarlyStoppingSettings, reported: Mapping[str, object], eval_test: object, eval_train: object) -> Optional[float]:
    """A run's value of the metric at the rung it paused at: what evaluate_model returned on the
    test input, else the last report(), else evaluate_model on the train input; None when
    none holds a finite number."""
    for source in (eval_test, reported, eval_train):
        value = finite(source.get(settings.metric) if isinstance(source, Mapping) else None)
        if value is not None:
            return value
    return None


def finite(value: object) -> Optional[float]:
    """``value`` as a float when it is a finite number (an integer too large for a float is
    not); None otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def moves(settings: EarlyStoppingSettings, versions: Sequence[VersionStanding]) -> Moves:
    """What to do now about the paused versions of one script (``versions`` in queue order)."""
    result = Moves()
    order = {standing.version: index for index, standing in enumerate(versions)}
    # Rung k is settled when no version can still come to it: none pending, none running to
    # it or below, none paused below it that may yet go on.
    open_below = any(standing.standing is Standing.PENDING for standing in versions)
    top = max((len(standing.rungs) for standing in versions), default=0)
    promotions: List[Tuple[int, int, Promotion]] = []  # (rung, rank, promotion)
    for standing in versions:
        if standing.standing is Standing.PAUSED and not standing.judged:
            promotions.append((top, -1, Promotion(standing.version, -1, None, unreported=True)))
    versions = [standing for standing in versions if standing.judged]
    for rung in range(top):
        open_below = open_below or any(
            standing.standing is Standing.RUNNING and len(standing.rungs) <= rung for standing in versions
        )
        settled = not open_below
        values = {
            standing.version: standing.rungs[rung]
            for standing in versions
            if len(standing.rungs) > rung and standing.rungs[rung] is not None
        }
        ranked = sorted(values, key=lambda name: (_key(settings, values[name]), order[name]))
        goes_on = _goes_on(settings, values, ranked, settled)
        for standing in versions:
            if standing.standing is not Standing.PAUSED or len(standing.rungs) != rung + 1:
                continue
            value = standing.rungs[rung]
            if value is None:
                promotions.append((rung, -1, Promotion(standing.version, rung, None, unreported=True)))
            elif standing.version in goes_on:
                step = until_step(settings, rung + 1, standing.total_steps)
                promotions.append((rung, ranked.index(standing.version), Promotion(standing.version, rung, step)))
            elif settled:
                result.stops.append(Stop(standing.version, rung, value, _why(settings, values, ranked, standing.version, rung)))
            else:
                open_below = True  # it may yet go on, and come to the rungs above
        if any(promotion.rung == rung for _, _, promotion in promotions):
            open_below = True
    result.promotions = [promotion for _, _, promotion in sorted(promotions, key=lambda item: (-item[0], item[1]))]
    return result


def goes_on_while_running(settings: EarlyStoppingSettings, values: Mapping[str, float], version: str) -> bool:
    """For a script whose model cannot resume: whether ``version``, running, goes on past a
    rung, given every version's value there so far (its own included). asha: at least as
    good as the (1 - 1/reduction_factor) quantile of them, as Ray Tune's ASHA decides (the
    first to come always goes on); median: at least as good as the median of the others."""
    own = values[version]
    if settings.rule == "median":
        others = [value for name, value in values.items() if name != version]
        return not others or not better(settings, _median(others), own)
    # Ray Tune's cutoff: np.nanpercentile of the values at (1 - 1/rf) * 100, on the side where
    # larger is better.
    signed = sorted(-value if settings.mode == "min" else value for value in values.values())
    cutoff = _percentile(signed, 1 - 1 / settings.reduction_factor)
    return (-own if settings.mode == "min" else own) >= cutoff


# -- inside ----------------------------------------------------------------------------------------


def _key(settings: EarlyStoppingSettings, value: float) -> float:
    return value if settings.mode == "min" else -value


def _goes_on(settings: EarlyStoppingSettings, values: Dict[str, float], ranked: List[str], settled: bool) -> set:
    if settings.rule == "median":
        chosen = set()
        for name in ranked:
            others = [value for other, value in values.items() if other != name]
            if (others and not better(settings, _median(others), values[name])) or (not others and settled):
                chosen.add(name)
        return chosen
    quota = len(ranked) // settings.reduction_factor
    if settled:
        quota = max(quota, 1)
    return set(ranked[:quota])


def _why(settings: EarlyStoppingSettings, values: Dict[str, float], ranked: List[str], version: str, rung: int) -> str:
    value = values[version]
    step = rung_step(settings, rung)
    if settings.rule == "median":
        others = [other for name, other in values.items() if name != version]
        return (
            f"stopped by the median rule at rung {rung} (step {step}): {settings.metric}={value:g} is worse "
            f"than the median {_median(others):g} of the other {len(others)} versions there"
        )
    quota = max(len(ranked) // settings.reduction_factor, 1)
    return (
        f"stopped by asha at rung {rung} (step {step}): {settings.metric}={value:g} ranks "
        f"{ranked.index(version) + 1} of {len(ranked)} there; only the best {quota} may go on"
    )


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _percentile(ordered: Sequence[float], share: float) -> float:
    """numpy's default (linear) percentile of sorted ``ordered`` at ``share`` (0 to 1)."""
    position = (len(ordered) - 1) * share
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
