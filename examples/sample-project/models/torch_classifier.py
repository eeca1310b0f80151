"""A small PyTorch classifier on synthetic data: three Gaussian blobs in the plane.

It uses mlpipeline.pytorch: build() makes the network and optimizer, train_model() is an
ordinary training loop over self.batches(), and the base checkpoints into model_dir, so a
version cut off mid-training resumes exactly where it stopped.
"""
import torch
from torch import nn

from mlpipeline.pytorch import TorchDataLoader, TorchModel
from mlpipeline.utils import Versions


def blobs(count, seed):
    """``count`` points around three centres, labelled by centre; made here, never downloaded."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.0, 2.0], [-2.0, -1.0], [2.0, -1.0]])
    labels = torch.randint(0, 3, (count,), generator=generator)
    points = centres[labels] + 1.2 * torch.randn(count, 2, generator=generator)
    return torch.utils.data.TensorDataset(points, labels)


class BlobClassifier(TorchModel):
    def build(self, version):
        self.net = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 3))
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=version["learning_rate"], momentum=0.9)
        self.loss = nn.CrossEntropyLoss()

    def train_model(self, input_fn, steps):
        self.net.train()
        for step, (points, labels) in self.batches(input_fn, steps):
            self.optimizer.zero_grad()
            loss = self.loss(self.net(points), labels)
            loss.backward()
            self.optimizer.step()
            self.report(step=step, loss=loss.item())

    def evaluate_model(self, input_fn, steps):
        self.net.eval()
        correct = total = 0
        with torch.no_grad():
            for points, labels in self.eval_batches(input_fn, limit=steps):
                correct += (self.net(points).argmax(dim=1) == labels).sum().item()
                total += len(labels)
        return {"accuracy": round(correct / total, 4)}


data = TorchDataLoader(train=blobs(600, seed=1), test=blobs(200, seed=2))
versions = Versions(learning_rate=0.05, dataloader=data, batch_size=32, epoc_count=5)
versions.addV("lr_0.05", model_dir_suffix="lr_0.05")
versions.addV("lr_0.005", learning_rate=0.005, model_dir_suffix="lr_0.005")
MODEL = BlobClassifier(versions, checkpoint_every=20)
