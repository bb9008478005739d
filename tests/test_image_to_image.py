"""Chapter 9: photos without internet, the U-Net and PatchGAN, PSNR, the losses, and the shipped models."""

from __future__ import annotations

import json
import math
import socket

import pytest
import torch
from torch import nn

from gan_utils import data, losses, pretrained, training
from gan_utils import image_to_image as i2i

SHIPPED = i2i.SHIPPED


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("this test runs offline")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_load_photos_works_offline_with_right_shapes_ranges_and_licences(no_network):
    photos = data.load_photos()
    assert [p.name for p in photos] == list(data.PHOTO_CATALOGUE)
    for photo in photos:
        assert photo.image.dtype == torch.float32 and photo.image.ndim == 3 and photo.image.shape[0] == 3
        assert min(photo.image.shape[1:]) >= 64, photo.name
        assert -1 <= photo.image.min() < 0 < photo.image.max() <= 1, photo.name
        assert photo.kind in {"photo", "texture", "biomedical"} and photo.licence
    assert {p.kind for p in photos} == {"photo", "texture", "biomedical"}


def test_photo_split_never_shares_an_image():
    train, test = data.load_photos("train"), data.load_photos("test")
    assert {p.name for p in test} == set(data.PHOTO_TEST_NAMES)
    assert not {p.name for p in train} & {p.name for p in test}
    assert len(train) + len(test) == len(data.PHOTO_CATALOGUE)
    for held_out in test:  # not even a renamed copy: no training image has the same pixels
        assert not any(
            p.image.shape == held_out.image.shape and torch.equal(p.image, held_out.image) for p in train
        )
    assert any(p.kind == "biomedical" for p in test)


def test_photo_sr_test_patches_come_only_from_held_out_photos():
    test_photos = data.load_photos("test")
    patches = i2i.photo_sr_data(n_train=1, n_test=6, size=16).test[1]  # the chapter's test targets
    for patch in patches:  # every patch is found, unflipped or flipped, inside one held-out photo
        found = False
        for photo in test_photos:
            windows = photo.image.unfold(1, 16, 1).unfold(2, 16, 1)  # [3, H-15, W-15, 16, 16]
            for candidate in (patch, patch.flip(-1)):
                match = (windows == candidate[:, None, None]).flatten(3).all(-1).all(0)
                found = found or bool(match.any())
        assert found


def test_load_photos_and_patches_refuse_bad_input():
    with pytest.raises(ValueError, match="not a split"):
        data.load_photos("validation")
    with pytest.raises(ValueError, match="smaller than 4096 pixels"):
        data.random_patches(data.load_photos("test"), 1, 4096)
    with pytest.raises(ValueError, match="no photos"):
        data.random_patches([], 1, 8)
    with pytest.raises(TypeError, match="list of Photo"):
        data.random_patches(torch.zeros(3, 64, 64), 1, 8)
    assert torch.equal(data.random_patches(data.load_photos("test"), 5, 8, seed=1),
                       data.random_patches(data.load_photos("test"), 5, 8, seed=1))  # fmt: skip


@pytest.mark.parametrize("size", [(28, 28), (32, 32), (64, 64), (32, 48)])
@pytest.mark.parametrize("depth", [1, 2])
def test_unet_keeps_the_size_and_the_range(size, depth):
    G = i2i.UNetGenerator(3, 3, width=8, depth=depth)
    x = torch.rand(2, 3, *size) * 2 - 1
    y = G(x)
    assert y.shape == x.shape and y.abs().max() <= 1
    torch.testing.assert_close(y, x.clamp(-0.99, 0.99))  # residual and untrained: returns its input
    translator = i2i.UNetGenerator(1, 3, width=8, depth=depth, residual=False)
    assert translator(x[:, :1]).shape == (2, 3, *size)


def test_unet_refuses_sizes_it_cannot_halve_and_channel_mismatches():
    with pytest.raises(ValueError, match="multiples of 4"):
        i2i.UNetGenerator(1, 1, depth=2)(torch.zeros(1, 1, 30, 28))
    with pytest.raises(ValueError, match=r"\[n, 1, H, W\]"):
        i2i.UNetGenerator(1, 1)(torch.zeros(1, 3, 28, 28))
    with pytest.raises(ValueError, match="residual=False"):
        i2i.UNetGenerator(1, 3, residual=True)


@pytest.mark.parametrize(("n_downsampling", "by_hand"), [(1, 16), (2, 34), (3, 70)])
def test_patchgan_receptive_field_matches_the_hand_computation(n_downsampling, by_hand):
    # by hand, 4x4 kernels: 1 + 3 * (sum of the jumps before each layer); strides 2 (n times), 1, 1.
    # n=3 is pix2pix's 70x70 PatchGAN: 1 + 3 * (1 + 2 + 4 + 8 + 8) = 70.
    D = i2i.PatchDiscriminator(2, width=4, n_downsampling=n_downsampling)
    assert i2i.receptive_field(D) == by_hand
    # and measured from gradients (with the instance norms swapped out): the same span
    assert i2i.measured_receptive_field(D) == by_hand


@pytest.mark.parametrize("size", [28, 64, 96])
def test_patchgan_returns_one_logit_per_patch(size):
    D = i2i.PatchDiscriminator(6, width=8, n_downsampling=2)
    logits = D(torch.zeros(3, 6, size, size))
    side = size // 4 - 2  # two halvings, then two 4x4 stride-1 convolutions with padding 1
    assert logits.shape == (3, side, side)
    with pytest.raises(ValueError, match="concatenated"):
        D(torch.zeros(3, 3, size, size))


def test_ssim_of_flat_images_equals_its_luminance_term_by_hand_in_both_conventions():
    # Two flat grey images have no variance: SSIM = (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1),
    # with C1 = (0.01 R)^2 for the data range R.
    truth, estimate = torch.zeros(1, 1, 16, 16), torch.full((1, 1, 16, 16), -0.5)
    signed = (2 * 0.0 * -0.5 + 0.02**2) / (0.0 + 0.25 + 0.02**2)  # as stored, R = 2
    unit = (2 * 0.5 * 0.25 + 0.01**2) / (0.25 + 0.0625 + 0.01**2)  # rescaled to [0, 1], R = 1
    assert i2i.ssim(estimate, truth) == pytest.approx(signed, rel=1e-6)
    assert i2i.ssim(estimate, truth, unit_range=True) == pytest.approx(unit, rel=1e-6)


def test_psnr_equals_the_hand_computation():
    truth = torch.tensor([[[[0.0, 0.5], [-0.5, 1.0]]]])
    estimate = torch.tensor([[[[0.0, 0.0], [-0.5, 0.5]]]])
    mse = (0.5**2 + 0.5**2) / 4  # two of four pixels off by 0.5
    assert i2i.psnr(estimate, truth) == pytest.approx(10 * math.log10(2.0**2 / mse))  # data range 2
    tiled = truth.repeat(1, 1, 8, 8)  # 16x16: SSIM's 11x11 Gaussian window needs at least 11 pixels a side
    assert i2i.ssim(tiled, tiled.clone()) == pytest.approx(1.0)
    assert i2i.ssim(estimate.repeat(1, 1, 8, 8), tiled) < 1
    with pytest.raises(ValueError, match="at least 11"):
        i2i.ssim(estimate, truth)
    with pytest.raises(ValueError, match="differ in shape"):
        i2i.psnr(estimate, torch.zeros(1, 1, 3, 3))
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        i2i.psnr(estimate * 255, truth)


def test_measures_and_receptive_field_refuse_what_they_cannot_score():
    with pytest.raises(ValueError, match="empty"):
        i2i.psnr(torch.zeros(0, 1, 8, 8), torch.zeros(0, 1, 8, 8))
    needs_grad = torch.full((2, 1, 8, 8), -0.5, requires_grad=True)  # an output still in its graph
    assert i2i.psnr(needs_grad, needs_grad.detach() + 0.1) == pytest.approx(10 * math.log10(4 / 0.01))
    with pytest.raises(TypeError, match="D.a"):
        i2i.receptive_field(i2i.CycleDiscriminators())
    with pytest.raises(TypeError, match="ConvTranspose2d"):
        i2i.receptive_field(nn.Sequential(nn.Conv2d(1, 1, 3), nn.ConvTranspose2d(1, 1, 3)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        i2i.mnist_m_style(torch.rand(2, 1, 28, 28), data.load_photos("test"))


def test_sharpness_is_zero_for_flat_images_and_falls_with_blur():
    flat = torch.full((1, 1, 16, 16), 0.3)
    assert i2i.high_frequency_energy(flat) == 0
    noise = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    blurred = i2i.upscale_bicubic(i2i.downscale(noise, 4), 4)
    assert i2i.high_frequency_energy(blurred) < 0.2 * i2i.high_frequency_energy(noise)


def test_downscale_and_mnist_m_style():
    digits = torch.full((2, 1, 28, 28), -1.0)
    digits[:, :, 10:18, 10:18] = 1.0
    assert i2i.downscale(digits).shape == (2, 1, 7, 7)
    assert i2i.upscale_bicubic(i2i.downscale(digits)).shape == digits.shape
    with pytest.raises(ValueError, match="do not divide"):
        i2i.downscale(torch.zeros(1, 1, 30, 30))
    photos = data.load_photos("train")
    coloured = i2i.mnist_m_style(digits, photos, seed=0)
    patches = data.random_patches(photos, 2, 28, seed=0)
    assert coloured.shape == (2, 3, 28, 28) and coloured.min() >= -1 and coloured.max() <= 1
    torch.testing.assert_close(coloured[:, :, 0, 0], patches[:, :, 0, 0])  # background: the photo
    torch.testing.assert_close(coloured[:, :, 12, 12], -patches[:, :, 12, 12])  # stroke: inverted


def test_least_squares_losses_by_hand():
    real, fake = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    assert losses.least_squares_discriminator_loss(real, fake).item() == pytest.approx(0.5 * (0.5 + 2.0))
    assert losses.least_squares_generator_loss(fake).item() == pytest.approx(0.5 * 1.0)


def test_cycle_loss_is_zero_for_identity_generators_and_positive_otherwise():
    cycle = i2i.CycleGAN(1, 1, width=4, depth=1)
    a, b = torch.rand(4, 1, 8, 8) * 2 - 1, torch.rand(4, 1, 8, 8) * 2 - 1
    untrained, _, _ = i2i.cycle_consistency_loss(cycle, a, b)
    assert untrained > 0.1
    cycle.a_to_b, cycle.b_to_a = nn.Identity(), nn.Identity()
    loss, fake_b, fake_a = i2i.cycle_consistency_loss(cycle, a, b)
    assert loss.item() == 0 and torch.equal(fake_b, a) and torch.equal(fake_a, b)


def _short_run(preset: str, steps: int = 3, callbacks=(), **changes):
    import dataclasses

    recipe = dataclasses.replace(i2i.PRESETS[preset], width=4, steps=steps, **changes)
    G, D = recipe.models()
    opt_G, opt_D = recipe.optimisers(G, D)
    size, channels = (28, 1) if recipe.task != "sr-photos" else (16, 3)
    first = torch.rand(16, channels, size, size) * 2 - 1
    second = torch.rand(16, 3 if recipe.task == "cyclegan" else channels, size, size) * 2 - 1
    batches = data.BatchIterator(first, second, batch_size=8)
    before = [p.clone() for p in D.parameters()]
    history = training.train(
        G, D, opt_G, opt_D, batches, steps, step=recipe.step(), progress=False, callbacks=callbacks
    )
    changed = any(not torch.equal(a, b) for a, b in zip(before, D.parameters(), strict=True))
    return history, changed


def test_pix2pix_and_cyclegan_steps_run_in_the_library_loop():
    history, d_changed = _short_run("sr-mnist")
    assert {"loss_D", "loss_G", "L1", "loss_G_adversarial", "D(x, y)", "D(x, G(x))"} <= set(
        history
    ) and d_changed
    history, d_changed = _short_run("sr-mnist-l1", callbacks=[training.ProgressBar(update_every=1)])
    assert "loss_D" not in history and not d_changed  # L1 only: D is never trained
    history, d_changed = _short_run("sr-photos")
    assert len(history["step"]) == 3 and d_changed
    history, d_changed = _short_run("cyclegan-mnistm")
    assert {"loss_G", "loss_D", "cycle"} <= set(history) and d_changed


def test_the_loop_refuses_unpaired_data_for_image_to_image_models():
    G, D = i2i.PRESETS["sr-mnist"].models()
    opt_G, opt_D = i2i.PRESETS["sr-mnist"].optimisers(G, D)
    with pytest.raises(ValueError, match="pairs of image batches"):
        training.train(G, D, opt_G, opt_D, data.BatchIterator(torch.zeros(4, 1, 28, 28), batch_size=2), 1,
                       step=i2i.PRESETS["sr-mnist"].step(), progress=False)  # fmt: skip
    pixels = data.BatchIterator(torch.zeros(4, 1, 28, 28), torch.full((4, 1, 28, 28), 200.0), batch_size=2)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        training.train(G, D, opt_G, opt_D, pixels, 1, step=i2i.PRESETS["sr-mnist"].step(), progress=False)


@pytest.fixture(scope="module")
def task_data():
    return {
        "sr-digits": i2i.digit_sr_data(),
        "sr-photos": i2i.photo_sr_data(n_train=1),
        "cyclegan": i2i.mnist_m_data(),
    }


@pytest.mark.parametrize("name", SHIPPED)
def test_regression_snapshot_shipped_image_to_image_models_meet_their_recorded_metrics(name, task_data):
    entry = pretrained.read_manifest()[name]
    assert (pretrained.WEIGHTS_DIR / entry["file"]).stat().st_size <= 5 * 2**20
    recipe = i2i.PRESETS[name]
    measured = i2i.model_scores(recipe, pretrained.load_pretrained(name), task_data[recipe.task])
    assert measured.keys() == entry["metrics"].keys()
    for key, value in entry["metrics"].items():
        assert measured[key] == pytest.approx(value, rel=1e-3, abs=1e-3), key


def test_the_cli_refuses_to_sample_an_image_to_image_model(tmp_path):
    import subprocess
    import sys

    command = [sys.executable, "-m", "gan_utils", "sample", "sr-mnist", "--out", str(tmp_path / "x.png")]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "not a noise-to-image generator" in run.stderr and "image_to_image.apply" in run.stderr
    assert not (tmp_path / "x.png").exists()


def test_cyclegan_step_weighs_each_half_of_the_cycle():
    torch.manual_seed(0)
    cycle, Ds = i2i.CycleGAN(1, 3, width=4, depth=1), i2i.CycleDiscriminators(1, 3, width=4)
    a, b = torch.rand(4, 1, 8, 8) * 2 - 1, torch.rand(4, 3, 8, 8) * 2 - 1
    with torch.no_grad():
        fake_b, fake_a = cycle.a_to_b(a), cycle.b_to_a(b)
        cycle_a = (cycle.b_to_a(fake_b) - a).abs().mean()  # a -> G -> F back to a
        cycle_b = (cycle.a_to_b(fake_a) - b).abs().mean()  # b -> F -> G back to b
        adversarial = ((Ds.b(fake_b) - 1) ** 2).mean() + (
            (Ds.a(fake_a) - 1) ** 2
        ).mean()  # Zhu et al.: no 1/2
    assert abs(cycle_a - cycle_b) > 1e-3  # a swap of the halves changes every case below (rel 1e-5)
    frozen = [torch.optim.SGD(m.parameters(), lr=0.0) for m in (cycle, Ds)]  # the step changes nothing
    cases = {None: adversarial + 10 * (cycle_a + cycle_b), 0.0: adversarial + 10 * cycle_a,
             2.0: adversarial + 10 * cycle_a + 2 * cycle_b}  # fmt: skip
    for weight_b, expected in cases.items():
        metrics = i2i.cyclegan_step(
            cycle, Ds, *frozen, iter([(a, b)]), cycle_weight=10.0, cycle_weight_b=weight_b
        )
        assert metrics["loss_G"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_a_cyclegan_and_a_recipe_refuse_misuse_with_the_fix():
    with pytest.raises(TypeError, match="a_to_b"):
        i2i.apply(i2i.CycleGAN(width=4), torch.zeros(1, 1, 28, 28))
    with pytest.raises(ValueError, match="not one of sr-digits"):
        i2i.ImageToImageRecipe("sr-digit", steps=1)


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (torch.full((2, 1, 8, 8), 255.0), r"finite and in \[-1, 1\], got values in \[255, 255\]"),
        (torch.full((2, 1, 8, 8), float("nan")), "finite and in"),
        (torch.zeros(2, 1, 8, 8, dtype=torch.uint8), r"dtype torch.uint8; pass floats in \[-1, 1\]"),
        (torch.zeros(2, 1, 8, 8, dtype=torch.float64), "the model's weights are torch.float32"),
        (torch.zeros(1, 8, 8), r"shape \[n, channels, height, width\], got \(1, 8, 8\)"),
        (torch.zeros(0, 1, 8, 8), "apply got 0 images"),
    ],
)
def test_apply_refuses_images_it_cannot_translate_and_restores_the_mode(images, message):
    G = i2i.CycleGAN(width=4).a_to_b.train()
    with pytest.raises(ValueError, match=message):
        i2i.apply(G, images)
    i2i.apply(G, torch.rand(2, 1, 8, 8))  # a bright image (all values >= 0) is allowed
    assert G.training


def test_scoring_a_texture_code_cyclegan_gives_it_back_its_training_mode():
    cycle = i2i.TextureCodeCycleGAN(width=8, code_channels=4).train()
    a = torch.rand(12, 1, 28, 28) * 2 - 1
    b = i2i.translate_a_to_b(cycle, a)
    assert cycle.training
    i2i.cyclegan_scores(cycle, i2i.PairedData((a, b), (a, b), torch.arange(12) % 10), classifier=None)
    assert cycle.training and all(module.training for module in cycle.modules())


def test_cyclegan_step_adds_the_identity_term_and_noise_before_translating_back():
    torch.manual_seed(0)
    cycle, Ds = i2i.CycleGAN(1, 3, width=4, depth=1), i2i.CycleDiscriminators(1, 3, width=4)
    a, b = torch.rand(4, 1, 8, 8) * 2 - 1, torch.rand(4, 3, 8, 8) * 2 - 1
    frozen = [torch.optim.SGD(m.parameters(), lr=0.0) for m in (cycle, Ds)]

    def step(**settings):
        torch.manual_seed(1)
        return i2i.cyclegan_step(cycle, Ds, *frozen, iter([(a, b)]), **settings)["loss_G"].item()

    with torch.no_grad():
        fake_b, fake_a = cycle.a_to_b(a), cycle.b_to_a(b)
        adversarial = ((Ds.b(fake_b) - 1) ** 2).mean() + ((Ds.a(fake_a) - 1) ** 2).mean()
        identity = (cycle.b_to_a(a.repeat(1, 3, 1, 1)) - a).abs().mean()  # F(a, a, a) against a
        torch.manual_seed(1)
        noise_b, noise_a = 0.3 * torch.randn_like(fake_b), 0.3 * torch.randn_like(fake_a)
        noisy_cycle = (cycle.b_to_a(fake_b + noise_b) - a).abs().mean() + (
            cycle.a_to_b(fake_a + noise_a) - b
        ).abs().mean()
        plain_cycle = (cycle.b_to_a(fake_b) - a).abs().mean() + (cycle.a_to_b(fake_a) - b).abs().mean()
    assert identity > 0.05 and abs(noisy_cycle - plain_cycle) > 1e-3  # each term can be told apart
    assert step() == pytest.approx((adversarial + 10 * plain_cycle).item(), rel=1e-5)
    assert step(identity_weight=5.0) == pytest.approx(
        (adversarial + 10 * plain_cycle + 5 * identity).item(), rel=1e-5
    )
    assert step(reconstruction_noise=0.3) == pytest.approx((adversarial + 10 * noisy_cycle).item(), rel=1e-5)


def test_identity_loss_is_zero_for_a_mapping_that_keeps_a_and_refuses_wrong_channels():
    class ChannelMean(nn.Module):
        in_channels = 3

        def forward(self, x):
            return x.mean(1, keepdim=True)

    cycle = i2i.CycleGAN(1, 3, width=4, depth=1)
    a = torch.rand(4, 1, 8, 8) * 2 - 1
    assert i2i.identity_loss(cycle, a) > 0.05  # untrained F changes a
    cycle.b_to_a = ChannelMean()
    assert i2i.identity_loss(cycle, a).item() == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match=r"takes 3 channel\(s\); these have 2"):
        i2i.identity_loss(cycle, torch.zeros(1, 2, 8, 8))


def test_recipes_refuse_bad_cyclegan_settings_and_variants_never_ship():
    with pytest.raises(ValueError, match="reconstruction_noise must be 0 or more"):
        i2i.ImageToImageRecipe("cyclegan", steps=1, reconstruction_noise=-0.1)
    with pytest.raises(ValueError, match="CycleGAN settings.*use task='cyclegan'"):
        i2i.ImageToImageRecipe("sr-digits", steps=1, identity_weight=5.0)
    with pytest.raises(ValueError, match="cycle_weight_b must be 0 or more"):
        i2i.ImageToImageRecipe("cyclegan", steps=1, cycle_weight_b=-1.0)
    variants = set(i2i.PRESETS) - set(i2i.SHIPPED)
    assert variants and not variants & set(pretrained.read_manifest())
    assert all(i2i.PRESETS[name].task == "cyclegan" for name in variants)


def test_the_benchmark_refuses_to_export_a_variant(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "image_to_image.py"
    command = [sys.executable, str(script), "--preset", "cyclegan-mnistm-identity",
               "--weights-dir", str(tmp_path)]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "do not ship; add --no-export" in run.stderr and not any(tmp_path.iterdir())
    rescore = subprocess.run([*command, "--rescore"], capture_output=True, text=True, timeout=300)
    assert rescore.returncode == 2 and "no shipped weights to re-score" in rescore.stderr
    shipped = [sys.executable, str(script), "--preset", "cyclegan-mnistm", "--weights-dir", str(tmp_path)]
    refusals = {("--seed", "1"): "the shipped weights are seed 0's; add --no-export",
                ("--seed", "-1", "--no-export"): "--seed must be 0 or more, got -1",
                ("--seed", "2", "--rescore"): "scores the shipped (seed 0) weights; drop --seed"}  # fmt: skip
    for extra, message in refusals.items():
        refused = subprocess.run([*shipped, *extra], capture_output=True, text=True, timeout=300)
        assert refused.returncode == 2 and message in refused.stderr and "Traceback" not in refused.stderr
    assert not any(tmp_path.iterdir())


def test_texture_code_cyclegan_takes_a_code_from_b_and_refuses_a_wrong_one():
    torch.manual_seed(0)
    cycle = i2i.TextureCodeCycleGAN(width=8, code_channels=4)
    a, b = torch.rand(2, 1, 28, 28) * 2 - 1, torch.rand(2, 3, 28, 28) * 2 - 1
    code = cycle.encoder(b)
    assert code.shape == (2, 4, 7, 7)
    assert cycle.a_to_b(a, code).shape == (2, 3, 28, 28)
    assert cycle.a_to_b(a).shape == (2, 3, 28, 28)  # a random texture
    assert not torch.equal(cycle.a_to_b(a, code), cycle.a_to_b(a, code + 1))  # the code matters
    with pytest.raises(ValueError, match=r"texture code must have shape \[2, 4, h, w\].*cycle.encoder\(b\)"):
        cycle.a_to_b(a, torch.zeros(2, 3, 7, 7))


def test_texture_code_step_trains_the_encoder_and_the_scores_rebuild_b_from_its_code():
    torch.manual_seed(0)
    recipe = i2i.ImageToImageRecipe("cyclegan", steps=1, width=8, batch_size=4, code_channels=4)
    G, D = recipe.models()
    opt_G, opt_D = recipe.optimisers(G, D)
    a, b = torch.rand(4, 1, 28, 28) * 2 - 1, torch.rand(4, 3, 28, 28) * 2 - 1
    encoder_before = [p.detach().clone() for p in G.encoder.parameters()]
    metrics = recipe.step()(G, D, opt_G, opt_D, iter([(a, b)]))
    assert {"loss_G", "loss_D", "cycle", "latent"} <= set(metrics)
    assert all(torch.isfinite(value) for value in metrics.values())
    assert any(not torch.equal(p, q) for p, q in zip(G.encoder.parameters(), encoder_before, strict=True))
    scores = i2i.cyclegan_scores(G, i2i.PairedData((a, b), (a, b), torch.arange(4)))
    with torch.no_grad():
        rebuilt = G.a_to_b(G.b_to_a(b), G.encoder(b))
    assert scores["cycle_error_b"] == pytest.approx((rebuilt - b).abs().mean().item(), rel=1e-5)


def test_texture_code_recipes_refuse_the_plain_cyclegans_b_side_settings():
    with pytest.raises(ValueError, match="code_channels > 0 trains a TextureCodeCycleGAN"):
        i2i.ImageToImageRecipe("cyclegan", steps=1, code_channels=4, cycle_weight_b=0.0)
    with pytest.raises(ValueError, match="use it with task='cyclegan'"):
        i2i.ImageToImageRecipe("sr-digits", steps=1, code_channels=4)


def test_texture_code_b_cycle_leaves_f_untrained():
    """F(b) enters |G(F(b), E(b)) - b| as a constant: with D_A blind, no gradient reaches F(b)."""

    class BlindCritic(torch.nn.Module):
        def forward(self, x):
            return x.sum((1, 2, 3), keepdim=True) * 0 + 1

    torch.manual_seed(0)
    recipe = i2i.ImageToImageRecipe("cyclegan", steps=1, width=8, batch_size=4, code_channels=4)
    G, D = recipe.models()
    D.a = BlindCritic()
    opt_G, opt_D = recipe.optimisers(G, D)
    a, b = torch.rand(4, 1, 28, 28) * 2 - 1, torch.rand(4, 3, 28, 28) * 2 - 1
    grads = []

    def keep_gradient_of_f_of_b(module, inputs, output):
        if inputs[0] is b:
            output.register_hook(grads.append)

    G.b_to_a.register_forward_hook(keep_gradient_of_f_of_b)
    recipe.step()(G, D, opt_G, opt_D, iter([(a, b)]))
    assert grads and all(grad.abs().max() == 0 for grad in grads)


def test_translations_with_a_texture_code_repeat_for_a_seed_and_plain_ones_need_none():
    torch.manual_seed(0)
    cycle = i2i.TextureCodeCycleGAN(width=8, code_channels=4).eval()
    a = torch.rand(300, 1, 28, 28) * 2 - 1  # more than one batch of 256
    first, again, other = (i2i.translate_a_to_b(cycle, a, seed=s) for s in (0, 0, 1))
    assert first.shape == (300, 3, 28, 28) and torch.equal(first, again) and not torch.equal(first, other)
    codes = cycle.a_to_b.draw_code(300, (28, 28), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(first, cycle.a_to_b(a, codes), atol=1e-6)  # one code per image, batches joined
    plain = i2i.CycleGAN(1, 3, width=4, depth=1)
    assert torch.equal(i2i.translate_a_to_b(plain, a[:5]), i2i.apply(plain.a_to_b, a[:5]))
    # the scores draw their codes from seed 0, so they repeat whatever torch's global generator did
    test = i2i.PairedData((a, first), (a, first), torch.arange(300) % 10)
    scores = [i2i.cyclegan_scores(cycle, test, classifier=None)]
    torch.manual_seed(123)
    scores.append(i2i.cyclegan_scores(cycle, test, classifier=None))
    assert scores[0] == scores[1]
    rebuilt_a = i2i.apply(cycle.b_to_a, first)  # F(G(a, codes of seed 0))
    assert scores[0]["cycle_error_a"] == pytest.approx((rebuilt_a - a).abs().mean().item(), rel=1e-6)


def test_a_texture_code_cyclegan_exports_and_loads_with_its_encoder(tmp_path):
    torch.manual_seed(0)
    cycle = i2i.TextureCodeCycleGAN(width=8, code_channels=4)
    pretrained.export_generator(cycle, "coded", {"steps": 0}, weights_dir=tmp_path)
    loaded = pretrained.load_pretrained("coded", weights_dir=tmp_path)
    assert type(loaded) is i2i.TextureCodeCycleGAN and loaded.config == cycle.config
    a, b = torch.rand(2, 1, 28, 28) * 2 - 1, torch.rand(2, 3, 28, 28) * 2 - 1
    cycle.eval()
    with torch.no_grad():  # float16 on disk: outputs agree within 0.02
        code = cycle.encoder(b)
        assert torch.allclose(loaded.encoder(b), code, atol=2e-2)
        assert torch.allclose(loaded.a_to_b(a, code), cycle.a_to_b(a, code), atol=2e-2)
        assert torch.allclose(loaded.b_to_a(b), cycle.b_to_a(b), atol=2e-2)


def test_the_benchmark_trains_a_seed_under_its_own_name(tmp_path, monkeypatch):
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "image_to_image.py"
    spec = importlib.util.spec_from_file_location("image_to_image_benchmark", script)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    calls = []

    def fake_run(name, export, weights_dir, seed=0):
        calls.append((name, export, seed))
        return {"label_preservation": 0.5, "wall_seconds": 1.0}

    monkeypatch.setattr(benchmark, "run", fake_run)
    monkeypatch.setattr(benchmark, "baselines", dict)
    out = tmp_path / "seeds.json"
    benchmark.main(["--preset", "cyclegan-mnistm", "--no-export", "--seed", "3", "--out", str(out)])
    assert calls == [("cyclegan-mnistm", False, 3)]
    written = json.loads(out.read_text())
    assert "cyclegan-mnistm (seed 3)" in written and "cyclegan-mnistm" not in written
