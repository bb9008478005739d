"""Every loss against numbers computed by hand with math.log, with two-sided tolerances."""

import math

import pytest
import torch

from gan_utils import losses


def softplus(v: float) -> float:
    return math.log1p(math.exp(v))


REAL = torch.tensor([0.0, 2.0])
FAKE = torch.tensor([0.0, -1.0])


def close(tensor: torch.Tensor, expected: float, tol: float = 1e-6) -> bool:
    return abs(tensor.item() - expected) < tol


def test_minimax_discriminator_loss_by_hand():
    # -log sigmoid(0) = log 2, -log sigmoid(2) = log(1 + e^-2); -log(1 - sigmoid(l)) = log(1 + e^l)
    real_part = (math.log(2) + math.log(1 + math.exp(-2))) / 2
    fake_part = (math.log(2) + math.log(1 + math.exp(-1))) / 2
    assert close(losses.minimax_discriminator_loss(REAL, FAKE), real_part + fake_part)


def test_minimax_discriminator_loss_is_binary_cross_entropy_with_real_label_one():
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    expected = bce(REAL, torch.ones(2)) + bce(FAKE, torch.zeros(2))
    assert close(losses.minimax_discriminator_loss(REAL, FAKE), expected.item())


def test_generator_losses_by_hand():
    # saturating: mean log(1 - D) = -mean softplus(l); non-saturating: -mean log D = mean softplus(-l)
    assert close(losses.saturating_generator_loss(FAKE), -(softplus(0) + softplus(-1)) / 2)
    assert close(losses.non_saturating_generator_loss(FAKE), (softplus(0) + softplus(1)) / 2)


def test_generator_losses_differ():
    saturating = losses.saturating_generator_loss(FAKE)
    non_saturating = losses.non_saturating_generator_loss(FAKE)
    assert abs(saturating.item() - non_saturating.item()) > 0.5
    # and not merely by a constant: their difference changes with the logits
    other = torch.tensor([3.0, -4.0])
    gap_1 = (saturating - non_saturating).item()
    gap_2 = (losses.saturating_generator_loss(other) - losses.non_saturating_generator_loss(other)).item()
    assert abs(gap_1 - gap_2) > 0.5


def _logit_gradient(loss_fn, d_of_fake: float) -> float:
    logit = torch.tensor([math.log(d_of_fake / (1 - d_of_fake))], requires_grad=True)
    loss_fn(logit).backward()
    return logit.grad.item()


@pytest.mark.parametrize(
    ("d_of_fake", "saturating_grad", "non_saturating_grad"),
    [(0.01, -0.01, -0.99), (0.99, -0.99, -0.01)],
)
def test_generator_gradients_have_the_claimed_sign_and_size(d_of_fake, saturating_grad, non_saturating_grad):
    # d/dl log(1 - sigmoid(l)) = -sigmoid(l);  d/dl -log sigmoid(l) = -(1 - sigmoid(l)).
    # Both are negative: a descent step raises the fake logit. Only the size differs.
    assert abs(_logit_gradient(losses.saturating_generator_loss, d_of_fake) - saturating_grad) < 1e-6
    assert abs(_logit_gradient(losses.non_saturating_generator_loss, d_of_fake) - non_saturating_grad) < 1e-6


def test_hinge_losses_by_hand():
    real, fake = torch.tensor([0.5, 2.0]), torch.tensor([-0.5, 3.0])
    # real: max(0, 0.5) = 0.5, max(0, -1) = 0 -> 0.25; fake: max(0, 0.5) = 0.5, max(0, 4) = 4 -> 2.25
    assert close(losses.hinge_discriminator_loss(real, fake), 2.5)
    assert close(losses.hinge_generator_loss(fake), -1.25)


def test_wasserstein_losses_by_hand():
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([-1.0, 0.5])
    assert close(losses.wasserstein_critic_loss(real, fake), -0.25 - 2.0)
    assert close(losses.wasserstein_generator_loss(fake), 0.25)


def _linear_critic(weight: torch.Tensor):
    return lambda x: x.flatten(start_dim=1) @ weight


def test_gradient_penalty_is_zero_for_a_unit_gradient_linear_critic():
    weight = torch.tensor([0.6, 0.8, 0.0, 0.0])  # norm 1
    x_real, x_fake = torch.randn(16, 1, 2, 2), torch.randn(16, 1, 2, 2)
    assert close(losses.gradient_penalty(_linear_critic(weight), x_real, x_fake), 0.0, tol=1e-10)


def test_gradient_penalty_is_positive_otherwise():
    weight = torch.tensor([1.2, 1.6, 0.0, 0.0])  # norm 2 -> (2 - 1)^2 = 1 at every interpolate
    x_real, x_fake = torch.randn(16, 4), torch.randn(16, 4)
    assert close(losses.gradient_penalty(_linear_critic(weight), x_real, x_fake), 1.0, tol=1e-5)
    quadratic = lambda x: x.pow(2).sum(dim=1)  # noqa: E731
    assert losses.gradient_penalty(quadratic, x_real, x_fake).item() > 0.1


def test_gradient_penalty_draws_alpha_once_per_sample():
    seen = {}

    def recording_critic(x_hat):
        seen["x_hat"] = x_hat.detach()
        return x_hat.flatten(start_dim=1).sum(dim=1)

    x_real = torch.randn(8, 3, 4, 4)
    x_fake = torch.randn(8, 3, 4, 4)
    losses.gradient_penalty(recording_critic, x_real, x_fake, generator=torch.Generator().manual_seed(0))
    alpha = ((seen["x_hat"] - x_fake) / (x_real - x_fake)).flatten(start_dim=1)  # (n, pixels)
    assert (alpha.max(dim=1).values - alpha.min(dim=1).values).max() < 1e-4, "alpha varies within a sample"
    assert alpha[:, 0].std() > 0.05, "alpha should differ between samples"
    assert alpha.min() >= 0 and alpha.max() <= 1


def test_gradient_penalty_rejects_mismatched_batches():
    with pytest.raises(ValueError, match="same shape"):
        losses.gradient_penalty(lambda x: x.sum(dim=1), torch.zeros(4, 2), torch.zeros(5, 2))


def test_r1_of_a_linear_discriminator_is_half_gamma_times_squared_weight_norm():
    weight, bias = torch.tensor([1.0, -2.0, 0.5]), 0.3
    x_real = torch.randn(10, 3).requires_grad_(True)
    real_logits = x_real @ weight + bias
    expected = 0.5 * 10.0 * weight.pow(2).sum().item()  # (gamma / 2) * ||w||^2 = 5 * 5.25
    assert close(losses.r1_penalty(real_logits, x_real, gamma=10.0), expected, tol=1e-4)


def test_r1_explains_missing_requires_grad():
    x_real = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"requires_grad_\(True\)"):
        losses.r1_penalty(x_real.sum(dim=1), x_real, gamma=1.0)


@pytest.mark.parametrize(
    "loss_fn",
    [losses.minimax_discriminator_loss, losses.hinge_discriminator_loss, losses.wasserstein_critic_loss],
)
def test_pair_losses_reject_mismatched_or_badly_shaped_logits(loss_fn):
    with pytest.raises(ValueError, match="differ in size"):
        loss_fn(torch.zeros(4), torch.zeros(5))
    with pytest.raises(ValueError, match=r"shape \[n\].*view\(-1\)"):
        loss_fn(torch.zeros(4, 1), torch.zeros(4, 1))


@pytest.mark.parametrize(
    "loss_fn",
    [
        losses.saturating_generator_loss,
        losses.non_saturating_generator_loss,
        losses.hinge_generator_loss,
        losses.wasserstein_generator_loss,
    ],
)
def test_generator_losses_reject_bad_logits(loss_fn):
    with pytest.raises(ValueError, match=r"shape \[n\]"):
        loss_fn(torch.zeros(4, 1))
    with pytest.raises(ValueError, match=r"shape \[n\]"):
        loss_fn(torch.zeros(0))
    with pytest.raises(TypeError, match="floating-point"):
        loss_fn(torch.zeros(4, dtype=torch.long))
    with pytest.raises(TypeError, match="torch.Tensor"):
        loss_fn([0.0, 1.0])


def test_losses_stay_finite_for_confident_logits():
    huge = torch.tensor([100.0, -100.0])
    for value in (
        losses.minimax_discriminator_loss(huge, huge),
        losses.saturating_generator_loss(huge),
        losses.non_saturating_generator_loss(huge),
    ):
        assert torch.isfinite(value)


def test_r1_accepts_one_dimensional_samples():
    # the Dirac-GAN of chapter 2: scalar samples of shape [n], D(x) = psi * x
    psi = torch.tensor([1.5])
    x_real = torch.zeros(3).requires_grad_(True)
    assert close(losses.r1_penalty(psi * x_real, x_real, gamma=2.0), 1.5**2, tol=1e-6)
