"""End to end: python -m gan_utils train|sample|evaluate, as a reader would run them."""

import json
import subprocess
import sys

import pytest
import torch

from gan_utils import checkpoints, classifier, data, pretrained, recipes
from gan_utils.__main__ import main


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "gan_utils", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)  # fmt: skip


def test_tiny_run_writes_checkpoint_and_png_then_resumes(tmp_path):
    out = tmp_path / "run"
    first = cli("train", "--preset", "toy-baseline", "--steps", "20", "--out", str(out),
                "--sample-every", "10", "--no-progress")  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert (out / "checkpoint.pt").is_file() and (out / "config.json").is_file()
    assert (out / "samples_step000020.png").stat().st_size > 1000
    assert checkpoints.load_checkpoint(out / "checkpoint.pt")["step"] == 20

    resumed = cli("train", "--preset", "toy-baseline", "--steps", "30", "--out", str(out),
                  "--resume", "--sample-every", "10", "--no-progress")  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    payload = checkpoints.load_checkpoint(out / "checkpoint.pt")
    assert payload["step"] == 30 and payload["history"]["step"] == list(range(1, 31))


@pytest.mark.parametrize("name", ["dcgan-mnist", "dcgan-mnist-stable", "cdcgan-mnist"])
def test_the_cli_reproduces_a_preset_trained_from_python_bit_for_bit(tmp_path, name):
    """Chapter 4's preset (batch 128, lr 5e-4, reuse_fakes, LR decay, channels_last), chapter 6's, whose
    settings the shipped chapter-6 generators build on (wider, R1, an EMA of G, 100 digits per class held
    out), and chapter
    8's conditional one, which also trains on the labels: 20 steps each."""
    out = tmp_path / "run"
    result = cli("train", "--preset", name, "--steps", "20", "--out", str(out), "--device", "cpu",
                 "--no-progress")  # fmt: skip
    assert result.returncode == 0, result.stderr

    mnist = data.load_mnist()
    trained = recipes.train_recipe(recipes.preset(name, steps=20), mnist.images, seed=0, labels=mnist.labels)

    saved = checkpoints.load_checkpoint(out / "checkpoint.pt")
    held_out = trained.recipe.held_out_per_class
    expected = f"{len(mnist.images) - 10 * held_out} images" + (
        f", {10 * held_out} held out" if held_out else ""
    )
    assert expected in json.loads((out / "run.json").read_text())["data_source"]
    for key, tensor in trained.G_trained.state_dict().items():
        assert torch.equal(saved["G"][key], tensor), key
    if trained.G is not trained.G_trained:  # the EMA: the CLI's sampled generator is Python's
        from_cli = pretrained.generator_from_checkpoint(
            out / "checkpoint.pt", recipes.preset(name).build_models()[0]
        )
        for key, tensor in trained.G.state_dict().items():
            assert torch.equal(
                from_cli.state_dict()[key], tensor.to(memory_format=torch.contiguous_format)
            ), key
    assert saved["config"] == {"preset": name, "overrides": {}, "seed": 0}


def test_a_held_out_recipe_trains_on_the_rest_only():
    mnist = data.load_mnist()
    recipe = recipes.preset("dcgan-mnist-stable")
    kept = recipe.training_set(mnist.images, mnist.labels)
    train_index, held_out = classifier.stratified_split(mnist.labels, held_out_per_class=100, seed=0)
    assert len(kept) == len(mnist.images) - 1000 and torch.equal(kept, mnist.images[train_index])
    assert not set(train_index.tolist()) & set(held_out.tolist())
    assert mnist.labels[held_out].bincount().tolist() == [100] * 10
    with pytest.raises(ValueError, match="pass the labels too"):
        recipe.training_set(mnist.images)
    with pytest.raises(ValueError, match="use it with data='mnist'"):
        recipes.preset("toy-baseline", held_out_per_class=10)


def test_mnist_run_writes_an_image_grid(tmp_path):
    out = tmp_path / "mnist"
    result = cli("train", "--preset", "mlp-mnist", "--steps", "2", "--out", str(out), "--batch-size", "16",
                 "--no-progress")  # fmt: skip
    assert result.returncode == 0, result.stderr
    from PIL import Image

    grid = Image.open(out / "samples_step000002.png")
    assert grid.size == (8 * 30 + 2, 8 * 30 + 2)  # 64 digits of 28 px, 2 px padding
    png = tmp_path / "from_run.png"
    assert cli("sample", str(out), "--out", str(png), "--n", "16").returncode == 0
    assert Image.open(png).size == (8 * 30 + 2, 2 * 30 + 2)


def test_a_self_conditioned_run_samples_and_exports_as_an_unconditional_generator(tmp_path):
    """Chapter 6's recipe: trained on cluster ids, the folder's generator draws its clusters from z."""
    from gan_utils import models, release

    out = tmp_path / "self-conditioned"
    small = ["--steps", "2", "--clusters", "4", "--batch-size", "16", "--generator-width", "8",
             "--discriminator-width", "8", "--no-progress"]  # fmt: skip
    result = cli("train", "--preset", "dcgan-mnist-self-conditioned", *small, "--out", str(out))
    assert result.returncode == 0, result.stderr
    sizes = json.loads((out / "config.json").read_text())["cluster_sizes"]  # kept for sampling
    assert len(sizes) == 4 and sum(sizes) == 4000
    assert cli("sample", str(out), "--out", str(tmp_path / "s.png"), "--n", "8").returncode == 0
    weights = tmp_path / "weights"
    assert (
        release.main(["export", "--run", str(out), "--name", "tiny-sc", "--weights-dir", str(weights)]) == 0
    )
    entry = pretrained.read_manifest(weights)["tiny-sc"]
    assert entry["architecture"]["class"] == "SelfConditionedGenerator"
    assert "--clusters 4" in entry["reproduce"]
    G = pretrained.load_pretrained("tiny-sc", weights_dir=weights)
    assert isinstance(G, models.SelfConditionedGenerator) and sum(G.cluster_sizes.tolist()) == 4000


def test_the_conditioning_option_trains_chapter_8s_concatenation_discriminator(tmp_path, capsys):
    out = tmp_path / "concat"
    small = ["--steps", "2", "--batch-size", "16", "--generator-width", "8", "--discriminator-width", "8",
             "--no-progress"]  # fmt: skip
    assert (
        main(["train", "--preset", "cdcgan-mnist", "--conditioning", "concat", *small, "--out", str(out)])
        == 0
    )
    assert json.loads((out / "config.json").read_text())["overrides"]["conditioning"] == "concat"
    D = checkpoints.load_checkpoint(out / "checkpoint.pt")["D"]
    # concatenation: ten one-hot planes beside the image's channel, and no projection vectors
    assert D["features.0.weight"].shape[1] == 1 + 10 and "embedding.weight" not in D
    # an unconditional D has no label to see: refused before anything is written
    refused = tmp_path / "refused"
    assert (
        main(["train", "--preset", "dcgan-mnist", "--conditioning", "concat", *small, "--out", str(refused)])
        == 2
    )
    assert "use it with model='cdcgan' (or clusters)" in capsys.readouterr().err and not refused.exists()


def test_a_self_conditioned_toy_run_loads_as_an_unconditional_generator(tmp_path):
    from gan_utils import models
    from gan_utils.__main__ import generator_from

    out = tmp_path / "grid"
    args = ["--preset", "toy-self-conditioned", "--data", "grid", "--steps", "3", "--no-progress"]
    assert main(["train", *args, "--out", str(out)]) == 0
    G = generator_from(str(out))
    assert isinstance(G, models.SelfConditionedMLPGenerator) and sum(G.cluster_sizes.tolist()) == 50_000
    assert G(torch.randn(4, G.latent_dim)).shape == (4, 2)


def test_sample_writes_a_grid_from_a_shipped_generator(tmp_path):
    from PIL import Image

    assert main(["sample", "dcgan-mnist", "--out", str(tmp_path / "digits.png"), "--n", "8"]) == 0
    assert Image.open(tmp_path / "digits.png").size == (8 * 30 + 2, 30 + 2)
    # a conditional generator: one column per class, the classes in turn
    assert main(["sample", "cdcgan-mnist", "--out", str(tmp_path / "classes.png"), "--n", "20"]) == 0
    assert Image.open(tmp_path / "classes.png").size == (10 * 30 + 2, 2 * 30 + 2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--preset", "gpt"], "invalid choice: 'gpt'"),
        (["--preset", "toy-baseline", "--steps", "0"], "--steps: must be at least 1, got 0"),
        (["--preset", "toy-baseline", "--steps", "ten"], "expected a whole number"),
        (["--preset", "toy-baseline", "--resume"], "no checkpoint at"),
        (["--preset", "toy-baseline", "--device", "cuda:7"], "no CUDA GPU is available"),
        (["--preset", "toy-baseline", "--device", "meta"], "a meta device, which the book does not run on"),
        (["--preset", "dcgan-mnist", "--data", "ring"], "use it with --data mnist"),
        (["--preset", "dcgan-mnist", "--augment", "colour"], "name some of translation, cutout"),
        (["--preset", "dcgan-mnist", "--ema-decay", "1.5"], "ema_decay must be in (0, 1)"),
    ],
)
def test_bad_arguments_give_clear_errors(tmp_path, capsys, args, message):
    argv = ["train", "--out", str(tmp_path / "bad"), "--no-progress", *args]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse reports usage errors by exiting with code 2
        code = exit_.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()  # refused before anything is written


def test_a_bad_argument_in_a_real_process_prints_no_traceback(tmp_path):
    result = cli("train", "--preset", "dcgan-xl", "--steps", "0", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "invalid choice: 'dcgan-xl'" in result.stderr and "Traceback" not in result.stderr


def test_refuses_to_overwrite_or_resume_with_other_settings(tmp_path):
    out = str(tmp_path / "run")
    first = cli("train", "--preset", "toy-baseline", "--steps", "3", "--out", out, "--no-progress")
    assert first.returncode == 0, first.stderr
    again = cli("train", "--preset", "toy-baseline", "--steps", "3", "--out", out, "--no-progress")
    assert again.returncode == 2 and "Add --resume" in again.stderr
    changed = cli(
        "train", "--preset", "toy-baseline", "--data", "grid", "--steps", "6", "--out", out, "--resume"
    )
    assert changed.returncode == 2 and "overrides: {} -> {'data': 'grid'}" in changed.stderr


def test_evaluate_refuses_a_model_that_is_not_a_generator(capsys):
    assert main(["evaluate", "mnist-classifier"]) == 2
    assert "not a noise-to-image generator" in capsys.readouterr().err


def test_an_empty_out_is_refused_not_read_as_the_current_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for argv in (["train", "--preset", "toy-baseline", "--out", ""], ["sample", "dcgan-mnist", "--out", " "]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
        assert "argument --out: empty path; give the file or folder it names" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing written into the current folder


def test_a_checkpoint_that_is_a_folder_is_named_with_or_without_resume(tmp_path, capsys):
    (tmp_path / "run" / "checkpoint.pt").mkdir(parents=True)
    for extra in ([], ["--resume"]):
        argv = ["train", "--preset", "toy-baseline", "--out", str(tmp_path / "run"), "--no-progress"]
        code = main([*argv, *extra])
        assert code == 2
        assert "checkpoint.pt is a folder, not a checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("offset", "message"),
    [
        ("1", "GAN_BOOK_SEED_OFFSET=1 is set, but python -m gan_utils train"),
        ("x", "GAN_BOOK_SEED_OFFSET='x' is not a non-negative integer"),
    ],
)
def test_train_refuses_a_seed_offset_it_would_not_record(tmp_path, capsys, monkeypatch, offset, message):
    monkeypatch.setenv("GAN_BOOK_SEED_OFFSET", offset)
    assert main(["train", "--preset", "toy-baseline", "--steps", "2", "--out", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("preset", ["toy-baseline", "dcgan-mnist"])
def test_an_unconstrained_wasserstein_critic_is_refused_with_the_python_recipe(tmp_path, capsys, preset):
    """No preset has a gradient penalty or spectral norm, and the command line cannot add either, so
    --loss wasserstein alone would train a critic whose scores can grow without bound."""
    out = tmp_path / "run"
    argv = ["train", "--preset", preset, "--loss", "wasserstein", "--steps", "2", "--out", str(out)]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert "--loss wasserstein needs a critic with a Lipschitz constraint" in error
    assert "Traceback" not in error and not out.exists()
    # the message's Python recipe is for the same preset, and recipes.preset accepts it
    suggestion = error[error.index("recipes.preset(") : error.rindex(")") + 1]
    recipe = eval(suggestion, {"recipes": recipes})
    assert recipe.name == recipes.preset(preset).name and recipe.loss == "wasserstein"
    assert recipe.gp_weight == 10.0 and recipe.d_steps == 5
