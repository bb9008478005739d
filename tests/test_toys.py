"""toys.py: chapter 2's recipe runner and the summary the benchmark table is built from."""

import math

import pytest
import torch

from gan_utils import data, models, toys, training


def test_summarise_gives_mean_and_sample_std_per_recipe_and_data():
    rows = [
        {"recipe": "r", "data": "ring", "modes": 8, "high_quality": 90.0, "kl": 0.1, "seconds": 1.0},
        {"recipe": "r", "data": "ring", "modes": 6, "high_quality": 80.0, "kl": None, "seconds": 3.0},
        {"recipe": "r", "data": "grid", "modes": 25, "high_quality": 50.0, "kl": 0.3, "seconds": 2.0},
    ]
    ring, grid = toys.summarise(rows)
    assert (ring["data"], ring["runs"], grid["runs"]) == ("ring", 2, 1)
    assert ring["modes"] == pytest.approx((7.0, math.sqrt(2)))  # std of (8, 6) with n - 1 = 1
    assert ring["high_quality"] == pytest.approx((85.0, math.sqrt(50)))
    assert ring["kl"] == (pytest.approx(0.1), 0.0) and ring["kl_undefined"] == 1  # None is left out
    assert grid["modes"] == (25.0, 0.0)
    table = toys.format_table([ring])
    assert "| r | ring | 2 | 7.0 ± 1.4 | 85.0 ± 7.1 | 0.100 ± 0.000 (1 runs undefined) | 2 |" in table


def test_train_toy_gan_is_repeatable_and_measures_its_samples():
    recipe = toys.BASELINE.with_overrides(name="tiny", generator_hidden=(16,), discriminator_hidden=(16,),
                                          batch_size=32)  # fmt: skip
    first = toys.train_toy_gan(recipe, data.ring(), seed=3, steps=5)
    second = toys.train_toy_gan(recipe, data.ring(), seed=3, steps=5)
    weights = zip(first.G.state_dict().values(), second.G.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in weights)
    assert first.metrics == second.metrics and len(first.history["step"]) == 5
    samples = toys.sample_generator(first.G, seed=3)
    assert first.metrics == toys.metrics.toy_mode_metrics(samples, data.ring())


def test_sample_snapshots_record_the_first_step_and_every_kth_from_a_fixed_z_in_eval_mode():
    G = models.MLPGenerator(2, (2,), hidden=(8,))
    D = models.MLPDiscriminator((2,), hidden=(8,))
    frozen = [torch.optim.SGD(model.parameters(), lr=0.0) for model in (G, D)]
    fixed_z = torch.randn(4, 2)
    snapshots = training.SampleSnapshots(fixed_z, every=3)
    batches = data.BatchIterator(data.ring().sample(64), batch_size=16)
    training.train(G, D, *frozen, batches, steps=7, callbacks=[snapshots], progress=False)
    assert snapshots.steps == [1, 3, 6] and G.training  # the loop's train mode is back after each snapshot
    with torch.no_grad():
        G.eval()
        expected = G(fixed_z)
    assert all(torch.equal(s, expected) for s in snapshots.samples)  # G did not move, z did not change
