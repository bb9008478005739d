"""Named training recipes: the one place where a model's architecture and training settings live.

A `Recipe` holds everything that defines a run except the seed: which networks, the optimiser
settings, batch size, loss, tricks and memory format. The chapters, the command line
(``python -m gan_utils train --preset NAME``), the benchmarks and the shipped weights' manifest
all name a preset from `PRESETS`, with overrides where they differ (`Recipe.with_overrides`).

Introduced in chapter 3; chapter 4 adds the DCGAN preset.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import torch
from torch import nn

from gan_utils import models, training
from gan_utils.runtime import check_count, check_positive_number

MODELS = ("mlp", "dcgan")
DATASETS = ("mnist", "ring", "grid")


@dataclass(frozen=True)
class Recipe:
    """Everything that defines a GAN run except the data's source and the seed."""

    name: str  # shown in tables and titles
    model: str  # "mlp" or "dcgan"
    data: str  # "mnist", "ring" or "grid"
    steps: int  # generator updates of a full run
    batch_size: int = 64
    lr: float = 2e-4  # Adam, both players
    betas: tuple[float, float] = (0.5, 0.999)
    loss: str = "non-saturating"  # a name in training.LOSSES
    reuse_fakes: bool = False  # G's update scores D's fakes (one G pass less, biased; see train_step)
    lr_decay: bool = False  # both learning rates fall linearly to 0 over `steps`
    r1_gamma: float | None = None  # R1 penalty on D (Mescheder et al., 2018) when set
    channels_last: bool = False  # NHWC memory format: faster convolutions on CPUs
    generator_hidden: tuple[int, ...] = (128, 128, 128)  # toy MLPs only
    discriminator_hidden: tuple[int, ...] = (128, 128)  # toy MLPs only
    latent_dim: int = 2  # toy MLPs only; the MNIST models fix their own

    def __post_init__(self) -> None:
        """Refuse impossible settings with one line each, so neither a reader's override from the
        command line nor a typo in Python trains on silently (or fails deep inside torch)."""
        for name in ("steps", "batch_size", "latent_dim"):  # NumPy integers become ints (JSON needs them)
            object.__setattr__(self, name, check_count(getattr(self, name), name))
        object.__setattr__(self, "lr", check_positive_number(self.lr, "lr"))
        if self.r1_gamma is not None:
            object.__setattr__(self, "r1_gamma", check_positive_number(self.r1_gamma, "r1_gamma"))
        betas = tuple(self.betas) if isinstance(self.betas, tuple | list) else ()
        if len(betas) != 2 or not all(isinstance(b, int | float) and 0 <= b < 1 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), like (0.5, 0.999), got {self.betas!r}.")
        object.__setattr__(self, "betas", tuple(float(b) for b in betas))
        for name in ("generator_hidden", "discriminator_hidden"):
            widths = getattr(self, name)
            if not isinstance(widths, tuple | list):
                raise ValueError(f"{name} must be a tuple of layer widths, got {widths!r}.")
            object.__setattr__(self, name, tuple(check_count(w, f"a width in {name}") for w in widths))
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; choose one of {', '.join(MODELS)}.")
        if self.data not in DATASETS:
            raise ValueError(f"unknown data {self.data!r}; choose one of {', '.join(DATASETS)}.")
        if self.model == "dcgan" and self.data != "mnist":
            raise ValueError("the DCGAN draws images: use it with data='mnist'.")
        training.get_losses(self.loss)

    def with_overrides(self, **overrides) -> Recipe:
        """A copy with some settings changed; unknown names are refused with the list of known ones."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown recipe settings {unknown}; known: {', '.join(sorted(known))}.")
        return dataclasses.replace(self, **overrides)

    def overrides_from(self, base: Recipe) -> dict:
        """The settings in which this recipe differs from ``base`` (what a manifest records)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) != getattr(base, f.name)}  # fmt: skip

    def build_models(self, device: torch.device | str = "cpu") -> tuple[nn.Module, nn.Module]:
        """Freshly initialised G and D on ``device``, in the recipe's memory format."""
        if self.model == "dcgan":
            G, D = models.dcgan_mnist_generator(), models.dcgan_mnist_discriminator()
        elif self.data == "mnist":
            G, D = models.mlp_mnist_generator(), models.mlp_mnist_discriminator()
        else:
            G = models.MLPGenerator(self.latent_dim, (2,), hidden=self.generator_hidden)
            D = models.MLPDiscriminator((2,), hidden=self.discriminator_hidden)
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        return G.to(device, memory_format=layout), D.to(device, memory_format=layout)

    def optimisers(self, G: nn.Module, D: nn.Module) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
        """Adam for each player with the recipe's learning rate and betas."""
        return (torch.optim.Adam(G.parameters(), lr=self.lr, betas=self.betas),
                torch.optim.Adam(D.parameters(), lr=self.lr, betas=self.betas))  # fmt: skip

    def step(self) -> training.StepFunction:
        """`training.train_step` with the recipe's loss and tricks."""
        penalty = training.R1Penalty(self.r1_gamma) if self.r1_gamma else None
        return functools.partial(
            training.train_step, loss=self.loss, d_penalty=penalty, reuse_fakes=self.reuse_fakes
        )

    def schedule(self, opt_G: torch.optim.Optimizer, opt_D: torch.optim.Optimizer) -> list[training.Callback]:
        """The recipe's learning-rate callbacks. Build them before `training.resume`, so they keep the
        initial rates rather than the ones a checkpoint restores."""
        return [training.LinearLearningRateDecay([opt_G, opt_D], self.steps)] if self.lr_decay else []


_TOY = Recipe(
    name="baseline", model="mlp", data="ring", steps=6000, batch_size=256, lr=1e-3, betas=(0.5, 0.9)
)

PRESETS: dict[str, Recipe] = {
    # Chapter 2's toys (the same networks on the ring or the grid): a plain GAN, and R1 + LR decay.
    "toy-baseline": _TOY,
    "toy-r1-decay": _TOY.with_overrides(name="R1 + LR decay", r1_gamma=0.1, lr_decay=True),
    # Chapter 3's MNIST MLPs (shipped as mlp-mnist).
    "mlp-mnist": Recipe(name="mlp-mnist", model="mlp", data="mnist", steps=3000),
    # Chapter 4's 28x28 DCGAN (shipped as dcgan-mnist).
    "dcgan-mnist": Recipe(name="dcgan-mnist", model="dcgan", data="mnist", steps=12000, batch_size=128,
                          lr=5e-4, reuse_fakes=True, lr_decay=True, channels_last=True),
}  # fmt: skip


def preset(name: str, **overrides) -> Recipe:
    """The preset called ``name``, with ``overrides`` applied (e.g. ``preset("dcgan-mnist", steps=2400)``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}.")
    return PRESETS[name].with_overrides(**overrides)
