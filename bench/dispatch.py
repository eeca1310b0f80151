"""Benchmark 1: dispatch cost of 20 versions of a script that imports a framework and trains one step.

Measured against a bare `python -c "import torch"` (or tensorflow) in the same invocation:
the per-version time of `mlpipeline -r` (one child per version, plus one child that lists
the versions) over the bare import's time, without and with preload. Targets (SPEC 11):
at most 1.5x the bare import without preload, under 50 ms a version with preload.
Run: python bench/dispatch.py [torch|tensorflow]
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._project import environment, machine, make_project, mlpipeline, run  # noqa: E402

VERSIONS = 20

TORCH_SCRIPT = """
import torch
from mlpipeline.helper import DataLoader, Model
from mlpipeline.utils import Versions

class Data(DataLoader):
    def get_train_input(self, **kw): return torch.ones(4, 3)
    def get_test_input(self, **kw): return torch.ones(4, 3)
    def get_train_sample_count(self): return 4
    def get_test_sample_count(self): return 4

class OneStep(Model):
    def pre_execution_hook(self, version, model_dir, exec_mode):
        super().pre_execution_hook(version, model_dir, exec_mode)
        self.net = torch.nn.Linear(3, 1)
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=0.1)
    def train_model(self, input_fn, steps):
        for _ in range(steps):
            self.optimizer.zero_grad()
            self.net(input_fn).sum().backward()
            self.optimizer.step()
    def evaluate_model(self, input_fn, steps):
        with torch.no_grad():
            return {"out": float(self.net(input_fn).sum())}

versions = Versions(0.1, Data(), 4, 1)
for index in range(%d):
    versions.addV("v%%d" %% index)
MODEL = OneStep(versions)
""" % VERSIONS

TENSORFLOW_SCRIPT = """
import keras
import numpy as np
from mlpipeline.helper import DataLoader, Model
from mlpipeline.utils import Versions

class Data(DataLoader):
    def get_train_input(self, **kw): return np.ones((4, 3), "float32"), np.ones((4, 1), "float32")
    def get_test_input(self, **kw): return self.get_train_input()
    def get_train_sample_count(self): return 4
    def get_test_sample_count(self): return 4

class OneStep(Model):
    def pre_execution_hook(self, version, model_dir, exec_mode):
        super().pre_execution_hook(version, model_dir, exec_mode)
        self.net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        self.net.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    def train_model(self, input_fn, steps):
        for _ in range(steps):
            self.net.train_on_batch(*input_fn)
    def evaluate_model(self, input_fn, steps):
        return {"loss": float(self.net.evaluate(*input_fn, verbose=0))}

versions = Versions(0.1, Data(), 4, 1)
for index in range(%d):
    versions.addV("v%%d" %% index)
MODEL = OneStep(versions)
""" % VERSIONS

FRAMEWORKS = {
    "torch": {
        "import": "import torch",
        "script": TORCH_SCRIPT,
        "alone": (
            "import torch; net = torch.nn.Linear(3, 1); optimizer = torch.optim.SGD(net.parameters(), lr=0.1);"
            "optimizer.zero_grad(); net(torch.ones(4, 3)).sum().backward(); optimizer.step()"
        ),
        "preloads": {
            'preload = ["torch"]': 'preload = ["torch"]\n',
            'preload = ["torch", "torch._dynamo"]': 'preload = ["torch", "torch._dynamo"]\n',
        },
    },
    "tensorflow": {
        "import": "import tensorflow",
        "script": TENSORFLOW_SCRIPT,
        "alone": (
            "import keras, numpy as np; net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]);"
            "net.compile(optimizer=keras.optimizers.SGD(0.1), loss='mse');"
            "net.train_on_batch(np.ones((4, 3), 'float32'), np.ones((4, 1), 'float32'))"
        ),
        "preloads": {
            'preload = ["tensorflow", "keras"]': 'preload = ["tensorflow", "keras"]\n',
        },
    },
}


def python_seconds(code: str, repeats: int = 5) -> float:
    """Median wall time of a fresh `python -c code`."""
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], env=environment(), check=True, capture_output=True)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def per_version_seconds(script: str, preload_line: str, repeats: int) -> Tuple[float, float]:
    """Two figures a version, medians of ``repeats`` runs of `mlpipeline -r` over the 20 versions.

    First, the whole command's wall time less that of an empty queue, over 20: the daemon's
    start and end (and the preload server's imports) happen once per queue, not per version.
    Their run-to-run spread divided by 20 can be as large as a preloaded version's time, hence
    the repeats. Second, the steady state, which that spread does not touch: from the first
    version's start to the last one's end in the log, over 20.
    """
    per_version, steady = [], []
    for _ in range(repeats):
        empty = make_project({"one_step.py": script}, [], preload_line)
        started = time.perf_counter()
        run(mlpipeline(empty, "-r"))
        fixed = time.perf_counter() - started
        root = make_project({"one_step.py": script}, ["one_step.py"], preload_line)
        started = time.perf_counter()
        run(mlpipeline(root, "-r"))
        per_version.append((time.perf_counter() - started - fixed) / VERSIONS)
        steady.append(log_span(root) / VERSIONS)
    return statistics.median(per_version), statistics.median(steady)


def log_span(root: Path) -> float:
    """Seconds from the first version's start to the last version's end, by the log's times."""
    lines = next((root / "models" / "outputs").glob("log-*")).read_text(encoding="utf-8").splitlines()
    starts = [datetime.fromisoformat(line.split()[0]) for line in lines if " started (" in line]
    ends = [datetime.fromisoformat(line.split()[0]) for line in lines if " finished in " in line]
    return (max(ends) - min(starts)).total_seconds()


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "torch"
    framework = FRAMEWORKS[name]
    bare = python_seconds(framework["import"])
    alone = python_seconds(framework["alone"])
    print(f"machine: {machine()}")
    print(f'bare `python -c "{framework["import"]}"`: {bare * 1000:.0f} ms; '
          f"the one step alone in a bare python: {alone * 1000:.0f} ms (medians of 5)")
    for label, line in {"no preload": "", **framework["preloads"]}.items():
        repeats = 1 if not line else 5
        seconds, steady = per_version_seconds(framework["script"], line, repeats)
        print(f"{label}: {seconds * 1000:.0f} ms a version ({VERSIONS} versions, one listing child included"
              f"{'' if repeats == 1 else f'; median of {repeats} runs'}); {seconds / bare:.2f}x the bare import; "
              f"steady state {steady * 1000:.0f} ms a version")
    print("targets: at most 1.50x the bare import without preload; under 50 ms a version with preload")


if __name__ == "__main__":
    main()
