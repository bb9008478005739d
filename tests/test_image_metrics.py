import math

import pytest
import torch

from gan_utils import classifier, data, metrics, pretrained, recipes


def gaussian(n, d=8, seed=0, shift=0.0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed)) + shift


# ---------------------------------------------------------------- Fréchet distance


def test_frechet_distance_of_a_set_with_itself_is_zero():
    a = gaussian(500)
    assert metrics.frechet_distance(a, a) < 1e-8


@pytest.mark.parametrize("shift", [0.5, 1.0, 2.0])
def test_frechet_distance_of_a_shifted_copy_is_the_squared_shift(shift):
    a = gaussian(500)
    moved = a.clone()
    moved[:, 0] += shift  # same covariance, means differ by `shift` along one axis
    assert metrics.frechet_distance(a, moved) == pytest.approx(shift**2, rel=1e-6)


def test_frechet_distance_of_a_scaled_copy_matches_the_closed_form():
    # b = s a: S_b = s^2 S_a, (S_a S_b)^(1/2) = s S_a, so FD = (1 - s)^2 (|mu_a|^2 + Tr S_a)
    a = gaussian(400, d=5, shift=0.3)
    s = 1.7
    expected = (1 - s) ** 2 * (a.double().mean(0).square().sum() + torch.cov(a.double().T).trace())
    assert metrics.frechet_distance(a, s * a) == pytest.approx(expected.item(), rel=1e-6)


def test_frechet_distance_grows_as_one_set_moves_away():
    a, b = gaussian(1000, seed=0), gaussian(1000, seed=1)
    distances = [metrics.frechet_distance(a, b + shift) for shift in (0.0, 0.25, 0.5, 1.0)]
    assert distances == sorted(distances) and distances[0] < 0.2 < distances[-1]


# ---------------------------------------------------------------- precision and recall


def brute_force_precision_recall(real, fake, k):
    """The definition, one point at a time, with no blocks."""

    def radius(points, i):
        others = torch.cat([points[:i], points[i + 1 :]])
        return (others - points[i]).norm(dim=1).sort().values[k - 1]

    def inside(x, points, radii):
        return any((x - p).norm() <= r for p, r in zip(points, radii, strict=True))

    real_radii = [radius(real, i) for i in range(len(real))]
    fake_radii = [radius(fake, i) for i in range(len(fake))]
    precision = sum(inside(y, real, real_radii) for y in fake) / len(fake)
    recall = sum(inside(x, fake, fake_radii) for x in real) / len(real)
    return precision, recall


def test_precision_recall_matches_the_definition_computed_point_by_point():
    real, fake = gaussian(60, d=3, seed=2), gaussian(50, d=3, seed=3, shift=0.5)
    expected = brute_force_precision_recall(real.double(), fake.double(), k=3)
    got = metrics.precision_recall(real, fake, k=3, block=7)  # blocks smaller than the sets
    assert (got["precision"], got["recall"]) == pytest.approx(expected, abs=1e-12)


def test_identical_sets_have_perfect_precision_and_recall():
    a = gaussian(300)
    assert metrics.precision_recall(a, a, k=3) == {"precision": 1.0, "recall": 1.0}


def test_two_samples_of_one_distribution_score_alike_and_high():
    # same distribution: the two directions are exchangeable, so precision and recall agree on
    # average; with k = 3 in 8 dimensions both sit near 0.9 (measured over seeds, not a bound)
    scores = [
        metrics.precision_recall(gaussian(1500, seed=s), gaussian(1500, seed=100 + s)) for s in range(4)
    ]
    precision = sum(s["precision"] for s in scores) / 4
    recall = sum(s["recall"] for s in scores) / 4
    assert abs(precision - recall) < 0.02
    assert 0.8 < precision < 0.98


def test_far_apart_sets_have_zero_precision_and_recall():
    result = metrics.precision_recall(gaussian(200), gaussian(200, seed=1, shift=50.0))
    assert result == {"precision": 0.0, "recall": 0.0}


# ---------------------------------------------------------------- density and coverage


def test_density_is_one_on_average_for_one_distribution():
    # E[density] = 1 exactly when real and fake are drawn alike (Naeem et al., 2020)
    values = [metrics.density_coverage(gaussian(1000, seed=s), gaussian(1000, seed=50 + s))["density"]
              for s in range(5)]  # fmt: skip
    assert sum(values) / len(values) == pytest.approx(1.0, abs=0.05)


def test_coverage_matches_its_closed_form_for_one_distribution():
    n_real, n_fake, k = 1000, 500, 5
    expected = metrics.expected_coverage_same_distribution(n_real, n_fake, k)
    values = [metrics.density_coverage(gaussian(n_real, seed=s), gaussian(n_fake, seed=70 + s), k)["coverage"]
              for s in range(5)]  # fmt: skip
    assert sum(values) / len(values) == pytest.approx(expected, abs=0.015)


@pytest.mark.parametrize(
    ("n_real", "n_fake", "k", "expected"),
    # 1 - (N-1)...(N-k) / ((N+M-1)...(N+M-k)), worked by hand: 1 - 2/4, 1 - (2*1)/(4*3), 1 - 9/14
    [(3, 2, 1, 0.5), (3, 2, 2, 5 / 6), (10, 5, 1, 5 / 14)],
)
def test_expected_coverage_matches_hand_computed_values(n_real, n_fake, k, expected):
    assert metrics.expected_coverage_same_distribution(n_real, n_fake, k) == pytest.approx(
        expected, abs=1e-12
    )


def test_fakes_piled_on_one_real_point_have_low_coverage():
    real = gaussian(500)
    fake = real[:1].repeat(200, 1)
    result = metrics.density_coverage(real, fake)
    assert result["coverage"] <= 6 / 500


# ---------------------------------------------------------------- classes and neighbours


def test_class_kl_is_zero_for_balanced_classes_and_log_c_for_one():
    assert metrics.class_kl(torch.full((10,), 0.1, dtype=torch.float64)) == pytest.approx(0.0, abs=1e-12)
    one_class = torch.zeros(10)
    one_class[3] = 1
    assert metrics.class_kl(one_class) == pytest.approx(math.log(10))


def test_class_histogram_counts_argmax_labels():
    probabilities = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]])
    assert metrics.class_histogram(probabilities).tolist() == [0.75, 0.25]


def test_nearest_neighbours_finds_training_images_exactly():
    images = data.load_mnist(source="bundled").images[:600]
    queries = images[[5, 17, 400]]
    distances, indices = metrics.nearest_neighbours(queries, images, k=2, block=2)
    assert indices[:, 0].tolist() == [5, 17, 400]
    assert distances[:, 0].abs().max() < 1e-3 and (distances[:, 1] > 1).all()


# ---------------------------------------------------------------- the data-copying test (Meehan et al.)


def test_mann_whitney_z_matches_hand_computed_values():
    # every sample farther than every held-out value: U = mn = 4, Z = (4 - 2) / sqrt(4 * 5 / 12)
    assert metrics.mann_whitney_z(torch.tensor([3.0, 4.0]), torch.tensor([1.0, 2.0])) == pytest.approx(
        2 / math.sqrt(5 / 3)
    )
    assert metrics.mann_whitney_z(torch.tensor([1.0, 4.0]), torch.tensor([2.0, 3.0])) == 0  # U = 2 = mn / 2
    assert metrics.mann_whitney_z(torch.tensor([1.0]), torch.tensor([1.0])) == 0  # a tie counts half


def test_mann_whitney_u_agrees_with_the_rank_sum_form():
    samples, held_out = torch.rand(37, generator=torch.Generator().manual_seed(0)), torch.rand(23)
    ranks = torch.cat([samples, held_out]).argsort().argsort() + 1.0  # no ties among random floats
    u = ranks[: len(samples)].sum().item() - len(samples) * (len(samples) + 1) / 2
    m, n = len(samples), len(held_out)
    assert metrics.mann_whitney_z(samples, held_out) == pytest.approx(
        (u - m * n / 2) / math.sqrt(m * n * (m + n + 1) / 12)
    )


def constant_images(values):
    """Images with every pixel equal to one value: two of them lie 28 |a - b| apart."""
    return torch.tensor(values).view(-1, 1, 1, 1).expand(-1, 1, 28, 28).contiguous()


def test_data_copying_test_matches_a_hand_computation_on_two_cells():
    training = constant_images([-0.9, -0.8, 0.8, 0.9])  # k-means with 2 cells splits the signs
    held_out = constant_images([-0.85, -0.7, 0.5])  # distances 1.4, 2.8 | 8.4
    samples = constant_images([-0.9, -0.81, 0.2, 0.3])  # 0 (a copy), 0.28 | 16.8, 14
    result = metrics.data_copying_test(samples, held_out, training, cells=2, min_samples=1)
    # cell of the negatives: U = 0, m = n = 2; cell of the positives: U = 2, m = 2, n = 1
    z_negative, z_positive = -2 / math.sqrt(4 * 5 / 12), 1 / math.sqrt(2 * 4 / 12)
    assert sorted(result.cell_z.tolist()) == pytest.approx([z_negative, z_positive])
    assert result.statistic == pytest.approx(2 / 3 * z_negative + 1 / 3 * z_positive)
    assert result.null_std == pytest.approx(math.sqrt(5) / 3)
    assert result.farther == pytest.approx(1 / 3)
    assert sorted(result.sample_share.tolist()) == [0.5, 0.5]
    # a cell counts from min_samples samples on: 2 keeps both; with 3 neither counts, and the error says so
    both_kept = metrics.data_copying_test(samples, held_out, training, cells=2, min_samples=2)
    assert both_kept.statistic == result.statistic
    with pytest.raises(ValueError, match="no cell holds min_samples=3 of the 4 samples"):
        metrics.data_copying_test(samples, held_out, training, cells=2, min_samples=3)


def test_data_copying_test_measures_distances_to_training_digits_of_the_same_cell():
    training = constant_images([-1.0, -0.9, 0.2, 0.6])  # centres -0.95 and 0.4
    held_out = constant_images([-0.36, 0.5])  # cell of the negatives: 0.54 from -0.9
    samples = constant_images([-0.3])  # cell of the negatives: 0.6 from -0.9, but only 0.5 from 0.2
    result = metrics.data_copying_test(samples, held_out, training, cells=2, min_samples=1)
    # within its cell the sample is the farther of the pair: U = 1 of 1, Z_U = 0.5 / sqrt(3 / 12) = 1;
    # with the nearest training digit of any cell it would be the nearer, and Z_U = -1
    assert result.statistic == pytest.approx(1.0) and result.farther == 1.0
    assert result.cell_z.isnan().sum() == 1  # the other cell holds no sample and is left out


@pytest.fixture(scope="module")
def copying_split():
    digits = data.load_mnist(source="bundled")
    train_index, held_out_index = classifier.stratified_split(digits.labels, held_out_per_class=100, seed=0)
    return digits.images[train_index], digits.images[held_out_index]


def test_data_copying_test_tells_copies_from_new_digits_and_from_noisy_ones(copying_split):
    training, held_out = copying_split
    pick = torch.randperm(len(training), generator=torch.Generator().manual_seed(1))[:1000]
    copies = metrics.data_copying_test(training[pick], held_out, training)
    assert copies.statistic < -5 and copies.farther < 0.01
    half = torch.randperm(len(held_out), generator=torch.Generator().manual_seed(1))
    new_digits = metrics.data_copying_test(held_out[half[:500]], held_out[half[500:]], training)
    assert abs(new_digits.statistic) < 3 * new_digits.null_std and abs(new_digits.farther - 0.5) < 0.05
    noise = 0.5 * torch.randn(held_out.shape, generator=torch.Generator().manual_seed(2))
    noisy = metrics.data_copying_test((held_out + noise).clamp(-1, 1), held_out, training)
    assert noisy.statistic > 5 and noisy.farther > 0.9


def test_data_copying_test_refuses_cells_it_cannot_fill(copying_split):
    training, held_out = copying_split
    with pytest.raises(ValueError, match="cells=20 exceeds the 10 held-out digits"):
        metrics.data_copying_test(held_out[:50], held_out[:10], training)
    with pytest.raises(ValueError, match=r"hold no held-out digits; use fewer cells than 8"):
        metrics.data_copying_test(held_out[:50], held_out[:8], training, cells=8)
    with pytest.raises(ValueError, match=r"samples must have shape \[n, 1, 28, 28\]"):
        metrics.data_copying_test(held_out.view(-1, 784), held_out, training)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (torch.zeros(4, 28, 28), r"shape \[n, 1, 28, 28\].*unsqueeze\(1\)"),
        (torch.zeros(4, 784), r"view\(-1, 1, 28, 28\)"),
        (torch.zeros(4, 3, 32, 32), r"shape \[n, 1, 28, 28\], got \(4, 3, 32, 32\)"),
        (torch.full((4, 1, 28, 28), 255.0), r"must lie in \[-1, 1\]"),
        (torch.zeros(4, 1, 28, 28, dtype=torch.uint8), "dtype torch.uint8"),
        (torch.full((4, 1, 28, 28), float("nan")), "NaN or inf"),
    ],
)
def test_bad_images_give_clear_errors(images, message):
    with pytest.raises(ValueError, match=message):
        metrics.nearest_neighbours(images, torch.zeros(3, 1, 28, 28))


def test_bad_feature_sets_give_clear_errors():
    with pytest.raises(ValueError, match="feature sizes differ: 8 vs 4"):
        metrics.frechet_distance(gaussian(10), gaussian(10, d=4))
    with pytest.raises(ValueError, match=r"2-D tensor \[n, d\]"):
        metrics.precision_recall(torch.zeros(10, 1, 28, 28), gaussian(10))
    with pytest.raises(ValueError, match="at least 4"):
        metrics.precision_recall(gaussian(3), gaussian(10), k=3)


# ---------------------------------------------------------------- with the shipped classifier


@pytest.fixture(scope="module")
def bundled():
    return data.load_mnist(source="bundled")


@pytest.fixture(scope="module")
def real_features(bundled):
    return metrics.digit_features(bundled.images)


def test_regression_snapshot_shipped_classifier_reaches_its_recorded_held_out_accuracy(bundled):
    entry = pretrained.read_manifest()["mnist-classifier"]
    assert (pretrained.WEIGHTS_DIR / entry["file"]).stat().st_size <= 2 * 1024 * 1024
    _, held_out = classifier.stratified_split(bundled.labels, held_out_per_class=100, seed=0)
    model = pretrained.load_pretrained("mnist-classifier")
    accuracy = classifier.accuracy(model, bundled.images[held_out], bundled.labels[held_out])
    assert accuracy >= entry["metrics"]["held_out_accuracy"] - 0.002
    assert accuracy >= 0.96


def test_a_collapsed_generator_has_low_recall_and_a_high_class_kl(bundled, real_features):
    threes = bundled.images[bundled.labels == 3]
    collapsed = metrics.image_metrics(metrics.digit_features(threes), real_features)
    assert collapsed["recall"] < 0.25 and collapsed["coverage"] < 0.2
    assert collapsed["class_kl"] > 0.9 * math.log(10)
    assert collapsed["precision"] > 0.9  # each sample is a fine digit: only the variety is missing


def test_real_digits_against_real_digits_score_as_a_match(bundled, real_features):
    first, second = classifier.stratified_split(bundled.labels, held_out_per_class=250, seed=1)
    a = metrics.DigitFeatures(real_features.features[first], real_features.probabilities[first])
    b = metrics.DigitFeatures(real_features.features[second], real_features.probabilities[second])
    result = metrics.image_metrics(b, a)
    assert result["class_kl"] < 0.01 and result["precision"] > 0.8 and result["recall"] > 0.8
    assert 0.8 < result["density"] < 1.2


@pytest.mark.parametrize(
    "name", ["mlp-mnist", "dcgan-mnist", "dcgan-mnist-wide", "dcgan-mnist-baseline", "cdcgan-mnist"]
)
def test_regression_snapshot_shipped_generators_meet_their_recorded_metrics(name, bundled, real_features):
    recorded = pretrained.read_manifest()[name]["metrics"]
    G = pretrained.load_pretrained(name)
    fake = metrics.digit_features(metrics.sample_images(G, recorded["samples"], seed=recorded["seed"]))
    measured = metrics.image_metrics(fake, real_features)
    assert measured["frechet_distance"] <= recorded["frechet_distance"] * 1.02
    for key in ("precision", "recall", "density", "coverage"):
        assert measured[key] >= recorded[key] - 0.01, key
    assert measured["class_kl"] <= recorded["class_kl"] + 0.005


def test_the_shipped_dcgan_meets_chapter_6_targets_on_its_recorded_samples(bundled, real_features):
    """Issue 15's targets, recomputed on the recording's own 5,000 samples (noise seed 0), so the only
    slack needed is floating-point noise, and checked on 5,000 fresh ones (seed 1) with a margin that
    covers their sampling noise (density and precision move by about 0.01 between seeds here)."""
    G = pretrained.load_pretrained("dcgan-mnist")
    for seed, margin in ((0, 0.0), (1, 0.02)):
        fake = metrics.digit_features(metrics.sample_images(G, metrics.IMAGE_EVAL_SAMPLES, seed=seed))
        scores = metrics.image_metrics(fake, real_features)
        assert scores["frechet_distance"] <= 10, seed
        for key in ("precision", "recall", "density", "coverage"):
            assert scores[key] >= 0.8 - margin, (seed, key)
        shares = metrics.class_histogram(fake.probabilities)
        assert shares.min() >= 0.08 and shares.max() <= 0.12, (seed, shares)
    assert (
        pretrained.WEIGHTS_DIR / pretrained.read_manifest()["dcgan-mnist"]["file"]
    ).stat().st_size <= 5 * 1024**2


def test_the_shipped_dcgan_meets_the_strict_memorisation_goal(bundled):
    """Issue 15: the nearest-training-neighbour distances of dcgan-mnist's samples are not smaller than
    those of held-out real digits (medians of 1,000 each; the benchmark's samples, noise seed 1). The
    50-cluster model it replaced failed this (median 2.9 % nearer); floating-point differences between
    machines move these medians far less than the about 1 % by which the shipped one passes."""
    train_index, held_out = classifier.stratified_split(bundled.labels, held_out_per_class=100, seed=0)
    training_digits = bundled.images[train_index]
    samples = metrics.sample_images(pretrained.load_pretrained("dcgan-mnist"), 1000, seed=1)
    fake_nn, _ = metrics.nearest_neighbours(samples, training_digits)
    real_nn, _ = metrics.nearest_neighbours(bundled.images[held_out], training_digits)
    assert fake_nn[:, 0].median() >= real_nn[:, 0].median()
    within_cells = metrics.data_copying_test(samples, bundled.images[held_out], training_digits)
    assert abs(within_cells.statistic) < 0.5 * within_cells.null_std  # no copying within regions either


def test_regression_snapshot_shipped_cdcgan_meets_its_recorded_class_scores(bundled):
    """The same 500 samples per class as the recording, so the only slack is floating-point noise
    between machines (a sample or two near a decision boundary: 0.005 of accuracy or recall)."""
    recorded = pretrained.read_manifest()["cdcgan-mnist"]["metrics"]
    G = pretrained.load_pretrained("cdcgan-mnist")
    per_class = recorded["samples"] // G.n_classes
    measured = metrics.conditional_metrics(G, bundled.images, bundled.labels, n_per_class=per_class)
    assert measured["class_accuracy"] >= recorded["class_accuracy"] - 0.005
    assert measured["min_class_recall"] >= recorded["min_class_recall"] - 0.005
    for got, expected in zip(measured["class_recall"], recorded["class_recall"], strict=True):
        assert got >= expected - 0.005


def test_conditional_metrics_score_a_generator_that_draws_the_wrong_class(bundled):
    class Shifted(torch.nn.Module):  # asked for class c, it returns a real digit of class c + 1
        latent_dim, n_classes = 4, 10

        def forward(self, z, y):
            pools = [bundled.images[bundled.labels == (c + 1) % 10] for c in range(10)]
            return torch.stack([pools[int(c)][i % len(pools[int(c)])] for i, c in enumerate(y)])

    scores = metrics.conditional_metrics(Shifted(), bundled.images, bundled.labels, n_per_class=50)
    assert scores["class_accuracy"] < 0.05  # real digits, but never the class asked for
    assert scores["frechet_distance"] < 10  # as a whole the set looks like MNIST
    with pytest.raises(TypeError, match="not conditional"):
        metrics.conditional_metrics(pretrained.load_pretrained("dcgan-mnist"), bundled.images, bundled.labels)


def test_recognisable_digits_counts_confident_samples_and_the_rarest_class():
    probabilities = torch.full((6, 10), 0.1)  # rows 4 and 5: unsure, uniform
    for row, digit in ((0, 1), (1, 1), (2, 2)):  # confident: 1, 1, 2
        probabilities[row] = 0.01
        probabilities[row, digit] = 0.91
    probabilities[3] = 0.5 / 9
    probabilities[3, 3] = 0.5  # unsure
    result = metrics.recognisable_digits(probabilities, confidence=0.9)
    assert result["recognisable"] == pytest.approx(3 / 6)
    assert result["smallest_class"] == 0.0  # eight digits never drawn confidently
    balanced = torch.eye(10).repeat(3, 1)
    assert metrics.recognisable_digits(balanced) == {
        "recognisable": 1.0,
        "smallest_class": pytest.approx(0.1),
    }


@pytest.mark.parametrize("name", ["mlp-mnist", "dcgan-mnist", "dcgan-mnist-wide", "cdcgan-mnist"])
def test_shipped_generators_do_not_copy_their_training_digits(name, bundled):
    """Chapter 6's memorisation check: all four were trained without the 1,000 held-out digits, so their
    samples must not sit much closer to the training digits than those unseen real digits do."""
    entry = pretrained.read_manifest()[name]
    held_out_per_class = recipes.preset(entry["preset"], **entry["overrides"]).held_out_per_class
    assert held_out_per_class == 100 and "1000 held out" in entry["data_source"]
    train_index, held_out = classifier.stratified_split(bundled.labels, held_out_per_class=100, seed=0)
    training_digits = bundled.images[train_index]
    real_nn, _ = metrics.nearest_neighbours(bundled.images[held_out], training_digits)
    samples = metrics.sample_images(pretrained.load_pretrained(name), 1000, seed=3)
    fake_nn, _ = metrics.nearest_neighbours(samples, training_digits)
    # medians of 1,000 distances each; a copying generator would sit far below (distance 0 for copies)
    assert fake_nn[:, 0].median() >= 0.95 * real_nn[:, 0].median()
    assert fake_nn[:, 0].min() > 0.5 * real_nn[:, 0].min()
    # within regions (chapter 5): a guard against gross copying, which scores 0 here (on chapter 6's samples
    # 0.50 for the shipped dcgan-mnist, 0.46 for the 50-cluster one it replaced, 0.58 for dcgan-mnist-wide)
    assert metrics.data_copying_test(samples, bundled.images[held_out], training_digits).farther > 0.4


def test_latent_noise_without_truncation_is_the_seeded_normal_every_recorded_metric_used():
    expected = torch.randn(50, 64, generator=torch.Generator().manual_seed(4))
    assert torch.equal(metrics.latent_noise(50, 64, seed=4), expected)


@pytest.mark.parametrize("t", [0.1, 0.5, 1.0, 2.0])
def test_truncated_noise_stays_inside_t_with_the_variance_of_a_truncated_normal(t):
    z = metrics.latent_noise(20_000, 8, seed=0, truncation=t)
    assert z.abs().max() <= t
    # Var of N(0, 1) restricted to [-t, t]: 1 - 2 t phi(t) / (2 Phi(t) - 1). A clamp or a rescaling differs.
    phi, mass = math.exp(-t * t / 2) / math.sqrt(2 * math.pi), math.erf(t / math.sqrt(2))
    assert z.var().item() == pytest.approx(1 - 2 * t * phi / mass, rel=0.02)
    assert z.mean().item() == pytest.approx(0.0, abs=0.01)


@pytest.mark.parametrize("t", [0.1, 0.5, 1.5])
def test_truncation_redraws_only_the_coordinates_outside_t(t):
    """Brock et al.'s resampling, whatever the torch version: an untruncated code's coordinates that
    already lie inside [-t, t] are kept (inverting the CDF, as older torch releases do, keeps none)."""
    plain = metrics.latent_noise(300, 16, seed=5)
    truncated = metrics.latent_noise(300, 16, seed=5, truncation=t)
    inside = plain.abs() <= t
    assert 0 < inside.sum() < inside.numel() and torch.equal(truncated[inside], plain[inside])
    assert not torch.isin(truncated[~inside], plain).any()  # the others are new draws


@pytest.mark.skipif(not torch.__version__.startswith("2.14."), reason="compares with torch 2.14's sampler")
def test_truncated_noise_equals_the_pinned_torchs_trunc_normal_where_it_resamples():
    """Above t = 0.39 (over 30 % of the mass inside) torch 2.14.1's trunc_normal_ redraws the same way,
    so every truncated code the book printed with it is unchanged."""
    for t in (0.5, 1.0, 2.0):
        reference = torch.nn.init.trunc_normal_(
            torch.empty(400, 64), 0.0, 1.0, -t, t, generator=torch.Generator().manual_seed(1)
        )
        assert torch.equal(metrics.latent_noise(400, 64, seed=1, truncation=t), reference)


def test_sample_images_passes_the_truncation_to_the_codes():
    G = pretrained.load_pretrained("dcgan-mnist")
    codes = metrics.latent_noise(6, G.latent_dim, seed=3, truncation=1.0)
    assert torch.equal(metrics.sample_images(G, 6, seed=3, truncation=1.0), G.eval()(codes).detach())


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), "1", True])
def test_a_bad_truncation_is_refused_with_the_fix(bad):
    with pytest.raises(ValueError, match="truncation must be a positive number"):
        metrics.latent_noise(4, 8, truncation=bad)


@pytest.mark.parametrize("tiny", [0.049, 1e-46])
def test_a_truncation_too_small_to_redraw_in_time_is_refused(tiny):
    with pytest.raises(ValueError, match=r"below 0\.05.*Use t >= 0\.05"):
        metrics.latent_noise(4, 8, truncation=tiny)
    assert metrics.latent_noise(4, 8, truncation=0.05).abs().max() <= 0.05
