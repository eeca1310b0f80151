
from mlpipeline.helper import Model, SplitDataLoader
from mlpipeline.utils import Versions


class Odd(Model):
    def train_model(self, data, steps):
        self.report(step=1, **{"a//b": 1.0, "x:y": 2.0, "x_y": 3.0, "huge": 10 ** 400, "nan": float("nan")})

    def evaluate_model(self, data, steps):
        return {"ok": 1}


versions = Versions(0.1, SplitDataLoader([1], [1]), 1, 1)
versions.addV("odd", custom_parameters={"lr:x": 1, "lr_x": 2})
MODEL = Odd(versions)
