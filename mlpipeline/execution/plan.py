"""The queue choice: which version runs next, and whether it starts fresh or resumes."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import AbstractSet, Container, Iterable, Optional, Protocol, Tuple

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
    halving: bool = False  # early stopping decides what becomes of a paused version


@dataclass(frozen=True)
class PlannedRun:
    script: QueuedScript
    version: str
    sha256: str
    """The version's fingerprint, as the journal records it: its script's sha256, combined
    with those of its configuration files for a version made from them."""
    start: Start
    attempt: int = 1
    script_sha256: str = ""
    """The script's own sha256 where it differs from ``sha256``: what its child checks and a
    script server is kept by."""
    # Early stopping (early_stopping.py): the version's values at the rungs it passed, the
    # step this run trains up to (None: to its end), and whether the rule is applied while it
    # runs (a script whose model cannot resume) rather than at a pause.
    rungs: Tuple[Optional[float], ...] = ()
    until_step: Optional[int] = None
    watched: bool = False

    @property
    def label(self) -> str:
        return f"{self.script.label}:{self.version}"

    @property
    def script_content(self) -> str:
        """The sha256 of the script's bytes."""
        return self.script_sha256 or self.sha256


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
    if state is RunState.PAUSED and same_code and policy.use_history and not policy.halving:
        return Start.RESUME  # paused by early stopping, which is off now: it runs to its end
    if not policy.use_history:
        return Start.FRESH
    if not same_code:
        return Start.FRESH
    if state is RunState.INTERRUPTED:
        return Start.RESUME
    if state in (RunState.FAILED, RunState.TIMED_OUT, RunState.CANCELLED) and policy.retry_failed:
        return Start.FRESH
    return None


class Fingerprint(Protocol):
    """The fingerprint of each version of one script content (catalog.VersionFingerprints)."""

    script_sha256: str

    def __call__(self, version: str) -> str: ...


def choose_next(
    candidates: Iterable[Tuple[QueuedScript, Fingerprint, Iterable[str]]],
    journal: Journal,
    policy: HistoryPolicy,
    handled: Container[Tuple[str, str, str]],
    cut_off: AbstractSet[Tuple[str, str]] = frozenset(),
) -> Optional[PlannedRun]:
    """The next version to run: the first resumable one in queue order, else the first fresh one.

    ``candidates`` yields (script, the fingerprint of its versions, version names in run
    order); ``handled`` holds the (script, version, fingerprint) this session already ran or
    that any daemon claimed during it: each runs at most once per session and content.
    """
    first_fresh: Optional[PlannedRun] = None
    for script, fingerprint, names in candidates:
        for version in names:
            sha256 = fingerprint(version)
            if not script.wants(version) or (script.label, version, sha256) in handled:
                continue
            start = decide(journal, script.label, version, sha256, policy, cut_off)
            if start is None:
                continue
            own = "" if sha256 == fingerprint.script_sha256 else fingerprint.script_sha256
            if start is Start.RESUME:
                return PlannedRun(script, version, sha256, start, script_sha256=own)
            if first_fresh is None:
                first_fresh = PlannedRun(script, version, sha256, start, script_sha256=own)
                if not policy.use_history and not cut_off:
                    return first_fresh
    return first_fresh
