"""GAN losses as pure functions of discriminator logits.

One label convention throughout: real = 1, fake = 0. A logit ``l`` means D(x) = sigmoid(l). Every
loss is something to *minimise*, averaged over the batch, and is computed from logits with
``softplus`` so that it stays finite when D is very confident:

    -log sigmoid(l)     = softplus(-l)
    -log(1 - sigmoid(l)) = softplus(l)

Papers:
    Goodfellow et al. (2014), Generative Adversarial Nets: minimax, saturating, non-saturating.
    Lim & Ye (2017), Geometric GAN; Miyato et al. (2018): hinge.
    Arjovsky et al. (2017), Wasserstein GAN: critic and generator losses.
    Gulrajani et al. (2017), Improved Training of Wasserstein GANs: gradient penalty.
    Mescheder et al. (2018), Which Training Methods for GANs do actually Converge?: R1.
    Mao et al. (2017), Least Squares Generative Adversarial Networks: least squares (CycleGAN's loss).

Introduced in chapter 1 (the objective).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def _check_logits(logits: torch.Tensor, name: str) -> None:
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of logits, got {type(logits).__name__}.")
    if logits.ndim != 1 or logits.numel() == 0:
        raise ValueError(
            f"{name} must have shape [n] (one logit per sample, n >= 1), got {tuple(logits.shape)}; "
            "a discriminator returning [n, 1] should end with .view(-1)."
        )
    if not logits.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {logits.dtype}.")


def _check_pair(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> None:
    _check_logits(real_logits, "real_logits")
    _check_logits(fake_logits, "fake_logits")
    if real_logits.shape != fake_logits.shape:
        raise ValueError(
            f"real_logits {tuple(real_logits.shape)} and fake_logits {tuple(fake_logits.shape)} differ "
            "in size; score one batch of real and one batch of fake samples of the same size."
        )


def minimax_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The discriminator's side of the minimax game, as a loss to minimise.

    L_D = -E_x[log D(x)] - E_z[log(1 - D(G(z)))]
        = mean(softplus(-real_logits)) + mean(softplus(fake_logits))

    This is -V(D, G) of Goodfellow et al. (2014), eq. 1: minimising it maximises V over D. It equals
    binary cross-entropy with labels real = 1 and fake = 0.

    Args:
        real_logits: D's logits on real samples, shape [n].
        fake_logits: D's logits on generated samples, shape [n].

    Returns:
        A scalar tensor.
    """
    _check_pair(real_logits, fake_logits)
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def saturating_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """The generator's side of the minimax game: minimise E_z[log(1 - D(G(z)))].

    L_G = E_z[log(1 - D(G(z)))] = -mean(softplus(fake_logits))

    Goodfellow et al. (2014), eq. 1. Its gradient with respect to a fake logit is -D(G(z)) / n, so it
    vanishes exactly when D confidently rejects the fakes (D(G(z)) -> 0): the loss "saturates".

    Args:
        fake_logits: D's logits on generated samples, shape [n].

    Returns:
        A scalar tensor (at most 0).
    """
    _check_logits(fake_logits, "fake_logits")
    return -F.softplus(fake_logits).mean()


def non_saturating_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """The non-saturating generator loss: maximise E_z[log D(G(z))], i.e. minimise its negative.

    L_G = -E_z[log D(G(z))] = mean(softplus(-fake_logits))

    Goodfellow et al. (2014), section 3. Same fixed point as the saturating loss, but its gradient with
    respect to a fake logit is -(1 - D(G(z))) / n: largest when D rejects the fakes. It is binary
    cross-entropy of the fakes against the *real* label.

    Args:
        fake_logits: D's logits on generated samples, shape [n].

    Returns:
        A scalar tensor (at least 0).
    """
    _check_logits(fake_logits, "fake_logits")
    return F.softplus(-fake_logits).mean()


def hinge_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Hinge loss for the discriminator.

    L_D = E_x[max(0, 1 - D(x))] + E_z[max(0, 1 + D(G(z)))],  with D the raw logit here.

    Lim & Ye (2017); used with spectral normalisation by Miyato et al. (2018).

    Args:
        real_logits: D's logits on real samples, shape [n].
        fake_logits: D's logits on generated samples, shape [n].

    Returns:
        A scalar tensor (at least 0).
    """
    _check_pair(real_logits, fake_logits)
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def hinge_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Hinge loss for the generator: L_G = -E_z[D(G(z))] (Lim & Ye, 2017; Miyato et al., 2018).

    Args:
        fake_logits: D's logits on generated samples, shape [n].

    Returns:
        A scalar tensor.
    """
    _check_logits(fake_logits, "fake_logits")
    return -fake_logits.mean()


def wasserstein_critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """The WGAN critic loss: L_C = E_z[f(G(z))] - E_x[f(x)].

    Arjovsky et al. (2017), eq. 3: the critic f maximises E[f(x)] - E[f(G(z))], whose supremum over
    1-Lipschitz f is the Wasserstein-1 distance. The scores are unbounded reals, not probabilities.

    Args:
        real_scores: critic outputs on real samples, shape [n].
        fake_scores: critic outputs on generated samples, shape [n].

    Returns:
        A scalar tensor.
    """
    _check_pair(real_scores, fake_scores)
    return fake_scores.mean() - real_scores.mean()


def wasserstein_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """The WGAN generator loss: L_G = -E_z[f(G(z))] (Arjovsky et al., 2017).

    Args:
        fake_scores: critic outputs on generated samples, shape [n].

    Returns:
        A scalar tensor.
    """
    _check_logits(fake_scores, "fake_scores")
    return -fake_scores.mean()


def least_squares_discriminator_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """The LSGAN discriminator loss: L_D = 1/2 E_x[(D(x) - 1)^2] + 1/2 E_z[D(G(z))^2].

    Mao et al. (2017) with targets a = 0 (fake), b = 1 (real); CycleGAN (Zhu et al., 2017) trains
    with it. The scores are raw outputs, not passed through a sigmoid.

    Args:
        real_scores: D's outputs on real samples, shape [n].
        fake_scores: D's outputs on generated samples, shape [n].

    Returns:
        A scalar tensor.
    """
    _check_pair(real_scores, fake_scores)
    return 0.5 * ((real_scores - 1).square().mean() + fake_scores.square().mean())


def least_squares_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """The LSGAN generator loss: L_G = 1/2 E_z[(D(G(z)) - 1)^2] (Mao et al., 2017, target c = 1).

    Args:
        fake_scores: D's outputs on generated samples, shape [n].

    Returns:
        A scalar tensor.
    """
    _check_logits(fake_scores, "fake_scores")
    return 0.5 * (fake_scores - 1).square().mean()


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    x_real: torch.Tensor,
    x_fake: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The WGAN-GP penalty: E[(||grad f(x_hat)||_2 - 1)^2] on random interpolates x_hat.

    x_hat = alpha * x_real + (1 - alpha) * x_fake, with alpha ~ U[0, 1] drawn once *per sample* (not
    per pixel). Gulrajani et al. (2017), Algorithm 1, add it to the critic loss with weight
    lambda = 10; this function returns the penalty without the weight.

    Args:
        critic: maps a batch [n, ...] to scores [n].
        x_real: real samples, shape [n, ...].
        x_fake: generated samples of the same shape (detached from G's graph or not).
        generator: optional random generator for alpha, for reproducibility.

    Returns:
        A scalar tensor, differentiable with respect to the critic's parameters.
    """
    if x_real.shape != x_fake.shape:
        raise ValueError(
            f"x_real {tuple(x_real.shape)} and x_fake {tuple(x_fake.shape)} must have the same shape "
            "to be interpolated."
        )
    n = x_real.shape[0]
    alpha_shape = (n,) + (1,) * (x_real.ndim - 1)
    alpha = torch.rand(alpha_shape, generator=generator).to(x_real.device, x_real.dtype)
    x_hat = (alpha * x_real.detach() + (1 - alpha) * x_fake.detach()).requires_grad_(True)
    scores = critic(x_hat)
    _check_logits(scores, "critic(x_hat)")
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    grad_norm = grad.reshape(grad.shape[0], -1).norm(2, dim=1)  # (n,)
    return (grad_norm - 1.0).pow(2).mean()


def r1_penalty(real_logits: torch.Tensor, x_real: torch.Tensor, gamma: float) -> torch.Tensor:
    """The R1 regulariser: (gamma / 2) * E_x[||grad_x D(x)||^2] on real data only.

    Mescheder et al. (2018), eq. 9. Here D(x) is the logit, as in the paper's implementation. For a
    linear D(x) = w.x + b the gradient is w everywhere, so R1 = (gamma / 2) * ||w||^2.

    Args:
        real_logits: D's logits on ``x_real``, shape [n], computed with ``x_real.requires_grad_(True)``.
        x_real: the real batch the logits were computed from.
        gamma: the regularisation weight (the paper uses 10 for most image experiments).

    Returns:
        A scalar tensor, differentiable with respect to D's parameters.
    """
    _check_logits(real_logits, "real_logits")
    if not x_real.requires_grad:
        raise ValueError(
            "r1_penalty needs the gradient of D with respect to x_real: call "
            "x_real.requires_grad_(True) before computing real_logits = D(x_real)."
        )
    if real_logits.shape[0] != x_real.shape[0]:
        raise ValueError(
            f"real_logits has {real_logits.shape[0]} entries but x_real has {x_real.shape[0]} samples."
        )
    (grad,) = torch.autograd.grad(real_logits.sum(), x_real, create_graph=True)
    return 0.5 * gamma * grad.reshape(grad.shape[0], -1).pow(2).sum(dim=1).mean()
