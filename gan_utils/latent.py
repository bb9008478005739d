"""Latent-space tools for chapter 7: interpolation, directions that change the image most, and
arithmetic on class-conditional means of z. They work with any generator that follows the book's
contract (`check_image_generator`).

Introduced in chapter 7.
"""

from __future__ import annotations

import functools
import math
import warnings

import torch
from torch import nn

from gan_utils.models import balanced_labels, is_conditional
from gan_utils.runtime import check_count, device_of, evaluating, sample


def check_image_generator(G: nn.Module) -> tuple[int, int, int]:
    """Check that ``G`` has ``latent_dim`` and maps ``[n, latent_dim]`` to images; return (C, H, W).

    Raises a TypeError or ValueError that says what is missing, instead of a failure deep in torch.
    """
    if not isinstance(G, nn.Module):
        raise TypeError(f"expected a generator (torch.nn.Module), got {type(G).__name__}.")
    latent_dim = getattr(G, "latent_dim", None)
    if not isinstance(latent_dim, int) or latent_dim < 1:
        raise TypeError(
            f"{type(G).__name__} has no integer attribute latent_dim; the latent tools need a generator "
            "that follows the book's contract (z of shape [n, latent_dim] in, images out), such as "
            "gan_utils.pretrained.load_pretrained('dcgan-mnist')."
        )
    try:
        out = sample(G, torch.zeros(1, latent_dim))
    except Exception as error:
        raise ValueError(
            f"{type(G).__name__} failed on z of shape [1, {latent_dim}] ({type(error).__name__}: {error}); "
            "a generator must accept z of shape [n, latent_dim]."
        ) from None
    if not isinstance(out, torch.Tensor) or out.ndim != 4 or out.shape[1] not in (1, 3):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"{type(G).__name__} returns {shape} for one z, not an image [1, C, H, W] with C = 1 or 3; "
            "the latent explorer shows images (a toy generator of 2-D points has nothing to show)."
        )
    return tuple(out.shape[1:])


def _check_endpoints(z0: torch.Tensor, z1: torch.Tensor, one_code: bool) -> None:
    """Refuse endpoints that are not tensors of one shape ([latent_dim] each when ``one_code``)."""
    tensors = isinstance(z0, torch.Tensor) and isinstance(z1, torch.Tensor)
    if not tensors or z0.shape != z1.shape or (one_code and z0.ndim != 1):
        shapes = [tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__ for z in (z0, z1)]
        wanted = "two codes of shape [latent_dim]" if one_code else "two tensors of one shape"
        raise ValueError(f"interpolation takes {wanted}, got {shapes[0]} and {shapes[1]}.")


def lerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """Straight-line interpolation (1 - t) z0 + t z1."""
    _check_endpoints(z0, z1, one_code=False)
    t = torch.as_tensor(t, dtype=z0.dtype).reshape(-1, 1)
    return (1 - t) * z0 + t * z1


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """Spherical interpolation along the great circle from z0 to z1 (White, 2016).

    slerp = sin((1 - t) w) / sin(w) z0 + sin(t w) / sin(w) z1, with w the angle between z0 and z1;
    the norm moves smoothly from |z0| to |z1| instead of dipping through the middle as lerp does.
    Falls back to lerp when the two vectors are (anti)parallel and sin(w) vanishes.
    """
    _check_endpoints(z0, z1, one_code=True)
    if z0.norm() == 0 or z1.norm() == 0:
        raise ValueError("slerp needs two non-zero codes (a zero vector has no angle); use lerp.")
    t = torch.as_tensor(t, dtype=z0.dtype).reshape(-1, 1)
    cos_w = (z0 @ z1 / (z0.norm() * z1.norm())).clamp(-1.0, 1.0)
    w = torch.arccos(cos_w)
    if torch.sin(w).abs() < 1e-6:
        return lerp(z0, z1, t)
    return (torch.sin((1 - t) * w) * z0 + torch.sin(t * w) * z1) / torch.sin(w)


def expected_norm(latent_dim: int) -> float:
    """E|z| for z ~ N(0, I_d): sqrt(2) Gamma((d + 1) / 2) / Gamma(d / 2), close to sqrt(d - 1/2)."""
    latent_dim = check_count(latent_dim, "latent_dim")
    return math.sqrt(2) * math.exp(math.lgamma((latent_dim + 1) / 2) - math.lgamma(latent_dim / 2))


def _flat_image(G: nn.Module, z: torch.Tensor, label: tuple) -> torch.Tensor:
    return G(z[None], *label).flatten()


def steepest_directions(G: nn.Module, k: int = 4, n_points: int = 32, seed: int = 0) -> torch.Tensor:
    """The k unit directions in z that change G's image the most, on average over z ~ N(0, I).

    They are the top eigenvectors of M = E_z[J(z)^T J(z)], where J is the Jacobian of the flattened
    image with respect to z: for a small step eps * v the squared pixel change is about
    eps^2 v^T J^T J v, so the top eigenvector maximises the expected change per unit step. Returns
    ``[k, latent_dim]``, rows orthonormal, each signed so that its largest entry is positive.
    A conditional generator's average also runs over its classes, point i drawing class i mod 10.
    """
    check_image_generator(G)
    if not isinstance(k, int) or not 1 <= k <= G.latent_dim:
        raise ValueError(f"k must be an integer in 1..{G.latent_dim}, got {k!r}.")
    device = device_of(G)
    z = torch.randn(n_points, G.latent_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    classes = balanced_labels(n_points, G.n_classes, device) if is_conditional(G) else None
    labels = [(y[None],) for y in classes] if classes is not None else [()] * n_points
    M = torch.zeros(G.latent_dim, G.latent_dim, dtype=torch.float64)
    with evaluating(G):
        for point, label in zip(z, labels, strict=True):
            with warnings.catch_warnings():  # torch.func warns about its own use of torch.jit
                warnings.simplefilter("ignore", FutureWarning)
                image = functools.partial(_flat_image, G, label=label)
                J = torch.func.jacfwd(image)(point)  # [pixels, d], forward mode
            M += (J.T @ J).double().cpu()
    _, vectors = torch.linalg.eigh(M / n_points)  # ascending eigenvalues
    directions = vectors[:, -k:].flip(1).T.float()
    signs = torch.sign(directions.gather(1, directions.abs().argmax(1, keepdim=True)))
    return directions * signs


@torch.no_grad()
def class_means(
    G: nn.Module, classifier: nn.Module, n: int = 5000, confidence: float = 0.9, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean z of the samples the classifier reads as each digit with at least ``confidence``.

    Returns ``(means [10, latent_dim], counts [10])``; a class with no confident sample has a row
    of NaN and a count of 0.
    """
    check_image_generator(G)
    n, seed = check_count(n, "n"), check_count(seed, "seed", minimum=0)
    given = confidence
    try:
        confidence = float(confidence)  # numpy and 0-d torch numbers too
    except (TypeError, ValueError):
        confidence = math.nan
    if not 0 < confidence <= 1:
        raise ValueError(f"confidence must be a probability in (0, 1], got {given!r}.")
    if not isinstance(classifier, nn.Module):
        raise TypeError(
            f"classifier must be a digit classifier module (gan_utils.metrics.load_classifier()), got "
            f"{type(classifier).__name__}."
        )
    if hasattr(classifier, "latent_dim"):
        raise TypeError(
            f"classifier is a generator ({type(classifier).__name__} has a latent_dim); pass a digit "
            "classifier such as gan_utils.metrics.load_classifier() as the second argument."
        )
    z = torch.randn(n, G.latent_dim, generator=torch.Generator().manual_seed(seed))
    images = sample(G, z)
    device = device_of(classifier)
    with evaluating(classifier):
        logits = [classifier(images[s : s + 500].to(device)) for s in range(0, n, 500)]
    if logits[0].ndim != 2 or logits[0].shape[1] < 2:
        raise TypeError(
            f"classifier must return class logits of shape [n, classes], but {type(classifier).__name__} "
            f"returned {tuple(logits[0].shape)}; pass gan_utils.metrics.load_classifier(), not a "
            "discriminator."
        )
    probabilities = torch.softmax(torch.cat(logits).cpu(), 1)
    best, label = probabilities.max(1)
    means = torch.full((probabilities.shape[1], G.latent_dim), float("nan"))
    counts = torch.zeros(probabilities.shape[1], dtype=torch.long)
    for digit in range(probabilities.shape[1]):
        members = (label == digit) & (best >= confidence)
        counts[digit] = members.sum()
        if counts[digit] > 0:
            means[digit] = z[members].mean(0)
    return means, counts
