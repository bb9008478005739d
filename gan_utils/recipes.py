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
import time
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from gan_utils import classifier, models, stabilisers, training
from gan_utils.data import BatchIterator
from gan_utils.runtime import check_count, check_positive_number, resolve_device, set_seed

MODELS = ("mlp", "dcgan", "cdcgan")  # cdcgan: chapter 8's class-conditional DCGAN
DATASETS = ("mnist", "ring", "grid")
OPTIMISERS = ("adam", "rmsprop", "sgd")
PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16}  # name -> train_step's autocast dtype


@dataclass(frozen=True)
class Recipe:
    """Everything that defines a GAN run except the data's source and the seed."""

    name: str  # shown in tables and titles
    model: str  # "mlp", "dcgan" or "cdcgan" (conditional: trains on images and their labels)
    data: str  # "mnist", "ring" or "grid"
    steps: int  # generator updates of a full run
    batch_size: int = 64
    lr: float = 2e-4  # G's learning rate, and D's unless lr_D is set
    betas: tuple[float, float] = (0.5, 0.999)  # Adam's (ignored by the other optimisers)
    loss: str = "non-saturating"  # a name in training.LOSSES
    reuse_fakes: bool = False  # G's update scores D's fakes (one G pass less, biased; see train_step)
    lr_decay: bool = False  # both learning rates fall linearly to 0 over `steps`
    r1_gamma: float | None = None  # R1 penalty on D (Mescheder et al., 2018) when set
    channels_last: bool = False  # NHWC memory format: faster convolutions on CPUs
    generator_hidden: tuple[int, ...] = (128, 128, 128)  # toy MLPs only
    discriminator_hidden: tuple[int, ...] = (128, 128)  # toy MLPs only
    latent_dim: int = 2  # toy MLPs only; the MNIST models fix their own
    # chapter 6's stabilisers and the article's suggestions (stabilisers.py says where each plugs in)
    lr_D: float | None = None  # TTUR (Heusel et al., 2017): D's own learning rate
    optimiser: str = "adam"  # "adam", "rmsprop" or "sgd" (momentum 0.9), both players
    d_steps: int = 1  # D updates per G update (5 in WGAN-GP's paper)
    gp_weight: float | None = None  # WGAN-GP's gradient penalty on D when set (10 in the paper)
    d_norm: str = "batch"  # DCGAN D's normalisation: "batch", "none" (WGAN-GP) or "spectral"
    generator_width: int = 32  # DCGAN only: channels of G's last hidden layer
    discriminator_width: int = 16  # DCGAN only: channels of D's first layer
    ema_decay: float | None = None  # sample and ship an EMA of G's weights (stabilisers.GeneratorEMA)
    augment: tuple[str, ...] = ()  # DiffAugment policy in front of D, e.g. ("translation", "cutout")
    held_out_per_class: int = 0  # MNIST: digits of each class kept out of training (see training_set)
    precision: str = "float32"  # "bfloat16": forward passes under autocast (train_step's precision)
    sync_batchnorm: bool = False  # under torchrun: BatchNorm statistics over all ranks (distributed.py)
    conditioning: str = "projection"  # cdcgan or clusters: how D sees the label, "projection" or "concat"
    # self-conditioning (Liu et al., 2020), DCGAN or toy MLP: train conditional models (chapter 8's, or
    # `models.ConditionalMLPGenerator` on the toys) on k k-means clusters of the training set
    # (`cluster_ids`), then sample clusters from z (`sampling_generator`)
    clusters: int | None = None

    def __post_init__(self) -> None:
        """Refuse impossible settings with one line each, so neither a reader's override from the
        command line nor a typo in Python trains on silently (or fails deep inside torch)."""
        counts = ("steps", "batch_size", "latent_dim", "d_steps", "generator_width", "discriminator_width")
        for name in counts:  # NumPy integers become ints (JSON needs them)
            object.__setattr__(self, name, check_count(getattr(self, name), name))
        held_out = check_count(self.held_out_per_class, "held_out_per_class", minimum=0)
        object.__setattr__(self, "held_out_per_class", held_out)
        if held_out and self.data != "mnist":
            raise ValueError("held_out_per_class holds out digits: use it with data='mnist'.")
        object.__setattr__(self, "lr", check_positive_number(self.lr, "lr"))
        for name in ("reuse_fakes", "lr_decay", "channels_last", "sync_batchnorm"):
            if not isinstance(getattr(self, name), bool):  # "no" would count as true
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}.")
        for name in ("r1_gamma", "lr_D", "gp_weight"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, check_positive_number(getattr(self, name), name))
        if self.ema_decay is not None:
            decay = check_positive_number(self.ema_decay, "ema_decay")
            if decay >= 1:
                raise ValueError(f"ema_decay must be in (0, 1), like 0.999, got {decay}.")
            object.__setattr__(self, "ema_decay", decay)
        augment = (self.augment,) if isinstance(self.augment, str) else self.augment
        if not isinstance(augment, tuple | list) or any(a not in stabilisers.AUGMENTATIONS for a in augment):
            raise ValueError(f"augment must name some of {stabilisers.AUGMENTATIONS}, got {self.augment!r}.")
        object.__setattr__(self, "augment", tuple(augment))
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}.")
        if self.optimiser not in OPTIMISERS:
            raise ValueError(f"unknown optimiser {self.optimiser!r}; choose one of {', '.join(OPTIMISERS)}.")
        if self.d_norm not in models.DISCRIMINATOR_NORMS:
            raise ValueError(
                f"unknown d_norm {self.d_norm!r}; choose one of {', '.join(models.DISCRIMINATOR_NORMS)}."
            )
        if self.r1_gamma and self.gp_weight:
            raise ValueError("choose one penalty on D: r1_gamma or gp_weight, not both.")
        if self.gp_weight and self.model != "mlp" and self.d_norm == "batch":
            raise ValueError(
                "the gradient penalty is per sample, and BatchNorm mixes the samples of a batch: use it "
                "with d_norm='none' (Gulrajani et al., 2017) or 'spectral'."
            )
        if self.augment and self.data != "mnist":
            raise ValueError("augment shifts and cuts images: use it with data='mnist'.")
        if self.conditioning not in models.DISCRIMINATOR_CONDITIONINGS:
            raise ValueError(
                f"unknown conditioning {self.conditioning!r}; choose one of "
                f"{', '.join(models.DISCRIMINATOR_CONDITIONINGS)}."
            )
        if self.clusters is not None:
            object.__setattr__(self, "clusters", check_count(self.clusters, "clusters", minimum=2))
            if not (self.model == "dcgan" or self.model == "mlp" and self.data != "mnist"):
                raise ValueError(
                    "clusters label the training set by k-means in place of class labels: use it with "
                    "model='dcgan', or model='mlp' on the ring or the grid."
                )
        conditioned = self.conditional or self.clusters
        if not conditioned and self.conditioning != Recipe.__dataclass_fields__["conditioning"].default:
            raise ValueError(
                "conditioning sets how a conditional D sees labels: use it with model='cdcgan' (or clusters)."
            )
        dcgan_only = ("d_norm", "generator_width", "discriminator_width")
        if self.model == "mlp" and any(
            getattr(self, n) != Recipe.__dataclass_fields__[n].default for n in dcgan_only
        ):
            raise ValueError(
                f"{', '.join(dcgan_only)} set the DCGAN's layers; the MLPs ignore them, so leave them unset."
            )
        if self.reuse_fakes and self.d_steps != 1:
            raise ValueError(
                "reuse_fakes needs d_steps=1: with several D updates, which fakes would G reuse?"
            )
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
        if self.model != "mlp" and self.data != "mnist":
            raise ValueError("the DCGAN draws images: use it with data='mnist'.")
        training.get_losses(self.loss)

    def training_set(self, samples: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The samples this recipe trains on: all of them, or, with ``held_out_per_class`` = k, all but k
        digits of each class. The held-out digits are `classifier.stratified_split(labels, k, seed=0)`'s,
        the same split chapter 5 uses, so a memorisation check can compare the generator's samples with
        real digits it never saw."""
        if not self.held_out_per_class:
            return samples
        if labels is None:
            raise ValueError(f"recipe {self.name!r} holds out digits per class: pass the labels too.")
        return samples[classifier.stratified_split(labels, self.held_out_per_class, seed=0)[0]]

    @property
    def conditional(self) -> bool:
        """True when the recipe's models take class labels (chapter 8)."""
        return self.model == "cdcgan"

    def batches(
        self, samples: torch.Tensor, labels: torch.Tensor | None = None, device: torch.device | str = "cpu"
    ) -> BatchIterator:
        """Shuffled batches of the recipe's `training_set` on ``device``, paired with their labels when the
        recipe is conditional; full batches only, so every step sees ``batch_size`` samples."""
        tensors = [self.training_set(samples, labels)]
        if self.clusters:
            tensors.append(self.cluster_ids(samples, labels))
        elif self.conditional:
            if labels is None:
                raise ValueError(f"recipe {self.name!r} trains a conditional GAN: pass the labels too.")
            tensors.append(self.training_set(labels, labels))
        return BatchIterator(*[t.to(device) for t in tensors], batch_size=self.batch_size, drop_last=True)

    def cluster_ids(self, samples: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Self-conditioning: the cluster of each sample (image, or toy point) of `training_set`, by
        `stabilisers.pixel_kmeans` with ``clusters`` centres (seed 0, so every run and its resumption
        sees the same clusters)."""
        if not self.clusters:
            raise ValueError(f"recipe {self.name!r} has no clusters; set clusters=k to self-condition it.")
        images = self.training_set(samples, labels)
        if self.clusters > len(images):
            raise ValueError(
                f"clusters={self.clusters} exceeds the {len(images)} training samples; use fewer clusters."
            )
        ids = stabilisers.pixel_kmeans(images, self.clusters)
        empty = self.clusters - len(ids.unique())
        if empty:  # refused before training, so no run is lost at its end
            raise ValueError(
                f"k-means left {empty} of clusters={self.clusters} empty on these images; use fewer clusters."
            )
        return ids

    def sampling_generator(
        self, G: nn.Module, samples: torch.Tensor, labels: torch.Tensor | None = None
    ) -> nn.Module:
        """The generator to sample and ship from a trained (or averaged) G: G itself, or, when the recipe
        self-conditions, G inside a `models.SelfConditionedGenerator` (a toy's:
        `models.SelfConditionedMLPGenerator`) that draws each sample's cluster from z with the cluster's
        share of the training set. G's BatchNorm statistics are kept: an EMA's were recomputed over every
        cluster equally (`stabilisers.GeneratorEMA`); recomputing them for the clusters' shares scored
        lower in chapter 5's metrics (density 0.756 against 0.777, one seed of 30 clusters; the
        performance appendix has the runs)."""
        if not self.clusters:
            return G
        sizes = torch.bincount(self.cluster_ids(samples, labels), minlength=self.clusters).tolist()
        return models.self_conditioned(G, sizes).eval()

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
        """Freshly initialised G and D on ``device`` (checked by `runtime.resolve_device`), in the recipe's
        memory format."""
        device = resolve_device(device)
        if self.clusters and self.model == "mlp":  # chapter 6's self-conditioned toys
            G = models.ConditionalMLPGenerator(
                self.latent_dim, (2,), self.clusters, hidden=self.generator_hidden
            )
            D = models.ConditionalMLPDiscriminator(
                (2,), self.clusters, self.discriminator_hidden, self.conditioning
            )
        elif self.clusters:
            G = models.cdcgan_mnist_generator(self.generator_width, n_classes=self.clusters)
            D = models.cdcgan_mnist_discriminator(self.discriminator_width, self.conditioning, self.d_norm,
                                                  n_classes=self.clusters)  # fmt: skip
        elif self.model == "dcgan":
            G = models.dcgan_mnist_generator(self.generator_width)
            D = models.dcgan_mnist_discriminator(self.discriminator_width, self.d_norm)
        elif self.model == "cdcgan":
            G = models.cdcgan_mnist_generator(self.generator_width)
            D = models.cdcgan_mnist_discriminator(self.discriminator_width, self.conditioning, self.d_norm)
        elif self.data == "mnist":
            G, D = models.mlp_mnist_generator(), models.mlp_mnist_discriminator()
        else:
            G = models.MLPGenerator(self.latent_dim, (2,), hidden=self.generator_hidden)
            D = models.MLPDiscriminator((2,), hidden=self.discriminator_hidden)
        if self.augment:
            D = stabilisers.DiffAugment(D, self.augment)
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        return G.to(device, memory_format=layout), D.to(device, memory_format=layout)

    def optimisers(
        self, G: nn.Module, D: nn.Module, capturable: bool = False, fused: bool = False
    ) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
        """The recipe's optimiser for each player: G at ``lr``, D at ``lr_D`` (``lr`` when unset).
        ``capturable=True`` keeps their step counts on the device, as `training.CUDAGraphStep` needs.
        ``fused=True`` gives Adam PyTorch's fused implementation (the same update up to rounding, in
        fewer kernel launches; 10-13 % more images/s in a recorded step on an H200, see the performance
        appendix); RMSprop and SGD have none here and ignore it."""

        def make(params, lr: float) -> torch.optim.Optimizer:
            if self.optimiser == "rmsprop":
                return torch.optim.RMSprop(params, lr=lr, capturable=capturable)
            if self.optimiser == "sgd":
                return torch.optim.SGD(params, lr=lr, momentum=0.9)
            return torch.optim.Adam(
                params, lr=lr, betas=self.betas, capturable=capturable, fused=fused or None
            )

        return make(G.parameters(), self.lr), make(D.parameters(), self.lr_D or self.lr)

    def step(self) -> training.StepFunction:
        """`training.train_step` with the recipe's loss and its penalty on D (R1 or the gradient penalty)."""
        penalty = (training.R1Penalty(self.r1_gamma) if self.r1_gamma
                   else stabilisers.GradientPenalty(self.gp_weight) if self.gp_weight else None)  # fmt: skip
        return functools.partial(training.train_step, loss=self.loss, d_steps=self.d_steps,
                                 d_penalty=penalty, reuse_fakes=self.reuse_fakes,
                                 precision=PRECISIONS[self.precision])  # fmt: skip

    def schedule(self, opt_G: torch.optim.Optimizer, opt_D: torch.optim.Optimizer) -> list[training.Callback]:
        """The recipe's learning-rate callbacks. Build them before `training.resume`, so they keep the
        initial rates rather than the ones a checkpoint restores."""
        return [training.LinearLearningRateDecay([opt_G, opt_D], self.steps)] if self.lr_decay else []

    def ema(self, G: nn.Module) -> stabilisers.GeneratorEMA | None:
        """The EMA callback of G's weights when the recipe asks for one (pass it to `training.train`,
        and its ``averaged`` module to the Checkpointer's and `training.resume`'s ``extra_modules``),
        else None; sample ``ema.generator``."""
        return stabilisers.GeneratorEMA(G, self.ema_decay) if self.ema_decay else None


_TOY = Recipe(
    name="baseline", model="mlp", data="ring", steps=6000, batch_size=256, lr=1e-3, betas=(0.5, 0.9)
)

PRESETS: dict[str, Recipe] = {
    # Chapter 2's toys (the same networks on the ring or the grid): a plain GAN, and R1 + LR decay.
    "toy-baseline": _TOY,
    "toy-r1-decay": _TOY.with_overrides(name="R1 + LR decay", r1_gamma=0.1, lr_decay=True),
    # Chapter 6 revisits the grid with an EMA of G on top of R1 + LR decay.
    "toy-r1-decay-ema": _TOY.with_overrides(name="R1 + LR decay + EMA", r1_gamma=0.1, lr_decay=True,
                                            ema_decay=0.999),
    # ... and with self-conditioning on 50 k-means clusters of the training points, more than the modes,
    # so that no cluster straddles two of them (with 25, k-means can merge two modes into one cluster).
    "toy-self-conditioned": _TOY.with_overrides(name="self-conditioned + R1 + LR decay + EMA", r1_gamma=0.1,
                                                lr_decay=True, ema_decay=0.999, clusters=50),
    # Chapter 3's MNIST MLPs (the shipped mlp-mnist comes from mlp-mnist-stable, below).
    "mlp-mnist": Recipe(name="mlp-mnist", model="mlp", data="mnist", steps=3000),
    # Chapter 4's 28x28 DCGAN (shipped as dcgan-mnist-baseline).
    "dcgan-mnist": Recipe(name="dcgan-mnist", model="dcgan", data="mnist", steps=12000, batch_size=128,
                          lr=5e-4, reuse_fakes=True, lr_decay=True, channels_last=True),
}  # fmt: skip
# Chapter 6's recipes: R1 and an EMA of G, 100 digits of each class held out for the memorisation
# check; the DCGAN is also wider. They train the shipped mlp-mnist and, with G and D 128 channels wide
# (command-line overrides), dcgan-mnist-wide.
PRESETS["mlp-mnist-stable"] = PRESETS["mlp-mnist"].with_overrides(
    name="mlp-mnist-stable", steps=6000, r1_gamma=1.0, ema_decay=0.999, held_out_per_class=100
)
PRESETS["dcgan-mnist-stable"] = PRESETS["dcgan-mnist"].with_overrides(
    name="dcgan-mnist-stable",
    steps=14000,
    generator_width=64,
    discriminator_width=32,
    r1_gamma=1.0,
    reuse_fakes=False,
    ema_decay=0.999,
    held_out_per_class=100,
)
# Chapter 8's conditional DCGAN (shipped as cdcgan-mnist): chapter 6's recipe with a projection
# discriminator, and the same 100 digits per class held out.
PRESETS["cdcgan-mnist"] = PRESETS["dcgan-mnist-stable"].with_overrides(
    name="cdcgan-mnist", model="cdcgan", steps=12000
)
# Chapter 6's self-conditioned DCGAN: cdcgan-mnist's models and recipe, with pixel k-means clusters of
# the training digits in place of the labels (self-conditioning, Liu et al., 2020). No label is used
# except to hold out the same digits as the other models. 50 clusters was the first choice and the
# benchmarks' default; the shipped dcgan-mnist overrides it with clusters=35 (seed 1): with 50 its samples
# lay 2-3 % nearer their training digits than unseen digits, with 30 density sat at 0.8 (chapter 6.9).
PRESETS["dcgan-mnist-self-conditioned"] = PRESETS["cdcgan-mnist"].with_overrides(
    name="dcgan-mnist-self-conditioned", model="dcgan", clusters=50
)


def preset(name: str, **overrides) -> Recipe:
    """The preset called ``name``, with ``overrides`` applied (e.g. ``preset("dcgan-mnist", steps=2400)``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}.")
    return PRESETS[name].with_overrides(**overrides)


@dataclass
class TrainedRecipe:
    """What `train_recipe` returns. ``G`` is the generator to sample: the EMA one when the recipe has
    ``ema_decay``, else the trained one (``G_trained``)."""

    recipe: Recipe
    G: nn.Module
    G_trained: nn.Module
    D: nn.Module
    history: dict[str, list[float]]
    seconds: float


def train_recipe(
    recipe: Recipe,
    samples: torch.Tensor,
    seed: int,
    labels: torch.Tensor | None = None,
    callbacks: Iterable[training.Callback] = (),
    progress: bool = False,
    device: torch.device | str = "cpu",
    cuda_graph: bool = False,
) -> TrainedRecipe:
    """Train ``recipe`` for ``recipe.steps`` steps on ``samples`` (images in [-1, 1] or 2-D points) from
    ``seed``: models, optimisers, step, schedule and EMA all as the recipe says (``labels`` are needed
    when the recipe holds digits out, `Recipe.training_set`, or is conditional). One call, one run;
    chapters, benchmarks and `toys` use it, and the command line adds checkpoints around the same parts.
    ``cuda_graph=True`` (CUDA only) records the step once and replays it (`training.CUDAGraphStep`),
    with Adam's fused kernel."""
    device = resolve_device(device)
    set_seed(seed)
    G, D = recipe.build_models(device)
    opt_G, opt_D = recipe.optimisers(G, D, capturable=cuda_graph, fused=cuda_graph)
    step = training.CUDAGraphStep(recipe.step()) if cuda_graph else recipe.step()
    ema = recipe.ema(G)
    data = recipe.batches(samples, labels, device)
    callbacks = [*callbacks, *recipe.schedule(opt_G, opt_D), *([ema] if ema else [])]
    start = time.perf_counter()
    history = training.train(G, D, opt_G, opt_D, data, recipe.steps, step, callbacks=callbacks,
                             progress=progress)  # fmt: skip
    seconds = time.perf_counter() - start
    sampled = recipe.sampling_generator(ema.generator if ema else G, samples, labels)
    return TrainedRecipe(recipe, sampled, G, D, history, seconds)
