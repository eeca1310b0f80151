"""Benchmark: what a version costs on Slurm, against the local executor and a plain sbatch array.

Starts a private one-node Slurm cluster (tests/slurm_cluster.py; needs root and Debian's
slurmctld, slurmd, slurm-client and munge), then runs the same work three ways, in one run:
N versions whose training sleeps S seconds, W at once,

- ``executor = "slurm"``: each version one Slurm job (``mlpipeline -r``);
- ``executor = "local"``: each version a child on this host (``mlpipeline -r``);
- a plain ``sbatch --array=0-(N-1)%W`` of ``python -c 'time.sleep(S)'``, timed from the
  submission to the end of its last task (as seen by squeue, every 0.2 s).

The ideal is N * S / W; each is printed with its ratio to it and its overhead per version
((time - ideal) * W / N). Then the delay of a version's printed line on Slurm: a version prints
the time every 0.5 s, and the log line that carries it is timestamped by the daemon.
Run: python bench/slurm_overhead.py [N] [--seconds S] [--workers W]   (as root)
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from bench._project import environment, machine, make_project, mlpipeline  # noqa: E402
from slurm_cluster import SlurmCluster  # noqa: E402

SCRIPT = """
import time
from mlpipeline.helper import Model, SplitDataLoader
from mlpipeline.utils import Versions

class Sleeper(Model):
    def train_model(self, input_fn, steps):
        for _ in range(int(self.current_version["talk"])):
            print("at %%.6f" %% time.time(), flush=True)
            time.sleep(0.5)
        time.sleep(%r)

    def evaluate_model(self, input_fn, steps):
        return {"mse": 0.25}

versions = Versions(learning_rate=0.1, dataloader=SplitDataLoader([0], [0]), batch_size=1, epoc_count=1, gpus=0, talk=%d)
for index in range(%d):
    versions.addV("v%%04d" %% index, model_dir_suffix="v%%04d" %% index)
MODEL = Sleeper(versions)
"""


def option(name: str, default: float) -> float:
    return float(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


def queue_run(cluster: SlurmCluster, executor: str, count: int, seconds: float, workers: int, talk: int = 0) -> float:
    """The queue's time; with ``talk``, one version printing the time ``talk`` times, and the
    delay of its lines printed."""
    root = make_project({"sleeper.py": SCRIPT % (seconds, talk, count)}, ["sleeper.py"], f'executor = "{executor}"\nworkers = {workers}\n')
    started = time.perf_counter()
    subprocess.run(mlpipeline(root, "-r"), env=environment(cluster.env), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    if talk:
        delays = []
        for log in (root / "models" / "outputs").glob("log-*"):
            for line in log.read_text(encoding="utf-8").splitlines():
                if " at " in line and "sleeper.py:v0000" in line:
                    printed = float(line.rsplit(" at ", 1)[1])
                    logged = datetime.fromisoformat(line.split(" ", 1)[0]).timestamp()
                    delays.append(logged - printed)
        print(f"  a printed line reached the log {statistics.median(delays):.2f} s later (median of {len(delays)}; max {max(delays):.2f} s)")
    return wall


def array_run(cluster: SlurmCluster, count: int, seconds: float, workers: int) -> float:
    folder = Path(tempfile.mkdtemp(prefix="mlpipeline-bench-array-"))
    started = time.perf_counter()
    job = cluster.command(
        "sbatch", "--parsable", f"--array=0-{count - 1}%{workers}", f"--output={folder}/%a.out",
        "--wrap", f"{sys.executable} -c 'import time; time.sleep({seconds})'",
    ).stdout.strip()
    while True:
        states = [row["state"] for row in cluster.jobs() if row["id"].split("_")[0] == job]
        if states and all(state == "COMPLETED" for state in states) and len(states) >= count:
            return time.perf_counter() - started
        time.sleep(0.2)


def main() -> None:
    numbers = [word for word in sys.argv[1:] if word[:1].isdigit()]
    count = int(numbers[0]) if numbers else 48
    seconds, workers = option("--seconds", 1.0), int(option("--workers", 8))
    ideal = count * seconds / workers
    print(f"machine: {machine()}")
    print(f"{count} versions of {seconds:g} s, {workers} at once; ideal {ideal:.1f} s")
    cluster = SlurmCluster(Path(tempfile.mkdtemp(prefix="mlpipeline-bench-slurm-"))).start()
    try:
        for name, wall in (
            ("mlpipeline, executor = \"slurm\"", queue_run(cluster, "slurm", count, seconds, workers)),
            ("mlpipeline, executor = \"local\"", queue_run(cluster, "local", count, seconds, workers)),
            ("plain sbatch --array", array_run(cluster, count, seconds, workers)),
        ):
            print(f"{name:34} {wall:7.1f} s  {wall / ideal:5.2f}x ideal  {(wall - ideal) * workers / count * 1000:6.0f} ms a version")
        print("the line delay on Slurm:")
        queue_run(cluster, "slurm", 1, seconds, 1, talk=20)
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
