"""Metrics. The toy part follows the protocol of VEEGAN (Srivastava et al., 2017) and PacGAN (Lin
et al., 2018), so our numbers sit beside their tables:

- a sample is *high quality* when it lies within 3 standard deviations of its nearest mode;
- a mode is *captured* when at least one high-quality sample is nearest to it;
- KL is KL(h || uniform), where h is the histogram of the high-quality samples over the modes
  (as in PacGAN's released evaluation code);
- all on 2,500 generated samples.

Introduced in chapter 2.
"""

from __future__ import annotations

import math

import torch

from gan_utils.data import GaussianMixture2D

TOY_EVAL_SAMPLES = 2500


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
    if n_high == 0:
        kl = math.inf
    else:
        h = counts / n_high
        nonzero = h > 0
        kl = (h[nonzero] * torch.log(h[nonzero] * mixture.n_modes)).sum().item()
    return {
        "modes": int((counts > 0).sum().item()),
        "high_quality": 100.0 * n_high / samples.shape[0],
        "kl": kl,
    }
