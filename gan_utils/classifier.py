"""The small MNIST classifier that chapter 5's image metrics measure in.

Inception-based scores (IS, FID) need a 90 MB ImageNet network from the internet and judge
digits with features learned on photographs. We train our own digit classifier instead: its
128-dimensional penultimate layer is the feature space for the Fréchet distance, precision and
recall, density and coverage, and its predictions give the class histogram.

Trained by ``python -m gan_utils.release train-classifier`` and shipped as ``mnist-classifier``.
Introduced in chapter 5.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gan_utils.data import BatchIterator, check_digit_images
from gan_utils.runtime import check_count, check_positive_number

FEATURE_DIM = 128


class MNISTClassifier(nn.Module):
    """Two conv blocks and two linear layers: images [n, 1, 28, 28] in [-1, 1] -> logits [n, 10].

    `features` returns the 128-dimensional penultimate activations the metrics use.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),  # (n, 32, 28, 28)
            nn.MaxPool2d(2),  # (n, 32, 14, 14)
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),  # (n, 64, 14, 14)
            nn.MaxPool2d(2),  # (n, 64, 7, 7)
        )  # fmt: skip
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(64 * 7 * 7, FEATURE_DIM), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(FEATURE_DIM, 10))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.conv(x))  # callers validate: metrics.digit_features, train_classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by up to ``max_shift`` pixels in x and y, filling with background (-1)."""
    n = images.shape[0]
    padded = F.pad(images, [max_shift] * 4, value=-1.0)
    dx, dy = (torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator)).tolist()
    return torch.stack(
        [padded[i, :, y : y + 28, x : x + 28] for i, (x, y) in enumerate(zip(dx, dy, strict=True))]
    )


def stratified_split(
    labels: torch.Tensor, held_out_per_class: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, held_out) with ``held_out_per_class`` images of every digit held out."""
    generator = torch.Generator().manual_seed(seed)
    held_out = []
    for digit in range(10):
        members = (labels == digit).nonzero().view(-1)
        if len(members) <= held_out_per_class:
            raise ValueError(
                f"digit {digit} has {len(members)} images, too few to hold out {held_out_per_class}."
            )
        held_out.append(members[torch.randperm(len(members), generator=generator)[:held_out_per_class]])
    held_out_index = torch.cat(held_out).sort().values
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[held_out_index] = False
    return mask.nonzero().view(-1), held_out_index


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    """Fraction of ``images`` that ``model`` labels correctly (model switched to eval mode)."""
    model.eval()
    correct = 0
    for start in range(0, len(images), batch_size):
        logits = model(images[start : start + batch_size])
        correct += (logits.argmax(1) == labels[start : start + batch_size]).sum().item()
    return correct / len(images)


def train_classifier(
    images: torch.Tensor,
    labels: torch.Tensor,
    epochs: int = 15,
    batch_size: int = 64,
    lr: float = 1e-3,
    max_shift: int = 2,
    seed: int = 0,
    progress: bool = True,
) -> MNISTClassifier:
    """Train `MNISTClassifier` with Adam, cross-entropy and random shifts of up to ``max_shift`` pixels.

    The learning rate falls linearly to zero over the run.
    """
    check_digit_images(images)
    epochs, batch_size = check_count(epochs, "epochs"), check_count(batch_size, "batch_size")
    max_shift, seed = check_count(max_shift, "max_shift", minimum=0), check_count(seed, "seed", minimum=0)
    lr = check_positive_number(lr, "lr")
    if len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels; give one label per image.")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = MNISTClassifier()
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    batches = BatchIterator(images, labels, batch_size=batch_size, generator=generator)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda e: 1 - e / epochs)
    for epoch in range(epochs):
        model.train()
        total = 0.0
        for x, y in batches:
            x = random_shift(x, max_shift, generator) if max_shift else x
            loss = F.cross_entropy(model(x), y)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += loss.item() * len(x)
        schedule.step()
        if progress:
            print(f"epoch {epoch + 1}/{epochs}: training loss {total / len(images):.4f}", flush=True)
    return model.eval()
