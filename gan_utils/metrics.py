"""Metrics for toy mixtures (chapter 2) and for digit images (chapter 5).

The toy part follows the protocol of VEEGAN (Srivastava et al., 2017) and PacGAN (Lin
et al., 2018), so our numbers sit beside their tables:

- a sample is *high quality* when it lies within 3 standard deviations of its nearest mode;
- a mode is *captured* when at least one high-quality sample is nearest to it;
- KL is KL(h || uniform), where h is the histogram of the high-quality samples over the modes
  (as in PacGAN's released evaluation code);
- all on 2,500 generated samples.

The image part measures generated digits in the 128-dimensional features of the shipped
``mnist-classifier`` (`gan_utils.classifier`): the Fréchet distance (Heusel et al., 2017, in our
features instead of Inception's), precision and recall (Kynkäänniemi et al., 2019), density and
coverage (Naeem et al., 2020), the class histogram with its KL to uniform, nearest training
neighbours in pixel space, and Meehan et al.'s (2020) data-copying test built on them. Every
pairwise-distance computation runs in blocks of rows, so 10,000 samples against 10,000 real images
need tens of MB, not the 400 MB of one full distance matrix.

Introduced in chapters 2 (toy part) and 5 (image part).
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import torch
from torch import nn

from gan_utils import stabilisers
from gan_utils.data import GaussianMixture2D, check_digit_images, check_mixture
from gan_utils.models import balanced_labels, check_labels, is_conditional
from gan_utils.runtime import check_count, check_positive_number, device_of, sample

TOY_EVAL_SAMPLES = 2500
IMAGE_EVAL_SAMPLES = 5000  # generated digits per evaluation, as many as the bundled real set
ROW_BLOCK = 1000  # rows of a distance matrix computed at once
EXACT_DISTANCES = "donot_use_mm_for_euclid_dist"  # cdist's matrix-product form is off by ~1e-2 at distance 0


def toy_mode_metrics(
    samples: torch.Tensor, mixture: GaussianMixture2D, n_sigma: float = 3.0
) -> dict[str, float]:
    """Modes captured, % high-quality samples and KL(mode histogram || uniform) for 2D samples.

    Args:
        samples: generated points, shape [n, 2].
        mixture: the true mixture (its means and sigma define the modes).
        n_sigma: the high-quality radius in units of sigma (3 in VEEGAN and PacGAN).

    Returns:
        ``modes`` (0..K), ``high_quality`` (percent, 0..100) and ``kl`` (nats; 0 is perfectly
        balanced, log K is everything in one mode, inf when no sample is high quality).
    """
    mixture = check_mixture(mixture, "toy_mode_metrics(samples, mixture)")
    n_sigma = check_positive_number(n_sigma, "n_sigma")
    samples = torch.as_tensor(samples).detach().float().cpu()
    if samples.ndim != 2 or samples.shape[1] != 2 or samples.shape[0] == 0:
        raise ValueError(f"samples must have shape [n, 2] with n >= 1, got {tuple(samples.shape)}.")
    if not torch.isfinite(samples).all():
        raise ValueError("samples contain NaN or inf; the generator has diverged.")
    distances = torch.cdist(samples, mixture.means)  # (n, K)
    nearest_distance, nearest_mode = distances.min(dim=1)
    high_quality = nearest_distance <= n_sigma * mixture.sigma
    counts = torch.bincount(nearest_mode[high_quality], minlength=mixture.n_modes).double()
    n_high = counts.sum().item()
    kl = math.inf if n_high == 0 else kl_to_uniform(counts / n_high)
    return {
        "modes": int((counts > 0).sum().item()),
        "high_quality": 100.0 * n_high / samples.shape[0],
        "kl": kl,
    }


# ----------------------------------------------------------------------------- image metrics


class DigitFeatures(NamedTuple):
    """What the classifier sees in a set of digits: features [n, 128] and class probabilities [n, 10]."""

    features: torch.Tensor
    probabilities: torch.Tensor


def load_classifier() -> nn.Module:
    """The shipped ``mnist-classifier``: `gan_utils.pretrained.load_classifier` (imported when needed)."""
    from gan_utils.pretrained import load_classifier as load_shipped_classifier

    return load_shipped_classifier()


def check_digit_classifier(classifier: object) -> nn.Module:
    """Return ``classifier`` if it has the digit classifier's ``features`` and ``head``, else a TypeError."""
    if not (isinstance(classifier, nn.Module) and callable(getattr(classifier, "features", None))
            and callable(getattr(classifier, "head", None))):  # fmt: skip
        raise TypeError(
            f"classifier must be a digit classifier with features() and head, such as "
            f"gan_utils.metrics.load_classifier(), got {type(classifier).__name__}; leave it out to use "
            "the shipped one."
        )
    return classifier


@torch.no_grad()
def digit_features(
    images: torch.Tensor, classifier: nn.Module | None = None, batch_size: int = 500
) -> DigitFeatures:
    """Run ``images`` ([n, 1, 28, 28] in [-1, 1]) through the classifier in batches.

    ``images`` are checked first (`gan_utils.data.check_digit_images`): images in [0, 1] or [0, 255],
    wrong shapes and NaN are refused with the fix.
    """
    images = check_digit_images(images)
    batch_size = check_count(batch_size, "batch_size")
    classifier = check_digit_classifier(classifier) if classifier is not None else load_classifier()
    device = device_of(classifier)
    features, probabilities = [], []
    for start in range(0, len(images), batch_size):
        f = classifier.features(images[start : start + batch_size].to(device))
        features.append(f.cpu())
        probabilities.append(torch.softmax(classifier.head(f), dim=1).cpu())
    return DigitFeatures(torch.cat(features), torch.cat(probabilities))


def _check_feature_sets(
    a: torch.Tensor, b: torch.Tensor, minimum_rows: int = 2, names: tuple[str, str] = ("first", "second")
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both sets as float64, or a ValueError naming the set by the caller's argument name."""
    for name, x in zip(names, (a, b), strict=True):
        if not isinstance(x, torch.Tensor) or x.ndim != 2:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"{name} must be a 2-D tensor [n, d] of features, got {shape}; "
                "compute features with digit_features(images).features."
            )
        if len(x) < minimum_rows:
            rows = "1 row" if len(x) == 1 else f"{len(x)} rows"
            raise ValueError(f"{name} has {rows}; this metric needs at least {minimum_rows}.")
        if not torch.isfinite(x).all():
            raise ValueError(f"{name} contains NaN or inf.")
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"feature sizes differ: {a.shape[1]} vs {b.shape[1]}; use the same classifier for both sets."
        )
    return a.double(), b.double()


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)): the *squared* Fréchet (2-Wasserstein)
    distance between two Gaussians, as FID reports it.

    The Gaussians are fitted to the two feature sets (Heusel et al., 2017). The trace of the matrix
    square root is computed as the sum of square roots of the eigenvalues of S_a^(1/2) S_b S_a^(1/2),
    which has the same spectrum as S_a S_b and is symmetric, so it stays real in float64.
    """
    a, b = _check_feature_sets(features_a, features_b, names=("features_a", "features_b"))
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    values, vectors = torch.linalg.eigh(cov_a)
    sqrt_a = vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T
    cross = torch.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a).clamp(min=0).sqrt().sum()
    distance = (mean_a - mean_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * cross
    return max(distance.item(), 0.0)


def kth_neighbour_radius(features: torch.Tensor, k: int, block: int = ROW_BLOCK) -> torch.Tensor:
    """Distance from each row to its k-th nearest *other* row: the radius of its k-NN ball."""
    try:
        whole = check_count(k, "k")  # NumPy integers too
    except ValueError:
        whole = 0
    if not 1 <= whole < len(features):
        raise ValueError(
            f"k must be an integer in 1..{len(features) - 1} for {len(features)} rows, got {k!r}."
        )
    k, block = whole, check_count(block, "block")
    radii = []
    for start in range(0, len(features), block):
        distances = torch.cdist(features[start : start + block], features)
        radii.append(distances.kthvalue(k + 1, dim=1).values)  # the 1st is the row itself, at 0
    return torch.cat(radii)


def _ball_counts(
    queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, block: int
) -> torch.Tensor:
    """For each query, how many of the balls B(centre_i, radius_i) contain it."""
    counts = []
    for start in range(0, len(queries), block):
        inside = torch.cdist(queries[start : start + block], centres) <= radii[None, :]
        counts.append(inside.sum(1))
    return torch.cat(counts)


def precision_recall(
    real_features: torch.Tensor, fake_features: torch.Tensor, k: int = 3, block: int = ROW_BLOCK
) -> dict[str, float]:
    """Improved precision and recall (Kynkäänniemi et al., 2019).

    Each set spans a manifold: the union of balls around its points, each ball reaching the point's
    k-th nearest neighbour in the same set. Precision is the fraction of fake points inside the real
    manifold (are the samples realistic?); recall is the fraction of real points inside the fake
    manifold (is the data's variety covered?). The paper uses k = 3.
    """
    k, block = check_count(k, "k"), check_count(block, "block")
    real, fake = _check_feature_sets(real_features, fake_features, k + 1, ("real_features", "fake_features"))
    real_radii, fake_radii = kth_neighbour_radius(real, k, block), kth_neighbour_radius(fake, k, block)
    precision = (_ball_counts(fake, real, real_radii, block) > 0).double().mean().item()
    recall = (_ball_counts(real, fake, fake_radii, block) > 0).double().mean().item()
    return {"precision": precision, "recall": recall}


def density_coverage(
    real_features: torch.Tensor, fake_features: torch.Tensor, k: int = 5, block: int = ROW_BLOCK
) -> dict[str, float]:
    """Density and coverage (Naeem et al., 2020), with k-NN balls around the real points only.

    density = 1/(k M) sum_j sum_i 1[Y_j in B(X_i, NND_k(X_i))]: how many real balls hold each fake
    sample, divided by k; about 1 when the two distributions match, above 1 when fakes crowd into
    dense regions. coverage = 1/N sum_i 1[some Y_j in B(X_i, NND_k(X_i))]: the fraction of real
    balls that hold at least one fake sample. The paper uses k = 5.
    """
    k, block = check_count(k, "k"), check_count(block, "block")
    real, fake = _check_feature_sets(real_features, fake_features, k + 1, ("real_features", "fake_features"))
    radii = kth_neighbour_radius(real, k, block)
    density = _ball_counts(fake, real, radii, block).double().sum().item() / (k * len(fake))
    covered = []
    for start in range(0, len(real), block):
        nearest_fake = torch.cdist(real[start : start + block], fake).min(dim=1).values
        covered.append(nearest_fake <= radii[start : start + block])
    return {"density": density, "coverage": torch.cat(covered).double().mean().item()}


def expected_coverage_same_distribution(n_real: int, n_fake: int, k: int = 5) -> float:
    """E[coverage] when real and fake come from one distribution (Naeem et al., 2020):
    1 - prod_{i=1..k} (N - i) / (M + N - i)."""
    return 1.0 - math.prod((n_real - i) / (n_real + n_fake - i) for i in range(1, k + 1))


def class_histogram(probabilities: torch.Tensor) -> torch.Tensor:
    """The fraction of samples the classifier assigns to each class (argmax), shape [n_classes]."""
    if not isinstance(probabilities, torch.Tensor) or probabilities.ndim != 2 or len(probabilities) == 0:
        raise ValueError(
            "class_histogram needs class probabilities [n, n_classes], e.g. digit_features(x).probabilities."
        )
    counts = torch.bincount(probabilities.argmax(1), minlength=probabilities.shape[1]).double()
    return counts / counts.sum()


def kl_to_uniform(histogram: torch.Tensor) -> float:
    """KL(h || uniform) = sum_c h_c log(C h_c) in nats: 0 for a balanced histogram, log C for one bin.

    Used for the toy modes (chapter 2) and, as `class_kl`, for the digit classes (chapter 5).
    """
    h = torch.as_tensor(histogram, dtype=torch.float64)
    if h.ndim != 1 or not torch.isfinite(h).all() or (h < 0).any() or abs(h.sum().item() - 1) > 1e-6:
        raise ValueError("the KL to uniform needs a 1-D histogram of non-negative fractions that sum to 1.")
    nonzero = h > 0
    return (h[nonzero] * torch.log(h[nonzero] * len(h))).sum().item()


def class_kl(histogram: torch.Tensor) -> float:
    """KL(class histogram || uniform) in nats: 0 for balanced classes, log 10 for a single digit."""
    return kl_to_uniform(histogram)


def recognisable_digits(probabilities: torch.Tensor, confidence: float = 0.9) -> dict[str, float]:
    """How many samples the classifier reads as a digit with at least ``confidence``, and how the
    classes are spread among them.

    Returns ``recognisable`` (the share of such samples; real MNIST digits score about 0.95 at 0.9)
    and ``smallest_class`` (the share of the rarest digit among them; 0.1 when balanced, 0 when a
    class is missing). Chapter 4's "clearly recognisable digits of all ten classes" is measured so.
    """
    if not isinstance(probabilities, torch.Tensor) or probabilities.ndim != 2 or len(probabilities) == 0:
        raise ValueError(
            "recognisable_digits needs class probabilities [n, 10], e.g. digit_features(x).probabilities."
        )
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}.")
    if (probabilities < 0).any() or not torch.allclose(probabilities.sum(dim=1).double(),
                                                       torch.ones(len(probabilities), dtype=torch.float64),
                                                       atol=1e-3):  # fmt: skip
        raise ValueError("recognisable_digits needs probabilities (rows >= 0 that sum to 1); logits "
                         "become probabilities with logits.softmax(dim=1).")  # fmt: skip
    best, label = probabilities.max(dim=1)
    sure = best >= confidence
    if not sure.any():
        return {"recognisable": 0.0, "smallest_class": 0.0}
    counts = torch.bincount(label[sure], minlength=probabilities.shape[1]).double()
    return {
        "recognisable": sure.double().mean().item(),
        "smallest_class": (counts.min() / counts.sum()).item(),
    }


def nearest_neighbours(
    queries: torch.Tensor, references: torch.Tensor, k: int = 1, block: int = ROW_BLOCK
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k nearest reference images of each query in pixel space (Euclidean): distances and indices [n, k].

    A memorisation check: a generator that copies its training set has samples at distance ~0 from
    a training image.
    """
    queries, references = check_digit_images(queries, "queries"), check_digit_images(references, "references")
    k, block = check_count(k, "k"), check_count(block, "block")
    if k > len(references):
        raise ValueError(f"k must be an integer in 1..{len(references)} (the number of references), got {k}.")
    return _nearest(queries, references, k, block)


def _nearest(
    queries: torch.Tensor, references: torch.Tensor, k: int = 1, block: int = ROW_BLOCK
) -> tuple[torch.Tensor, torch.Tensor]:
    """`nearest_neighbours` of images already checked (a cell of a checked set may hold any values)."""
    flat_references = references.flatten(1)
    distances, indices = [], []
    for start in range(0, len(queries), block):
        block_rows = queries[start : start + block].flatten(1)
        d = torch.cdist(block_rows, flat_references, compute_mode=EXACT_DISTANCES)
        nearest = d.topk(k, dim=1, largest=False)
        distances.append(nearest.values)
        indices.append(nearest.indices)
    return torch.cat(distances), torch.cat(indices)


class DataCopyingTest(NamedTuple):
    """`data_copying_test`'s result: the statistic C_T and what it averages, one entry per cell."""

    statistic: float  # C_T: far below 0 means copying, far above 0 means samples far from the data
    null_std: float  # C_T's standard deviation if the kept cells' Z_U were independent standard normals
    farther: float  # U / mn, weighted like C_T: how often a sample is the farther of a pair (0.5: even)
    cell_z: torch.Tensor  # Z_U of each cell; NaN where too few samples fall in the cell
    held_out_share: torch.Tensor  # P_n(pi), the share of held-out digits in each cell
    sample_share: torch.Tensor  # Q_m(pi), the share of samples in each cell


def _mann_whitney_u(samples: torch.Tensor, held_out: torch.Tensor) -> tuple[float, int, int]:
    s, h = samples.double().view(-1), held_out.double().view(-1).sort().values
    m, n = len(s), len(h)
    if m == 0 or n == 0:
        raise ValueError(f"both sets of distances need at least one value, got {m} and {n}.")
    below = torch.searchsorted(h, s, side="left")  # held-out values below each sample
    tied = torch.searchsorted(h, s, side="right") - below
    return below.sum().item() + 0.5 * tied.sum().item(), m, n


def mann_whitney_z(sample_distances: torch.Tensor, held_out_distances: torch.Tensor) -> float:
    """The Mann-Whitney U of two sets of distances, z-scored under the null that both come from one
    distribution: U counts the (sample, held-out) pairs in which the sample is farther (ties count
    half), and Z_U = (U - mn/2) / sqrt(mn(m + n + 1) / 12). No continuity correction."""
    return _z_score(*_mann_whitney_u(sample_distances, held_out_distances))


def _z_score(u: float, m: int, n: int) -> float:
    return (u - m * n / 2) / math.sqrt(m * n * (m + n + 1) / 12)


def data_copying_test(
    samples: torch.Tensor,
    held_out: torch.Tensor,
    training: torch.Tensor,
    cells: int = 20,
    min_samples: int = 10,
    seed: int = 0,
) -> DataCopyingTest:
    """Meehan, Chaudhuri and Dasgupta's (2020) test for data copying, in pixel space.

    k-means on the ``training`` digits (`stabilisers.pixel_kmeans_centres`, ``seed``) splits pixel
    space into ``cells``; every image joins the cell of its nearest centre. In each cell the distances
    from samples and from ``held_out`` digits to their nearest training digit *of that cell* are
    compared by `mann_whitney_z`. C_T is the mean of these Z_U, weighted by each cell's share of the
    held-out digits, over the cells that hold at least ``min_samples`` samples (the paper's Pi_tau
    keeps the cells whose share of the samples exceeds tau). Comparing within cells separates copying
    (samples nearer their training digits than new real digits are) from a different mix of regions.
    Unlike Meehan et al.'s code, Z_U has no continuity correction (it would move C_T by ~0.003 here).
    """
    samples = check_digit_images(samples, "samples")
    held_out = check_digit_images(held_out, "held_out")
    training = check_digit_images(training, "training")
    cells, min_samples = check_count(cells, "cells", minimum=2), check_count(min_samples, "min_samples")
    if cells > len(held_out):
        raise ValueError(f"cells={cells} exceeds the {len(held_out)} held-out digits; use fewer cells.")
    centres = stabilisers.pixel_kmeans_centres(training, cells, seed=seed)
    cell_of = {
        name: torch.cdist(images.flatten(1), centres, compute_mode=EXACT_DISTANCES).argmin(1)
        for name, images in (("samples", samples), ("held_out", held_out), ("training", training))
    }
    counts = {name: torch.bincount(ids, minlength=cells) for name, ids in cell_of.items()}
    for name in ("held_out", "training"):
        empty = (counts[name] == 0).nonzero().view(-1).tolist()
        if empty:
            raise ValueError(
                f"cells {empty} hold no {name.replace('_', '-')} digits; use fewer cells than {cells}."
            )
    cell_z = torch.full((cells,), float("nan"), dtype=torch.float64)
    cell_farther = cell_z.clone()
    for c in range(cells):
        if counts["samples"][c] < min_samples:
            continue
        references = training[cell_of["training"] == c]
        sample_nn = _nearest(samples[cell_of["samples"] == c], references)[0]
        held_out_nn = _nearest(held_out[cell_of["held_out"] == c], references)[0]
        u, m, n = _mann_whitney_u(sample_nn, held_out_nn)
        cell_z[c] = _z_score(u, m, n)
        cell_farther[c] = u / (m * n)
    kept = ~cell_z.isnan()
    if not kept.any():
        raise ValueError(
            f"no cell holds min_samples={min_samples} of the {len(samples)} samples; pass more samples "
            "or lower min_samples."
        )
    held_out_share = counts["held_out"].double() / len(held_out)
    weights = held_out_share[kept]
    return DataCopyingTest(
        statistic=((weights * cell_z[kept]).sum() / weights.sum()).item(),
        null_std=(weights.square().sum().sqrt() / weights.sum()).item(),
        farther=((weights * cell_farther[kept]).sum() / weights.sum()).item(),
        cell_z=cell_z,
        held_out_share=held_out_share,
        sample_share=counts["samples"].double() / len(samples),
    )


def image_metrics(
    fake: DigitFeatures, real: DigitFeatures, k_precision_recall: int = 3, k_density_coverage: int = 5
) -> dict[str, float]:
    """Every image metric of a generated set against a real set, from their `digit_features`.

    Both arguments are `DigitFeatures` (features and class probabilities); an error names them by
    role (``fake``, ``real``), whichever metric finds the problem.
    """
    for role, value in (("fake", fake), ("real", real)):
        if not isinstance(value, DigitFeatures):
            raise TypeError(
                f"image_metrics takes DigitFeatures, got {type(value).__name__} for {role}; compute them "
                "with digit_features(images); raw feature tensors go to frechet_distance and the others."
            )
    k_precision_recall, k_density_coverage = (
        check_count(k_precision_recall, "k"),
        check_count(k_density_coverage, "k"),
    )
    needed = max(k_precision_recall, k_density_coverage) + 1
    _check_feature_sets(fake.features, real.features, needed, ("fake", "real"))
    return {
        "frechet_distance": frechet_distance(real.features, fake.features),
        **precision_recall(real.features, fake.features, k_precision_recall),
        **density_coverage(real.features, fake.features, k_density_coverage),
        "class_kl": class_kl(class_histogram(fake.probabilities)),
    }


MIN_TRUNCATION = 0.05  # latent_noise's smallest threshold: below it the redraw loop grows long


def latent_noise(n: int, latent_dim: int, seed: int = 0, truncation: float | None = None) -> torch.Tensor:
    """``n`` codes z ~ N(0, I) of size ``latent_dim``, seeded with ``seed``, shape ``[n, latent_dim]``.

    ``truncation`` = t > 0 draws every coordinate from N(0, 1) restricted to [-t, t], which is
    Brock et al. (2019)'s truncation trick: draw from N(0, 1), then redraw the values that fall
    outside until none do. So a coordinate that the untruncated code (same seed) has inside [-t, t]
    keeps its value. Each round draws a full-size tensor and keeps the new values only where needed,
    which is what ``torch.nn.init.trunc_normal_`` does in torch 2.14.1 when [-t, t] holds over 30 %
    of the mass (t > 0.39), so the codes are the same; it is written out here so that they do not
    depend on how a torch version implements ``trunc_normal_`` (older ones invert the CDF, which keeps
    no coordinate), and so that every t uses one method. A round costs n * latent_dim normal draws,
    and about log(n * latent_dim) / -log(1 - P(|z| <= t)) rounds are needed, so t is refused below
    ``MIN_TRUNCATION`` (0.05), where hundreds of rounds (thousands below t = 0.01) would draw codes of
    almost nothing. Smaller t trades variety for fidelity, but only up to a point: tight thresholds
    pull the codes inside the shell that G was trained on (chapter 6). ``None`` draws plain ``torch.randn``.
    """
    n, latent_dim = check_count(n, "n"), check_count(latent_dim, "latent_dim")
    generator = torch.Generator().manual_seed(check_count(seed, "seed", minimum=0))
    if truncation is None:
        return torch.randn(n, latent_dim, generator=generator)
    valid = isinstance(truncation, numbers.Real) and not isinstance(truncation, bool)
    if not (valid and 0 < truncation < math.inf):
        raise ValueError(
            f"truncation must be a positive number of standard deviations (1.0, say) or None for no "
            f"truncation, got {truncation!r}."
        )
    if truncation < MIN_TRUNCATION:
        raise ValueError(
            f"truncation={truncation!r} is below {MIN_TRUNCATION}: every code would be nearly 0 (chapter 6 "
            f"shows t = 0.5 already washing the samples out), and redrawing until all coordinates lie "
            f"inside would take hundreds of rounds, thousands as t nears 0. Use t >= {MIN_TRUNCATION}."
        )
    t = torch.tensor(float(truncation)).item()  # the float32 bound, as the codes are float32
    codes = torch.empty(n, latent_dim).normal_(generator=generator)
    while (outside := codes.abs() > t).any():
        codes = torch.where(outside, torch.empty_like(codes).normal_(generator=generator), codes)
    return codes


def sample_images(
    G: nn.Module, n: int, seed: int = 0, batch_size: int = 500, truncation: float | None = None
) -> torch.Tensor:
    """``n`` images from generator ``G`` (in eval mode) for noise seeded with ``seed``, on the CPU.

    ``truncation``: see `latent_noise` (None: plain N(0, I), as every recorded metric uses).
    """
    if not hasattr(G, "latent_dim"):
        raise TypeError(
            f"{type(G).__name__} has no latent_dim; pass a generator that follows the book's contract."
        )
    return sample(G, latent_noise(n, G.latent_dim, seed, truncation), batch_size)


def evaluate_generator(
    G: nn.Module,
    real_images: torch.Tensor,
    n: int = IMAGE_EVAL_SAMPLES,
    seed: int = 0,
    classifier: nn.Module | None = None,
) -> dict[str, float]:
    """`image_metrics` of ``n`` samples of G against ``real_images``, in the shipped classifier's features.

    ``n`` must be at least 6: density and coverage compare each sample with its 5 nearest neighbours.
    A generator that does not draw [n, 1, 28, 28] digits in [-1, 1] is refused before any scoring.
    """
    try:
        n = check_count(n, "n", minimum=6)
    except ValueError as error:
        raise ValueError(f"{error} Density and coverage need 5 neighbours per sample.") from None
    fake_images = check_digit_images(sample_images(G, n, seed), f"the samples of {type(G).__name__}")
    real_images = check_digit_images(real_images, "real_images")
    classifier = classifier if classifier is not None else load_classifier()
    fake = digit_features(fake_images, classifier)
    return image_metrics(fake, digit_features(real_images, classifier))


def conditional_metrics(
    G: nn.Module,
    real_images: torch.Tensor,
    real_labels: torch.Tensor,
    n_per_class: int = 500,
    seed: int = 0,
    classifier: nn.Module | None = None,
) -> dict[str, float | list[float]]:
    """Chapter 8's scores of a class-conditional generator, from ``n_per_class`` samples of every class.

    - ``class_accuracy``: the share of samples the classifier reads as the class they were drawn for;
    - ``frechet_distance``: all samples against all ``real_images``, as `evaluate_generator` does;
    - ``class_precision`` and ``class_recall``: per class c, the samples of class c against the real
      digits of class c (`precision_recall`), so a generator that draws one good 7 for every 7 scores
      high precision but low recall for class 7: collapse *inside* a class shows here;
    - ``min_class_recall``: the worst class's recall.
    """
    if not is_conditional(G):
        raise TypeError(f"{type(G).__name__} is not conditional; score it with evaluate_generator.")
    n_per_class, seed = (
        check_count(n_per_class, "n_per_class", minimum=4),
        check_count(seed, "seed", minimum=0),
    )
    real_images = check_digit_images(real_images, "real_images")
    if not isinstance(real_labels, torch.Tensor) or real_labels.shape != (len(real_images),):
        raise ValueError(
            f"real_labels must be a tensor of {len(real_images)} class indices, one per real image."
        )
    real_labels = real_labels.cpu()  # the features are on the CPU; the range check runs there
    try:
        check_labels(real_labels, len(real_images), G.n_classes)
    except ValueError as error:
        raise ValueError(f"real_labels: {error}") from None
    counts = torch.bincount(real_labels.long(), minlength=G.n_classes)
    if counts.min() < 4:  # per-class precision and recall compare each point with its 3rd neighbour
        raise ValueError(
            f"real_labels has {int(counts.min())} image(s) of class {int(counts.argmin())}; per-class "
            "recall needs at least 4 real digits of every class."
        )
    classifier = classifier if classifier is not None else load_classifier()
    labels = balanced_labels(G.n_classes * n_per_class, G.n_classes)  # as `sample`: the same samples as
    # evaluate_generator for the same n and seed
    z = torch.randn(len(labels), G.latent_dim, generator=torch.Generator().manual_seed(seed))
    fake = digit_features(sample(G, z, labels=labels), classifier)
    real = digit_features(real_images, classifier)
    per_class = [
        precision_recall(real.features[real_labels == c], fake.features[labels == c])
        for c in range(G.n_classes)
    ]
    recalls = [scores["recall"] for scores in per_class]
    return {
        "class_accuracy": (fake.probabilities.argmax(1) == labels).double().mean().item(),
        "frechet_distance": frechet_distance(real.features, fake.features),
        "class_precision": [scores["precision"] for scores in per_class],
        "class_recall": recalls,
        "min_class_recall": min(recalls),
    }
