import pytest
import torch

from gan_utils import models


def test_mlp_generator_follows_the_contract():
    G = models.MLPGenerator(latent_dim=8, sample_shape=(1, 28, 28), hidden=(32,), output="tanh")
    images = G(torch.randn(5, 8))
    assert G.latent_dim == 8 and images.shape == (5, 1, 28, 28)
    assert images.min() >= -1 and images.max() <= 1


def test_mlp_discriminator_returns_one_logit_per_sample():
    D = models.MLPDiscriminator((1, 28, 28), hidden=(32,))
    assert D(torch.randn(5, 1, 28, 28)).shape == (5,)


def test_latent_dim_mismatch_gives_a_clear_error():
    G = models.MLPGenerator(latent_dim=2, sample_shape=(2,))
    with pytest.raises(ValueError, match=r"z of shape \[n, 2\].*torch.randn\(n, G.latent_dim\)"):
        G(torch.randn(4, 3))


def test_wrong_sample_shape_gives_a_clear_error():
    D = models.MLPDiscriminator((2,))
    with pytest.raises(ValueError, match=r"samples of shape \[n, 2\], got \(4, 3\)"):
        D(torch.randn(4, 3))
