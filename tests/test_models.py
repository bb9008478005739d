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


@pytest.mark.parametrize("image_size", [28, 64])
def test_dcgan_shapes_and_range(image_size):
    G = models.DCGANGenerator(latent_dim=16, channels=1, width=8, image_size=image_size)
    D = models.DCGANDiscriminator(channels=1, width=8, image_size=image_size)
    images = G(torch.randn(3, 16) * 10)  # large z: tanh must still bound the output
    assert images.shape == (3, 1, image_size, image_size)
    assert images.min() >= -1 and images.max() <= 1
    assert D(images).shape == (3,)


def test_dcgan_init_matches_the_rule():
    torch.manual_seed(0)
    G = models.DCGANGenerator(latent_dim=64, width=32).apply(models.init_weights)
    conv_weights = torch.cat(
        [m.weight.flatten() for m in G.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    )
    bn_scales = torch.cat([m.weight for m in G.modules() if isinstance(m, torch.nn.BatchNorm2d)])
    assert abs(conv_weights.mean().item()) < 0.001 and abs(conv_weights.std().item() - 0.02) < 0.001
    assert abs(bn_scales.mean().item() - 1.0) < 0.01 and abs(bn_scales.std().item() - 0.02) < 0.01
    assert all(m.bias.abs().max() == 0 for m in G.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_dcgan_bad_inputs_give_clear_errors():
    with pytest.raises(ValueError, match=r"image_size must be one of \(28, 64\)"):
        models.DCGANGenerator(image_size=32)
    with pytest.raises(ValueError, match=r"z of shape \[n, 64\]"):
        models.DCGANGenerator()(torch.randn(2, 10))
    with pytest.raises(ValueError, match=r"samples of shape \[n, 1, 28, 28\]"):
        models.DCGANDiscriminator()(torch.randn(2, 784))


@pytest.mark.parametrize(
    ("make", "bad_input", "message"),
    [
        (models.dcgan_mnist_generator, torch.randn(2, 64, dtype=torch.float64),
         r"z has dtype torch.float64 but this model's weights are torch.float32.*from_numpy\(a\).float\(\)"),
        (models.dcgan_mnist_generator, torch.zeros(2, 64, dtype=torch.long), r"z has dtype torch.int64"),
        (models.dcgan_mnist_generator, [[0.0] * 64] * 2, "z must be a torch tensor, got list"),
        (models.dcgan_mnist_discriminator, torch.zeros(2, 1, 28, 28, dtype=torch.float16),
         r"discriminator's input has dtype torch.float16 .* convert it with .to\(torch.float32\)"),
        (lambda: models.MLPDiscriminator((2,)), torch.zeros(3, 2, dtype=torch.float64), "dtype torch.float6"),
        (lambda: models.cdcgan_mnist_generator(16), torch.zeros(2, 64, dtype=torch.float64), "dtype"),
    ],
)  # fmt: skip
def test_a_wrong_dtype_is_refused_before_torch_sees_it(make, bad_input, message):
    with pytest.raises(ValueError, match=message):
        make()(bad_input)


def test_autocast_may_hand_a_discriminator_lower_precision():
    """Under autocast, G's bf16 output feeding D's float32 weights is what training does: not refused."""
    D = models.dcgan_mnist_discriminator()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert D(torch.zeros(2, 1, 28, 28, dtype=torch.bfloat16)).shape == (2,)


def test_one_code_through_batchnorm_in_training_mode_says_to_evaluate():
    G = models.mlp_mnist_generator()
    with pytest.raises(ValueError, match=r"needs at least 2 codes per batch, got 1; call G.eval\(\)"):
        G(torch.randn(1, 100))
    assert G.eval()(torch.randn(1, 100)).shape == (1, 1, 28, 28)
