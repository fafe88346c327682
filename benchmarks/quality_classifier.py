"""A small CNN that tells the five procedural sprite classes apart: the judge of samples.

It is trained here on fresh procedural sprites (seeds disjoint from the diffusion
model's data), checked on held-out sprites (target >= 98%), then used to score
generated samples. It lives in benchmarks/, never in the shipped runtime. Light
Gaussian noise during training keeps it from failing on the small pixel errors that
generated sprites have and the clean training sprites never show.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from spritegen.contract import CLASS_NAMES
from spritegen.training.sprites import make_sprites

TRAIN_SEED, TEST_SEED = 1_000, 2_000  # the diffusion model trains on data_seed 0


class SpriteClassifier(nn.Module):
    """(B, 3, 16, 16) in [-1, 1] -> (B, 5) logits; ~60k parameters.

    hidden: None, the linear head of benchmarks.quality and benchmarks.int8; or the width
    of a hidden layer (Linear + ReLU) before the head, whose activations are the judge's
    feature vector (`embed`) that benchmarks.sampler_quality's sprite-FID compares.
    """

    def __init__(self, classes: int = len(CLASS_NAMES), hidden: int | None = None) -> None:
        super().__init__()

        def block(i: int, o: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU())

        self.features = nn.Sequential(
            block(3, 32), block(32, 32), nn.MaxPool2d(2),  # (B, 32, 8, 8)
            block(32, 64), block(64, 64), nn.MaxPool2d(2),  # (B, 64, 4, 4)
        )
        width = 64 * 4 * 4
        self.hidden = nn.Identity() if hidden is None else nn.Sequential(nn.Linear(width, hidden), nn.ReLU())
        self.head = nn.Linear(width if hidden is None else hidden, classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate layer: (B, hidden), or (B, 1024) without a hidden layer."""
        return self.hidden(self.features(x).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


@dataclass(frozen=True)
class ClassifierReport:
    train_size: int
    test_size: int
    epochs: int
    held_out_accuracy: float
    train_seconds: float


def train_classifier(train_size: int = 20_000, test_size: int = 5_000, epochs: int = 3,
                     seed: int = 0, hidden: int | None = None) -> tuple[SpriteClassifier, ClassifierReport]:
    """Train on make_sprites(train_size, seed=TRAIN_SEED); accuracy on TEST_SEED sprites.
    Deterministic for a given seed (weights from torch.manual_seed, batches and noise from
    one generator) up to the CPU kernels' summation order."""
    torch.manual_seed(seed)
    x, y = (torch.from_numpy(a) for a in make_sprites(train_size, seed=TRAIN_SEED))
    model = SpriteClassifier(hidden=hidden)
    steps = epochs * (train_size // 100)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps)
    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    model.train()
    for _ in range(epochs):
        for index in torch.randperm(train_size, generator=g).split(100):
            if len(index) < 100:
                continue
            noisy = x[index] + 0.1 * torch.rand(()) * torch.randn(x[index].shape, generator=g)
            loss = F.cross_entropy(model(noisy.clamp(-1, 1)), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    seconds = time.perf_counter() - start
    model.eval()
    x_test, y_test = make_sprites(test_size, seed=TEST_SEED)
    accuracy = float((predict(model, torch.from_numpy(x_test)) == torch.from_numpy(y_test)).float().mean())
    return model, ClassifierReport(train_size, test_size, epochs, accuracy, round(seconds, 1))


@torch.no_grad()
def predict_proba(model: SpriteClassifier, images: torch.Tensor) -> torch.Tensor:
    """Class probabilities (N, 5) for images (N, 3, 16, 16) in [-1, 1]."""
    return torch.cat([model(chunk).softmax(-1) for chunk in images.split(500)])


def predict(model: SpriteClassifier, images: torch.Tensor) -> torch.Tensor:
    return predict_proba(model, images).argmax(-1)


def confusion(predicted: np.ndarray, target: np.ndarray, classes: int = len(CLASS_NAMES)) -> list[list[int]]:
    """rows = intended class, columns = predicted class."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (target, predicted), 1)
    return matrix.tolist()
