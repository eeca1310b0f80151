"""The blob classifier of torch_classifier.py as a PyTorch Lightning module.

It uses mlpipeline.lightning (the `lightning` extra: pip install 'mlpipeline[lightning]'):
the LightningModule and LightningDataModule are ordinary Lightning, LightningModel trains them
with a Trainer for each version's steps, and Lightning's ModelCheckpoint keeps
model_dir/lightning/last.ckpt, so a version cut off mid-training resumes exactly where it
stopped. What training_step logs with self.log is what mlpipeline reports.

Not in the sample queue by default (it needs the extra): add "lightning_classifier.py" to
models.config's scripts to run it.
"""
import lightning
import torch
from torch import nn

from mlpipeline.lightning import LightningDataLoader, LightningModel
from mlpipeline.utils import Versions


def blobs(count, seed):
    """``count`` points around three centres, labelled by centre; made here, never downloaded."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.0, 2.0], [-2.0, -1.0], [2.0, -1.0]])
    labels = torch.randint(0, 3, (count,), generator=generator)
    points = centres[labels] + 1.2 * torch.randn(count, 2, generator=generator)
    return torch.utils.data.TensorDataset(points, labels)


class Blobs(lightning.LightningDataModule):
    def __init__(self, batch_size=32):
        super().__init__()
        self.batch_size = batch_size

    def setup(self, stage):
        self.train, self.test = blobs(600, seed=1), blobs(200, seed=2)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(self.train, batch_size=self.batch_size, shuffle=True)

    def test_dataloader(self):
        return torch.utils.data.DataLoader(self.test, batch_size=self.batch_size)


class Classifier(lightning.LightningModule):
    def __init__(self, learning_rate, step_sleep=0.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 3))
        self.learning_rate = learning_rate
        self.step_sleep = step_sleep  # a slow step, to watch (or cut off) a version mid-training

    def training_step(self, batch, batch_idx):
        if self.step_sleep:
            import time

            time.sleep(self.step_sleep)
        points, labels = batch
        loss = nn.functional.cross_entropy(self.net(points), labels)
        self.log("loss", loss)
        return loss

    def test_step(self, batch, batch_idx):
        points, labels = batch
        self.log("accuracy", (self.net(points).argmax(dim=1) == labels).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.learning_rate, momentum=0.9)


class BlobLightning(LightningModel):
    def build_module(self, version):
        return Classifier(version["learning_rate"], version.get("step_sleep", 0.0))


versions = Versions(learning_rate=0.05, dataloader=LightningDataLoader(Blobs), batch_size=32, epoc_count=5)
versions.addV("lr_0.05", model_dir_suffix="lr_0.05")
versions.addV("lr_0.005", learning_rate=0.005, model_dir_suffix="lr_0.005")
MODEL = BlobLightning(versions, checkpoint_every=20)
