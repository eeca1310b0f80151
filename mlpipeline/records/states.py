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
    # Early stopping ([EARLY_STOPPING]): a run that trained up to a rung and saved its model;
    # a version judged out at a rung; a running version's value at a rung it went past.
    PAUSED = "paused"
    STOPPED = "stopped"
    RUNG = "rung"


class RunState(Enum):
    """Where a version stands, as the journal and the current script content say."""

    PENDING = "pending"
    RUNNING = "running"
    FINISHED = "finished"  # as the journal and results.jsonl say it
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    PAUSED = "paused"  # at a rung, waiting to be promoted to the next (or stopped)
    STOPPED = "stopped"  # early stopping judged it out: -u never resumes it, --retry-failed never reruns it


STATE_AFTER = {
    JournalEvent.CLAIMED: RunState.RUNNING,
    JournalEvent.STARTED: RunState.RUNNING,
    JournalEvent.FINISHED: RunState.FINISHED,
    JournalEvent.FAILED: RunState.FAILED,
    JournalEvent.INTERRUPTED: RunState.INTERRUPTED,
    JournalEvent.TIMED_OUT: RunState.TIMED_OUT,
    JournalEvent.CANCELLED: RunState.CANCELLED,
    JournalEvent.PAUSED: RunState.PAUSED,
    JournalEvent.STOPPED: RunState.STOPPED,
    JournalEvent.RUNG: RunState.RUNNING,
}


CARRIED_FIELDS = ("rungs", "rung_basis", "total_steps", "until_step", "watched")
"""What an event of a version under early stopping carries on to the next event of it that
another writer makes (a takeover's interrupted): where it stands in its halving."""


def state_words(state: str) -> str:
    """A state as people read it (``timed out``); the records keep its name (``timed_out``)."""
    return state.replace("_", " ")
