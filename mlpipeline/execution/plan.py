"""The queue choice: which version runs next, and whether it starts fresh or resumes."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import AbstractSet, Container, Iterable, Optional, Tuple

from mlpipeline.queue.queue_file import QueuedScript
from mlpipeline.records.journal import Journal
from mlpipeline.records.states import RunState


class Start(Enum):
    """How a chosen version starts: from a clean model_dir, or continuing in the one it has."""

    FRESH = "fresh"
    RESUME = "resume"


@dataclass(frozen=True)
class HistoryPolicy:
    """What ``-u``, ``--retry-failed`` and ``on_script_change`` make of the journal."""

    use_history: bool = False
    retry_failed: bool = False
    on_script_change: str = "rerun"


@dataclass(frozen=True)
class PlannedRun:
    script: QueuedScript
    version: str
    sha256: str
    start: Start
    attempt: int = 1

    @property
    def label(self) -> str:
        return f"{self.script.label}:{self.version}"


def decide(
    journal: Journal,
    script: str,
    version: str,
    sha256: str,
    policy: HistoryPolicy,
    cut_off: AbstractSet[Tuple[str, str]] = frozenset(),
) -> Optional[Start]:
    """How ``script:version`` at content ``sha256`` should start, or None to skip it.

    ``cut_off`` holds the versions cut off during this session (their daemon died, say): they
    resume, with or without ``-u``.
    """
    last = journal.latest(script, version)
    if last is None:
        return Start.FRESH
    state = journal.state(script, version)
    if state is RunState.RUNNING:
        return None  # a live daemon has it: stale claims were reconciled before planning
    same_code = last.get("sha256") == sha256 or policy.on_script_change == "keep"
    if state is RunState.INTERRUPTED and same_code and (policy.use_history or (script, version) in cut_off):
        return Start.RESUME
    if not policy.use_history:
        return Start.FRESH
    if not same_code:
        return Start.FRESH
    if state is RunState.INTERRUPTED:
        return Start.RESUME
    if state in (RunState.FAILED, RunState.TIMED_OUT, RunState.CANCELLED) and policy.retry_failed:
        return Start.FRESH
    return None


def choose_next(
    candidates: Iterable[Tuple[QueuedScript, str, Iterable[str]]],
    journal: Journal,
    policy: HistoryPolicy,
    handled: Container[Tuple[str, str, str]],
    cut_off: AbstractSet[Tuple[str, str]] = frozenset(),
) -> Optional[PlannedRun]:
    """The next version to run: the first resumable one in queue order, else the first fresh one.

    ``candidates`` yields (script, sha256, version names in run order); ``handled`` holds the
    (script, version, sha256) this session already ran or that any daemon claimed during it:
    each runs at most once per session and script content.
    """
    first_fresh: Optional[PlannedRun] = None
    for script, sha256, names in candidates:
        for version in names:
            if not script.wants(version) or (script.label, version, sha256) in handled:
                continue
            start = decide(journal, script.label, version, sha256, policy, cut_off)
            if start is Start.RESUME:
                return PlannedRun(script, version, sha256, start)
            if start is Start.FRESH and first_fresh is None:
                first_fresh = PlannedRun(script, version, sha256, start)
                if not policy.use_history and not cut_off:
                    return first_fresh
    return first_fresh
