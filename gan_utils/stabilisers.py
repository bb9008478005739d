"""Chapter 6's stabilisers, as opt-in pieces around the unchanged `training.train_step`.

Each one plugs in where it acts, so the step never grows a flag:
    - the loss (hinge, Wasserstein) is a pair of functions passed to the step (`training.LOSSES`);
    - a penalty on D (`GradientPenalty` here, `training.R1Penalty`) is the step's ``d_penalty``;
    - spectral normalisation is part of D (`models.spectral_normalise`, ``norm="spectral"``);
    - TTUR is two learning rates in the optimisers (`recipes.Recipe.lr_D`);
    - an EMA of G's weights is a callback (`GeneratorEMA`);
    - differentiable augmentation wraps D (`DiffAugment`), so both players see augmented images;
    - self-conditioning swaps the models for conditional ones and labels the data with clusters of
      itself (`pixel_kmeans`, `models.SelfConditionedGenerator` for images and
      `models.SelfConditionedMLPGenerator` for the 2D toys, `recipes.Recipe.clusters`).

Papers: Gulrajani et al. (2017) for the gradient penalty; Heusel et al. (2017) for TTUR;
Yazıcı et al. (2019) for the EMA of G; Zhao et al. (2020) for DiffAugment; Liu et al. (2020) for
self-conditioning.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from gan_utils import losses, models
from gan_utils.runtime import check_count, check_positive_number

AUGMENTATIONS = ("translation", "cutout")
BACKGROUND = -1.0  # the value of an empty pixel in the book's [-1, 1] images


class GradientPenalty:
    """Opt-in WGAN-GP penalty for D: ``weight`` * E[(||grad D(x_hat)|| - 1)^2] (Gulrajani et al., 2017).

    Pass an instance as ``d_penalty`` to `training.train_step`; the paper uses weight 10 with a critic
    that has no BatchNorm (``models.DCGANDiscriminator(norm="none")``).
    """

    def __init__(self, weight: float = 10.0) -> None:
        self.weight = check_positive_number(weight, "the gradient penalty's weight")

    def __call__(self, D: nn.Module, x_real: torch.Tensor, x_fake: torch.Tensor, *labels) -> torch.Tensor:
        def critic(x_hat: torch.Tensor) -> torch.Tensor:  # x_hat keeps the label of its real sample
            return D(x_hat, *labels)

        return self.weight * losses.gradient_penalty(critic, x_real, x_fake)

    def __repr__(self) -> str:
        return f"GradientPenalty(weight={self.weight})"


class GeneratorEMA:
    """Callback: an exponential moving average of G's weights (Yazıcı et al., 2019).

    After update t, theta_ema <- beta_t * theta_ema + (1 - beta_t) * theta_G for every parameter, with
    beta_t = min(decay, (1 + t) / (10 + t)) (`torch.optim.swa_utils.AveragedModel`); the first update
    copies G. The warm-up in beta_t, as in TensorFlow's ExponentialMovingAverage, keeps the untrained
    first weights from lingering: with a constant 0.999 they would still weigh 0.999^1000 = 37 % of the
    average after 1,000 steps, and short runs came out worse than without the average.
    The averaged generator, ``ema.generator``, is the one to sample and ship: it averages out the
    oscillation of the game (chapter 2) instead of stopping at one point of it.

    BatchNorm needs care. Averaging the running statistics as well would pair averaged weights
    with statistics that no single set of weights produced, and in our runs that cost more than the
    average gained. So the statistics are recomputed for the averaged weights, as stochastic weight
    averaging does (Izmailov et al., 2018): ``generator`` runs ``bn_batches`` batches of fixed noise
    through the averaged G in training mode whenever its weights changed since the last time.

    Include ``ema.averaged`` (the average plus its update count) in a `training.Checkpointer`'s
    ``extra_modules``, and in `training.resume`'s, so that a resumed run continues the same average;
    `generator_state` reads the generator's weights back from a file.
    """

    def __init__(
        self, G: nn.Module, decay: float = 0.999, bn_batches: int = 16, bn_batch_size: int = 256
    ) -> None:
        decay = check_positive_number(decay, "the EMA decay")
        if not decay < 1:
            raise ValueError(f"the EMA decay must be in (0, 1), like 0.999, got {decay}.")
        self.decay, self.bn_batches, self.bn_batch_size = decay, bn_batches, bn_batch_size
        self.averaged = AveragedModel(G, avg_fn=self._average, use_buffers=False)
        self.averaged.eval()
        self._calibrated_at = -1

    def decay_at(self, update: int) -> float:
        """beta_t for update ``update`` (1 = the first one after the copy)."""
        return min(self.decay, (1 + update) / (10 + update))

    def _average(self, averaged: torch.Tensor, current: torch.Tensor, updates: torch.Tensor) -> torch.Tensor:
        beta = self.decay_at(int(updates))
        return beta * averaged + (1 - beta) * current

    @property
    def generator(self) -> nn.Module:
        """The averaged generator, in eval mode: same class and contract as G (``latent_dim``, ``config``)."""
        updates = int(self.averaged.n_averaged)
        if updates != self._calibrated_at:
            recompute_batchnorm(self.averaged.module, self.bn_batches, self.bn_batch_size)
            self._calibrated_at = updates
        return self.averaged.module.eval()

    def __call__(self, state) -> None:
        self.averaged.update_parameters(state.G)


@torch.no_grad()
def recompute_batchnorm(G: nn.Module, batches: int = 16, batch_size: int = 256, seed: int = 0) -> nn.Module:
    """Set every BatchNorm layer's running statistics of G to their average over ``batches`` batches of
    noise (from its own seeded generator, so the global random stream is untouched). G ends in eval mode."""
    norms = [m for m in G.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return G.eval()
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    device = next(G.parameters()).device
    noise = torch.Generator().manual_seed(seed)
    G.train()
    labels = (models.balanced_labels(batch_size, G.n_classes, device),) if models.is_conditional(G) else ()
    for _ in range(batches):
        G(torch.randn(batch_size, G.latent_dim, generator=noise).to(device), *labels)
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    return G.eval()


def generator_state(averaged_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The generator's own state dict inside a saved ``GeneratorEMA.averaged`` state dict."""
    prefix = "module."
    return {key[len(prefix) :]: value for key, value in averaged_state.items() if key.startswith(prefix)}


def pixel_kmeans(images: torch.Tensor, k: int, seed: int = 0, iterations: int = 100) -> torch.Tensor:
    """The cluster index [n] of each image: k-means on raw pixels (k-means++ start from ``seed``, then
    ``iterations`` Lloyd steps). Any float samples [n, ...] work, the 2D toys' points too.

    Liu et al. (2020) cluster the discriminator's features and re-cluster as training goes; the
    book clusters pixels once, before training, which needs no schedule and no model. The same
    images and ``seed`` give the same clusters, so a run can be resumed or repeated."""
    centres = pixel_kmeans_centres(images, k, seed, iterations)
    return torch.cdist(images.flatten(1).float(), centres).argmin(1)


def pixel_kmeans_centres(images: torch.Tensor, k: int, seed: int = 0, iterations: int = 100) -> torch.Tensor:
    """The k centres [k, pixels] of `pixel_kmeans`, to assign other images to its clusters."""
    if not isinstance(images, torch.Tensor) or images.ndim < 2 or not images.is_floating_point():
        raise ValueError(
            f"images must be a float tensor [n, ...], got {getattr(images, 'shape', type(images))}."
        )
    x = images.flatten(1).float()
    k = check_count(k, "k", minimum=2)
    if k > len(x):
        raise ValueError(f"k-means needs 2 <= k <= the number of images ({len(x)}), got k={k}.")
    if not torch.isfinite(x).all():
        raise ValueError("images hold NaN or infinite pixels; k-means needs finite values.")
    generator = torch.Generator().manual_seed(seed)
    centres = x[torch.randint(len(x), (1,), generator=generator)]
    for _ in range(k - 1):
        squared = torch.cdist(x, centres).min(1).values ** 2
        if not squared.sum() > 0:
            raise ValueError(f"only {len(centres)} distinct images for k={k} clusters; use a smaller k.")
        centres = torch.cat([centres, x[torch.multinomial(squared / squared.sum(), 1, generator=generator)]])
    for _ in range(iterations):
        assign = torch.cdist(x, centres).argmin(1)
        centres = torch.stack(
            [x[assign == c].mean(0) if (assign == c).any() else centres[c] for c in range(k)]
        )
    return centres


def translate(images: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Shift each image by its own random whole-pixel offset in [-max_shift, max_shift] on each axis.

    Pixels shifted in from outside are background (-1). Differentiable with respect to ``images``.
    """
    n, _, height, width = images.shape
    shift_y = torch.randint(-max_shift, max_shift + 1, (n, 1), device=images.device)
    shift_x = torch.randint(-max_shift, max_shift + 1, (n, 1), device=images.device)
    padded = nn.functional.pad(images, (max_shift,) * 4, value=BACKGROUND)
    rows = torch.arange(height, device=images.device) + max_shift - shift_y  # (n, H)
    cols = torch.arange(width, device=images.device) + max_shift - shift_x  # (n, W)
    batch = torch.arange(n, device=images.device)[:, None, None]
    picked = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (n, H, W, C)
    return picked.permute(0, 3, 1, 2)


def cutout(images: torch.Tensor, size: int) -> torch.Tensor:
    """Blank one random ``size`` x ``size`` square per image (it may overlap the border) to background."""
    n, _, height, width = images.shape
    top = torch.randint(0, height, (n, 1, 1), device=images.device) - size // 2
    left = torch.randint(0, width, (n, 1, 1), device=images.device) - size // 2
    ys = torch.arange(height, device=images.device)[None, :, None] - top
    xs = torch.arange(width, device=images.device)[None, None, :] - left
    inside = (ys >= 0) & (ys < size) & (xs >= 0) & (xs < size)  # (n, H, W)
    return torch.where(inside[:, None], torch.full_like(images, BACKGROUND), images)


class DiffAugment(nn.Module):
    """D behind differentiable augmentation (Zhao et al., 2020): D(T(x)) for real and fake alike.

    With only 5,000 training digits, D can memorise the real set and its gradients stop telling G
    anything general. Augmenting what D sees, in *both* players' updates and through an operation G's
    gradient can pass, keeps D from memorising without teaching G to draw augmented digits (which
    augmenting only the real images would do). In eval mode D sees the plain image.

    Policies (Zhao et al.'s defaults for their 32x32 experiments): "translation" shifts by up to 1/8
    of the image size (rounded down here: 3 pixels of 28, where their code rounds to 4), "cutout"
    blanks a square of half the image size. Their code fills shifted-in pixels and the blanked square
    with 0, mid-grey on images in [-1, 1]; ours fill with the background, -1, so D sees empty paper
    there, as on a real digit (our choice). The paper's colour policy (brightness, saturation,
    contrast) is left out: it would move grey digits out of [-1, 1].
    """

    def __init__(self, D: nn.Module, policy: tuple[str, ...] = AUGMENTATIONS) -> None:
        super().__init__()
        unknown = [p for p in policy if p not in AUGMENTATIONS]
        if unknown or not policy:
            raise ValueError(f"policy must name some of {AUGMENTATIONS}, got {policy!r}.")
        self.D, self.policy = D, tuple(policy)
        self.sample_shape = getattr(D, "sample_shape", None)

    def augment(self, images: torch.Tensor) -> torch.Tensor:
        """T(images): the policy's operations in order, each with fresh randomness per image."""
        size = images.shape[-1]
        if "translation" in self.policy:
            images = translate(images, max(1, size // 8))
        if "cutout" in self.policy:
            images = cutout(images, size // 2)
        return images

    def forward(self, images: torch.Tensor, *labels: torch.Tensor) -> torch.Tensor:
        return self.D(self.augment(images) if self.training else images, *labels)
