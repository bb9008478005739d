import math

import pytest
import torch

from gan_utils import data, metrics


@pytest.mark.parametrize("mixture", [data.ring(), data.grid()], ids=["ring", "grid"])
def test_true_samples_capture_every_mode_with_high_quality(mixture):
    samples = mixture.sample(2500, generator=torch.Generator().manual_seed(0))
    result = metrics.toy_mode_metrics(samples, mixture)
    assert result["modes"] == mixture.n_modes
    # within 3 sigma in 2D: 1 - exp(-9/2) = 98.89 %
    assert abs(result["high_quality"] - 100 * (1 - math.exp(-4.5))) < 0.7
    assert result["kl"] < 0.02 if mixture.n_modes == 8 else result["kl"] < 0.05


@pytest.mark.parametrize("mixture", [data.ring(), data.grid()], ids=["ring", "grid"])
def test_collapsed_sampler_captures_one_mode_with_maximal_kl(mixture):
    collapsed = mixture.means[3] + mixture.sigma * torch.randn(
        2500, 2, generator=torch.Generator().manual_seed(1)
    )
    result = metrics.toy_mode_metrics(collapsed, mixture)
    assert result["modes"] == 1
    assert abs(result["kl"] - math.log(mixture.n_modes)) < 1e-9
    assert result["high_quality"] > 95


@pytest.mark.parametrize("mixture", [data.ring(), data.grid()], ids=["ring", "grid"])
def test_points_far_from_every_mode_are_never_high_quality(mixture):
    # midpoints between neighbouring modes are > 3 sigma from both
    far = (mixture.means[:-1] + mixture.means[1:]) / 2 + 0.25
    result = metrics.toy_mode_metrics(far.repeat(10, 1), mixture)
    assert result["high_quality"] == 0.0 and result["modes"] == 0 and result["kl"] == math.inf


def test_kl_of_a_known_histogram():
    ring = data.ring()
    # 3 samples exactly at mode 0, 1 at mode 1: h = (3/4, 1/4, 0, ...), KL = sum h log(8 h)
    samples = torch.cat([ring.means[0:1].repeat(3, 1), ring.means[1:2]])
    expected = 0.75 * math.log(8 * 0.75) + 0.25 * math.log(8 * 0.25)
    result = metrics.toy_mode_metrics(samples, ring)
    assert abs(result["kl"] - expected) < 1e-9 and result["modes"] == 2


def test_bad_samples_give_clear_errors():
    with pytest.raises(ValueError, match=r"shape \[n, 2\]"):
        metrics.toy_mode_metrics(torch.zeros(10, 3), data.ring())
    with pytest.raises(ValueError, match="NaN or inf"):
        metrics.toy_mode_metrics(torch.full((4, 2), float("nan")), data.ring())


def test_metric_arguments_that_would_fail_inside_python_or_torch_get_one_line_errors():
    features = torch.randn(20, 4)
    for call in (lambda: metrics.precision_recall(features, features, block=0),
                 lambda: metrics.density_coverage(features, features, block=0),
                 lambda: metrics.kth_neighbour_radius(features, 3, block=0)):  # fmt: skip
        with pytest.raises(ValueError, match=r"block must be a positive integer \(1, 2, 3, ...\), got 0"):
            call()
    with pytest.raises(ValueError, match="non-negative fractions that sum to 1"):
        metrics.class_kl(torch.full((10,), float("nan")))
    expected = r"a GaussianMixture2D such as gan_utils.data.ring\(\) or grid\(\), got str"
    with pytest.raises(TypeError, match=expected):
        metrics.toy_mode_metrics(torch.zeros(5, 2), "ring")


def test_recognisable_digits_and_toy_metrics_refuse_what_they_would_score_wrongly():
    logits = torch.randn(20, 10, generator=torch.Generator().manual_seed(0)) * 5
    with pytest.raises(ValueError, match=r"logits become probabilities with logits.softmax\(dim=1\)"):
        metrics.recognisable_digits(logits)
    probabilities = logits.softmax(dim=1)
    confident = (probabilities.max(dim=1).values >= 0.9).float().mean().item()
    assert 0 < confident < 1  # this draw has both kinds, so the check below can fail
    scored = metrics.recognisable_digits(probabilities, confidence=0.9)
    assert scored["recognisable"] == pytest.approx(confident)
    with pytest.raises(ValueError, match="n_sigma must be a positive"):
        metrics.toy_mode_metrics(torch.zeros(5, 2), data.ring(), n_sigma=-1)
