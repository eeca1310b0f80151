"""Benchmark: early stopping on versions with known curves, against Ray Tune's ASHA.

27 versions report loss = floor + 1 / (1 + step) at each of their 270 steps; the floors are
0.10, 0.13, ..., 0.88, the best (0.10) declared last and the others in a random order, 20
orders (seeds 0 to 19). Each order runs as a real queue: `mlpipeline -r` with
[EARLY_STOPPING] rule "asha", grace_steps 10, reduction_factor 3 (rungs at 10, 30, 90; the
versions have 270 steps), one version at a time. Printed for each order and in sum: the steps
trained (from results.jsonl) as a share of every version run to its end (27 x 270), and
whether the true best finished.

Beside it, Ray Tune's ASHAScheduler (ray 2.60, grace_period 10, max_t 270, reduction_factor 3:
the same rungs) decides on the same curves in the same orders, one trial at a time, as
`max_concurrent_trials=1` runs them: each trial's results go to the scheduler's
on_trial_result step by step until it says STOP or the trial ends. The scheduler object is
Ray Tune's own; only its trials are not Ray processes (that needs `pip install
"ray[tune]==2.60.0"`, which the test extras do not bring). With --tuner, the first order also
runs as a real `tune.Tuner` to show that its trials train the same steps.
Run: python bench/early_stopping.py [--orders N] [--tuner]
"""
from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._project import environment, machine, make_project, mlpipeline  # noqa: E402

VERSIONS, STEPS, GRACE, FACTOR = 27, 270, 10, 3

SCRIPT = """
import os
from mlpipeline.helper import Model, SplitDataLoader
from mlpipeline.utils import Versions


class Curve(Model):
    def pre_execution_hook(self, version, model_dir, exec_mode):
        super().pre_execution_hook(version, model_dir, exec_mode)
        self.path = os.path.join(model_dir, "step.txt")

    def get_trained_step_count(self):
        return int(open(self.path).read()) if os.path.exists(self.path) else None

    def train_model(self, input_fn, steps):
        done = self.get_trained_step_count() or 0
        floor = self.current_version["floor"]
        for _ in range(steps):
            done += 1
            self.report(step=done, total=%(steps)d, loss=floor + 1.0 / (1 + done))
        with open(self.path, "w") as handle:
            handle.write(str(done))

    def evaluate_model(self, input_fn, steps):
        return {}


versions = Versions(dataloader=SplitDataLoader(list(range(%(steps)d)), [0]), batch_size=1, epoc_count=1)
for index, floor in enumerate(%(floors)r):
    versions.addV("v%%02d" %% index, floor=floor, model_dir_suffix="v%%02d" %% index)
MODEL = Curve(versions)
"""

MLP = f"""preload = ["json"]

[EARLY_STOPPING]
metric = "loss"
rule = "asha"
grace_steps = {GRACE}
reduction_factor = {FACTOR}
"""


def floors_in_order(seed: int) -> List[float]:
    """The 27 floors with the best last and the rest shuffled by ``seed``."""
    others = [round(0.1 + 0.03 * index, 2) for index in range(1, VERSIONS)]
    random.Random(seed).shuffle(others)
    return others + [0.1]


def loss(floor: float, step: int) -> float:
    return floor + 1.0 / (1 + step)


def run_mlpipeline(floors: List[float]) -> Tuple[int, bool, float]:
    """Steps trained, whether the best finished, and the whole time of one queue."""
    root = make_project({"curves.py": SCRIPT % {"steps": STEPS, "floors": floors}}, ["curves.py"], MLP)
    started = time.perf_counter()
    subprocess.run(mlpipeline(root, "-r"), env=environment(), cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    took = time.perf_counter() - started
    rows = [json.loads(line) for line in (root / "models" / "outputs" / "results.jsonl").read_text().splitlines()]
    trained = sum((row.get("steps") or {}).get("trained") or 0 for row in rows)
    best = f"v{VERSIONS - 1:02d}"
    finished = any(row["version"] == best and row["status"] == "finished" for row in rows)
    return trained, finished, took


def run_ray_asha(floors: List[float]) -> Tuple[int, bool]:
    """Steps Ray Tune's ASHAScheduler lets the trials train, one trial at a time."""
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    scheduler = ASHAScheduler(time_attr="training_iteration", metric="loss", mode="min", max_t=STEPS, grace_period=GRACE, reduction_factor=FACTOR)
    trained, best_finished = 0, False
    for index, floor in enumerate(floors):
        trial = SimpleNamespace(trial_id=f"t{index:02d}")
        scheduler.on_trial_add(None, trial)
        for step in range(1, STEPS + 1):
            trained += 1
            result = {"training_iteration": step, "loss": loss(floor, step)}
            if step == STEPS:
                scheduler.on_trial_complete(None, trial, result)
                best_finished = best_finished or index == len(floors) - 1
                break
            if scheduler.on_trial_result(None, trial, result) == TrialScheduler.STOP:
                scheduler.on_trial_remove(None, trial)
                if step >= STEPS:
                    best_finished = best_finished or index == len(floors) - 1
                break
    return trained, best_finished


def run_ray_tuner(floors: List[float]) -> int:
    """The same with a real tune.Tuner, trials one at a time: the iterations its trials ran."""
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    def trainable(config):
        for step in range(1, STEPS + 1):
            tune.report({"loss": loss(config["floor"], step)})

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    try:
        scheduler = ASHAScheduler(max_t=STEPS, grace_period=GRACE, reduction_factor=FACTOR)
        tuner = tune.Tuner(
            trainable,
            param_space={"floor": tune.grid_search(floors)},
            tune_config=tune.TuneConfig(metric="loss", mode="min", scheduler=scheduler, max_concurrent_trials=1),
            run_config=tune.RunConfig(storage_path=tempfile.mkdtemp(prefix="mlpipeline-bench-tune-"), verbose=0),
        )
        results = tuner.fit()
        return sum(result.metrics["training_iteration"] for result in results)
    finally:
        ray.shutdown()


def main() -> None:
    orders = int(sys.argv[sys.argv.index("--orders") + 1]) if "--orders" in sys.argv else 20
    full = VERSIONS * STEPS
    print(f"machine: {machine()}")
    print(f"{VERSIONS} versions of {STEPS} steps, the best declared last; asha, grace_steps {GRACE}, reduction_factor {FACTOR}; one at a time")
    ours, theirs, kept_ours, kept_theirs, seconds = [], [], 0, 0, 0.0
    for seed in range(orders):
        floors = floors_in_order(seed)
        trained, finished, took = run_mlpipeline(floors)
        ray_trained, ray_finished = run_ray_asha(floors)
        ours.append(trained)
        theirs.append(ray_trained)
        kept_ours += finished
        kept_theirs += ray_finished
        seconds += took
        print(
            f"order {seed:2d}: mlpipeline {trained / full:6.1%} of the compute, best finished: {finished}; "
            f"Ray Tune ASHA {ray_trained / full:6.1%}, best finished: {ray_finished}; queue {took:.1f} s"
        )
    print(f"mlpipeline: {sum(ours) / (full * orders):.1%} of the compute (each order {min(ours) / full:.1%} to {max(ours) / full:.1%}); true best finished in {kept_ours} of {orders}; {seconds / orders:.1f} s a queue")
    print(f"Ray Tune's ASHA: {sum(theirs) / (full * orders):.1%} of the compute (each order {min(theirs) / full:.1%} to {max(theirs) / full:.1%}); true best finished in {kept_theirs} of {orders}")
    if "--tuner" in sys.argv:
        iterations = run_ray_tuner(floors_in_order(0))
        print(f"a real tune.Tuner on order 0: {iterations} iterations ({iterations / full:.1%}); the scheduler driven alone: {theirs[0]}")


if __name__ == "__main__":
    main()
