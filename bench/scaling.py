"""Benchmark 5: 20 CPU-bound versions with workers = 1 and workers = 2.

On 2 cores, 2 workers should take close to half the time. Run: python bench/scaling.py
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._project import machine, make_project, mlpipeline, run  # noqa: E402

VERSIONS = 20
SCRIPT = """
import time
from mlpipeline.helper import DataLoader, Model
from mlpipeline.utils import Versions

class Data(DataLoader):
    def get_train_input(self, **kw): return None
    def get_test_input(self, **kw): return None
    def get_train_sample_count(self): return 1
    def get_test_sample_count(self): return 1

class Burn(Model):
    def train_model(self, input_fn, steps):
        until = time.process_time() + 1.0  # one second of CPU, whatever else the machine does
        while time.process_time() < until:
            pass
    def evaluate_model(self, input_fn, steps):
        return {}

versions = Versions(0.1, Data(), 1, 1)
for index in range(%d):
    versions.addV("v%%d" %% index)
MODEL = Burn(versions)
""" % VERSIONS


def main() -> None:
    times = {}
    for workers in (1, 2):
        root = make_project({"burn.py": SCRIPT}, ["burn.py"])
        started = time.perf_counter()
        run(mlpipeline(root, "-r", "--workers", str(workers)))
        times[workers] = time.perf_counter() - started
    print(f"machine: {machine()}")
    print(f"{VERSIONS} versions of 1 s CPU each: workers 1 {times[1]:.1f} s, workers 2 {times[2]:.1f} s")
    print(f"ratio workers 2 / workers 1: {times[2] / times[1]:.2f} (ideal on 2 cores: 0.50)")


if __name__ == "__main__":
    main()
