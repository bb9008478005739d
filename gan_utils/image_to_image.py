"""Image-to-image GANs (chapter 9): ×4 super-resolution in the style of pix2pix, and CycleGAN.

Papers:
    Isola et al. (2017), Image-to-Image Translation with Conditional Adversarial Networks (pix2pix):
        a U-Net generator, a PatchGAN discriminator that sees (input, output) pairs, loss
        GAN + lambda * L1 with lambda = 100.
    Ronneberger et al. (2015), U-Net.
    Kim et al. (2016), VDSR: predict a correction to the bicubic upsample instead of the whole image.
    Zhu et al. (2017), CycleGAN: two generators, two discriminators, least-squares GAN losses
        (Mao et al., 2017) and the cycle loss ||F(G(a)) - a||_1 + ||G(F(b)) - b||_1, weight 10.
    Ganin et al. (2016): MNIST-M, digits blended with patches of colour photos by |patch - digit|.
    Blau & Michaeli (2018), The Perception-Distortion Tradeoff.

Both kinds reuse `gan_utils.training.train` (the loop, checkpoints, Ctrl-C, divergence checks) with
their own step function: `pix2pix_step` and `cyclegan_step`. Their "generator" carries
``paired_batches = True``, so the loop hands the step both tensors of each batch: (input, target)
for pix2pix, (domain A, domain B) for CycleGAN; that pass-through is what `train` gained for them.

Design choices, each stated where it is made: instance normalisation (no running statistics, so a
model's output for an image never depends on the rest of the batch, in training or evaluation), no
dropout noise in G (pix2pix found G learns to ignore it), and no history buffer of old fakes for
CycleGAN's discriminators (Zhu et al. use one of 50 images; our runs are short and stable without).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from gan_utils import losses
from gan_utils.data import Photo, check_image_range, random_patches
from gan_utils.runtime import check_count, evaluating

# ----------------------------------------------------------------------------- degradations


def downscale(images: torch.Tensor, factor: int = 4) -> torch.Tensor:
    """Shrink ``[n, C, H, W]`` images by ``factor`` with antialiased bicubic interpolation.

    This is the usual way super-resolution papers make low-resolution inputs from photographs
    (bicubic with antialiasing, like MATLAB's ``imresize``). H and W must be multiples of ``factor``.
    """
    _check_images(images, "images")
    factor = check_count(factor, "factor")
    if images.shape[-1] % factor or images.shape[-2] % factor:
        raise ValueError(
            f"images of size {tuple(images.shape[-2:])} do not divide by factor {factor}; crop them first."
        )
    size = (images.shape[-2] // factor, images.shape[-1] // factor)
    return F.interpolate(images, size=size, mode="bicubic", antialias=True, align_corners=False).clamp(-1, 1)


def degraded_pair(images: torch.Tensor, factor: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """(input, target) for ×``factor`` super-resolution: ``images`` shrunk by `downscale` and enlarged
    again by `upscale_bicubic` (the size the networks work at), and ``images`` themselves."""
    return upscale_bicubic(downscale(images, factor), factor), images


def upscale_bicubic(images: torch.Tensor, factor: int = 4) -> torch.Tensor:
    """Enlarge ``[n, C, h, w]`` images by ``factor`` with bicubic interpolation: the classical baseline,
    and the input every super-resolution network here starts from."""
    _check_images(images, "images")
    factor = check_count(factor, "factor")
    return F.interpolate(images, scale_factor=factor, mode="bicubic", align_corners=False).clamp(-1, 1)


def _check_images(images: torch.Tensor, name: str) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{name} must be a tensor [n, C, H, W], got {shape}; add axes with .unsqueeze.")
    if not images.is_floating_point():
        raise ValueError(f"{name} has dtype {images.dtype}; pass floats in [-1, 1].")


def mnist_m_style(digits: torch.Tensor, photos: list[Photo], seed: int = 0) -> torch.Tensor:
    """Colour digits in the style of MNIST-M (Ganin et al., 2016): ``|patch - digit|`` per channel.

    ``digits`` are ``[n, 1, 28, 28]`` in [-1, 1]; each gets its own random 28×28 patch of ``photos``
    (`gan_utils.data.random_patches`, seeded). In [0, 1] units the blend is |p - d|: where the digit's
    stroke is bright the patch's colours are inverted, elsewhere the patch shows through. Returns
    ``[n, 3, 28, 28]`` in [-1, 1].
    """
    _check_images(digits, "digits")
    if digits.shape[1:] != (1, 28, 28):
        raise ValueError(f"digits must have shape [n, 1, 28, 28], got {tuple(digits.shape)}.")
    check_image_range(digits, "digits")
    patches = random_patches(photos, len(digits), 28, seed)
    blended = ((patches + 1) / 2 - (digits + 1) / 2).abs()
    return blended * 2 - 1


# ----------------------------------------------------------------------------- models


class UNetGenerator(nn.Module):
    """A small U-Net (Ronneberger et al., 2015) as pix2pix uses it: ``depth`` stride-2 convolutions
    down, as many transposed convolutions up, and a skip connection at each scale.

    ``[n, in_channels, H, W] -> [n, out_channels, H, W]`` in [-1, 1]; H and W must divide by 2**depth.
    With ``residual=True`` (needs in_channels == out_channels) the network outputs a correction to its
    input in logit space, tanh(atanh(x) + f(x)), as VDSR (Kim et al., 2016) learns a residual over the
    bicubic upsample: an untrained model already returns (almost) its input. CycleGAN's generators
    use ``residual=False`` because their input and output have different colours. The layers use
    instance normalisation, so no output depends on the other images of a batch.
    """

    paired_batches = True  # `train` hands the step (input, target) pairs

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        width: int = 32,
        depth: int = 2,
        residual: bool = True,
        bottleneck_blocks: int = 0,
    ) -> None:
        super().__init__()
        for value, name in ((in_channels, "in_channels"), (out_channels, "out_channels"), (width, "width"),
                            (depth, "depth")):  # fmt: skip
            check_count(value, name)
        if residual and in_channels != out_channels:
            raise ValueError(
                f"residual=True adds the output to the input, so in_channels ({in_channels}) must equal "
                f"out_channels ({out_channels}); use residual=False."
            )
        self.config = dict(in_channels=in_channels, out_channels=out_channels, width=width, depth=depth,
                           residual=residual, bottleneck_blocks=bottleneck_blocks)  # fmt: skip
        self.in_channels, self.depth, self.residual = in_channels, depth, residual
        widths = [width * 2**i for i in range(depth + 1)]  # e.g. 32, 64, 128
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1), nn.LeakyReLU(0.2))
        self.down = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(widths[i], widths[i + 1], 4, 2, 1),
                nn.InstanceNorm2d(widths[i + 1], affine=True),
                nn.LeakyReLU(0.2),
            )  # fmt: skip
            for i in range(depth)
        )
        # residual blocks at the deepest scale widen what each output pixel sees (CycleGAN's generator is
        # built around such blocks); each adds 2 * 2 * 2**depth input pixels to the receptive field
        self.bottleneck = nn.Sequential(*(_ResidualBlock(widths[-1]) for _ in range(bottleneck_blocks)))
        # going up, each block takes the previous block's output and the skip of its scale, concatenated
        self.up = nn.ModuleList(
            nn.Sequential(
                nn.ConvTranspose2d(widths[i + 1] * (1 if i == depth - 1 else 2), widths[i], 4, 2, 1),
                nn.InstanceNorm2d(widths[i], affine=True),
                nn.ReLU(),
            )
            for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(2 * width, out_channels, 3, 1, 1)
        if residual:
            nn.init.zeros_(self.head.weight)  # start as the identity: the output is the input
            nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        multiple = 2**self.depth
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.shape[-1] % multiple or x.shape[-2] % multiple:
            raise ValueError(
                f"{type(self).__name__} takes [n, {self.in_channels}, H, W] with H and W multiples of "
                f"{multiple}, got {tuple(x.shape)}; crop or pad the images."
            )
        h = self.stem(x)
        skips = [h]
        for block in self.down:
            h = block(h)
            skips.append(h)
        skips.pop()  # the deepest map is h itself
        h = self.bottleneck(h)
        for block in self.up:
            h = torch.cat([block(h), skips.pop()], dim=1)
        correction = self.head(h)
        if self.residual:
            return torch.tanh(torch.atanh(x.clamp(-0.99, 0.99)) + correction)
        return torch.tanh(correction)


class _ResidualBlock(nn.Module):
    """x + conv-norm-ReLU-conv-norm(x), with 3×3 convolutions, as in CycleGAN's generator."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1), nn.InstanceNorm2d(channels, affine=True), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, 1, 1), nn.InstanceNorm2d(channels, affine=True),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class PatchDiscriminator(nn.Module):
    """A PatchGAN discriminator (Isola et al., 2017): a fully convolutional net that returns one logit
    per overlapping patch, ``[n, h, w]``, rather than one per image.

    Layers (all 4×4 convolutions, padding 1): ``n_downsampling`` of stride 2, then one of stride 1
    with twice the last width, then a stride-1 convolution to one channel. pix2pix's 70×70 PatchGAN
    is ``n_downsampling=3``; `receptive_field` gives the patch size of any setting. The patch counts
    the convolutions only: instance normalisation takes one mean and variance per channel over the
    whole map, so every logit also depends, through those two numbers, on the rest of the image (as
    pix2pix's batch normalisation at batch size 1 does).
    """

    def __init__(self, in_channels: int = 2, width: int = 32, n_downsampling: int = 2) -> None:
        super().__init__()
        check_count(in_channels, "in_channels"), check_count(width, "width")
        check_count(n_downsampling, "n_downsampling")
        self.config = dict(in_channels=in_channels, width=width, n_downsampling=n_downsampling)
        self.in_channels = in_channels
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 4, 2, 1), nn.LeakyReLU(0.2)]
        channels = width
        for _ in range(n_downsampling - 1):
            layers += [
                nn.Conv2d(channels, 2 * channels, 4, 2, 1),
                nn.InstanceNorm2d(2 * channels, affine=True),
            ]
            layers += [nn.LeakyReLU(0.2)]
            channels *= 2
        layers += [nn.Conv2d(channels, 2 * channels, 4, 1, 1), nn.InstanceNorm2d(2 * channels, affine=True),
                   nn.LeakyReLU(0.2), nn.Conv2d(2 * channels, 1, 4, 1, 1)]  # fmt: skip
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} takes [n, {self.in_channels}, H, W] (for pix2pix: input and output "
                f"images concatenated on the channel axis), got {tuple(x.shape)}."
            )
        return self.layers(x).squeeze(1)


def receptive_field(model: nn.Module) -> int:
    """The side, in input pixels, of the region one output unit of a chain of convolutions sees.

    r = 1 + sum_l (k_l - 1) * prod_{m < l} s_m over the convolutions in order (kernel k, stride s).
    For pix2pix's PatchGAN (five 4×4 convolutions with strides 2, 2, 2, 1, 1) this is 70.
    """
    chain = model.layers if isinstance(model, PatchDiscriminator) else model
    if not isinstance(chain, nn.Sequential):
        raise TypeError(
            f"receptive_field takes one chain of layers (a PatchDiscriminator or an nn.Sequential), got "
            f"{type(model).__name__}; for CycleGAN's pair pass one of them, e.g. D.a."
        )
    size, jump = 1, 1
    for module in chain:
        if isinstance(module, nn.ConvTranspose2d | nn.MaxPool2d | nn.AvgPool2d | nn.Sequential):
            raise TypeError(f"receptive_field counts plain convolutions only, not {type(module).__name__}.")
        if isinstance(module, nn.Conv2d):
            kernel, stride, dilation = module.kernel_size[0], module.stride[0], module.dilation[0]
            size += (kernel - 1) * dilation * jump
            jump *= stride
    return size


class CycleGAN(nn.Module):
    """CycleGAN's two generators: ``a_to_b`` (G in Zhu et al.) and ``b_to_a`` (F), both U-Nets."""

    paired_batches = True  # `train` hands the step (domain A batch, domain B batch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise TypeError(
            "a CycleGAN holds two generators; call cycle.a_to_b(x) (A to B) or cycle.b_to_a(x) (B to A), "
            "e.g. apply(cycle.b_to_a, images)."
        )

    def __init__(
        self,
        channels_a: int = 1,
        channels_b: int = 3,
        width: int = 32,
        depth: int = 2,
        bottleneck_blocks: int = 0,
    ) -> None:
        super().__init__()
        self.config = dict(channels_a=channels_a, channels_b=channels_b, width=width, depth=depth,
                           bottleneck_blocks=bottleneck_blocks)  # fmt: skip
        self.a_to_b = UNetGenerator(channels_a, channels_b, width, depth, False, bottleneck_blocks)
        self.b_to_a = UNetGenerator(channels_b, channels_a, width, depth, False, bottleneck_blocks)


class _CodedGenerator(nn.Module):
    """G of `TextureCodeCycleGAN`: a U-Net on an image of A with a texture code stacked on as channels.

    ``code`` is ``[n, code_channels, H/4, W/4]``, repeated to the image's size; None draws it from
    N(0, 1) with torch's global generator, so ``apply(cycle.a_to_b, images)`` gives random textures.
    """

    def __init__(self, unet: UNetGenerator, code_channels: int) -> None:
        super().__init__()
        self.unet, self.code_channels = unet, code_channels

    def draw_code(
        self, n: int, size: tuple[int, int], generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """n codes from N(0, 1), shaped for images of ``size`` (H, W)."""
        return torch.randn(n, self.code_channels, size[0] // 4, size[1] // 4, generator=generator)

    def forward(self, x: torch.Tensor, code: torch.Tensor | None = None) -> torch.Tensor:
        if code is None:
            code = self.draw_code(len(x), tuple(x.shape[-2:])).to(x.device)
        if code.shape[:2] != (len(x), self.code_channels):
            raise ValueError(
                f"the texture code must have shape [{len(x)}, {self.code_channels}, h, w] for these "
                f"{len(x)} images, got {tuple(code.shape)}; draw one with draw_code or take cycle.encoder(b)."
            )
        return self.unet(torch.cat([x, F.interpolate(code, size=x.shape[-2:], mode="nearest")], 1))


class TextureCodeCycleGAN(CycleGAN):
    """CycleGAN with a texture code on the one-to-many side, after Almahairi et al. (2018).

    MNIST → MNIST-M-style is one-to-many: one digit fits any photo patch behind it. Zhu et al.'s
    B → A → B cycle asks G to rebuild a patch from F's grey digit, which only works if F hides the
    patch in its digit (Chu et al., 2017), and the hiding costs labels (chapter 9). Here an
    ``encoder`` reads a code of ``code_channels`` × (H/4) × (W/4) from b; G takes (a, code) and
    rebuilds b as G(F(b), E(b)). When translating A → B the code is drawn from N(0, 1), and
    `texture_code_cyclegan_step` trains E to read such codes back from G's output (Almahairi et al.'s
    latent cycle) and pulls E(b)'s channel means and spreads to 0 and 1.
    """

    def __init__(self, code_channels: int = 16, **cycle_settings) -> None:
        """``cycle_settings``: `CycleGAN`'s channels_a, channels_b, width, depth and bottleneck_blocks."""
        super().__init__(**cycle_settings)
        check_count(code_channels, "code_channels")
        self.config["code_channels"] = code_channels
        c = self.config
        unet = UNetGenerator(c["channels_a"] + code_channels, c["channels_b"], c["width"], c["depth"], False,
                             c["bottleneck_blocks"])  # fmt: skip
        self.a_to_b = _CodedGenerator(unet, code_channels)
        width = c["width"]
        self.encoder = nn.Sequential(
            nn.Conv2d(c["channels_b"], width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, code_channels, 3, 1, 1),
        )  # fmt: skip


class CycleDiscriminators(nn.Module):
    """CycleGAN's two PatchGAN discriminators: ``a`` judges domain A, ``b`` judges domain B."""

    def __init__(
        self, channels_a: int = 1, channels_b: int = 3, width: int = 32, n_downsampling: int = 1
    ) -> None:
        super().__init__()
        self.a = PatchDiscriminator(channels_a, width, n_downsampling)
        self.b = PatchDiscriminator(channels_b, width, n_downsampling)


# ----------------------------------------------------------------------------- losses and steps


def cycle_consistency_loss(
    cycle: CycleGAN, images_a: torch.Tensor, images_b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Zhu et al.'s L_cyc = E||F(G(a)) - a||_1 + E||G(F(b)) - b||_1 (each a mean over pixels).

    Returns (the loss, G(a), F(b)): the translations, so a step can reuse them for the GAN losses.
    """
    cycle_a, cycle_b, fake_b, fake_a = _cycle_terms(cycle, images_a, images_b)
    return cycle_a + cycle_b, fake_b, fake_a


def _cycle_terms(
    cycle: CycleGAN, images_a: torch.Tensor, images_b: torch.Tensor, noise: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(E|F(G(a) + e) - a|, E|G(F(b) + e) - b|, G(a), F(b)), with e ~ N(0, ``noise``^2) per pixel
    (Bashkirova et al., 2019; ``noise=0``: Zhu et al.'s terms)."""
    fake_b, fake_a = cycle.a_to_b(images_a), cycle.b_to_a(images_b)
    cycle_a = (cycle.b_to_a(_noised(fake_b, noise)) - images_a).abs().mean()
    cycle_b = (cycle.a_to_b(_noised(fake_a, noise)) - images_b).abs().mean()
    return cycle_a, cycle_b, fake_b, fake_a


def _noised(images: torch.Tensor, std: float) -> torch.Tensor:
    return images + std * torch.randn_like(images) if std > 0 else images


def identity_loss(cycle: CycleGAN, images_a: torch.Tensor) -> torch.Tensor:
    """Zhu et al.'s identity term on F's side, E|F(a) - a| (sec. 5.2, after Taigman et al., 2017):
    F, which maps into domain A, should leave an image of A as it is. Where A is grey and B colour,
    as in chapter 9, a goes to F as equal channels; G's term, E|G(b) - b|, then has no such reading
    (G takes one channel) and is left out."""
    wanted, given = cycle.b_to_a.in_channels, images_a.shape[1]
    if given != wanted and given != 1:
        raise ValueError(
            f"identity_loss feeds images of A to F, which takes {wanted} channel(s); these have {given}. "
            "Pass images of domain A (grey ones are repeated over F's channels)."
        )
    return (cycle.b_to_a(images_a.expand(-1, wanted, -1, -1)) - images_a).abs().mean()


def _patch_logits(logits: torch.Tensor) -> torch.Tensor:
    return logits.float().reshape(-1)  # every patch is one sample of the loss: its mean over patches


def pix2pix_step(
    G: UNetGenerator,
    D: PatchDiscriminator,
    opt_G: torch.optim.Optimizer,
    opt_D: torch.optim.Optimizer,
    pairs: Iterator[tuple[torch.Tensor, torch.Tensor]],
    l1_weight: float = 100.0,
    adversarial: bool = True,
) -> dict[str, torch.Tensor]:
    """One pix2pix update on a batch ``(x, y)`` of inputs and targets: D, then G.

    D minimises the minimax loss on (x, y) against (x, G(x)), averaged over its patches; G minimises
    the non-saturating loss plus ``l1_weight`` * mean |G(x) - y| (Isola et al., eq. 4, lambda = 100).
    ``adversarial=False`` trains G on the L1 term alone and leaves D untouched: the "L1 only" model.
    """
    x, y = next(pairs)
    fake = G(x)
    metrics = {}
    if adversarial:
        real_logits = _patch_logits(D(torch.cat([x, y], 1)))
        fake_logits = _patch_logits(D(torch.cat([x, fake.detach()], 1)))
        loss_D = losses.minimax_discriminator_loss(real_logits, fake_logits)
        opt_D.zero_grad(set_to_none=True)
        loss_D.backward()
        opt_D.step()
        metrics |= {"loss_D": loss_D.detach(), "D(x, y)": torch.sigmoid(real_logits.detach()).mean(),
                    "D(x, G(x))": torch.sigmoid(fake_logits.detach()).mean()}  # fmt: skip
    l1 = (fake - y).abs().mean()
    loss_G = l1_weight * l1
    if adversarial:
        adversarial_loss = losses.non_saturating_generator_loss(_patch_logits(D(torch.cat([x, fake], 1))))
        loss_G = loss_G + adversarial_loss
        metrics["loss_G_adversarial"] = adversarial_loss.detach()
    opt_G.zero_grad(set_to_none=True)
    loss_G.backward()
    opt_G.step()
    return metrics | {"loss_G": loss_G.detach(), "L1": l1.detach()}


def cyclegan_step(
    G: CycleGAN,
    D: CycleDiscriminators,
    opt_G: torch.optim.Optimizer,
    opt_D: torch.optim.Optimizer,
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    cycle_weight: float = 10.0,
    cycle_weight_b: float | None = None,
    identity_weight: float = 0.0,
    reconstruction_noise: float = 0.0,
) -> dict[str, torch.Tensor]:
    """One CycleGAN update on a batch ``(a, b)`` of unpaired images: both generators, then both Ds.

    G's loss is E[(D_B(G(a)) - 1)^2] + E[(D_A(F(b)) - 1)^2] + ``cycle_weight`` * L_cyc (Zhu et al.,
    eq. 3 with least-squares GAN terms, lambda = 10); ``cycle_weight=0`` is the ablation without the
    cycle. ``cycle_weight_b`` weighs the B -> A -> B term on its own (None: ``cycle_weight``; 0: a
    cycle on A's side only, an ablation of chapter 9). Two remedies measured in chapter 9's appendix
    rows: ``identity_weight`` adds that weight times `identity_loss` (Zhu et al. use 0.5 lambda), and
    ``reconstruction_noise`` adds Gaussian noise of that standard deviation to each translation before
    it is translated back (Bashkirova et al., 2019). `update_generators_then_discriminators` takes
    the optimiser steps: each D minimises the halved least-squares loss, as in Zhu et al.'s code, on
    its domain's real images against the translations into it.
    """
    images_a, images_b = next(batches)
    cycle_a, cycle_b, fake_b, fake_a = _cycle_terms(G, images_a, images_b, reconstruction_noise)
    # Zhu et al. train G on E[(D(G(a)) - 1)^2] without Mao's 1/2, and halve only D's loss (their code):
    # twice `least_squares_generator_loss`, so that lambda = 10 weighs the cycle as in the paper
    adversarial = 2 * losses.least_squares_generator_loss(_patch_logits(D.b(fake_b))) + (
        2 * losses.least_squares_generator_loss(_patch_logits(D.a(fake_a)))
    )
    weight_b = cycle_weight if cycle_weight_b is None else cycle_weight_b
    loss_G = adversarial + cycle_weight * cycle_a + weight_b * cycle_b
    if identity_weight:
        loss_G = loss_G + identity_weight * identity_loss(G, images_a)
    real, fake = (images_a, images_b), (fake_a, fake_b)
    loss_D = update_generators_then_discriminators(loss_G, opt_G, D, opt_D, real, fake)
    return {"loss_G": loss_G.detach(), "loss_D": loss_D.detach(), "cycle": (cycle_a + cycle_b).detach()}


def update_generators_then_discriminators(
    loss_G: torch.Tensor,
    opt_G: torch.optim.Optimizer,
    D: CycleDiscriminators,
    opt_D: torch.optim.Optimizer,
    real: tuple[torch.Tensor, torch.Tensor],
    fake: tuple[torch.Tensor, torch.Tensor],
) -> torch.Tensor:
    """The end of a CycleGAN step: one step of the generators on ``loss_G``, then one of both Ds.

    Each D minimises `losses.least_squares_discriminator_loss` (Mao et al.'s, halved as in Zhu et
    al.'s code) on its domain's ``real`` images, (a, b), against the ``fake`` ones, (F(b), G(a)),
    detached. Returns the Ds' summed loss.
    """
    opt_G.zero_grad(set_to_none=True)
    loss_G.backward()
    opt_G.step()
    (images_a, images_b), (fake_a, fake_b) = real, fake
    loss_D = losses.least_squares_discriminator_loss(
        _patch_logits(D.a(images_a)), _patch_logits(D.a(fake_a.detach()))
    ) + losses.least_squares_discriminator_loss(
        _patch_logits(D.b(images_b)), _patch_logits(D.b(fake_b.detach()))
    )
    opt_D.zero_grad(set_to_none=True)
    loss_D.backward()
    opt_D.step()
    return loss_D


def texture_code_cyclegan_step(
    G: TextureCodeCycleGAN,
    D: CycleDiscriminators,
    opt_G: torch.optim.Optimizer,
    opt_D: torch.optim.Optimizer,
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    cycle_weight: float = 10.0,
    latent_weight: float = 1.0,
) -> dict[str, torch.Tensor]:
    """One update of `TextureCodeCycleGAN`: G, F and E, then both Ds, as in `cyclegan_step`.

    G's loss is `cyclegan_step`'s, with both cycles: |F(G(a, z)) - a| with z ~ N(0, 1), and
    |G(F(b), E(b)) - b|, where F(b) enters the second as a constant, so that cycle trains G and E
    but not F: F learns to draw digits from its GAN term and the A-side cycle alone, and nothing asks
    it to hide the patch. Added: ``latent_weight`` * |E(G(a, z)) - z| (the code must be readable
    from G's output, Almahairi et al.'s latent cycle), and (mean of E(b))² + (std of E(b) - 1)² per
    code channel, so that the codes E reads look like the N(0, 1) draws G is given.
    """
    images_a, images_b = next(batches)
    z = G.a_to_b.draw_code(len(images_a), tuple(images_a.shape[-2:])).to(images_a.device)
    fake_b, fake_a = G.a_to_b(images_a, z), G.b_to_a(images_b)
    code_b = G.encoder(images_b)
    cycle_a = (G.b_to_a(fake_b) - images_a).abs().mean()
    cycle_b = (G.a_to_b(fake_a.detach(), code_b) - images_b).abs().mean()
    latent = (G.encoder(fake_b) - z).abs().mean()
    code_prior = code_b.mean((0, 2, 3)).pow(2).mean() + (code_b.std((0, 2, 3)) - 1).pow(2).mean()
    adversarial = 2 * losses.least_squares_generator_loss(_patch_logits(D.b(fake_b))) + (
        2 * losses.least_squares_generator_loss(_patch_logits(D.a(fake_a)))
    )  # as in cyclegan_step
    loss_G = adversarial + cycle_weight * (cycle_a + cycle_b) + latent_weight * latent + code_prior
    real, fake = (images_a, images_b), (fake_a, fake_b)
    loss_D = update_generators_then_discriminators(loss_G, opt_G, D, opt_D, real, fake)
    return {"loss_G": loss_G.detach(), "loss_D": loss_D.detach(), "cycle": (cycle_a + cycle_b).detach(),
            "latent": latent.detach()}  # fmt: skip


# ----------------------------------------------------------------------------- measures


def psnr(estimate: torch.Tensor, truth: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of images in [-1, 1], as scikit-image computes it:
    10 log10(R^2 / MSE) with the data range R = 2, the MSE taken over every pixel of the set."""
    from skimage.metrics import peak_signal_noise_ratio

    estimate, truth = _check_pair_of_sets(estimate, truth)
    return float(peak_signal_noise_ratio(truth, estimate, data_range=2.0))


def ssim(estimate: torch.Tensor, truth: torch.Tensor, unit_range: bool = False) -> float:
    """Mean structural similarity over the images, via scikit-image with Wang et al.'s (2004) window:
    11×11 Gaussian of sigma 1.5, population covariances; colour channels are scored separately and
    averaged. scikit-image averages the SSIM map over the window centres at least 5 pixels from the
    border (18×18 of them on a 28×28 digit); the border's pixels still enter through the windows.

    The book's recorded scores take the images as they are, in [-1, 1] with data range 2. SSIM's
    luminance term changes when every pixel moves by the same amount, and Wang et al. define it on
    non-negative intensities: ``unit_range=True`` rescales both sets to [0, 1] (data range 1), the
    usual convention, which scores the same images differently (chapter 9 prints both)."""
    from skimage.metrics import structural_similarity

    estimate, truth = _check_pair_of_sets(estimate, truth)
    if unit_range:
        estimate, truth = (estimate + 1) / 2, (truth + 1) / 2
    if min(truth.shape[-2:]) < 11:
        raise ValueError(
            f"SSIM's 11x11 window needs images of at least 11 pixels a side, got {tuple(truth.shape[-2:])}."
        )
    scores = [
        structural_similarity(
            t,
            e,
            data_range=1.0 if unit_range else 2.0,
            channel_axis=0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )  # fmt: skip
        for e, t in zip(estimate, truth, strict=True)
    ]
    return float(sum(scores) / len(scores))


def high_frequency_energy(images: torch.Tensor) -> float:
    """Mean squared response of the 3×3 Laplacian: how much fine detail (edges, texture) images hold.

    A sharpness statistic: compare it with the ground truth's. Blurry outputs score lower than the
    truth; a ratio near 1 means as much fine detail as real images, right or wrong.
    """
    _check_images(images, "images")
    kernel = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]], device=images.device)
    kernel = kernel.expand(images.shape[1], 1, 3, 3)
    response = F.conv2d(images.float(), kernel, groups=images.shape[1])
    return response.square().mean().item()


def _check_pair_of_sets(estimate: torch.Tensor, truth: torch.Tensor):
    """Both sets as float64 NumPy arrays on the CPU, or a one-line error."""
    for name, images in (("estimate", estimate), ("truth", truth)):
        _check_images(images, name)
        if len(images) == 0:
            raise ValueError(f"{name} is empty; pass at least one image.")
        check_image_range(images, name)
    if estimate.shape != truth.shape:
        raise ValueError(
            f"estimate {tuple(estimate.shape)} and truth {tuple(truth.shape)} differ in shape; compare "
            "each output with its own ground truth."
        )
    return estimate.detach().cpu().double().numpy(), truth.detach().cpu().double().numpy()


@torch.no_grad()
def apply(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """``model(images)`` in eval mode, without gradients and in batches, on the model's device; the result
    on the CPU. The model gets back the mode it had. ``images`` must be a 4-D float tensor in [-1, 1]
    (a bright photo may hold no dark pixel, so unlike training data, all values >= 0 are allowed)."""
    from gan_utils.runtime import device_of

    batch_size = check_count(batch_size, "batch_size")
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"apply takes images of shape [n, channels, height, width], got {shape}.")
    if len(images) == 0:
        raise ValueError("apply got 0 images; pass at least one.")
    if not images.is_floating_point():
        raise ValueError(f"images have dtype {images.dtype}; pass floats in [-1, 1] (uint8: x / 127.5 - 1).")
    if not torch.isfinite(images).all() or images.min() < -1.001 or images.max() > 1.001:
        raise ValueError(
            f"images must be finite and in [-1, 1], got values in [{images.min():.3g}, {images.max():.3g}]; "
            "rescale them (images in [0, 1]: x * 2 - 1)."
        )
    weight = next(model.parameters(), None)
    if weight is not None and weight.dtype != images.dtype:
        raise ValueError(f"images have dtype {images.dtype} but the model's weights are {weight.dtype}; "
                         f"convert them with .to({weight.dtype}).")  # fmt: skip
    device = device_of(model)
    with evaluating(model), torch.no_grad():
        return torch.cat([model(images[i : i + batch_size].to(device)).cpu()
                          for i in range(0, len(images), batch_size)])  # fmt: skip


def super_resolution_scores(
    outputs: torch.Tensor,
    truth: torch.Tensor,
    labels: torch.Tensor | None = None,
    classifier: nn.Module | None = None,
) -> dict[str, float]:
    """PSNR, SSIM and the sharpness ratio (`high_frequency_energy` of the outputs over the truth's).

    For digits (``labels`` given) also chapter 5's Fréchet distance of the outputs to the true
    images and the classifier's accuracy on the outputs.
    """
    scores = {"psnr": psnr(outputs, truth), "ssim": ssim(outputs, truth),
              "sharpness": high_frequency_energy(outputs) / high_frequency_energy(truth)}  # fmt: skip
    if labels is not None:
        from gan_utils import metrics

        classifier = classifier if classifier is not None else metrics.load_classifier()
        fake, real = metrics.digit_features(outputs, classifier), metrics.digit_features(truth, classifier)
        scores["frechet_distance"] = metrics.frechet_distance(real.features, fake.features)
        scores["accuracy"] = (fake.probabilities.argmax(1) == labels).float().mean().item()
    return scores


def cyclegan_scores(
    cycle: CycleGAN, test: PairedData, classifier: nn.Module | None = None
) -> dict[str, float]:
    """CycleGAN on held-out digits (`mnist_m_data().test`).

    ``label_preservation``: chapter 5's classifier's accuracy on F(b), MNIST-M-style digits
    translated to MNIST, against the digits' labels. ``frechet_distance``: F(b) against the real
    held-out MNIST digits. ``cycle_error_a``/``_b``: mean |F(G(a)) - a| and |G(F(b)) - b| (for a
    `TextureCodeCycleGAN`, G(a) with codes drawn from seed 0 by `translate_a_to_b`, and G(F(b), E(b))).
    ``grey_accuracy``: the classifier on b's channel mean, untranslated, for comparison.
    """
    from gan_utils import metrics

    classifier = classifier if classifier is not None else metrics.load_classifier()
    images_a, images_b = test.test
    to_a, to_b = apply(cycle.b_to_a, images_b), translate_a_to_b(cycle, images_a)
    translated = metrics.digit_features(to_a, classifier)
    real = metrics.digit_features(images_a, classifier)
    grey = metrics.digit_features(images_b.mean(1, keepdim=True), classifier)
    return {
        "label_preservation": (translated.probabilities.argmax(1) == test.test_labels).float().mean().item(),
        "grey_accuracy": (grey.probabilities.argmax(1) == test.test_labels).float().mean().item(),
        "frechet_distance": metrics.frechet_distance(real.features, translated.features),
        "cycle_error_a": (apply(cycle.b_to_a, to_b) - images_a).abs().mean().item(),
        "cycle_error_b": (_rebuild_b(cycle, to_a, images_b) - images_b).abs().mean().item(),
    }


@torch.no_grad()
def translate_a_to_b(cycle: CycleGAN, images_a: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """G(a) in eval mode (the model gets back its mode afterwards); for a `TextureCodeCycleGAN`, with
    texture codes drawn from ``seed``, so that scores and pictures repeat (the plain
    ``apply(cycle.a_to_b, images)`` draws them from torch's global generator)."""
    if not isinstance(cycle, TextureCodeCycleGAN):
        return apply(cycle.a_to_b, images_a)
    generator = torch.Generator().manual_seed(seed)
    codes = cycle.a_to_b.draw_code(len(images_a), tuple(images_a.shape[-2:]), generator=generator)
    device = next(cycle.parameters()).device
    with evaluating(cycle):
        return torch.cat([cycle.a_to_b(images_a[i : i + 256].to(device), codes[i : i + 256].to(device)).cpu()
                          for i in range(0, len(images_a), 256)])  # fmt: skip


def _rebuild_b(cycle: CycleGAN, translated: torch.Tensor, images_b: torch.Tensor) -> torch.Tensor:
    """G(F(b)), or G(F(b), E(b)) for a `TextureCodeCycleGAN`."""
    if not isinstance(cycle, TextureCodeCycleGAN):
        return apply(cycle.a_to_b, translated)
    with evaluating(cycle), torch.no_grad():
        return cycle.a_to_b(translated, cycle.encoder(images_b))


def model_scores(recipe: ImageToImageRecipe, G: nn.Module, data: PairedData) -> dict[str, float]:
    """The held-out scores of ``G`` trained by ``recipe``: `cyclegan_scores` or `super_resolution_scores`."""
    if recipe.task == "cyclegan":
        return cyclegan_scores(G, data)
    inputs, truth = data.test
    return super_resolution_scores(apply(G, inputs), truth, data.test_labels)


def measured_receptive_field(D: PatchDiscriminator, size: int = 160) -> int:
    """The receptive field of ``D`` measured, not computed: the span of input pixels whose gradient
    reaches the centre logit of a ``size``×``size`` input, on a copy of D with its instance
    normalisations replaced by identities (their statistics span the whole map)."""
    import copy

    D = copy.deepcopy(D)
    for index, layer in enumerate(D.layers):
        if isinstance(layer, nn.InstanceNorm2d):
            D.layers[index] = nn.Identity()
    x = torch.zeros(1, D.in_channels, size, size, requires_grad=True)
    out = D(x)
    out[0, out.shape[1] // 2, out.shape[2] // 2].backward()
    rows = x.grad.abs().sum(dim=(0, 1, 3)).nonzero()
    return int(rows.max() - rows.min() + 1)


# ----------------------------------------------------------------------------- the chapter's data


class PairedData(NamedTuple):
    """Training pairs and held-out pairs of one task: ``train`` = (inputs, targets), ``test`` likewise,
    and ``test_labels`` (digit classes, when the task has them)."""

    train: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    test_labels: torch.Tensor | None


def digit_sr_data(factor: int = 4) -> PairedData:
    """×``factor`` super-resolution pairs of the bundled digits: 7×7 inputs (bicubic-upsampled to 28×28)
    and 28×28 targets. The test pairs are the 1,000 held-out digits that chapter 5's classifier and
    the shipped generators never saw (`classifier.stratified_split(labels, 100, seed=0)`)."""
    from gan_utils.classifier import stratified_split
    from gan_utils.data import load_mnist

    images, labels, _ = load_mnist("bundled")
    train, test = stratified_split(labels, 100, seed=0)

    return PairedData(degraded_pair(images[train], factor), degraded_pair(images[test], factor), labels[test])


def photo_sr_data(n_train: int = 6000, n_test: int = 200, size: int = 64, factor: int = 4) -> PairedData:
    """×``factor`` super-resolution pairs of ``size``-pixel photo patches: training patches come only from
    ``load_photos("train")``, test patches only from the held-out photos (`PHOTO_TEST_NAMES`)."""
    from gan_utils.data import load_photos

    train = random_patches(load_photos("train"), n_train, size, seed=0)
    test = random_patches(load_photos("test"), n_test, size, seed=1)
    return PairedData(degraded_pair(train, factor), degraded_pair(test, factor), None)


def mnist_m_data() -> PairedData:
    """Unpaired MNIST (domain A) and MNIST-M-style (domain B) digits for CycleGAN.

    The 4,000 training digits are split in two halves: A gets one half as they are, B the other half
    blended with patches of the training photographs (`mnist_m_style`, seed 0), so no digit appears in
    both domains and nothing pairs them. Only the photographs (``kind == "photo"``) serve, as natural
    photos (BSDS500) served Ganin et al.; textures and slides are left out. The test set is the 1,000
    held-out digits in both styles (B's patches drawn with seed 1), with their labels.
    """
    from gan_utils.classifier import stratified_split
    from gan_utils.data import load_mnist, load_photos

    images, labels, _ = load_mnist("bundled")
    train, test = stratified_split(labels, 100, seed=0)
    photos = [photo for photo in load_photos("train") if photo.kind == "photo"]
    domain_a, domain_b = images[train[0::2]], mnist_m_style(images[train[1::2]], photos, seed=0)
    test_b = mnist_m_style(images[test], photos, seed=1)
    return PairedData((domain_a, domain_b), (images[test], test_b), labels[test])


# ----------------------------------------------------------------------------- recipes


TASKS = ("sr-digits", "sr-photos", "cyclegan")


@dataclass(frozen=True)
class ImageToImageRecipe:
    """Settings of one image-to-image run; `PRESETS` names them (`SHIPPED`: those with shipped weights).

    ``task`` is "sr-digits", "sr-photos" or "cyclegan"; ``l1_weight``=lambda of pix2pix with
    ``adversarial`` off for the L1-only twin; ``cycle_weight``=lambda of CycleGAN (0 for the ablation);
    ``cycle_weight_b``, ``identity_weight`` and ``reconstruction_noise`` go to `cyclegan_step`. Adam
    with lr 2e-4 and betas (0.5, 0.999) for both players, as in both papers.
    """

    task: str
    steps: int
    batch_size: int = 32
    width: int = 32
    depth: int = 2
    d_downsampling: int = 1
    adversarial: bool = True
    l1_weight: float = 100.0
    cycle_weight: float = 10.0
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    n_patches: int = 6000
    cycle_weight_b: float | None = None
    bottleneck_blocks: int = 0
    identity_weight: float = 0.0
    reconstruction_noise: float = 0.0
    code_channels: int = 0  # > 0: a `TextureCodeCycleGAN` trained by `texture_code_cyclegan_step`

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task {self.task!r} is not one of {', '.join(TASKS)}.")
        for name in ("cycle_weight", "cycle_weight_b", "identity_weight", "reconstruction_noise"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ValueError(f"{name} must be 0 or more, got {value}.")
        if self.task != "cyclegan" and (self.identity_weight or self.reconstruction_noise):
            raise ValueError(
                f"identity_weight and reconstruction_noise are CycleGAN settings, and task is {self.task!r}: "
                "use task='cyclegan' or leave them at 0."
            )

        if self.code_channels and (self.task != "cyclegan" or self.cycle_weight_b is not None
                                   or self.identity_weight or self.reconstruction_noise):  # fmt: skip
            raise ValueError(
                "code_channels > 0 trains a TextureCodeCycleGAN, whose step has its own B-side cycle: "
                "use it with task='cyclegan' and leave cycle_weight_b, identity_weight and "
                "reconstruction_noise at their defaults."
            )

    def data(self) -> PairedData:
        """This recipe's training and held-out data (`digit_sr_data`, `photo_sr_data`, `mnist_m_data`)."""
        if self.task == "sr-photos":
            return photo_sr_data(n_train=self.n_patches)
        return digit_sr_data() if self.task == "sr-digits" else mnist_m_data()

    def models(self) -> tuple[nn.Module, nn.Module]:
        """Fresh (G, D) for this recipe."""
        if self.code_channels:
            G = TextureCodeCycleGAN(self.code_channels, channels_a=1, channels_b=3, width=self.width,
                                    depth=self.depth, bottleneck_blocks=self.bottleneck_blocks)  # fmt: skip
            return G, CycleDiscriminators(1, 3, self.width, self.d_downsampling)
        if self.task == "cyclegan":
            return (CycleGAN(1, 3, self.width, self.depth, self.bottleneck_blocks),
                    CycleDiscriminators(1, 3, self.width, self.d_downsampling))  # fmt: skip
        channels = 1 if self.task == "sr-digits" else 3
        return (UNetGenerator(channels, channels, self.width, self.depth, residual=True),
                PatchDiscriminator(2 * channels, self.width, self.d_downsampling))  # fmt: skip

    def optimisers(self, G: nn.Module, D: nn.Module) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
        """Adam for G and for D with the recipe's learning rate and betas."""
        return (torch.optim.Adam(G.parameters(), self.lr, betas=self.betas),
                torch.optim.Adam(D.parameters(), self.lr, betas=self.betas))  # fmt: skip

    def step(self) -> Callable[..., dict[str, torch.Tensor]]:
        """The step function for `gan_utils.training.train`, with this recipe's weights."""
        import functools

        if self.code_channels:
            return functools.partial(texture_code_cyclegan_step, cycle_weight=self.cycle_weight)
        if self.task == "cyclegan":
            return functools.partial(
                cyclegan_step, cycle_weight=self.cycle_weight, cycle_weight_b=self.cycle_weight_b,
                identity_weight=self.identity_weight, reconstruction_noise=self.reconstruction_noise,
            )  # fmt: skip
        return functools.partial(pix2pix_step, l1_weight=self.l1_weight, adversarial=self.adversarial)


_PHOTOS = dict(task="sr-photos", steps=2000, width=16, depth=3, d_downsampling=2, batch_size=16)
_CYCLE = dict(task="cyclegan", steps=6000, width=16, batch_size=8)  # batch 8: more updates per CPU second
PRESETS: dict[str, ImageToImageRecipe] = {
    "sr-mnist": ImageToImageRecipe("sr-digits", steps=2000),
    "sr-mnist-l1": ImageToImageRecipe("sr-digits", steps=2000, adversarial=False),
    "sr-photos": ImageToImageRecipe(**_PHOTOS),
    "sr-photos-l1": ImageToImageRecipe(**_PHOTOS, adversarial=False),
    "cyclegan-mnistm": ImageToImageRecipe(**_CYCLE),
    "cyclegan-mnistm-nocycle": ImageToImageRecipe(**_CYCLE, cycle_weight=0.0),
    # the cycle on A's side only (A -> B -> A): chapter 9's third row
    "cyclegan-mnistm-cycle-a": ImageToImageRecipe(**_CYCLE, cycle_weight_b=0.0),
    # both cycles at full weight, with a texture code read from b for the B -> A -> B one
    # (TextureCodeCycleGAN), for twice the steps: the shipped model that keeps labels
    "cyclegan-mnistm-texture-code-12k": ImageToImageRecipe(**(_CYCLE | dict(steps=12000)), code_channels=16),
}
SHIPPED = tuple(PRESETS)
# measured, not shipped (the performance appendix's CycleGAN variants): lighter B -> A -> B halves,
# Zhu et al.'s identity term, and Bashkirova et al.'s noise before translating back
PRESETS |= {
    "cyclegan-mnistm-cycle-b1": ImageToImageRecipe(**_CYCLE, cycle_weight_b=1.0),
    "cyclegan-mnistm-cycle-b0.3": ImageToImageRecipe(**_CYCLE, cycle_weight_b=0.3),
    "cyclegan-mnistm-cycle-b0.1": ImageToImageRecipe(**_CYCLE, cycle_weight_b=0.1),
    "cyclegan-mnistm-identity": ImageToImageRecipe(**_CYCLE, identity_weight=5.0),
    "cyclegan-mnistm-noise-0.2": ImageToImageRecipe(**_CYCLE, reconstruction_noise=0.2),
    "cyclegan-mnistm-noise-0.5": ImageToImageRecipe(**_CYCLE, reconstruction_noise=0.5),
    # the shipped texture-code model at the plain CycleGAN's 6,000 steps
    "cyclegan-mnistm-texture-code": ImageToImageRecipe(**_CYCLE, code_channels=16),
    "cyclegan-mnistm-12k": ImageToImageRecipe(**(_CYCLE | dict(steps=12000))),  # its budget, without the code
}
