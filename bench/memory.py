"""Benchmark: the daemon's peak memory while its version prints without restraint.

Each case is one version run by `mlpipeline -r` (stdout to /dev/null): a quiet one (the
daemon's own footprint), one 50 MB line, a progress bar redrawn with carriage returns and no
newline (100 MB in all), and 500,000 ordinary lines. The figure is the daemon's own peak
resident memory (VmHWM from /proc, read while a second, waiting version holds the daemon
open), not its children's. Target (SPEC 11): under 100 MB whatever a version prints.
Run: python bench/memory.py
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._project import environment, machine, make_project, mlpipeline  # noqa: E402

SCRIPT = """
import os, sys, time
from mlpipeline.helper import DataLoader, Model
from mlpipeline.utils import Versions

class Data(DataLoader):
    def get_train_input(self, **kw): return [0]
    def get_test_input(self, **kw): return [0]
    def get_train_sample_count(self): return 1
    def get_test_sample_count(self): return 1

class Printer(Model):
    def train_model(self, input_fn, steps):
        out = sys.stdout.buffer
        if self.current_version["name"] == "hold":
            open("printed", "w").close()
            while not os.path.exists("go"):
                time.sleep(0.02)
            return
        {body}
        out.flush()

    def evaluate_model(self, input_fn, steps):
        return {{}}

versions = Versions(learning_rate=0.1, dataloader=Data(), batch_size=1, epoc_count=1)
versions.addV("print")
versions.addV("hold")
MODEL = Printer(versions)
"""

CASES = {
    "a quiet version": "pass",
    "one 50 MB line": 'out.write(b"x" * (50 * 2**20) + b"\\n")',
    "a bar redrawn 2,000 times, no newline (100 MB)": (
        'for step in range(2000): out.write(b"\\r" + b"%5d " % step + b"#" * (50 * 2**10))'
    ),
    "500,000 lines of 60 bytes": 'for step in range(500000): out.write(b"step %8d loss 0.123456789 accuracy 0.987654321 ....\\n" % step)',
}


def peak_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc")


def measure(body: str) -> float:
    root = make_project({"printer.py": SCRIPT.format(body=body)}, ["printer.py"])
    with open("/dev/null", "w") as null:
        daemon = subprocess.Popen(mlpipeline(root, "-r"), env=environment(), cwd=root, stdout=null, stderr=null)
    deadline = time.monotonic() + 600
    while not (root / "printed").exists():
        if daemon.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the daemon ended early: {daemon.returncode}")
        time.sleep(0.05)
    time.sleep(0.5)  # what the printing version wrote is read and logged by now
    peak = peak_mib(daemon.pid)
    (root / "go").touch()
    daemon.wait(timeout=120)
    return peak


def main() -> None:
    print(machine())
    for name, body in CASES.items():
        peak = measure(body)
        print(f"{name:<50} daemon peak {peak:6.1f} MiB  ({peak / 100:.2f} of the 100 MB target)")


if __name__ == "__main__":
    main()
