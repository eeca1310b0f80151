"""A line fitted by gradient descent, its versions made from a Hydra sweep over conf/."""
from mlpipeline.helper import DataLoader, Model
from mlpipeline.utils import Versions


class Points(DataLoader):
    """100 points on the line the version's model section describes."""

    def __init__(self, slope=3.0, intercept=-2.0):
        self.train = [(x / 100, slope * x / 100 + intercept) for x in range(100)]
        self.test = self.train[::10]

    def get_train_input(self, mode="train", **kwargs):
        return self.train

    def get_test_input(self, **kwargs):
        return self.test

    def get_train_sample_count(self):
        return len(self.train)

    def get_test_sample_count(self):
        return len(self.test)


class Line(Model):
    def pre_execution_hook(self, version, model_dir, exec_mode):
        super().pre_execution_hook(version, model_dir, exec_mode)
        self.w = self.b = 0.0
        self.points = Points(version.model.slope, version.model.intercept)

    def train_model(self, input_fn, steps):
        rate = self.current_version["learning_rate"]
        for step in range(steps):
            x, y = self.points.train[step % len(self.points.train)]
            error = self.w * x + self.b - y
            self.w -= rate * 2 * error * x
            self.b -= rate * 2 * error
            self.report(step=step + 1, total=steps, loss=error * error)

    def evaluate_model(self, input_fn, steps):
        test = self.points.test
        return {"mse": sum((self.w * x + self.b - y) ** 2 for x, y in test) / len(test)}


versions = Versions(dataloader=Points())
# Hydra's multirun grammar: 2 x 2 versions, named "learning_rate=0.05,model=flat" and so on.
versions.add_config_files("conf/config.yaml", overrides=["learning_rate=0.05,0.005", "model=steep,flat"])
MODEL = Line(versions)
