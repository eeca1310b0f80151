"""A mean estimated from noisy samples; gin binds each version's file in its own run."""
import random

import gin

from mlpipeline.helper import Model, SplitDataLoader
from mlpipeline.utils import Versions


@gin.configurable
def noisy_target(rng, scale=1.0, noise=0.0):
    return scale + rng.gauss(0.0, noise)


class Mean(Model):
    def pre_execution_hook(self, version, model_dir, exec_mode):
        super().pre_execution_hook(version, model_dir, exec_mode)
        self.rng, self.mean = random.Random(0), 0.0

    def train_model(self, input_fn, steps):
        for step in range(steps):
            self.mean += (noisy_target(self.rng) - self.mean) / (step + 1)
            self.report(step=step + 1, total=steps, mean=self.mean)

    def evaluate_model(self, input_fn, steps):
        return {"mean": self.mean}


versions = Versions(dataloader=SplitDataLoader(list(range(50)), list(range(10))), batch_size=1, epoc_count=1)
versions.add_config_files("gin/*_noise.gin")   # base.gin is included, not a version of its own
MODEL = Mean(versions)
