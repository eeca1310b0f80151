"""Benchmark 4: choosing the next version with 1,000 scripts in models.config.

Everything but the last script has finished, so the choice walks the whole queue: re-read
models.config, fingerprint every script (a stat each; a hash only when one changed), look up
every version's listing and journal state. Target (SPEC 11): under 50 ms.
Run: python bench/queue_choice.py   (learning the 1,000 listings once takes a minute)
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._project import machine, make_project  # noqa: E402
from mlpipeline.execution.loop import ExecutionLoop, ExecutionOptions  # noqa: E402
from mlpipeline.queue.config import load_project_config  # noqa: E402
from mlpipeline.records.states import JournalEvent  # noqa: E402
from mlpipeline.watch.console import ConsoleView, make_console  # noqa: E402

SCRIPTS = 1000
SCRIPT = """
from mlpipeline.helper import DataLoader, Model
from mlpipeline.utils import Versions
versions = Versions(0.1, DataLoader(), 1, 1)
versions.addV("a")
versions.addV("b")
MODEL = Model(versions)
"""


def main() -> None:
    names = [f"model_{index:04d}.py" for index in range(SCRIPTS)]
    root = make_project({name: SCRIPT for name in names}, names)
    view = ConsoleView(make_console())
    loop = ExecutionLoop(load_project_config(root), ExecutionOptions(use_history=True), view)
    started = time.perf_counter()
    first = loop.next_version()  # learns every listing from a child, once
    print(f"learning {SCRIPTS} listings (child processes, once): {time.perf_counter() - started:.1f} s")
    assert first is not None
    for name in names[:-1]:
        for version in ("a", "b"):
            fields = loop.identity.event_fields(name, version, loop.chooser.fingerprints.sha256(root / "models" / name))
            loop.journal.append(JournalEvent.FINISHED, **fields)
    timings = []
    for _ in range(20):
        started = time.perf_counter()
        planned = loop.next_version()
        timings.append(time.perf_counter() - started)
    assert planned is not None and planned.script.label == names[-1], planned
    timings.sort()
    print(f"machine: {machine()}")
    print(f"choice of the next version among {SCRIPTS} scripts ({2 * SCRIPTS} versions, 1998 done):")
    print(f"  best {timings[0] * 1000:.1f} ms, median {timings[10] * 1000:.1f} ms of 20; target 50 ms: "
          f"median is {timings[10] / 0.050:.2f} of the target")


if __name__ == "__main__":
    main()
