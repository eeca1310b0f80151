"""Benchmark: `mlpipeline status` over a journal of 100,000 events.

A queue of 1,000 scripts with 34 versions each (34,000 rows), whose listings a daemon kept
under outputs/.listings/, and a journal of 100,000 events (claimed, started, finished for
33,334 versions). Measures the whole `mlpipeline status --json` command (Python's start
included) and the status rows alone, in this process.

Target (SPEC 11): under 1 s. Run: python bench/status.py
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._project import environment, machine, make_project, mlpipeline, write_journal  # noqa: E402
from mlpipeline.queue.config import load_project_config  # noqa: E402
from mlpipeline.watch.status import StatusReader  # noqa: E402

EVENTS = 100_000
SCRIPTS = 1_000
VERSIONS = 34


def build() -> Path:
    scripts = {f"model_{i}.py": f"# model {i}: its versions come from the kept listing\n" for i in range(SCRIPTS)}
    root = make_project(scripts, list(scripts))
    outputs = root / "models" / "outputs"
    (outputs / ".listings").mkdir(parents=True)
    shas = {}
    for name, text in scripts.items():
        sha = shas[name] = hashlib.sha256(text.encode()).hexdigest()
        listing = {"sha256": sha, "names": [f"v{n}" for n in range(VERSIONS)], "missing": {}, "suffixes": {}, "gpus": {}}
        (outputs / ".listings" / f"{sha}.json").write_text(json.dumps(listing))
    write_journal(outputs / "history.jsonl", EVENTS, SCRIPTS, shas.__getitem__)
    return root


def best_of(runs: int, command: list) -> tuple:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, env=environment(), stdout=subprocess.DEVNULL, check=True)
        timings.append(time.perf_counter() - started)
    return min(timings), sorted(timings)[runs // 2]


def main() -> None:
    root = build()
    size_mb = (root / "models" / "outputs" / "history.jsonl").stat().st_size / 2**20
    project = load_project_config(root)
    in_process = []
    for _ in range(5):
        started = time.perf_counter()
        rows = StatusReader(project).rows()
        in_process.append(time.perf_counter() - started)
    states = {}
    for row in rows:
        states[row.state] = states.get(row.state, 0) + 1
    print(f"machine: {machine()}")
    print(f"journal: {EVENTS:,} events, {size_mb:.1f} MiB")
    print(f"status rows in process, whole queue: best {min(in_process) * 1000:.0f} ms, median {sorted(in_process)[2] * 1000:.0f} ms of 5")
    queue = root / "models.config"
    whole = queue.read_text()
    for scripts in (SCRIPTS, 20):
        queue.write_text(f"[WHITELISTED_MODELS]\nscripts = {json.dumps([f'model_{i}.py' for i in range(scripts)])}\n")
        for args in (("status", "--json"), ("status",)):
            best, median = best_of(5, mlpipeline(root, *args))
            print(
                f"`mlpipeline {' '.join(args)}`, {scripts:,} scripts queued ({scripts * VERSIONS:,} rows): "
                f"best {best * 1000:.0f} ms, median {median * 1000:.0f} ms of 5; {best:.2f} of the 1000 ms target"
            )
    queue.write_text(whole)
    print(f"states of the whole queue: {states}")


if __name__ == "__main__":
    main()
