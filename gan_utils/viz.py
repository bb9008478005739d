"""Plots for the book: image grids, 2D samples, D's decision surface, training curves and movies.

Each plotting function draws on a Matplotlib ``Axes`` (a new one when none is given) and returns it,
so chapters can compose figures and tests can inspect them without a display; `plot_training_curves`
makes its own two-panel figure and returns the figure.
"""

from __future__ import annotations

import re

import matplotlib.pyplot as plt
import torch
from matplotlib import animation
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import nn
from torchvision.utils import make_grid

from gan_utils import metrics
from gan_utils.data import GaussianMixture2D
from gan_utils.runtime import device_of, evaluating, sample


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


def default_extent(mixture: GaussianMixture2D, margin: float = 0.5) -> tuple[float, float, float, float]:
    """A square (x0, x1, y0, y1) around the mixture's means with ``margin`` on each side."""
    low = mixture.means.min().item() - margin
    high = mixture.means.max().item() + margin
    return (low, high, low, high)


@torch.no_grad()
def decision_surface(
    D: nn.Module, extent: tuple[float, float, float, float], resolution: int = 80
) -> torch.Tensor:
    """D(x) = sigmoid(logit) on a ``resolution`` x ``resolution`` grid over ``extent``; rows are y."""
    x0, x1, y0, y1 = extent
    xs = torch.linspace(x0, x1, resolution)
    ys = torch.linspace(y0, y1, resolution)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    points = torch.stack([grid_x.flatten(), grid_y.flatten()], dim=1)
    with evaluating(D):
        probabilities = torch.sigmoid(D(points.to(device_of(D)))).cpu()
    return probabilities.view(resolution, resolution)


def plot_decision_surface(
    D: nn.Module,
    mixture: GaussianMixture2D,
    fake: torch.Tensor,
    ax: Axes | None = None,
    extent: tuple[float, float, float, float] | None = None,
    title: str | None = None,
) -> Axes:
    """D's probability of "real" as a colour map (dark = fake, light = real), real modes as crosses
    and generated samples as dots.

    Introduced in chapter 2.
    """
    extent = extent or default_extent(mixture)
    if ax is None:
        _, ax = plt.subplots(figsize=(4.2, 4.2))
    surface = decision_surface(D, extent)
    _draw_frame(ax, surface, extent, mixture, torch.as_tensor(fake).detach().cpu(), title)
    return ax


def _draw_frame(ax, surface, extent, mixture, fake, title):
    ax.clear()
    ax.imshow(surface.numpy(), origin="lower", extent=extent, vmin=0, vmax=1, cmap="RdBu", alpha=0.75)
    ax.scatter(fake[:, 0], fake[:, 1], s=2, c="black", alpha=0.5)
    ax.scatter(mixture.means[:, 0], mixture.means[:, 1], marker="x", s=30, c="tab:green")
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


class ToyTrainingMovie:
    """Training callback that records frames of a 2D GAN, then plays them as an animation.

    Every ``every`` steps it stores G(fixed_z), D's decision surface and the number of modes the
    samples capture (VEEGAN/PacGAN protocol). `to_jshtml` renders the frames with
    ``matplotlib.animation`` as self-contained HTML and JavaScript, which plays in JupyterLab and
    on the static site alike.

    Introduced in chapter 2.
    """

    def __init__(self, mixture: GaussianMixture2D, fixed_z: torch.Tensor, every: int, resolution: int = 60):
        if every < 1:
            raise ValueError(f"every must be a positive number of steps, got {every}.")
        self.mixture = mixture
        self.fixed_z = fixed_z
        self.every = every
        self.resolution = resolution
        self.extent = default_extent(mixture)
        self.steps: list[int] = []
        self.samples: list[torch.Tensor] = []
        self.surfaces: list[torch.Tensor] = []
        self.modes: list[int] = []

    def __call__(self, state) -> None:
        if state.step % self.every:
            return
        fake = sample(state.G, self.fixed_z)
        self.steps.append(state.step)
        self.samples.append(fake)
        self.surfaces.append(decision_surface(state.D, self.extent, self.resolution))
        self.modes.append(metrics.toy_mode_metrics(fake, self.mixture)["modes"])

    def animate(self, interval_ms: int = 150) -> animation.FuncAnimation:
        if not self.steps:
            raise RuntimeError("the movie has no frames: pass it to train(callbacks=[...]) first.")
        fig, ax = plt.subplots(figsize=(4.2, 4.2))

        def draw(i):
            title = f"step {self.steps[i]}: {self.modes[i]}/{self.mixture.n_modes} modes"
            _draw_frame(ax, self.surfaces[i], self.extent, self.mixture, self.samples[i], title)
            return []

        movie = animation.FuncAnimation(fig, draw, frames=len(self.steps), interval=interval_ms)
        plt.close(fig)
        return movie

    def to_jshtml(self, interval_ms: int = 150) -> str:
        """The animation as one HTML snippet with embedded frames; display it with IPython.display.HTML."""
        return offline_jshtml(self.animate(interval_ms))


# matplotlib's jshtml player draws its buttons with Font Awesome loaded from a CDN. The book works
# offline and its pages make no outside requests, so the buttons get Unicode symbols instead.
_PLAYER_ICONS = {
    "fa fa-minus": "\u2212",
    "fa fa-fast-backward": "\u23ee",
    "fa fa-step-backward": "\u23f4\u23f4",
    "fa fa-play fa-flip-horizontal": "\u25c0",
    "fa fa-pause": "\u23f8",
    "fa fa-play": "\u25b6",
    "fa fa-step-forward": "\u23f5\u23f5",
    "fa fa-fast-forward": "\u23ed",
    "fa fa-plus": "+",
}


def offline_jshtml(movie: animation.Animation) -> str:
    """``movie.to_jshtml()`` without the Font Awesome stylesheet link: no request leaves the page."""
    html = re.sub(r"<link[^>]*font-awesome[^>]*>", "", movie.to_jshtml(default_mode="loop"))
    for icon_class, symbol in _PLAYER_ICONS.items():
        html = html.replace(f'<i class="{icon_class}"></i>', f"<span>{symbol}</span>")
    return html


def moving_average(values: list[float] | torch.Tensor, width: int) -> torch.Tensor:
    """Mean over each window of ``width`` consecutive values (all of them when there are fewer)."""
    values = torch.as_tensor(values, dtype=torch.float64)
    width = max(1, min(int(width), len(values)))
    return torch.nn.functional.avg_pool1d(values.view(1, 1, -1), width, stride=1).view(-1)


def plot_training_curves(
    history: dict[str, list[float]],
    smooth: int = 50,
    marks: dict[str, int] | None = None,
    reference_loss: tuple[str, float] | None = None,
) -> Figure:
    """The losses and D's outputs of a `training.train` history, side by side, each smoothed by a
    moving average over ``smooth`` steps and plotted at the window's last step.

    ``marks`` draws a dotted vertical line at each named step (e.g. ``{"resumed here": 600}``);
    ``reference_loss`` a dashed horizontal line on the loss panel (e.g. ``("log 4", math.log(4))``).
    D's outputs are the mean sigmoid of its logits: 1/2 marks a D that cannot tell the two apart.
    """
    steps = torch.as_tensor(history["step"], dtype=torch.float64)
    if len(steps) == 0:
        raise ValueError("the history holds no steps yet; train first, then plot.")
    width = max(1, min(smooth, len(steps)))
    fig, (ax_loss, ax_d) = plt.subplots(1, 2, figsize=(11, 3.4))
    for ax, names in ((ax_loss, ("loss_D", "loss_G")), (ax_d, ("D(x)", "D(G(z))"))):
        for name in names:
            ax.plot(steps[width - 1 :], moving_average(history[name], width), label=name)
        for label, step in (marks or {}).items():
            ax.axvline(step, color="k", ls=":", lw=1, label=label)
        ax.set_xlabel("step")
    if reference_loss is not None:
        ax_loss.axhline(reference_loss[1], color="grey", ls="--", lw=1, label=reference_loss[0])
    ax_d.axhline(0.5, color="grey", ls="--", lw=1)
    ax_d.set_ylim(0, 1)
    ax_loss.set_title(f"losses (mean of {width} steps)", fontsize=10)
    ax_d.set_title(f"D's mean output (mean of {width} steps)", fontsize=10)
    for ax in (ax_loss, ax_d):
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
