"""A framework-free model script: fit y = 3x - 2 with plain-Python gradient descent.

It shows the whole script API: a DataLoader, a Model with its hooks, and Versions. Training
saves a small checkpoint in model_dir, so a version cut off mid-way resumes where it stopped.
"""
import json
import os
import random

from mlpipeline.helper import DataLoader, Model
from mlpipeline.utils import ModeKeys, Versions, log


class LineDataLoader(DataLoader):
    """Noisy samples of y = 3x - 2, made here: nothing is downloaded."""

    def __init__(self, train_size=200, test_size=50, seed=0):
        rng = random.Random(seed)
        points = [(x, 3 * x - 2 + rng.gauss(0, 0.1)) for x in (rng.uniform(-1, 1) for _ in range(train_size + test_size))]
        self.train, self.test = points[:train_size], points[train_size:]
        self.add_to_summery(f"{train_size} train and {test_size} test samples of y = 3x - 2 + noise")

    def get_train_input(self, mode=ModeKeys.TRAIN, **kwargs):
        return self.train

    def get_test_input(self, **kwargs):
        return self.test

    def get_train_sample_count(self):
        return len(self.train)

    def get_test_sample_count(self):
        return len(self.test)


class LineModel(Model):
    """y = w x + b, trained by mini-batch gradient descent."""

    def pre_execution_hook(self, version, model_dir, exec_mode):
        super().pre_execution_hook(version, model_dir, exec_mode)
        self.checkpoint = os.path.join(model_dir, "line.json")
        self.w, self.b, self.step = 0.0, 0.0, 0
        if os.path.exists(self.checkpoint):
            with open(self.checkpoint) as handle:
                saved = json.load(handle)
            self.w, self.b, self.step = saved["w"], saved["b"], saved["step"]
            log(f"restored step {self.step} from {self.checkpoint}")

    def get_trained_step_count(self):
        return self.step

    def clean_model_dir(self, model_dir):
        if os.path.exists(os.path.join(model_dir, "line.json")):
            os.remove(os.path.join(model_dir, "line.json"))

    def train_model(self, input_fn, steps):
        batch_size = self.current_version["batch_size"]
        rate = self.current_version["learning_rate"]
        target = self.step + steps
        for _ in range(steps):
            start = (self.step * batch_size) % len(input_fn)
            batch = input_fn[start:start + batch_size]
            grad_w = sum(2 * (self.w * x + self.b - y) * x for x, y in batch) / len(batch)
            grad_b = sum(2 * (self.w * x + self.b - y) for x, y in batch) / len(batch)
            self.w -= rate * grad_w
            self.b -= rate * grad_b
            self.step += 1
            self.report(step=self.step, total=target, loss=self.mse(batch))
            if self.step % 10 == 0:
                self.save()
        self.save()

    def evaluate_model(self, input_fn, steps):
        return {"mse": round(self.mse(input_fn[:steps]), 6), "w": round(self.w, 4), "b": round(self.b, 4)}

    def mse(self, points):
        return sum((self.w * x + self.b - y) ** 2 for x, y in points) / max(len(points), 1)

    def save(self):
        # Written to a temporary file and renamed, so a kill mid-save keeps the last checkpoint whole.
        temporary = self.checkpoint + ".tmp"
        with open(temporary, "w") as handle:
            json.dump({"w": self.w, "b": self.b, "step": self.step}, handle)
        os.replace(temporary, self.checkpoint)


versions = Versions(learning_rate=0.1, dataloader=LineDataLoader(), batch_size=20, epoc_count=10)
versions.addV("lr_0.1", model_dir_suffix="lr_0.1")
versions.addV("lr_0.01", learning_rate=0.01, epoc_count=20, model_dir_suffix="lr_0.01")
# A grid: one version per batch size, each with a model_dir of its own.
for name in versions.rangeOnParameters(
    names=["small_batch", "large_batch"],
    combining_parameters=["batch_size"],
    parameters={"batch_size": [5, 50], "learning_rate": 0.05},
):
    versions.getVersion(name)["model_dir_suffix"] = name
MODEL = LineModel(versions, allow_delete_model_dir=True)
