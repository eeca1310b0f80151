"""Benchmark: what Model.report() costs a training loop, now that every report is kept.

A real daemon runs one version whose train_model loops N times, computing a loss each time;
one version reports every iteration (report(step, total, loss=..., accuracy=...)), the other
the same loop without report(). The script times its own loop (time.perf_counter around it)
and returns the seconds as its evaluation. Cost per report: the difference over N; the
sustained rate: N over the reporting loop's seconds. Then the history file is read back: it
must hold all N reports, in order. Three repeats, medians.
Run: python bench/reports.py [N]
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._project import machine, make_project, mlpipeline, run  # noqa: E402

SCRIPT = """
import math, time
from mlpipeline.helper import Model, SplitDataLoader
from mlpipeline.utils import Versions

class Loop(Model):
    def train_model(self, data, steps):
        count = self.current_version["count"]
        report = self.current_version["report"]
        started = time.perf_counter()
        for step in range(1, count + 1):
            loss = math.exp(-step / count)
            if report:
                self.report(step=step, total=count, loss=loss, accuracy=1 - loss)
        self.seconds = time.perf_counter() - started

    def evaluate_model(self, data, steps):
        return {"loop_s": self.seconds}

versions = Versions(0.1, SplitDataLoader([0], [0]), 1, 1)
versions.addV("reports", report=True, count=%d, model_dir_suffix="reports")
versions.addV("silent", report=False, count=%d, model_dir_suffix="silent")
MODEL = Loop(versions)
"""


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    costs, rates = [], []
    for _ in range(3):
        root = make_project({"loop.py": SCRIPT % (count, count)}, ["loop.py"])
        run(mlpipeline(root, "-r"))
        outputs = root / "models" / "outputs"
        rows = {row["version"]: row for row in map(json.loads, (outputs / "results.jsonl").read_text().splitlines())}
        reporting, silent = rows["reports"]["eval_test"]["loop_s"], rows["silent"]["eval_test"]["loop_s"]
        history = (outputs / "model_ckpts" / "loop-reports" / ".mlpipeline" / "metrics.jsonl").read_text().splitlines()
        steps = [json.loads(line)["step"] for line in history]
        assert steps == list(range(1, count + 1)), f"{len(steps)} of {count} reports kept"
        costs.append((reporting - silent) / count * 1e6)
        rates.append(count / reporting)
    print(machine())
    print(f"{count:,} reports a run, 3 runs; all kept in order in metrics.jsonl")
    print(f"cost per report: {statistics.median(costs):.1f} us (runs: {', '.join(f'{c:.1f}' for c in costs)})")
    print(f"sustained: {statistics.median(rates):,.0f} reports/s from one version")


if __name__ == "__main__":
    main()
