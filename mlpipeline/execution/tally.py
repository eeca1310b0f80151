"""What this session has ended, by state: for the live counts, the summary and the exit code."""
from __future__ import annotations

from typing import Dict, List, Tuple


FAILED_STATES = ("failed", "timed_out")


class Tally:
    """The versions (and broken scripts) this session ended, in order."""

    def __init__(self) -> None:
        self.rows: List[Tuple[str, str, float]] = []  # (label, state, seconds)
        self.any_failed = False  # any attempt failed: what --fail-fast stops at
        self.blocked = False  # a version could not start (processes of its earlier run stayed)

    def add(self, label: str, state: str, seconds: float) -> None:
        self.rows.append((label, state, seconds))

    def counts(self) -> Dict[str, int]:
        """How many versions ended in each state, by their last word this session: a version
        that failed and then finished on a retry (or after an edit) is one finished, not one of
        each. A run paused at an early-stopping rung is no end of its version, which goes on or
        is stopped later (the rows keep it)."""
        counts: Dict[str, int] = {}
        for state in self.last_words().values():
            if state != "paused":
                counts[state] = counts.get(state, 0) + 1
        return counts

    def ends_failed(self) -> bool:
        """Whether the session's exit code says failure: a version (or a script) whose last word
        is a failure, or a version that could not start. One that failed and then finished (a
        retry, an edit under --wait) is no failure."""
        return self.blocked or any(state in FAILED_STATES for state in self.last_words().values())

    def last_words(self) -> Dict[str, str]:
        """How each version (or broken script) last ended this session, by label."""
        last: Dict[str, str] = {}
        for label, state, _ in self.rows:
            if ":" in label:
                last.pop(label.split(":", 1)[0], None)  # its script, broken before, lists again
            last[label] = state
        return last
