"""What this session has ended, by state: for the live counts, the summary and the exit code."""
from __future__ import annotations

from typing import Dict, List, Tuple


class Tally:
    """The versions (and broken scripts) this session ended, in order."""

    def __init__(self) -> None:
        self.rows: List[Tuple[str, str, float]] = []  # (label, state, seconds)
        self.any_failed = False

    def add(self, label: str, state: str, seconds: float) -> None:
        self.rows.append((label, state, seconds))

    def counts(self) -> Dict[str, int]:
        """How many versions ended in each state, by their last word this session: a version
        that failed and then finished on a retry (or after an edit) is one finished, not one of
        each. A run paused at an early-stopping rung is no end of its version, which goes on or
        is stopped later (the rows keep it)."""
        last: Dict[str, str] = {}
        for label, state, _ in self.rows:
            if state != "paused":
                last[label] = state
        counts: Dict[str, int] = {}
        for state in last.values():
            counts[state] = counts.get(state, 0) + 1
        return counts
