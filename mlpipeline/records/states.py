"""The states a version can be in, and the journal events that move it between them."""
from __future__ import annotations

from enum import Enum


class JournalEvent(Enum):
    """What the journal records about a version, one line each."""

    CLAIMED = "claimed"
    STARTED = "started"
    FINISHED = "finished"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"  # `mlpipeline cancel` stopped it: -u neither resumes nor retries it


class RunState(Enum):
    """Where a version stands, as the journal and the current script content say."""

    PENDING = "pending"
    RUNNING = "running"
    FINISHED = "finished"  # as the journal and results.jsonl say it
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


STATE_AFTER = {
    JournalEvent.CLAIMED: RunState.RUNNING,
    JournalEvent.STARTED: RunState.RUNNING,
    JournalEvent.FINISHED: RunState.FINISHED,
    JournalEvent.FAILED: RunState.FAILED,
    JournalEvent.INTERRUPTED: RunState.INTERRUPTED,
    JournalEvent.TIMED_OUT: RunState.TIMED_OUT,
    JournalEvent.CANCELLED: RunState.CANCELLED,
}
