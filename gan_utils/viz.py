"""Plots for the book: image grids and 2D sample scatters.

Every function draws on a Matplotlib ``Axes`` (a new one when none is given) and returns it, so
chapters can compose figures and tests can inspect them without a display.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes
from torchvision.utils import make_grid

from gan_utils.data import GaussianMixture2D


def _check_images(images: torch.Tensor) -> torch.Tensor:
    images = torch.as_tensor(images).detach().float().cpu()
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(
            f"expected images of shape [n, C, H, W] with C = 1 or 3, got {tuple(images.shape)}; "
            "reshape flat vectors with images.view(-1, 1, 28, 28)."
        )
    return images


def show_image_grid(
    images: torch.Tensor, nrow: int = 8, title: str | None = None, ax: Axes | None = None
) -> Axes:
    """Show ``[n, C, H, W]`` images in [-1, 1] as one grid, ``nrow`` images per row.

    Introduced in chapter 0.
    """
    images = _check_images(images)
    grid = make_grid(images, nrow=nrow, padding=2, normalize=True, value_range=(-1, 1), pad_value=1.0)
    if ax is None:
        _, ax = plt.subplots(figsize=(0.6 * nrow, 0.6 * -(-len(images) // nrow)))
    ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def plot_mixture_samples(
    mixture: GaussianMixture2D,
    samples: torch.Tensor,
    ax: Axes | None = None,
    title: str | None = None,
    label: str = "samples",
) -> Axes:
    """Scatter 2D ``samples`` with the mixture's means marked as crosses.

    Introduced in chapter 0.
    """
    samples = torch.as_tensor(samples).detach().cpu()
    if samples.ndim != 2 or samples.shape[1] != 2:
        raise ValueError(f"expected 2D points of shape [n, 2], got {tuple(samples.shape)}.")
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(samples[:, 0], samples[:, 1], s=3, alpha=0.4, label=label)
    means = mixture.means
    ax.scatter(means[:, 0], means[:, 1], marker="x", s=40, c="black", label="mode means")
    ax.set_aspect("equal")
    ax.set_title(title or f"{mixture.name}: {mixture.n_modes} modes, σ = {mixture.sigma}")
    return ax
