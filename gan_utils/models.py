"""Generators and discriminators.

Contract, shared by every model in the book:
    - a generator has ``latent_dim`` and maps z of shape [n, latent_dim] to samples [n, *sample_shape];
      image generators end in tanh, so images come out in [-1, 1] as [n, C, H, W];
    - a discriminator maps samples [n, *sample_shape] to logits [n]; no model has a sigmoid inside;
    - conditional models (chapter 8) also take class labels y of shape [n] and carry ``n_classes``.

The MLPs are fully connected, as in Goodfellow et al. (2014), but with other units: their MNIST
networks used ReLU and sigmoid units in G and maxout with dropout in D; ours use ReLU or LeakyReLU(0.2)
in G and LeakyReLU(0.2) in D. The 2D toy sizes follow VEEGAN (Srivastava et al., 2017) and PacGAN
(Lin et al., 2018). Introduced in chapter 2 (toys); chapter 3 uses the same classes on MNIST.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gan_utils.runtime import check_count


def _check_tensor(t: object, module: nn.Module, what: str) -> None:
    """Refuse a non-tensor, or a tensor whose dtype differs from ``module``'s weights (outside autocast)."""
    if not isinstance(t, torch.Tensor):
        raise ValueError(
            f"{what} must be a torch tensor, got {type(t).__name__}; convert with torch.as_tensor."
        )
    weight = next(module.parameters(), None)
    if weight is None or t.dtype == weight.dtype or torch.is_autocast_enabled(t.device.type):
        return
    hint = " (NumPy arrays become float64: torch.from_numpy(a).float())" if t.dtype == torch.float64 else ""
    raise ValueError(
        f"{what} has dtype {t.dtype} but this model's weights are {weight.dtype}; convert it with "
        f".to({weight.dtype}){hint}."
    )


def _check_latent(z: torch.Tensor, latent_dim: int, module: nn.Module) -> None:
    _check_tensor(z, module, "z")
    if z.ndim != 2 or z.shape[1] != latent_dim:
        raise ValueError(
            f"this generator takes z of shape [n, {latent_dim}], got {tuple(z.shape)}; "
            "sample it with torch.randn(n, G.latent_dim)."
        )


def _check_samples(x: torch.Tensor, sample_shape: tuple[int, ...], module: nn.Module) -> None:
    _check_tensor(x, module, "the discriminator's input")
    if tuple(x.shape[1:]) != sample_shape:
        raise ValueError(
            f"this discriminator takes samples of shape [n, {', '.join(map(str, sample_shape))}], "
            f"got {tuple(x.shape)}."
        )


def _check_sample_shape(sample_shape: tuple[int, ...]) -> tuple[int, ...]:
    if isinstance(sample_shape, int) or not sample_shape:
        raise ValueError(f"sample_shape must be a non-empty tuple of positive sizes, got {sample_shape!r}.")
    return tuple(check_count(s, f"each size in sample_shape {tuple(sample_shape)}") for s in sample_shape)


class MLPGenerator(nn.Module):
    """z [n, latent_dim] -> samples [n, *sample_shape] through ``len(hidden)`` ReLU (or, with ``leaky``,
    LeakyReLU(0.2)) layers.

    Args:
        latent_dim: size of z.
        sample_shape: shape of one sample, e.g. (2,) for 2D toys or (1, 28, 28) for MNIST.
        hidden: widths of the hidden layers.
        batch_norm: BatchNorm after each hidden linear layer (as in VEEGAN's toy generator).
        output: "tanh" to squash into [-1, 1] (images) or "linear" (unbounded toy data).
        leaky: LeakyReLU(0.2) instead of ReLU in the hidden layers.
    """

    def __init__(
        self,
        latent_dim: int,
        sample_shape: tuple[int, ...],
        hidden: tuple[int, ...] = (128, 128),
        batch_norm: bool = False,
        output: str = "linear",
        leaky: bool = False,
    ) -> None:
        super().__init__()
        if output not in ("tanh", "linear"):
            raise ValueError(f"output must be 'tanh' or 'linear', got {output!r}.")
        self.latent_dim = check_count(latent_dim, "latent_dim")
        self.sample_shape = _check_sample_shape(sample_shape)
        hidden = tuple(check_count(width, "each width in hidden") for width in hidden)
        # kept so the generator can be rebuilt from a manifest (gan_utils.pretrained)
        self.config = {
            "latent_dim": self.latent_dim,
            "sample_shape": list(self.sample_shape),
            "hidden": list(hidden),
            "batch_norm": batch_norm,
            "output": output,
            "leaky": leaky,
        }
        layers: list[nn.Module] = []
        width = self.latent_dim
        for size in hidden:
            layers.append(nn.Linear(width, size))
            if batch_norm:
                layers.append(nn.BatchNorm1d(size))
            layers.append(nn.LeakyReLU(0.2) if leaky else nn.ReLU())
            width = size
        layers.append(nn.Linear(width, math.prod(self.sample_shape)))
        if output == "tanh":
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        _check_latent(z, self.latent_dim, self)
        if self.training and self.config["batch_norm"] and len(z) == 1:
            raise ValueError(
                "in training mode BatchNorm needs at least 2 codes per batch, got 1; call G.eval() first, "
                "or draw with gan_utils.runtime.sample(G, z)."
            )
        return self.net(z).view(-1, *self.sample_shape)  # (n, *sample_shape)


class MLPDiscriminator(nn.Module):
    """samples [n, *sample_shape] -> logits [n] through ``len(hidden)`` LeakyReLU(0.2) layers."""

    def __init__(self, sample_shape: tuple[int, ...], hidden: tuple[int, ...] = (128, 128)) -> None:
        super().__init__()
        self.sample_shape = _check_sample_shape(sample_shape)
        layers: list[nn.Module] = []
        width = math.prod(self.sample_shape)
        for size in hidden:
            layers += [nn.Linear(width, size), nn.LeakyReLU(0.2)]
            width = size
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_samples(x, self.sample_shape, self)
        return self.net(x.flatten(start_dim=1)).view(-1)  # (n,)


def mlp_mnist_generator(latent_dim: int = 100) -> MLPGenerator:
    """The MNIST MLP generator of chapter 3: z -> 256 -> 512 -> 1024 -> 784 (tanh) -> [n, 1, 28, 28].

    BatchNorm and LeakyReLU(0.2) in the hidden layers, as in the source article's generator (which
    is narrower: 128 -> 256).
    """
    return MLPGenerator(
        latent_dim, (1, 28, 28), hidden=(256, 512, 1024), batch_norm=True, output="tanh", leaky=True
    )


def mlp_mnist_discriminator() -> MLPDiscriminator:
    """The MNIST MLP discriminator of chapter 3: 784 -> 512 -> 256 -> 1 logit, no normalisation."""
    return MLPDiscriminator((1, 28, 28), hidden=(512, 256))


# ----------------------------------------------------------------------------- DCGAN
# Radford et al. (2016): strided (transposed) convolutions instead of pooling, BatchNorm in both
# networks except G's output and D's input layer, ReLU in G with tanh output, LeakyReLU(0.2) in D.
# The 64x64 layout follows pytorch/examples dcgan/main.py; the 28x28 one is ours for MNIST.

DCGAN_IMAGE_SIZES = (28, 64)


def _check_image_size(image_size: int) -> None:
    if image_size not in DCGAN_IMAGE_SIZES:
        raise ValueError(f"image_size must be one of {DCGAN_IMAGE_SIZES}, got {image_size!r}.")


def _check_generator_sizes(
    latent_dim: int, channels: int, width: int, image_size: int
) -> tuple[int, int, int]:
    _check_image_size(image_size)
    return (
        check_count(latent_dim, "latent_dim"),
        check_count(channels, "channels"),
        check_count(width, "width"),
    )


class DCGANGenerator(nn.Module):
    """z [n, latent_dim] -> images [n, channels, S, S] in [-1, 1], S = 28 or 64."""

    def __init__(
        self, latent_dim: int = 64, channels: int = 1, width: int = 64, image_size: int = 28
    ) -> None:
        super().__init__()
        latent_dim, channels, width = _check_generator_sizes(latent_dim, channels, width, image_size)
        self.latent_dim, self.image_size = latent_dim, image_size
        self.sample_shape = (channels, image_size, image_size)
        self.config = {
            "latent_dim": self.latent_dim,
            "channels": channels,
            "width": width,
            "image_size": image_size,
        }

        def up(c_in, c_out):  # doubles height and width
            return [
                nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(True),
            ]

        if image_size == 28:
            layers = [
                nn.ConvTranspose2d(latent_dim, 2 * width, 7, 1, 0, bias=False),  # (n, 2w, 7, 7)
                nn.BatchNorm2d(2 * width),
                nn.ReLU(True),
                *up(2 * width, width),  # (n, w, 14, 14)
                nn.ConvTranspose2d(width, channels, 4, 2, 1),  # (n, C, 28, 28)
            ]
        else:
            layers = [
                nn.ConvTranspose2d(latent_dim, 8 * width, 4, 1, 0, bias=False),  # (n, 8w, 4, 4)
                nn.BatchNorm2d(8 * width),
                nn.ReLU(True),
                *up(8 * width, 4 * width),  # (n, 4w, 8, 8)
                *up(4 * width, 2 * width),  # (n, 2w, 16, 16)
                *up(2 * width, width),  # (n, w, 32, 32)
                nn.ConvTranspose2d(width, channels, 4, 2, 1),  # (n, C, 64, 64)
            ]
        self.net = nn.Sequential(*layers, nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        _check_latent(z, self.latent_dim, self)
        return self.net(z[:, :, None, None])


DISCRIMINATOR_NORMS = ("batch", "none", "spectral")


class DCGANDiscriminator(nn.Module):
    """images [n, channels, S, S] -> logits [n], S = 28 or 64. No sigmoid.

    ``norm`` picks how the hidden layers are normalised:
        "batch": BatchNorm, as in Radford et al. (2016);
        "none": nothing, as a WGAN-GP critic needs: the gradient penalty is per sample, and BatchNorm
            makes each sample's score depend on the rest of the batch (Gulrajani et al., 2017, sec. 4);
        "spectral": spectral normalisation of every convolution (Miyato et al., 2018), no BatchNorm.
    """

    def __init__(self, channels: int = 1, width: int = 64, image_size: int = 28, norm: str = "batch") -> None:
        super().__init__()
        _check_image_size(image_size)
        if norm not in DISCRIMINATOR_NORMS:
            raise ValueError(f"norm must be one of {DISCRIMINATOR_NORMS}, got {norm!r}.")
        self.sample_shape = (channels, image_size, image_size)

        def down(c_in, c_out):  # halves height and width
            return [
                nn.Conv2d(c_in, c_out, 4, 2, 1, bias=norm != "batch"),
                nn.BatchNorm2d(c_out) if norm == "batch" else nn.Identity(),
                nn.LeakyReLU(0.2, True),
            ]

        first = [nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2, True)]  # no BatchNorm on the input
        if image_size == 28:
            layers = [*first, *down(width, 2 * width), nn.Conv2d(2 * width, 1, 7, 1, 0)]  # 14 -> 7 -> 1
        else:
            layers = [
                *first,  # (n, w, 32, 32)
                *down(width, 2 * width),  # (n, 2w, 16, 16)
                *down(2 * width, 4 * width),  # (n, 4w, 8, 8)
                *down(4 * width, 8 * width),  # (n, 8w, 4, 4)
                nn.Conv2d(8 * width, 1, 4, 1, 0),  # (n, 1, 1, 1)
            ]
        self.net = nn.Sequential(*layers)
        if norm == "spectral":
            spectral_normalise(self.net)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_samples(x, self.sample_shape, self)
        return self.net(x).view(-1)


def spectral_normalise(module: nn.Module) -> nn.Module:
    """Spectrally normalise every convolution and linear layer inside ``module``, in place.

    Each weight W is used as W / sigma(W), with sigma(W) its largest singular value estimated by one
    step of power iteration per training forward pass (Miyato et al., 2018), through PyTorch's own
    `torch.nn.utils.parametrizations.spectral_norm`. A convolution's kernel is flattened to a matrix
    [out_channels, in_channels * k * k] first, as in the paper; chapter 6 checks sigma against
    `torch.linalg.matrix_norm(W, ord=2)`.
    """
    for layer in list(module.modules()):
        if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.utils.parametrizations.spectral_norm(layer)
    return module


def init_weights(module: nn.Module) -> nn.Module:
    """DCGAN initialisation: conv and linear weights ~ N(0, 0.02^2) (Radford et al., 2016), biases 0.

    BatchNorm scale ~ N(1, 0.02^2) and shift 0 is pytorch/examples' choice; the paper does not say.
    Apply with ``model.apply(init_weights)``.
    """
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
        if nn.utils.parametrize.is_parametrized(module, "weight"):
            return module  # spectral norm divides by sigma(W): the scale of the initialisation cancels
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
    return module


def dcgan_mnist_generator(width: int = 32) -> DCGANGenerator:
    """Chapter 4's 28x28 DCGAN generator: z (64) -> 2w x 7 x 7 -> w x 14 x 14 -> 1 x 28 x 28, w = 32.

    Width 32 is as wide as a 2-core CPU trains at well over 1,500 images per second; the
    performance appendix gives the measurements behind this choice. Chapter 6 tries wider ones.
    """
    return DCGANGenerator(latent_dim=64, width=width, image_size=28).apply(init_weights)


def dcgan_mnist_discriminator(width: int = 16, norm: str = "batch") -> DCGANDiscriminator:
    """Chapter 4's 28x28 DCGAN discriminator: 1 x 28 x 28 -> w x 14 x 14 -> 2w x 7 x 7 -> logit, w = 16.

    Half the generator's width, for speed on a CPU; chapter 4 times both set-ups and shows D's
    D(x) and D(G(z)) curves for this one. ``norm``: see `DCGANDiscriminator`.
    """
    return DCGANDiscriminator(width=width, image_size=28, norm=norm).apply(init_weights)


# ----------------------------------------------------------------------------- conditional DCGAN
# Chapter 8. A conditional generator takes (z, y) with y a class index per sample; a conditional
# discriminator scores (x, y): "is x a real example of class y?". Both carry ``n_classes``, which is
# how the rest of the library tells them from unconditional ones (`is_conditional`).


def is_conditional(model: nn.Module) -> bool:
    """True for the models of chapter 8, which take class labels as a second input."""
    return isinstance(getattr(model, "n_classes", None), int)


def balanced_labels(n: int, n_classes: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Labels 0, 1, ..., n_classes - 1, 0, 1, ... for ``n`` samples: every class equally often (to one)."""
    return torch.arange(n, device=device) % n_classes


def check_labels(y: torch.Tensor | None, n: int, n_classes: int) -> None:
    """Refuse labels a conditional model cannot use, with the fix, before an embedding sees them."""
    if y is None:
        raise ValueError(
            f"this model is conditional: pass class labels too, e.g. G(z, y) with y = "
            f"torch.randint({n_classes}, (n,)), or use gan_utils.runtime.sample(G, z), which draws every "
            "class in turn."
        )
    if not isinstance(y, torch.Tensor) or y.dtype not in (torch.int64, torch.int32, torch.uint8):
        kind = y.dtype if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(
            f"class labels must be an integer tensor (torch.long) of class indices, got {kind}; "
            "convert with y.long() (one-hot labels: y.argmax(1))."
        )
    if y.shape != (n,):
        raise ValueError(f"class labels must have shape [{n}], one per sample, got {tuple(y.shape)}.")
    # Values are read on the CPU only: on a GPU each read would stall the queue of kernels, so there
    # `training.train` checks the first batch's labels once and an embedding catches the rest
    # (as a device-side assert).
    if not y.is_cuda and n and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ValueError(
            f"class labels must lie in 0..{n_classes - 1}, got values from {int(y.min())} to {int(y.max())}."
        )


class ConditionalDCGANGenerator(nn.Module):
    """(z [n, latent_dim], y [n]) -> images [n, channels, S, S] in [-1, 1]: a class-conditional DCGAN G.

    The label enters as a learned embedding e(y) of size ``embedding_dim``, concatenated with z.
    Mirza & Osindero (2014) pass a one-hot y through its own hidden layer before joining z's; a one-hot
    code times a weight matrix is exactly a learned embedding. The rest is `DCGANGenerator` with
    ``latent_dim + embedding_dim`` inputs.
    """

    def __init__(
        self,
        latent_dim: int = 64,
        n_classes: int = 10,
        embedding_dim: int = 16,
        channels: int = 1,
        width: int = 64,
        image_size: int = 28,
    ) -> None:
        super().__init__()
        latent_dim, channels, width = _check_generator_sizes(latent_dim, channels, width, image_size)
        self.n_classes = check_count(n_classes, "n_classes", minimum=2)
        embedding_dim = check_count(embedding_dim, "embedding_dim")
        self.latent_dim, self.image_size = latent_dim, image_size
        self.sample_shape = (channels, image_size, image_size)
        self.config = {"latent_dim": latent_dim, "n_classes": self.n_classes, "embedding_dim": embedding_dim,
                       "channels": channels, "width": width, "image_size": image_size}  # fmt: skip
        self.embedding = nn.Embedding(self.n_classes, embedding_dim)
        self.body = DCGANGenerator(latent_dim + embedding_dim, channels, width, image_size)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        _check_latent(z, self.latent_dim, self)
        check_labels(y, len(z), self.n_classes)
        return self.body(torch.cat([z, self.embedding(y.long())], dim=1))


DISCRIMINATOR_CONDITIONINGS = ("projection", "concat")


class ConditionalDCGANDiscriminator(nn.Module):
    """(images [n, C, 28, 28], y [n]) -> logits [n]: chapter 4's 28x28 D told which class to expect.

    ``conditioning`` picks how y enters:
        "concat": y as ``n_classes`` one-hot planes stacked onto the image's channels, so the first
            convolution sees pixels and class together (input concatenation, in the spirit of Mirza &
            Osindero, 2014, who join a hidden layer of y with one of x);
        "projection": the logit l(x, y) = psi(phi(x)) + v_y . phi(x) (Miyato & Koyama, 2018, section 3),
            where phi(x) is the flattened [2w, 7, 7] feature map, psi is the unconditional head (the
            same 7x7 convolution as chapter 4's D) and v_y a learned per-class vector of the size of
            phi(x) (``self.embedding``; not the generator's e(y)). The paper sums phi over positions
            (a vector of channels); keeping the map makes v_y a per-class spatial template. The
            derivation holds for any phi.
    """

    def __init__(
        self,
        n_classes: int = 10,
        channels: int = 1,
        width: int = 32,
        conditioning: str = "projection",
        norm: str = "batch",
    ) -> None:
        super().__init__()
        if conditioning not in DISCRIMINATOR_CONDITIONINGS:
            raise ValueError(
                f"conditioning must be one of {DISCRIMINATOR_CONDITIONINGS}, got {conditioning!r}."
            )
        self.n_classes = check_count(n_classes, "n_classes", minimum=2)
        self.conditioning = conditioning
        self.sample_shape = (check_count(channels, "channels"), 28, 28)
        extra = self.n_classes if conditioning == "concat" else 0
        body = DCGANDiscriminator(channels + extra, width, 28, norm).net
        self.features = body[:-1]  # phi: [n, 2w, 7, 7]
        self.head = body[-1]  # psi: the 7x7 convolution to one logit
        feature_size = 2 * width * 7 * 7
        self.embedding = None
        if conditioning == "projection":
            self.embedding = nn.Embedding(self.n_classes, feature_size)
            if norm == "spectral":  # sigma(0) = 0 would divide by zero: a small random start instead
                nn.init.normal_(self.embedding.weight, 0.0, 0.02)
                nn.utils.parametrizations.spectral_norm(self.embedding)
            else:  # zeros: D starts as chapter 4's unconditional one
                nn.init.zeros_(self.embedding.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        _check_samples(x, self.sample_shape, self)
        check_labels(y, len(x), self.n_classes)
        y = y.long()
        if self.conditioning == "concat":
            planes = nn.functional.one_hot(y, self.n_classes).to(x.dtype)[:, :, None, None]
            x = torch.cat([x, planes.expand(-1, -1, *x.shape[2:])], dim=1)
        phi = self.features(x)
        logits = self.head(phi).view(-1)
        if self.embedding is not None:
            logits = logits + (self.embedding(y) * phi.flatten(start_dim=1)).sum(dim=1)
        return logits


def cdcgan_mnist_generator(width: int = 32, n_classes: int = 10) -> ConditionalDCGANGenerator:
    """Chapter 8's conditional G: chapter 4's 28x28 generator with a 16-d class embedding next to z."""
    return ConditionalDCGANGenerator(latent_dim=64, n_classes=n_classes, width=width).apply(init_weights)


def cdcgan_mnist_discriminator(
    width: int = 16, conditioning: str = "projection", norm: str = "batch", n_classes: int = 10
) -> ConditionalDCGANDiscriminator:
    """Chapter 8's conditional D: chapter 4's 28x28 discriminator, conditioned by projection or concat."""
    D = ConditionalDCGANDiscriminator(n_classes=n_classes, width=width, conditioning=conditioning, norm=norm)
    return D.apply(init_weights)


class ConditionalMLPGenerator(nn.Module):
    """(z [n, latent_dim], y [n]) -> samples [n, *sample_shape]: chapter 2's toy `MLPGenerator` told which
    class to draw (chapter 6: which k-means cluster of the training points). As in
    `ConditionalDCGANGenerator`, y enters as a learned embedding of size ``embedding_dim`` next to z."""

    def __init__(
        self,
        latent_dim: int,
        sample_shape: tuple[int, ...],
        n_classes: int,
        embedding_dim: int = 8,
        hidden: tuple[int, ...] = (128, 128, 128),
    ) -> None:
        super().__init__()
        self.latent_dim = check_count(latent_dim, "latent_dim")
        self.n_classes = check_count(n_classes, "n_classes", minimum=2)
        embedding_dim = check_count(embedding_dim, "embedding_dim")
        self.embedding = nn.Embedding(self.n_classes, embedding_dim)
        self.body = MLPGenerator(self.latent_dim + embedding_dim, sample_shape, hidden)
        self.sample_shape = self.body.sample_shape
        self.config = {"latent_dim": self.latent_dim, "sample_shape": list(self.sample_shape),
                       "n_classes": self.n_classes, "embedding_dim": embedding_dim,
                       "hidden": self.body.config["hidden"]}  # fmt: skip

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        _check_latent(z, self.latent_dim, self)
        check_labels(y, len(z), self.n_classes)
        return self.body(torch.cat([z, self.embedding(y.long())], dim=1))


class ConditionalMLPDiscriminator(nn.Module):
    """(samples [n, *sample_shape], y [n]) -> logits [n]: chapter 2's toy `MLPDiscriminator` told which class
    to expect, the same two ways as `ConditionalDCGANDiscriminator`: "projection",
    l(x, y) = psi(phi(x)) + v_y . phi(x) with phi the last hidden layer (Miyato & Koyama, 2018; v_y starts
    at zero, so D starts unconditional), or "concat", a one-hot y next to the flattened sample."""

    def __init__(
        self,
        sample_shape: tuple[int, ...],
        n_classes: int,
        hidden: tuple[int, ...] = (128, 128),
        conditioning: str = "projection",
    ) -> None:
        super().__init__()
        if conditioning not in DISCRIMINATOR_CONDITIONINGS:
            raise ValueError(
                f"conditioning must be one of {DISCRIMINATOR_CONDITIONINGS}, got {conditioning!r}."
            )
        if not hidden:
            raise ValueError("a conditional MLP discriminator needs at least one hidden layer (phi).")
        self.sample_shape = _check_sample_shape(sample_shape)
        self.n_classes = check_count(n_classes, "n_classes", minimum=2)
        self.conditioning = conditioning
        extra = self.n_classes if conditioning == "concat" else 0
        body = MLPDiscriminator((math.prod(self.sample_shape) + extra,), hidden).net
        self.features, self.head = body[:-1], body[-1]  # phi: the last hidden layer; psi: one logit
        self.embedding = None
        if conditioning == "projection":
            self.embedding = nn.Embedding(self.n_classes, self.head.in_features)
            nn.init.zeros_(self.embedding.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        _check_samples(x, self.sample_shape, self)
        check_labels(y, len(x), self.n_classes)
        y, x = y.long(), x.flatten(start_dim=1)
        if self.conditioning == "concat":
            x = torch.cat([x, nn.functional.one_hot(y, self.n_classes).to(x.dtype)], dim=1)
        phi = self.features(x)
        logits = self.head(phi).view(-1)
        if self.embedding is not None:
            logits = logits + (self.embedding(y) * phi).sum(dim=1)
        return logits


# ----------------------------------------------------------------------------- self-conditioned generators
# Chapter 6. Liu et al. (2020) condition a GAN on clusters of its own training data instead of labels.
# Trained, it is a conditional G over k clusters; shipped, it is an unconditional generator again.


def _check_cluster_sizes(cluster_sizes: list[int]) -> torch.Tensor:
    sizes = torch.as_tensor(cluster_sizes)
    if sizes.ndim != 1 or len(sizes) < 2 or sizes.is_floating_point() or not bool((sizes > 0).all()):
        raise ValueError(
            f"cluster_sizes must list at least two positive whole numbers (training samples per cluster), "
            f"got {cluster_sizes!r}."
        )
    return sizes.long()


class DrawsClusterFromZ(nn.Module):
    """What both self-conditioned generators share: z's last coordinate picks the cluster (see
    `SelfConditionedGenerator`), the rest is the conditional G's noise."""

    wraps: type[nn.Module]  # the conditional generator class inside
    conditional: nn.Module
    cluster_sizes: torch.Tensor

    def _keep(self, conditional: nn.Module, sizes: torch.Tensor) -> None:
        self.conditional = conditional
        self.register_buffer("cluster_sizes", sizes)  # an integer buffer: exact in a float16 file
        self.latent_dim = conditional.latent_dim + 1
        self.sample_shape = conditional.sample_shape
        self.config = {"cluster_sizes": sizes.tolist(), **conditional.config}
        del self.config["n_classes"]

    @classmethod
    def around(cls, G: nn.Module, cluster_sizes: list[int]) -> DrawsClusterFromZ:
        """Wrap a trained conditional G whose classes are the clusters (a copy of its weights)."""
        if not isinstance(G, cls.wraps) or G.n_classes != len(cluster_sizes):
            raise ValueError(
                f"need a {cls.wraps.__name__} with one class per cluster ({len(cluster_sizes)}), got "
                f"{type(G).__name__} with {getattr(G, 'n_classes', None)} classes."
            )
        config = {key: value for key, value in G.config.items() if key != "n_classes"}
        wrapper = cls(cluster_sizes, **config).to(next(G.parameters()).device)
        wrapper.conditional.load_state_dict(G.state_dict())
        return wrapper.train(G.training)

    def thresholds(self) -> torch.Tensor:
        """The k - 1 values of z_last where the cluster changes: Phi^-1 of the cumulative frequencies."""
        cumulative = self.cluster_sizes.double().cumsum(0) / self.cluster_sizes.sum()
        return torch.special.ndtri(cumulative[:-1])

    def clusters_of(self, z: torch.Tensor) -> torch.Tensor:
        """The cluster each row of z draws, from its last coordinate (NaN there picks none: refused)."""
        _check_latent(z, self.latent_dim, self)
        last = z[:, -1].double().contiguous()
        if bool(last.isnan().any()):
            raise ValueError(
                f"z's last coordinate picks the cluster, and it is NaN in {int(last.isnan().sum())} of "
                f"{len(z)} rows; pass finite z (torch.randn(n, G.latent_dim))."
            )
        return torch.searchsorted(self.thresholds().to(z.device), last, right=True)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.conditional(z[:, :-1], self.clusters_of(z))


class SelfConditionedGenerator(DrawsClusterFromZ):
    """z [n, latent_dim] -> images: a conditional G over k clusters that draws each sample's cluster from z.

    The first ``latent_dim - 1`` coordinates of z are the conditional G's noise. The last one picks the
    cluster: cluster c when it lies between the standard normal quantiles of the cumulative cluster
    frequencies, Phi^-1(F_{c-1}) <= z_last < Phi^-1(F_c), which happens with probability
    F_c - F_{c-1}, the cluster's share of the training set. So ``G(torch.randn(n, G.latent_dim))`` is
    a sample of the mixture, and the book's unconditional tools (metrics, explorers) use it unchanged.
    Along the last coordinate the image jumps where the cluster changes; along the others it is as
    smooth as any DCGAN's.
    """

    wraps = ConditionalDCGANGenerator

    def __init__(
        self,
        cluster_sizes: list[int],
        latent_dim: int = 64,
        embedding_dim: int = 16,
        channels: int = 1,
        width: int = 64,
        image_size: int = 28,
    ) -> None:
        super().__init__()
        sizes = _check_cluster_sizes(cluster_sizes)
        inner = ConditionalDCGANGenerator(latent_dim, len(sizes), embedding_dim, channels, width, image_size)
        self._keep(inner, sizes)
        self.image_size = image_size


class SelfConditionedMLPGenerator(DrawsClusterFromZ):
    """z [n, latent_dim] -> points: chapter 6's self-conditioning on the 2D toys, a `ConditionalMLPGenerator`
    over k clusters whose cluster z's last coordinate picks, as in `SelfConditionedGenerator`."""

    wraps = ConditionalMLPGenerator

    def __init__(
        self,
        cluster_sizes: list[int],
        latent_dim: int,
        sample_shape: tuple[int, ...],
        embedding_dim: int = 8,
        hidden: tuple[int, ...] = (128, 128, 128),
    ) -> None:
        super().__init__()
        sizes = _check_cluster_sizes(cluster_sizes)
        self._keep(
            ConditionalMLPGenerator(latent_dim, sample_shape, len(sizes), embedding_dim, hidden), sizes
        )


def self_conditioned(G: nn.Module, cluster_sizes: list[int]) -> DrawsClusterFromZ:
    """The self-conditioned generator around a trained conditional G over clusters (a DCGAN or a toy MLP)."""
    for wrapper in (SelfConditionedGenerator, SelfConditionedMLPGenerator):
        if isinstance(G, wrapper.wraps):
            return wrapper.around(G, cluster_sizes)
    raise ValueError(
        "need a ConditionalDCGANGenerator or ConditionalMLPGenerator trained on clusters, got "
        f"{type(G).__name__}."
    )
