"""Benchmark: `mlpipeline compare` and `mlpipeline plot` over a long record.

results.jsonl gets ROWS rows (more than a journal of 100,000 events records: it ends about
33,000 versions), the runs of VERSIONS versions of 20 scripts in turn, most finished, some
failed; the latest run of each version has a metric history of REPORTS reports. Timed, as a
user runs them (a new process each, medians of 3): compare (plain text, piped), compare
--best (from the best values each row keeps), compare --json, plot of one metric for 20
versions and for all; and compare --best over rows written before rows kept their best,
which reads every history.
Run: python bench/compare.py
"""
from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._project import environment, machine, make_project, mlpipeline  # noqa: E402

ROWS = 100_000
VERSIONS = 500
REPORTS = 1_000


def build(root: Path, with_best: bool = True) -> None:
    outputs = root / "models" / "outputs"
    outputs.mkdir(parents=True)
    latest = {}
    with open(outputs / "results.jsonl", "w") as handle:
        for index in range(ROWS):
            version = index % VERSIONS
            script, name = f"model_{version % 20}.py", f"v{version}"
            model_dir = outputs / "model_ckpts" / f"model_{version % 20}-{name}"
            run_id = f"{index:012x}"
            row = {
                "time": "2026-11-22T01:00:00.000+00:00", "host": "gpu1", "script": script, "version": name,
                "status": "failed" if index % 7 == 0 else "finished", "reason": None, "sha256": "0" * 64,
                "resumed": False, "run_id": run_id, "attempt": 1, "duration_s": 12.5, "steps": {"trained": REPORTS, "total": REPORTS},
                "eval_train": {"accuracy": 0.9, "loss": 0.1}, "eval_test": {"accuracy": 0.8 + version / 10_000, "loss": 0.2},
                "metrics": {"loss": 0.1}, "model_dir": str(model_dir),
                # As the daemon writes a row since 2026-12: the best of its history, kept with it.
                **({"best": {"loss": math.exp(-REPORTS / 200), "accuracy": 1 - math.exp(-REPORTS / 200)}} if with_best else {}),
                "parameters": {"learning_rate": 10 ** -(version % 4), "batch_size": 32, "width": version % 8, "order": version},
            }
            handle.write(json.dumps(row) + "\n")
            if row["status"] == "finished":
                latest[(script, name)] = (model_dir, run_id)
    for model_dir, run_id in latest.values():
        record = model_dir / ".mlpipeline"
        record.mkdir(parents=True)
        with open(record / "metrics.jsonl", "w") as handle:
            for step in range(1, REPORTS + 1):
                report = {"time": "2026-11-22T01:00:00.000+00:00", "run_id": run_id, "step": step, "total": REPORTS,
                          "metrics": {"loss": math.exp(-step / 200), "accuracy": 1 - math.exp(-step / 200)}}
                handle.write(json.dumps(report) + "\n")


def timed(command) -> float:
    times = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run(command, env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    old_rows = make_project({}, [])
    build(old_rows, with_best=False)
    root = make_project({}, [])
    build(root)
    size = (root / "models" / "outputs" / "results.jsonl").stat().st_size / 1e6
    print(machine())
    print(f"results.jsonl: {ROWS:,} rows ({size:.0f} MB), {VERSIONS} versions; a history of {REPORTS:,} reports for each")
    selected = [f"model_{i % 20}.py:v{i}" for i in range(20)]
    for what, args in (
        ("compare", ["compare"]),
        ("compare --json", ["compare", "--json"]),
        ("compare --best", ["compare", "--best"]),
        ("compare --best, 20 versions", ["compare", "--best", *selected]),
        ("plot loss, 20 versions", ["plot", "loss", "-o", str(root / "loss.png"), *selected]),
        ("plot loss, all 500 versions", ["plot", "loss", "-o", str(root / "all.png")]),
    ):
        print(f"{what}: {timed(mlpipeline(root, *args)):.2f} s")
    print(f"compare --best over rows of an older release (no best kept: every history read): {timed(mlpipeline(old_rows, 'compare', '--best')):.2f} s")


if __name__ == "__main__":
    main()
