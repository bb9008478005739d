"""Chapter 6's stabilisers, each against a closed form or PyTorch's own reference."""

import math

import pytest
import torch
from torch import nn

from gan_utils import data, models, recipes, stabilisers, toys, training
from gan_utils.runtime import sample


def test_spectral_norm_divides_a_known_matrix_by_its_largest_singular_value():
    layer = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[3.0, 0.0], [0.0, 1.0]]))
    models.spectral_normalise(layer)
    for _ in range(20):  # each training-mode forward pass runs one power iteration
        layer(torch.zeros(1, 2))
    torch.testing.assert_close(layer.weight, torch.tensor([[1.0, 0.0], [0.0, 1 / 3]]))


def test_spectral_norm_of_a_convolution_agrees_with_matrix_norm():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 8, 3)
    original = conv.weight.detach().clone()
    models.spectral_normalise(conv)
    for _ in range(200):
        conv(torch.zeros(1, 4, 5, 5))
    sigma = torch.linalg.matrix_norm(original.flatten(1), ord=2)
    torch.testing.assert_close(conv.weight, original / sigma, rtol=1e-4, atol=1e-6)


def test_a_spectral_discriminator_has_no_batchnorm_and_every_convolution_normalised():
    D = models.dcgan_mnist_discriminator(norm="spectral")
    layers = list(D.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in layers)
    convolutions = [m for m in layers if isinstance(m, nn.Conv2d)]
    assert convolutions and all(nn.utils.parametrize.is_parametrized(m, "weight") for m in convolutions)
    assert D(torch.zeros(3, 1, 28, 28)).shape == (3,)


def test_a_critic_without_norm_scores_each_sample_on_its_own():
    D = models.dcgan_mnist_discriminator(norm="none")
    x = torch.randn(4, 1, 28, 28)
    torch.testing.assert_close(D(x)[:1], D(x[:1]))  # BatchNorm would make these differ


def ema_of_a_step_change(updates: int, decay: float = 0.9) -> tuple[float, float]:
    """(EMA weight, G's weight) after the EMA copied a weight of 0 and then saw 1 ``updates`` times."""
    G = nn.Linear(1, 1, bias=False)
    ema = stabilisers.GeneratorEMA(G, decay=decay)
    state = training.TrainState(0, 1, G, None, None, None, 0, 0, None)
    with torch.no_grad():
        G.weight.fill_(0.0)
    ema(state)  # the first update copies G
    with torch.no_grad():
        G.weight.fill_(1.0)
    for _ in range(updates):
        ema(state)
    return ema.generator.weight.item(), G.weight.item()


def test_ema_after_n_updates_matches_the_closed_form():
    # theta_ema = prod(beta_t) * 0 + (1 - prod(beta_t)) * 1, beta_t = min(0.9, (1 + t) / (10 + t))
    betas = [min(0.9, (1 + t) / (10 + t)) for t in range(1, 101)]
    assert betas[0] == 2 / 11 and betas[-1] == 0.9  # the warm-up, then the decay
    assert abs(ema_of_a_step_change(100)[0] - (1 - math.prod(betas))) < 1e-6


def test_ema_after_three_updates_equals_the_number_worked_out_by_hand():
    averaged, trained = ema_of_a_step_change(3)
    # warm-up decays 2/11, 3/12, 4/13: 1 - (2 * 3 * 4) / (11 * 12 * 13) = 1 - 24/1716 = 0.986014
    assert abs(averaged - 0.986014) < 1e-6
    assert trained == 1.0  # G itself is untouched


def test_ema_recomputes_batchnorm_statistics_for_the_averaged_weights():
    torch.manual_seed(0)
    G = models.dcgan_mnist_generator()
    ema = stabilisers.GeneratorEMA(G, decay=0.5, bn_batches=4, bn_batch_size=64)
    state = training.TrainState(0, 1, G, None, None, None, 0, 0, None)
    ema(state)
    with torch.no_grad():
        for p in G.parameters():
            p.add_(0.1)
    ema(state)
    averaged = ema.generator
    # the statistics are those of the averaged weights on fresh noise, not an average of G's
    first_bn, first_conv = averaged.net[1], averaged.net[0]
    noise = torch.Generator().manual_seed(0)
    z = torch.cat([torch.randn(64, G.latent_dim, generator=noise) for _ in range(4)])
    with torch.no_grad():
        pre_activations = first_conv(z[:, :, None, None])
    torch.testing.assert_close(
        first_bn.running_mean, pre_activations.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5
    )
    assert not averaged.training and ema.generator.config == G.config and ema.generator.latent_dim == 64
    before = first_bn.running_mean.clone()
    with torch.no_grad():
        for p in G.parameters():
            p.add_(0.5)
    ema(state)  # the weights move, so the statistics must be recomputed when the generator is asked for
    assert not torch.allclose(ema.generator.net[1].running_mean, before)


@pytest.mark.parametrize("decay", [0.0, 1.0, 1.5])
def test_ema_refuses_a_decay_outside_zero_one(decay):
    with pytest.raises(ValueError, match="decay"):
        stabilisers.GeneratorEMA(nn.Linear(1, 1), decay=decay)


def test_translation_moves_a_known_pixel_by_at_most_the_shift_and_fills_background():
    torch.manual_seed(0)
    images = torch.full((64, 1, 8, 8), -1.0)
    images[:, :, 4, 4] = 1.0
    shifted = stabilisers.translate(images, max_shift=2)
    assert (shifted == 1.0).flatten(1).sum(1).eq(1).all()  # the pixel stays inside the 8x8 frame
    rows, cols = (shifted[:, 0] == 1.0).nonzero()[:, 1:].T
    assert ((rows - 4).abs() <= 2).all() and ((cols - 4).abs() <= 2).all()
    assert len(set(zip(rows.tolist(), cols.tolist(), strict=True))) > 10  # offsets differ per image


def test_cutout_blanks_a_square_of_the_given_size_when_it_lies_inside():
    torch.manual_seed(0)
    images = torch.ones(200, 1, 28, 28)
    blanked = (stabilisers.cutout(images, 14) == stabilisers.BACKGROUND).flatten(1).sum(1)
    assert blanked.max() == 14 * 14 and (blanked > 0).all()


def test_diffaugment_keeps_shapes_range_and_gradients_and_is_off_in_eval_mode():
    torch.manual_seed(0)
    G = models.dcgan_mnist_generator()
    D = stabilisers.DiffAugment(models.dcgan_mnist_discriminator())
    x = G(torch.randn(16, G.latent_dim))
    augmented = D.augment(x)
    assert augmented.shape == x.shape and augmented.min() >= -1 and augmented.max() <= 1
    D(x).sum().backward()
    grads = [p.grad for p in G.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0  # G still learns
    assert not torch.equal(D.augment(x), D.augment(x))  # fresh randomness each call
    D.eval()
    torch.testing.assert_close(D(x), D.D(x))


def test_diffaugment_refuses_an_unknown_policy():
    with pytest.raises(ValueError, match="policy must name some of"):
        stabilisers.DiffAugment(nn.Identity(), policy=("colour",))


def test_gradient_penalty_of_a_linear_critic_is_weight_times_norm_minus_one_squared():
    critic = nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([[2.0, 0.0, 0.0]]))

    def score(x):
        return critic(x).view(-1)

    penalty = stabilisers.GradientPenalty(weight=10.0)(score, torch.randn(5, 3), torch.randn(5, 3))
    torch.testing.assert_close(penalty, torch.tensor(10.0 * (2.0 - 1.0) ** 2))


def test_recipe_settings_reach_the_optimisers_step_and_models():
    recipe = recipes.preset("dcgan-mnist", lr=1e-4, lr_D=4e-4, optimiser="rmsprop", d_norm="none",
                            gp_weight=7.0, d_steps=5, reuse_fakes=False, loss="wasserstein",
                            generator_width=48, augment=("translation",))  # fmt: skip
    G, D = recipe.build_models()
    opt_G, opt_D = recipe.optimisers(G, D)
    assert isinstance(opt_G, torch.optim.RMSprop)
    assert (opt_G.param_groups[0]["lr"], opt_D.param_groups[0]["lr"]) == (1e-4, 4e-4)
    assert G.config["width"] == 48 and isinstance(D, stabilisers.DiffAugment) and D.policy == ("translation",)
    assert not any(torch.nn.utils.parametrize.is_parametrized(m) for m in D.modules())  # d_norm="none"
    step = recipe.step()
    assert step.keywords["d_steps"] == 5 and step.keywords["reuse_fakes"] is False
    assert step.keywords["loss"] == "wasserstein"
    penalty = step.keywords["d_penalty"]
    assert isinstance(penalty, stabilisers.GradientPenalty) and penalty.weight == 7.0
    with_sn = recipes.preset("dcgan-mnist", d_norm="spectral")
    assert any(torch.nn.utils.parametrize.is_parametrized(m) for m in with_sn.build_models()[1].modules())
    plain = recipes.preset("dcgan-mnist").step().keywords  # chapter 4's: reuse_fakes, no penalty
    assert plain["loss"] == "non-saturating" and plain["reuse_fakes"] is True and plain["d_penalty"] is None
    hinge = recipes.preset("dcgan-mnist-stable", loss="hinge").step().keywords
    assert hinge["loss"] == "hinge" and hinge["reuse_fakes"] is False and hinge["d_steps"] == 1
    assert isinstance(hinge["d_penalty"], training.R1Penalty) and hinge["d_penalty"].gamma == 1.0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"d_norm": "layer"}, "unknown d_norm 'layer'"),
        ({"optimiser": "adagrad"}, "unknown optimiser 'adagrad'"),
        ({"ema_decay": 1.0}, "ema_decay must be in"),
        ({"d_steps": 5}, "reuse_fakes needs d_steps=1"),
        ({"lr_D": -1.0}, "lr_D"),
        ({"augment": ("colour",)}, "augment must name some of"),
    ],
)
def test_bad_stabiliser_settings_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        recipes.preset("dcgan-mnist", **overrides)


def test_resume_with_an_ema_continues_the_same_average(tmp_path):
    recipe = recipes.preset("toy-baseline", steps=6, batch_size=32, ema_decay=0.9)
    points = torch.randn(256, 2)

    def run(stop_at: int | None):
        torch.manual_seed(0)
        G, D = recipe.build_models()
        opt_G, opt_D = recipe.optimisers(G, D)
        ema = recipe.ema(G)
        path = tmp_path / "run.pt"
        batches = data.BatchIterator(points, batch_size=32)
        extra = {"G_ema": ema.averaged}
        if stop_at is None:
            training.train(G, D, opt_G, opt_D, batches, 6, recipe.step(), [ema], progress=False)
            return ema.generator
        training.train(G, D, opt_G, opt_D, batches, stop_at, recipe.step(),
                       [ema, training.Checkpointer(path, extra_modules=extra)], progress=False)  # fmt: skip
        G, D = recipe.build_models()
        opt_G, opt_D = recipe.optimisers(G, D)
        ema = recipe.ema(G)
        start = training.resume(path, G, D, opt_G, opt_D, extra_modules={"G_ema": ema.averaged})
        training.train(G, D, opt_G, opt_D, batches, 6, recipe.step(), [ema], progress=False, start=start)
        return ema.generator

    straight, resumed = run(None), run(3)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="extra modules"):
        G, D = recipe.build_models()
        training.resume(tmp_path / "run.pt", G, D, *recipe.optimisers(G, D))


# ----------------------------------------------------------------------------- self-conditioning


def test_pixel_kmeans_finds_three_separated_groups_and_repeats_itself():
    generator = torch.Generator().manual_seed(0)
    centres = torch.tensor([-0.8, 0.0, 0.8]).repeat_interleave(20)  # three groups of 20 flat images
    images = centres.view(-1, 1, 1, 1) + 0.05 * torch.randn(60, 1, 4, 4, generator=generator)
    clusters = stabilisers.pixel_kmeans(images, 3)
    groups = clusters.view(3, 20)
    assert all(len(set(row.tolist())) == 1 for row in groups) and len(set(groups[:, 0].tolist())) == 3
    assert torch.equal(stabilisers.pixel_kmeans(images, 3), clusters)
    with pytest.raises(ValueError, match="2 <= k <= the number of images"):
        stabilisers.pixel_kmeans(images, 61)


@pytest.mark.parametrize(
    ("images", "k", "message"),
    [
        (torch.zeros(10, 1, 4, 4), 3.5, "k must be"),
        (torch.zeros(10), 3, "images must be a float tensor"),
        (torch.full((10, 1, 4, 4), float("nan")), 3, "NaN or infinite"),
        (torch.zeros(10, 1, 4, 4).index_fill_(0, torch.tensor([0]), 1.0), 3, "only 2 distinct images"),
    ],
)
def test_pixel_kmeans_refuses_what_it_cannot_cluster(images, k, message):
    with pytest.raises(ValueError, match=message):
        stabilisers.pixel_kmeans(images, k)


def _self_conditioned(sizes=(10, 30, 60)):
    torch.manual_seed(0)
    inner = models.ConditionalDCGANGenerator(latent_dim=8, n_classes=len(sizes), width=4).apply(
        models.init_weights
    )
    return inner.eval(), models.SelfConditionedGenerator.around(inner, list(sizes)).eval()


def test_self_conditioned_generator_draws_each_cluster_with_its_share_of_the_training_set():
    _, G = _self_conditioned()
    assert G.latent_dim == 9 and not models.is_conditional(G)
    # the cluster changes where Phi(z_last) crosses the cumulative shares 0.1 and 0.4
    torch.testing.assert_close(G.thresholds(), torch.tensor([-1.2815516, -0.2533471], dtype=torch.float64))
    clusters = G.clusters_of(torch.randn(200_000, 9, generator=torch.Generator().manual_seed(0)))
    shares = torch.bincount(clusters, minlength=3) / 200_000
    # binomial standard error at n = 200,000 is at most 0.0011; 0.005 is more than four of them
    torch.testing.assert_close(shares, torch.tensor([0.1, 0.3, 0.6]), atol=0.005, rtol=0)


def test_self_conditioned_generator_is_its_conditional_generator_at_the_cluster_z_picks():
    inner, G = _self_conditioned()
    z = torch.randn(6, 9, generator=torch.Generator().manual_seed(1))
    z[:3, -1] = torch.tensor([-1.2815, -1.2816, 0.0])  # just above and below the first threshold, then 0
    picked = G.clusters_of(z)
    assert picked[:3].tolist() == [1, 0, 2]
    with torch.no_grad():
        torch.testing.assert_close(G(z), inner(z[:, :-1], picked))
    with pytest.raises(ValueError, match=r"z of shape \[n, 9\]"):
        G(torch.randn(2, 8))
    z[4, -1] = float("nan")  # no cluster: refused, not silently mapped to the last one
    with pytest.raises(ValueError, match=r"NaN in 1 of 6 rows"):
        G(z)


@pytest.mark.parametrize("sizes", [[5], [3, 0], [2.5, 3.0], [[1, 2]]])
def test_self_conditioned_generator_refuses_bad_cluster_sizes(sizes):
    with pytest.raises(ValueError, match="cluster_sizes must list at least two positive whole numbers"):
        models.SelfConditionedGenerator(sizes, latent_dim=8, width=4)
    with pytest.raises(ValueError, match="one class per cluster"):
        models.SelfConditionedGenerator.around(models.dcgan_mnist_generator(), [1, 2])


def test_self_conditioned_generator_exports_and_loads_with_its_clusters(tmp_path):
    from gan_utils import pretrained

    _, G = _self_conditioned((7, 11, 13))
    pretrained.export_generator(G, "tiny-self-conditioned", {"command": ["test"]}, weights_dir=tmp_path)
    loaded = pretrained.load_pretrained("tiny-self-conditioned", weights_dir=tmp_path)
    assert type(loaded) is models.SelfConditionedGenerator and loaded.cluster_sizes.tolist() == [7, 11, 13]
    z = torch.randn(4, 9, generator=torch.Generator().manual_seed(2))
    assert torch.equal(loaded.clusters_of(z), G.clusters_of(z))
    with torch.no_grad():
        torch.testing.assert_close(loaded(z), G(z), atol=2e-2, rtol=0)  # float16 weights on disk


def test_a_self_conditioned_recipe_trains_conditional_models_on_cluster_ids_and_samples_from_z():
    mnist = data.load_mnist(source="bundled")
    recipe = recipes.preset("dcgan-mnist-self-conditioned", steps=2, clusters=5, batch_size=16,
                            generator_width=8, discriminator_width=8, ema_decay=None)  # fmt: skip
    G, D = recipe.build_models()
    assert G.n_classes == D.n_classes == 5
    images, clusters = recipe.batches(mnist.images, mnist.labels).tensors
    assert len(images) == len(clusters) == 4000  # the 100 digits per class held out stay out
    assert torch.equal(clusters, recipe.cluster_ids(mnist.images, mnist.labels))
    assert clusters.unique().tolist() == [0, 1, 2, 3, 4]
    run = recipes.train_recipe(recipe, mnist.images, seed=0, labels=mnist.labels)
    assert isinstance(run.G, models.SelfConditionedGenerator) and run.G.latent_dim == 65
    assert run.G.cluster_sizes.tolist() == torch.bincount(clusters).tolist()
    assert sample(run.G, torch.randn(3, run.G.latent_dim)).shape == (3, 1, 28, 28)


def test_the_conditional_toy_discriminator_matches_its_formulas_by_hand():
    torch.manual_seed(0)
    D = models.ConditionalMLPDiscriminator((2,), n_classes=3, hidden=(4,))
    with torch.no_grad():
        D.embedding.weight.copy_(torch.arange(12.0).view(3, 4) / 10)
    x, y = torch.tensor([[0.5, -1.0], [2.0, 0.25]]), torch.tensor([2, 0])
    phi = nn.functional.leaky_relu(x @ D.features[0].weight.T + D.features[0].bias, 0.2)
    unconditional = phi @ D.head.weight[0] + D.head.bias[0]
    by_hand = unconditional + (D.embedding.weight[y] * phi).sum(1)  # psi(phi(x)) + v_y . phi(x)
    torch.testing.assert_close(D(x, y), by_hand)
    assert not torch.allclose(D(x, y), unconditional)
    # concatenation: the one-hot label is three more inputs of the first layer
    concat = models.ConditionalMLPDiscriminator((2,), n_classes=3, hidden=(4,), conditioning="concat")
    assert concat.features[0].in_features == 2 + 3 and concat.embedding is None
    one_hot = nn.functional.one_hot(y, 3).float()
    first, head = concat.features[0], concat.head
    hidden = nn.functional.leaky_relu(torch.cat([x, one_hot], 1) @ first.weight.T + first.bias, 0.2)
    torch.testing.assert_close(concat(x, y), hidden @ head.weight[0] + head.bias[0])
    # a fresh projection D starts unconditional: v_y = 0
    fresh = models.ConditionalMLPDiscriminator((2,), n_classes=3, hidden=(4,))
    torch.testing.assert_close(fresh(x, y), fresh(x, torch.tensor([0, 1])))
    with pytest.raises(ValueError, match="class labels must lie in 0..2"):
        D(x, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="this model is conditional"):
        D(x)


def test_the_conditional_toy_generator_joins_a_class_embedding_to_z():
    torch.manual_seed(0)
    G = models.ConditionalMLPGenerator(2, (2,), n_classes=4, embedding_dim=3, hidden=(5,))
    z, y = torch.randn(6, 2), torch.tensor([0, 1, 2, 3, 3, 0])
    by_hand = G.body.net(torch.cat([z, G.embedding.weight[y]], 1))
    torch.testing.assert_close(G(z, y), by_hand)
    assert G.config == {
        "latent_dim": 2,
        "sample_shape": [2],
        "n_classes": 4,
        "embedding_dim": 3,
        "hidden": [5],
    }
    with pytest.raises(ValueError, match="class labels must lie in 0..3"):
        G(z, torch.full((6,), 4))
    with pytest.raises(ValueError, match="this model is conditional"):
        G(z)
    with pytest.raises(ValueError, match="need a ConditionalDCGANGenerator or ConditionalMLPGenerator"):
        models.self_conditioned(models.MLPGenerator(2, (2,)), [1, 2])
    with pytest.raises(ValueError, match=r"need a ConditionalMLPGenerator with one class per cluster \(3\)"):
        models.SelfConditionedMLPGenerator.around(G, [1, 2, 3])


def test_a_self_conditioned_toy_generator_exports_and_loads_with_its_clusters(tmp_path):
    from gan_utils import pretrained

    torch.manual_seed(0)
    inner = models.ConditionalMLPGenerator(2, (2,), n_classes=3, hidden=(8, 8))
    G = models.self_conditioned(inner, [5, 10, 85])
    assert type(G) is models.SelfConditionedMLPGenerator and G.latent_dim == 3
    pretrained.export_generator(G, "tiny-toy", {"command": ["test"]}, weights_dir=tmp_path)
    loaded = pretrained.load_pretrained("tiny-toy", weights_dir=tmp_path)
    assert type(loaded) is models.SelfConditionedMLPGenerator and loaded.cluster_sizes.tolist() == [5, 10, 85]
    z = torch.randn(4, 3, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(loaded(z), G(z), atol=2e-2, rtol=0)  # float16 weights on disk


def test_the_self_conditioned_toy_recipe_trains_on_clusters_that_never_straddle_two_modes():
    recipe = recipes.preset("toy-self-conditioned")
    mixture = data.grid()
    torch.manual_seed(0)
    points = mixture.sample(20_000)
    clusters = recipe.with_overrides(data="grid").cluster_ids(points)
    modes = torch.cdist(points, mixture.means).argmin(1)
    # 50 clusters over 25 modes: every cluster lies inside one mode, and every mode has a cluster
    assert all(len(modes[clusters == c].unique()) == 1 for c in range(50))
    assert len(modes.unique()) == 25
    run = toys.train_toy_gan(recipe, mixture, seed=0, steps=3)
    assert isinstance(run.G, models.SelfConditionedMLPGenerator) and run.G.latent_dim == 3
    assert run.G.cluster_sizes.sum() == 50_000 and len(run.G.cluster_sizes) == 50
    assert toys.sample_generator(run.G, n=5).shape == (5, 2) and not models.is_conditional(run.G)
    with pytest.raises(ValueError, match="model='mlp' on the ring or the grid"):
        recipes.preset("mlp-mnist", clusters=10)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"model": "cdcgan"}, "use it with model='dcgan'"),
        ({"clusters": 1}, "clusters must be"),
    ],
)
def test_a_bad_cluster_setting_is_refused_in_one_line(overrides, message):
    with pytest.raises(ValueError, match=message):
        recipes.preset("dcgan-mnist-self-conditioned", **overrides)
    with pytest.raises(ValueError, match="has no clusters"):
        recipes.preset("dcgan-mnist").cluster_ids(torch.zeros(4, 1, 28, 28))
    with pytest.raises(ValueError, match="exceeds the 4 training samples"):
        recipes.preset("dcgan-mnist-self-conditioned", clusters=5, held_out_per_class=0).cluster_ids(
            torch.zeros(4, 1, 28, 28)
        )


def test_chapter_6_table_settings_build_the_benchmark_rows():
    """Each `key=value` in chapter 6's table of fixes is a valid override of the dcgan-mnist preset,
    and the WGAN-GP row's settings are the ones benchmarks/stabilisers.py trains."""
    import ast
    import json
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    cells = json.loads((root / "chapters/06_stable_training.ipynb").read_text())["cells"]
    table = "".join(next(c for c in cells if c["id"] == "ch6-19")["source"])
    rows = {}
    for line in table.splitlines():
        if line.startswith("| ") and "`" in line.split("|")[-2]:
            name, setting = line.split("|")[1].strip(), line.split("|")[-2]
            pairs = re.findall(r"`(\w+)=([^`]+)`", setting)
            rows[name] = {key: ast.literal_eval(value) for key, value in pairs}
            for bare in re.findall(r"`(\w+)`", setting):  # a setting named without a value
                assert hasattr(recipes.PRESETS["dcgan-mnist"], bare), f"{name}: no recipe setting {bare}"
    assert len(rows) == 7 and rows["hinge loss"] == {"loss": "hinge"}
    for settings in rows.values():
        recipes.preset("dcgan-mnist", **settings)  # raises where the settings do not fit together
    benchmark = _stabilisers_benchmark()
    assert rows["WGAN-GP"] == benchmark.ROWS["WGAN-GP"]  # 10 == 10.0, (0, 0.9) == (0.0, 0.9)


def _stabilisers_benchmark():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks/stabilisers.py"
    spec = importlib.util.spec_from_file_location("stabilisers_benchmark", path)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    return benchmark


def test_the_equal_budget_timing_visits_rows_in_turn_and_budgets_from_the_fastest_round(monkeypatch):
    """A busy spell slows whichever row is timed during it; interleaving spreads it over the rows, and
    the fastest round per row sets its steps, so two rows of equal cost get equal step counts."""
    benchmark = _stabilisers_benchmark()
    visits = []
    # round 0 is slowed for the baseline (as by other work), round 1 for the EMA row
    slowed = {("baseline", 0): 0.2, ("EMA", 1): 0.2}

    def fake_seconds_per_step(row, images):
        round_index = sum(v == row for v in visits)
        visits.append(row)
        return slowed.get((row, round_index), 0.1)

    monkeypatch.setattr(benchmark, "seconds_per_step", fake_seconds_per_step)
    timings = benchmark.interleaved_timing(["baseline", "EMA"], images=None, rounds=2)
    assert visits == ["baseline", "EMA", "baseline", "EMA"]
    assert timings == {"baseline": [0.2, 0.1], "EMA": [0.1, 0.2]}
    assert benchmark.steps_for_budget(60.0, timings["baseline"]) == 600
    assert benchmark.steps_for_budget(60.0, timings["EMA"]) == 600
    assert benchmark.steps_for_budget(0.01, [0.1]) == 1  # never zero steps
    with pytest.raises(ValueError, match="rounds must be at least 1"):
        benchmark.interleaved_timing(["baseline"], images=None, rounds=0)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--steps", "0"], "--steps must be at least 1, got 0"),
        (["--timing-rounds", "0"], "--timing-rounds must be at least 1, got 0"),
        (["--rows", "lr 3e-3"], "unknown rows ['lr 3e-3']; choose from"),
        (["--steps", "10", "--budget", "60"], "drop --budget and --timing-rounds, or drop --steps"),
    ],
)
def test_the_stabilisers_benchmark_refuses_bad_options_before_any_work(argv, message, monkeypatch, capsys):
    benchmark = _stabilisers_benchmark()
    monkeypatch.setattr(benchmark.data, "load_mnist", lambda **_: pytest.fail("loaded data before checking"))
    monkeypatch.setattr("sys.argv", ["stabilisers.py", *argv])
    with pytest.raises(SystemExit):
        benchmark.main()
    assert message in capsys.readouterr().err


def test_the_learning_rate_sweep_rows_change_only_the_learning_rate():
    benchmark = _stabilisers_benchmark()
    base = recipes.preset("dcgan-mnist", steps=871)
    for row, overrides in benchmark.LR_SWEEP.items():
        recipe = benchmark.row_recipe(row, steps=871)
        assert recipe.overrides_from(base) == {"name": row, "lr": overrides["lr"]}


def test_a_fixed_step_sweep_trains_untimed_and_records_a_command_that_reruns_it(monkeypatch, tmp_path):
    """`--steps` never times a row, records no budget, and writes a command whose quoted row names and
    --out reproduce the run (so rerunning it cannot overwrite the main table)."""
    import json
    import shlex
    import types

    benchmark = _stabilisers_benchmark()
    trained_steps = []

    def fake_train(recipe, images, seed):
        trained_steps.append((recipe.name, recipe.steps, recipe.lr, seed))
        return types.SimpleNamespace(G=None, seconds=1.0)

    monkeypatch.setattr(benchmark.data, "load_mnist", lambda **_: types.SimpleNamespace(images=None))
    monkeypatch.setattr(benchmark.metrics, "load_classifier", lambda: None)
    monkeypatch.setattr(benchmark.recipes, "train_recipe", fake_train)
    monkeypatch.setattr(benchmark, "score", lambda *_: dict.fromkeys(benchmark.METRICS, 1.0))
    monkeypatch.setattr(benchmark, "interleaved_timing", lambda *_, **__: pytest.fail("timed"))
    out = tmp_path / "sweep.json"
    argv = ["--rows", "lr 2e-4 (DCGAN paper)", "lr 4e-3", "--steps", "7", "--seeds", "2", "--out", str(out)]
    monkeypatch.setattr("sys.argv", ["stabilisers.py", *argv])
    benchmark.main()

    assert trained_steps == [("lr 2e-4 (DCGAN paper)", 7, 2e-4, 0), ("lr 2e-4 (DCGAN paper)", 7, 2e-4, 1),
                             ("lr 4e-3", 7, 4e-3, 0), ("lr 4e-3", 7, 4e-3, 1)]  # fmt: skip
    result = json.loads(out.read_text())
    assert result["budget_seconds"] is None
    assert result["seconds_per_step"] == {} and result["timing_rounds"] == {}
    assert result["summary"]["lr 4e-3"]["steps"] == 7 and result["summary"]["lr 4e-3"]["seeds"] == 2
    recorded = shlex.split(result["command"])
    assert recorded[2:] == ["--rows", "lr 2e-4 (DCGAN paper)", "lr 4e-3", "--seeds", "2", "--steps", "7",
                            "--out", str(out)]  # fmt: skip
