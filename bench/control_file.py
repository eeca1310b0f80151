"""Benchmark: a control.jsonl that grew to N requests (300,000 by default).

Times `mlpipeline status` (which reads the file to say whether the queue is paused) on the
grown file, then `mlpipeline pause` (which compacts it: control.py), and `status` again on
what is left, each as a whole command; then a daemon's whole run of one quick version on a
file grown again (it compacts the file as it starts). Run: python bench/control_file.py [N]
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import List

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._project import environment, machine, make_project, mlpipeline  # noqa: E402

SCRIPT = """
from mlpipeline.helper import Model, SplitDataLoader
from mlpipeline.utils import Versions

class Quick(Model):
    def train_model(self, input_fn, steps):
        pass

    def evaluate_model(self, input_fn, steps):
        return {}

versions = Versions(learning_rate=0.1, dataloader=SplitDataLoader([0], [0]), batch_size=1, epoc_count=1)
versions.addV("v")
MODEL = Quick(versions)
"""


def timed(command: List[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=environment(), cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 300_000
    root = make_project({"quick.py": SCRIPT}, ["quick.py"])
    outputs = root / "models" / "outputs"
    outputs.mkdir(parents=True)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    with open(outputs / "control.jsonl", "w") as handle:
        for index in range(count):
            action = ("pause", "resume", "cancel")[index % 3]
            record = {"time": (start + timedelta(seconds=index)).isoformat(), "action": action, "host": "h", "pid": 1}
            if action == "cancel":
                record.update(script="quick.py", version="v")
            handle.write(json.dumps(record) + "\n")
    size = (outputs / "control.jsonl").stat().st_size
    print(f"machine: {machine()}")
    print(f"control.jsonl: {count:,} requests, {size / 2**20:.1f} MiB")
    print(f"mlpipeline status on it: {timed(mlpipeline(root, 'status'), root):.2f} s")
    print(f"mlpipeline pause (compacts it): {timed(mlpipeline(root, 'pause'), root):.2f} s")
    left = (outputs / "control.jsonl").read_text().splitlines()
    print(f"left: {len(left)} request(s), {(outputs / 'control.jsonl').stat().st_size} bytes")
    print(f"mlpipeline status after: {timed(mlpipeline(root, 'status'), root):.2f} s")
    timed(mlpipeline(root, "resume"), root)
    with open(outputs / "control.jsonl", "a") as handle:  # grown again, as an older release left it
        for index in range(count):
            record = {"time": (start + timedelta(seconds=index)).isoformat(), "action": "cancel", "host": "h", "pid": 1}
            handle.write(json.dumps(dict(record, script="quick.py", version="v")) + "\n")
    print(f"mlpipeline -r, one quick version, on a file of {count + 2:,} requests (compacted as it starts): {timed(mlpipeline(root, '-r'), root):.2f} s")
    print(f"left: {len((outputs / 'control.jsonl').read_text().splitlines())} request(s)")


if __name__ == "__main__":
    main()
