"""A small Keras classifier on synthetic data: three Gaussian blobs in the plane.

It uses mlpipeline.tensorflow: build() makes and compiles the model, train_model() is an
ordinary loop of train_on_batch over self.batches(), and the base checkpoints into model_dir,
so a version cut off mid-training resumes where it stopped.
"""
import keras
import numpy as np

from mlpipeline.tensorflow import KerasDataLoader, KerasModel
from mlpipeline.utils import Versions


def blobs(count, seed):
    """``count`` points around three centres, labelled by centre; made here, never downloaded."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 2.0], [-2.0, -1.0], [2.0, -1.0]], dtype="float32")
    labels = rng.integers(0, 3, count)
    points = centres[labels] + 1.2 * rng.standard_normal((count, 2)).astype("float32")
    return points, labels


class BlobClassifier(KerasModel):
    def build(self, version):
        self.model = keras.Sequential(
            [keras.Input((2,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dropout(0.1), keras.layers.Dense(3)]
        )
        self.model.compile(
            optimizer=keras.optimizers.Adam(version["learning_rate"]),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )

    def train_model(self, input_fn, steps):
        for step, (points, labels) in self.batches(input_fn, steps):
            metrics = self.model.train_on_batch(points, labels, return_dict=True)
            self.report(step=step, loss=float(metrics["loss"]))

    def evaluate_model(self, input_fn, steps):
        points, labels = input_fn
        metrics = self.model.evaluate(points[:steps], labels[:steps], verbose=0, return_dict=True)
        return {"accuracy": round(float(metrics["accuracy"]), 4), "loss": round(float(metrics["loss"]), 4)}


data = KerasDataLoader(train=blobs(600, seed=1), test=blobs(200, seed=2))
versions = Versions(learning_rate=0.01, dataloader=data, batch_size=32, epoc_count=5)
versions.addV("lr_0.01", model_dir_suffix="lr_0.01")
versions.addV("lr_0.001", learning_rate=0.001, model_dir_suffix="lr_0.001")
MODEL = BlobClassifier(versions, checkpoint_every=20)
