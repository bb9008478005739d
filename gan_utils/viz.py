"""Plots for the book: image grids, 2D samples, D's decision surface, training curves and movies.

Each plotting function draws on a Matplotlib ``Axes`` (a new one when none is given) and returns it,
so chapters can compose figures and tests can inspect them without a display; `plot_training_curves`
makes its own two-panel figure and returns the figure.
"""

from __future__ import annotations

import math
import re

import matplotlib.pyplot as plt
import torch
from matplotlib import animation
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import nn
from torchvision.utils import make_grid

from gan_utils import metrics
from gan_utils.data import GaussianMixture2D, check_mixture
from gan_utils.runtime import check_count, device_of, evaluating, sample


def _check_images(images: torch.Tensor) -> torch.Tensor:
    images = torch.as_tensor(images).detach().float().cpu()
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(
            f"expected images of shape [n, C, H, W] with C = 1 or 3, got {tuple(images.shape)}; "
            "reshape flat vectors with images.view(-1, 1, 28, 28)."
        )
    if len(images) == 0:
        raise ValueError("no images to show: the tensor holds 0 images.")
    if not torch.isfinite(images).all():
        raise ValueError("the images hold NaN or infinite pixels; a generator that diverged draws them.")
    # in [-1, 1], with room for a bicubic upsampling's overshoot; pixels in [0, 255] are far outside
    if images.min() < -1.5 or images.max() > 1.5:
        raise ValueError(
            f"expected images in [-1, 1], got values in [{images.min():.3g}, {images.max():.3g}]; pixels in "
            "[0, 255] become [-1, 1] with x / 127.5 - 1."
        )
    return images


def show_image_grid(
    images: torch.Tensor, nrow: int = 8, title: str | None = None, ax: Axes | None = None
) -> Axes:
    """Show ``[n, C, H, W]`` images in [-1, 1] as one grid, ``nrow`` images per row.

    Introduced in chapter 0.
    """
    images = _check_images(images)
    nrow = check_count(nrow, "nrow")
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
    mixture = check_mixture(mixture, "plot_mixture_samples(mixture, samples)")
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
    mixture = check_mixture(mixture, "default_extent(mixture)")
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
    mixture = check_mixture(mixture, "plot_decision_surface(D, mixture, fake)")
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
        self.mixture = check_mixture(mixture, "ToyTrainingMovie(mixture, fixed_z, every)")
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
    """Mean over each window of ``width`` consecutive values (all of them when there are fewer).

    No values give no means: an empty tensor.
    """
    values = torch.as_tensor(values, dtype=torch.float64)
    if values.ndim != 1:
        raise ValueError(f"values must be a flat list of numbers, got shape {tuple(values.shape)}.")
    width = check_count(width, "moving_average's width")
    if len(values) == 0:
        return values
    width = min(width, len(values))
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
    missing = [key for key in ("step", "loss_D", "loss_G", "D(x)", "D(G(z))") if key not in history]
    if missing:
        raise ValueError(f"the history lacks {missing}; pass what training.train returns.")
    steps = torch.as_tensor(history["step"], dtype=torch.float64)
    if len(steps) == 0:
        raise ValueError("the history holds no steps yet; train first, then plot.")
    width = min(check_count(smooth, "smooth"), len(steps))
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


def draw_gan_diagram(ax: Axes | None = None) -> Axes:
    """The two players as a block diagram: noise -> G -> fake; real and fake -> D -> logit -> the two
    losses (Goodfellow et al., 2014, with the non-saturating loss for G). Drawn from text and arrows
    only, so the picture lives in the library and never drifts from the book's notation."""
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 3.6))
    boxes = {  # name: (x, y, text, colour)
        "z": (0.06, 0.25, "noise\n$z \\sim \\mathcal{N}(0, I)$", "#dddddd"),
        "G": (0.27, 0.25, "generator\n$G$", "#9ecae1"),
        "fake": (0.47, 0.25, "fake sample\n$G(z)$", "#dddddd"),
        "real": (0.47, 0.75, "real sample\n$x \\sim p_\\mathrm{data}$", "#dddddd"),
        "D": (0.66, 0.5, "discriminator\n$D$", "#fdae6b"),
        "logit": (0.84, 0.5, "logit $\\ell$\n$D(\\cdot) = \\sigma(\\ell)$", "#dddddd"),
    }
    for x, y, text, colour in boxes.values():
        ax.text(x, y, text, ha="center", va="center", fontsize=10,
                bbox={"boxstyle": "round,pad=0.5", "facecolor": colour, "edgecolor": "0.3"})  # fmt: skip
    arrows = [("z", "G"), ("G", "fake"), ("fake", "D"), ("real", "D"), ("D", "logit")]
    for start, end in arrows:
        (x0, y0), (x1, y1) = boxes[start][:2], boxes[end][:2]
        ax.annotate("", xy=(x1 - 0.07 * (x1 > x0), y1 + 0.1 * (y0 - y1)),
                    xytext=(x0 + 0.07, y0 - 0.1 * (y0 - y1)),
                    arrowprops={"arrowstyle": "->", "lw": 1.5, "color": "0.2"})  # fmt: skip
    losses = (
        "$D$ minimises  $-\\log \\sigma(\\ell_\\mathrm{real}) - \\log(1 - \\sigma(\\ell_\\mathrm{fake}))$\n"
        "$G$ minimises  $-\\log \\sigma(\\ell_\\mathrm{fake})$  (non-saturating)"
    )
    ax.text(0.84, 0.18, losses, ha="center", va="center", fontsize=9)
    ax.annotate(
        "", xy=(0.84, 0.27), xytext=(0.84, 0.4), arrowprops={"arrowstyle": "->", "lw": 1.5, "color": "0.2"}
    )
    ax.annotate("", xy=(0.27, 0.12), xytext=(0.62, 0.1),
                arrowprops={"arrowstyle": "->", "lw": 1, "ls": "--", "color": "tab:blue",
                            "connectionstyle": "arc3,rad=-0.25"})  # fmt: skip
    ax.text(0.45, -0.06, "G's gradient flows back through D", color="tab:blue", ha="center", fontsize=8)
    ax.set_xlim(0, 1.02)
    ax.set_ylim(-0.1, 1)
    ax.axis("off")
    return ax


_WEIGHTED_LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


def _layer_text(layer: nn.Module) -> str:
    name = type(layer).__name__
    if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d):
        (k, _), (s, _), (p, _) = layer.kernel_size, layer.stride, layer.padding
        return f"{name}\n{k}×{k}, stride {s}, pad {p}"
    return name


def architecture_blocks(model: nn.Module, example: torch.Tensor) -> list[dict]:
    """The layers ``model`` applies to ``example``, in order, grouped into blocks: each convolution or
    linear layer opens a block, and the normalisation and activation layers after it join it. Each
    block records its layers' names and the output shape of its last layer (without the batch
    dimension). Measured by running ``example`` through the model with forward hooks, so the blocks
    follow the model's own code."""
    calls: list[tuple[nn.Module, tuple[int, ...]]] = []

    def record(module: nn.Module, inputs, output: torch.Tensor) -> None:
        calls.append((module, tuple(output.shape[1:])))

    hooks = [leaf.register_forward_hook(record) for leaf in model.modules() if not list(leaf.children())]
    try:
        with evaluating(model), torch.no_grad():
            model(example)
    finally:
        for hook in hooks:
            hook.remove()
    blocks: list[dict] = []
    for layer, shape in calls:
        if isinstance(layer, _WEIGHTED_LAYERS) or not blocks:
            blocks.append({"layer": _layer_text(layer), "after": [], "shape": shape})
        else:
            blocks[-1]["after"].append(type(layer).__name__)
            blocks[-1]["shape"] = shape
    return blocks


def draw_architecture(
    model: nn.Module, example: torch.Tensor, input_label: str, ax: Axes | None = None, title: str = ""
) -> Axes:
    """A left-to-right drawing of `architecture_blocks`: one box per block, its height growing with the
    feature maps' side and its width with their channels, labelled with the layers and the output
    shape (channels × height × width)."""
    blocks = architecture_blocks(model, example)
    if ax is None:
        _, ax = plt.subplots(figsize=(2.1 * (len(blocks) + 1), 3.2))
    shapes = [tuple(example.shape[1:])] + [block["shape"] for block in blocks]
    labels = [f"{input_label}\n"] + [f"{b['layer']}\n" + (" + ".join(b["after"]) + "\n" if b["after"] else "")
                              for b in blocks]  # fmt: skip
    for i, (shape, label) in enumerate(zip(shapes, labels, strict=True)):
        channels, side = shape[0], (shape[1] if len(shape) == 3 else 1)
        height, width = 0.15 + 0.6 * side / 28, 0.12 + 0.05 * math.log2(max(channels, 1))
        ax.add_patch(plt.Rectangle((i - width / 2, 0.5 - height / 2), width, height, facecolor="#9ecae1" if i
                                   else "#dddddd", edgecolor="0.3"))  # fmt: skip
        size = "×".join(str(d) for d in shape)
        ax.text(i, 0.5 - height / 2 - 0.04, f"{label}{size}", ha="center", va="top", fontsize=8)
        if i:
            ax.annotate("", xy=(i - width / 2 - 0.02, 0.5), xytext=(i - 0.55, 0.5),
                        arrowprops={"arrowstyle": "->", "color": "0.3"})  # fmt: skip
    ax.set_xlim(-0.6, len(blocks) + 0.6)
    ax.set_ylim(-0.25, 0.95)
    ax.set_title(title, fontsize=10)
    ax.axis("off")
    return ax


def snapshots_jshtml(
    steps: list[int], grids: list[torch.Tensor], nrow: int = 8, interval_ms: int = 300
) -> str:
    """Image grids from a fixed z over training (`training.SampleSnapshots`' ``steps`` and ``samples``)
    as an animation in one offline HTML snippet: the same player chapter 2 uses (`offline_jshtml`)."""
    if not grids or len(steps) != len(grids):
        raise ValueError(
            f"need one grid per step and at least one, got {len(grids)} grids for {len(steps)} steps."
        )
    fig, ax = plt.subplots(figsize=(4.2, 4.5))

    def draw(i: int) -> list:
        ax.clear()
        show_image_grid(grids[i], nrow=nrow, ax=ax, title=f"step {steps[i]}")
        return []

    movie = animation.FuncAnimation(fig, draw, frames=len(grids), interval=interval_ms)
    plt.close(fig)
    return offline_jshtml(movie)
