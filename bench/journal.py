"""Benchmark 3: load a journal of 100,000 events and compute every version's state.

Target (SPEC 11): well under 1 s. Run: python bench/journal.py
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._project import machine, write_journal  # noqa: E402
from mlpipeline.records.journal import Journal  # noqa: E402

EVENTS = 100_000


def main() -> None:
    path = Path(tempfile.mkdtemp(prefix="mlpipeline-bench-")) / "history.jsonl"
    write_journal(path, EVENTS, 1000, lambda script: "b907d10ef171f29b57efe7cb3eae7284569f91358318d5143c631af0a6bf078d")
    size_mb = path.stat().st_size / 2**20

    timings = []
    for _ in range(5):
        started = time.perf_counter()
        journal = Journal(path, print)
        journal.refresh()
        states = [journal.state(script, version) for script, version in journal.versions()]
        timings.append(time.perf_counter() - started)
    best = min(timings)
    print(f"machine: {machine()}")
    print(f"journal: {EVENTS:,} events, {size_mb:.1f} MiB, {len(states):,} versions")
    print(f"load and state of every version: best {best * 1000:.0f} ms, median {sorted(timings)[2] * 1000:.0f} ms of 5")
    print(f"target 1000 ms: {best / 1.0:.2f} of the target")


if __name__ == "__main__":
    main()
