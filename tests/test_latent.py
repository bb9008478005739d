import math

import pytest
import torch
from torch import nn

from gan_utils import latent, models


class LinearImageGenerator(nn.Module):
    """G(z) = tanh-free linear map to a 1 x 2 x 3 image: its Jacobian is the matrix A everywhere."""

    def __init__(self, A):
        super().__init__()
        self.latent_dim = A.shape[1]
        self.A = nn.Parameter(A)

    def forward(self, z):
        return (z @ self.A.T).view(-1, 1, 2, 3)


def test_lerp_and_slerp_hit_both_endpoints():
    z0, z1 = torch.randn(16), torch.randn(16)
    for interpolate in (latent.lerp, latent.slerp):
        path = interpolate(z0, z1, torch.tensor([0.0, 1.0]))
        assert torch.allclose(path[0], z0, atol=1e-5) and torch.allclose(path[1], z1, atol=1e-5)


def test_slerp_keeps_the_norm_of_equal_norm_endpoints_and_lerp_does_not():
    z0 = torch.randn(64, generator=torch.Generator().manual_seed(0))
    z1 = torch.randn(64, generator=torch.Generator().manual_seed(1))
    z1 = z1 * z0.norm() / z1.norm()
    t = torch.linspace(0, 1, 11)
    assert torch.allclose(latent.slerp(z0, z1, t).norm(dim=1), z0.norm().expand(11), rtol=1e-5)
    assert latent.lerp(z0, z1, t)[5].norm() < 0.9 * z0.norm()  # the chord dips inside the sphere


def test_slerp_of_parallel_vectors_falls_back_to_lerp():
    z = torch.randn(8)
    assert torch.allclose(latent.slerp(z, 2 * z, 0.5), latent.lerp(z, 2 * z, 0.5))


def test_expected_norm_matches_monte_carlo_and_the_sqrt_d_rule():
    for d in (2, 64, 100):
        sample = torch.randn(200_000, d, generator=torch.Generator().manual_seed(d)).norm(dim=1).mean()
        assert latent.expected_norm(d) == pytest.approx(sample.item(), rel=2e-3)
    assert latent.expected_norm(64) == pytest.approx(math.sqrt(63.5), rel=1e-3)


def test_steepest_directions_are_the_top_right_singular_vectors_of_a_linear_generator():
    torch.manual_seed(0)
    A = torch.randn(6, 4)
    G = LinearImageGenerator(A)
    directions = latent.steepest_directions(G, k=2, n_points=3)
    _, _, Vh = torch.linalg.svd(A)
    for got, expected in zip(directions, Vh[:2], strict=True):
        assert abs(abs(got @ expected) - 1) < 1e-5
    assert torch.allclose(directions @ directions.T, torch.eye(2), atol=1e-5)


def test_steepest_directions_change_a_dcgan_image_more_than_random_ones():
    torch.manual_seed(0)
    G = models.DCGANGenerator(latent_dim=8, width=4).apply(models.init_weights).eval()
    top = latent.steepest_directions(G, k=1, n_points=8)[0]
    z = torch.randn(64, 8, generator=torch.Generator().manual_seed(1))
    random_dirs = torch.nn.functional.normalize(
        torch.randn(20, 8, generator=torch.Generator().manual_seed(2)), dim=1
    )
    with torch.no_grad():
        change_top = (G(z + 0.5 * top) - G(z)).square().mean()
        change_random = torch.stack([(G(z + 0.5 * v) - G(z)).square().mean() for v in random_dirs])
    assert change_top > change_random.max()


def test_class_means_average_the_z_of_each_confidently_classified_sample():
    G = LinearImageGenerator(torch.eye(6, 2))

    class SignClassifier(nn.Module):  # class 0 when the first pixel is negative, else class 1
        def forward(self, x):
            first = x.flatten(1)[:, :1]
            return torch.cat([-10 * first, 10 * first], dim=1)

    means, counts = latent.class_means(G, SignClassifier(), n=4000, confidence=0.9)
    assert counts.sum() <= 4000 and counts.min() > 1500
    # z_1 given z_1 < 0 (and not too close to 0): about -0.8 for the half-normal mean of 0.798
    assert means[0, 0] < -0.7 and means[1, 0] > 0.7 and means[:, 1].abs().max() < 0.1


def test_a_generator_without_latent_dim_gets_a_clear_error():
    with pytest.raises(TypeError, match="no integer attribute latent_dim"):
        latent.check_image_generator(nn.Linear(4, 784))


def test_a_generator_of_points_is_not_an_image_generator():
    toy = models.MLPGenerator(2, (2,), hidden=(8,))
    with pytest.raises(ValueError, match=r"returns \(1, 2\) for one z, not an image"):
        latent.check_image_generator(toy)


def test_interpolation_endpoints_that_cannot_work_get_one_line_errors():
    z = torch.randn(8)
    with pytest.raises(ValueError, match=r"two tensors of one shape, got \(8,\) and \(9,\)"):
        latent.lerp(z, torch.randn(9), 0.5)
    with pytest.raises(ValueError, match=r"two codes of shape \[latent_dim\], got \(2, 8\) and \(2, 8\)"):
        latent.slerp(torch.randn(2, 8), torch.randn(2, 8), 0.5)
    with pytest.raises(ValueError, match="slerp needs two non-zero codes"):
        latent.slerp(torch.zeros(8), z, 0.5)
    with pytest.raises(ValueError, match="latent_dim must be a positive integer"):
        latent.expected_norm(0)
    assert latent.lerp(torch.zeros(3, 8), torch.ones(3, 8), 0.5).shape == (3, 8)  # a batch of pairs is fine
