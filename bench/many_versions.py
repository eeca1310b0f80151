"""Benchmark: many short versions, against the ideal.

One script holds N versions (a model_dir each) whose training sleeps S seconds; `mlpipeline -r`
runs them with `workers = W`, with a preload server (``preload = ["json"]``) or, with
``--no-preload``, a new interpreter per version. The ideal is N * S / W. Printed: the whole
time and its ratio to the ideal, the daemon's own CPU (and per version), and the dispatch rate
over the first and the last thousand versions (from the journal's `started` events, against
W / S a second), so a cost that grows with the journal shows. Then `status`, `compare` and
`plot` over the finished queue, each timed as a whole command.
With ``--preload-scripts`` (``preload_scripts = true``), each worker is forked from one import
of the script instead of importing it itself.
Run: python bench/many_versions.py [N] [--seconds S] [--workers W] [--no-preload] [--preload-scripts]
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import List

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._project import environment, machine, make_project, mlpipeline  # noqa: E402

SCRIPT = """
import time
from mlpipeline.helper import Model, SplitDataLoader
from mlpipeline.utils import Versions

class Sleeper(Model):
    def train_model(self, input_fn, steps):
        time.sleep(%r)
        self.report(step=1, total=1, loss=0.5)

    def evaluate_model(self, input_fn, steps):
        return {"mse": 0.25}

versions = Versions(learning_rate=0.1, dataloader=SplitDataLoader([0], [0]), batch_size=1, epoc_count=1)
for index in range(%d):
    versions.addV("v%%05d" %% index, model_dir_suffix="v%%05d" %% index)
MODEL = Sleeper(versions)
"""


def option(name: str, default: float) -> float:
    if name in sys.argv:
        return float(sys.argv[sys.argv.index(name) + 1])
    return default


def starts(journal: Path) -> List[float]:
    times = []
    with open(journal, encoding="utf-8") as handle:
        for line in handle:
            event = json.loads(line)
            if event.get("event") == "started":
                times.append(datetime.fromisoformat(event["time"]).timestamp())
    return sorted(times)


def timed(command: List[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=environment(), cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def main() -> None:
    numbers = [word for word in sys.argv[1:] if word[:1].isdigit()]
    count = int(numbers[0]) if numbers else 10_000
    seconds, workers = option("--seconds", 1.0), int(option("--workers", 16))
    preload = "--no-preload" not in sys.argv
    scripts = "--preload-scripts" in sys.argv
    extra = f"workers = {workers}\n" + ('preload = ["json"]\n' if preload else "") + ("preload_scripts = true\n" if scripts else "")
    root = make_project({"sleeper.py": SCRIPT % (seconds, count)}, ["sleeper.py"], extra)
    print(f"machine: {machine()}")
    print(f"{count:,} versions of {seconds:g} s, workers {workers}, {'with' if preload else 'without'} a preload" + (", preload_scripts" if scripts else ""))
    started = time.perf_counter()
    with open("/dev/null", "w") as null:
        daemon = subprocess.Popen(mlpipeline(root, "-r"), env=environment(), cwd=root, stdout=null, stderr=null)
    watched, cpu, children_cpu, served_cpu = psutil.Process(daemon.pid), 0.0, 0.0, 0.0
    while daemon.poll() is None:
        try:
            times = watched.cpu_times()
            cpu = times.user + times.system
            # Every process below the daemon that has ended and been waited for (a keeper waits
            # for its worker): the versions' children, the preload server's forks excepted.
            children_cpu = times.children_user + times.children_system
            # With a preload, the workers are the preload server's children, not the daemon's,
            # or, with preload_scripts, the children of a script server below it.
            for child in watched.children():
                if "preload_server" in " ".join(child.cmdline()):
                    served_cpu = sum(
                        sum(process.cpu_times()[:4]) for process in (child, *child.children())
                    )
        except psutil.Error:
            pass
        time.sleep(0.5)
    took = time.perf_counter() - started
    if daemon.returncode != 0:
        raise SystemExit(f"mlpipeline -r exited {daemon.returncode}")
    ideal = count * seconds / workers
    print(f"whole: {took:.1f} s; ideal {ideal:.1f} s; ratio {took / ideal:.3f}")
    print(f"daemon CPU: {cpu:.1f} s, {cpu / count * 1000:.1f} ms a version")
    if preload:
        print(f"preload server, script servers and workers' CPU: {served_cpu:.1f} s, {served_cpu / count * 1000:.1f} ms a version")
    else:
        print(f"children's CPU: {children_cpu:.1f} s, {children_cpu / count * 1000:.1f} ms a version (keeper, worker, the script)")
    begun = starts(root / "models" / "outputs" / "history.jsonl")
    window = min(1000, len(begun) // 2)
    for name, part in (("first", begun[:window]), ("last", begun[-window:])):
        rate = (len(part) - 1) / (part[-1] - part[0])
        print(f"{name} {window:,}: {rate:.2f} versions started a second (ideal {workers / seconds:.2f})")
    for command in (["status"], ["status", "--json"], ["compare"], ["compare", "--json", "--best"], ["plot", "loss", "-o", str(root / "loss.png")]):
        print(f"mlpipeline {' '.join(command[:3])}: {timed(mlpipeline(root, *command), root):.2f} s")


if __name__ == "__main__":
    main()
