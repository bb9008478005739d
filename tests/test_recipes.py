"""recipes.py: presets, overrides and what a recipe builds."""

import pytest
import torch

from gan_utils import data, recipes, training


def test_overrides_change_only_what_they_name_and_are_recorded():
    base = recipes.PRESETS["dcgan-mnist"]
    short = recipes.preset("dcgan-mnist", steps=2400, lr=1e-4)
    assert (short.steps, short.lr, short.batch_size) == (2400, 1e-4, base.batch_size)
    assert short.overrides_from(base) == {"steps": 2400, "lr": 1e-4}
    assert base.steps == 12000  # presets are frozen: the override made a copy


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: recipes.preset("dcgan-xl"), "unknown preset 'dcgan-xl'; choose one of toy-baseline"),
        (
            lambda: recipes.preset("mlp-mnist", learning_rate=1.0),
            r"unknown recipe settings \['learning_rate'\]",
        ),
        (lambda: recipes.preset("dcgan-mnist", data="ring"), "use it with data='mnist'"),
        (lambda: recipes.preset("mlp-mnist", loss="bce"), "unknown loss 'bce'"),
        (lambda: recipes.preset("toy-baseline", reuse_fakes="False"), "reuse_fakes must be True or False"),
        (lambda: recipes.preset("dcgan-mnist", lr_decay="no"), "lr_decay must be True or False, got 'no'"),
        (lambda: recipes.preset("dcgan-mnist", channels_last=1), "channels_last must be True or False"),
        (lambda: recipes.preset("dcgan-mnist", sync_batchnorm=2), "sync_batchnorm must be True or False"),
    ],
)
def test_bad_recipes_are_refused_with_the_fix(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_the_dcgan_preset_builds_channels_last_models_and_its_optimisers_and_schedule():
    recipe = recipes.preset("dcgan-mnist")
    G, D = recipe.build_models()
    x = G(torch.randn(2, G.latent_dim))
    assert x.shape == (2, 1, 28, 28) and x.is_contiguous(memory_format=torch.channels_last)
    assert D(x).shape == (2,)
    opt_G, opt_D = recipe.optimisers(G, D)
    assert opt_G.param_groups[0]["lr"] == 5e-4 and opt_D.param_groups[0]["betas"] == (0.5, 0.999)
    (decay,) = recipe.schedule(opt_G, opt_D)
    assert isinstance(decay, training.LinearLearningRateDecay) and decay.total_steps == 12000
    assert recipe.step().keywords == {
        "loss": "non-saturating",
        "d_steps": 1,
        "d_penalty": None,
        "reuse_fakes": True,
        "precision": None,
    }


def test_the_toy_presets_differ_only_by_r1_and_the_decay():
    baseline, stable = recipes.PRESETS["toy-baseline"], recipes.PRESETS["toy-r1-decay"]
    assert stable.overrides_from(baseline) == {"name": "R1 + LR decay", "r1_gamma": 0.1, "lr_decay": True}
    assert isinstance(stable.step().keywords["d_penalty"], training.R1Penalty)


def _train_toy(recipe: recipes.Recipe, fused: bool, steps: int = 20):
    points = data.ring().sample(512, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    G, D = recipe.build_models()
    initial = [p.detach().clone() for p in G.parameters()]
    opt_G, opt_D = recipe.optimisers(G, D, fused=fused)
    training.train(G, D, opt_G, opt_D, recipe.batches(points, None, "cpu"), steps, recipe.step(),
                   progress=False, data_seed=0)  # fmt: skip
    return G, opt_G, initial


@pytest.mark.parametrize("optimiser", ["adam", "rmsprop"])
def test_fused_optimisers_train_like_the_default_ones(optimiser):
    """Adam's fused kernel is the same update to rounding; RMSprop has none here and ignores the flag."""
    recipe = recipes.preset("toy-baseline", optimiser=optimiser)
    G_fused, opt_fused, initial = _train_toy(recipe, fused=True)
    G_plain, opt_plain, _ = _train_toy(recipe, fused=False)
    assert opt_fused.param_groups[0].get("fused") is (True if optimiser == "adam" else None)
    assert not opt_plain.param_groups[0].get("fused")
    assert any(not torch.equal(p, p0) for p, p0 in zip(G_plain.parameters(), initial, strict=True))
    for p_fused, p_plain in zip(G_fused.parameters(), G_plain.parameters(), strict=True):
        torch.testing.assert_close(p_fused, p_plain, rtol=1e-4, atol=1e-5)


def test_train_recipe_builds_capturable_fused_optimisers_for_a_recorded_step(monkeypatch):
    built_with = []
    build = recipes.Recipe.optimisers

    def spy(self, G, D, **options):
        built_with.append(options)
        return build(self, G, D, **options)

    monkeypatch.setattr(recipes.Recipe, "optimisers", spy)
    recipe = recipes.preset("toy-baseline", steps=2)
    with pytest.raises(
        ValueError, match="models are on cpu"
    ):  # recording needs CUDA; the optimisers came first
        recipes.train_recipe(recipe, data.ring().sample(256), seed=0, cuda_graph=True)
    recipes.train_recipe(recipe, data.ring().sample(256), seed=0)
    assert built_with == [{"capturable": True, "fused": True}, {"capturable": False, "fused": False}]


def test_the_readme_names_every_preset():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert [name for name in recipes.PRESETS if f"`{name}`" not in readme] == []
