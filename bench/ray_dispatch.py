"""Benchmark: what a version costs on a Ray cluster against this host, in the same run.

A Ray cluster of two real nodes is started on this machine (a head and one more node, one
CPU each, as tests/conftest.py makes them). The same queue, 20 versions of a plain-Python
script that prints one line and trains one step, runs with ``executor = "local"`` and with
``executor = "ray"``, five times each, workers 1. Three figures a version, medians of the
five runs: the whole command less an empty queue's, over 20 (the daemon's start, and for Ray
joining the cluster and checking every node, happen once a queue); the steady state, from the
first version's start to the last one's end in the log, over 20; and how late a line the
child prints reaches the log (the log's time less the time the child printed).
Run: python bench/ray_dispatch.py
"""
from __future__ import annotations

import os
import statistics
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._project import machine, make_project, mlpipeline, run  # noqa: E402

VERSIONS = 20
REPEATS = 5

SCRIPT = """
import time
from mlpipeline.helper import DataLoader, Model
from mlpipeline.utils import Versions

class Data(DataLoader):
    def get_train_input(self, **kw): return [1.0]
    def get_test_input(self, **kw): return [1.0]
    def get_train_sample_count(self): return 1
    def get_test_sample_count(self): return 1

class OneStep(Model):
    def train_model(self, input_fn, steps):
        print("printed at %%.6f" %% time.time(), flush=True)
    def evaluate_model(self, input_fn, steps):
        return {"loss": 0.0}

versions = Versions(0.1, Data(), 1, 1)
for index in range(%d):
    versions.addV("v%%d" %% index, gpus=0)
MODEL = OneStep(versions)
""" % VERSIONS


def log_lines(root: Path) -> List[str]:
    return next((root / "models" / "outputs").glob("log-*")).read_text(encoding="utf-8").splitlines()


def log_span(lines: List[str]) -> float:
    starts = [datetime.fromisoformat(line.split()[0]) for line in lines if " started (" in line]
    ends = [datetime.fromisoformat(line.split()[0]) for line in lines if " finished in " in line]
    return (max(ends) - min(starts)).total_seconds()


def line_delays(lines: List[str]) -> List[float]:
    """Seconds from each child's print to the log line. The log's times are cut to the ms, so a
    delay under 1 ms can read as slightly negative: such a one counts as 0."""
    delays = []
    for line in lines:
        if "printed at " in line:
            logged = datetime.fromisoformat(line.split()[0])
            printed = datetime.fromtimestamp(float(line.rsplit(" ", 1)[1]), tz=timezone.utc)
            delays.append(max((logged - printed).total_seconds(), 0.0))
    return delays


def measure(mlp_extra: str, env: Dict[str, str]) -> Tuple[float, float, float, float]:
    per_version, steady, delays, empties = [], [], [], []
    for _ in range(REPEATS):
        empty = make_project({"one_step.py": SCRIPT}, [], mlp_extra)
        started = time.perf_counter()
        run(mlpipeline(empty, "-r"), env)
        fixed = time.perf_counter() - started
        empties.append(fixed)
        root = make_project({"one_step.py": SCRIPT}, ["one_step.py"], mlp_extra)
        started = time.perf_counter()
        run(mlpipeline(root, "-r"), env)
        per_version.append((time.perf_counter() - started - fixed) / VERSIONS)
        lines = log_lines(root)
        steady.append(log_span(lines) / VERSIONS)
        delays += line_delays(lines)
    return statistics.median(per_version), statistics.median(steady), statistics.median(delays), statistics.median(empties)


def main() -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "token")  # as tests/conftest.py: token authentication on
    os.environ.setdefault("RAY_AUTH_TOKEN", uuid.uuid4().hex)
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        print(f"machine: {machine()}")
        print(f"{VERSIONS} versions of a plain-Python script, workers 1; medians of {REPEATS} runs")
        figures = {}
        for label, extra in {"local": "", "ray": f'executor = "ray"\nray_address = "{cluster.address}"\n'}.items():
            figures[label] = measure(extra, {})
            whole, steady, delay, empty = figures[label]
            print(f"{label}: {whole * 1000:.0f} ms a version (whole command less an empty queue's); "
                  f"steady state {steady * 1000:.0f} ms a version; a printed line reaches the log "
                  f"{delay * 1000:.0f} ms later; the empty queue's command {empty * 1000:.0f} ms")
        (local, ray) = figures["local"], figures["ray"]
        print(f"ray over local: {(ray[0] - local[0]) * 1000:+.0f} ms a version whole, "
              f"{(ray[1] - local[1]) * 1000:+.0f} ms steady; line delay {(ray[2] - local[2]) * 1000:+.0f} ms; "
              f"start and end of a queue {(ray[3] - local[3]) * 1000:+.0f} ms")
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main()
