"""End to end: python -m gan_utils train, as a reader would run it."""

import subprocess
import sys

import pytest
import torch

from gan_utils import checkpoints
from gan_utils.__main__ import main


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "gan_utils", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)  # fmt: skip


def test_tiny_run_writes_checkpoint_and_png_then_resumes(tmp_path):
    out = tmp_path / "run"
    first = cli("train", "--model", "mlp", "--data", "ring", "--steps", "20", "--out", str(out),
                "--sample-every", "10", "--no-progress")  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert (out / "checkpoint.pt").is_file() and (out / "config.json").is_file()
    assert (out / "samples_step000020.png").stat().st_size > 1000
    assert checkpoints.load_checkpoint(out / "checkpoint.pt")["step"] == 20

    resumed = cli("train", "--model", "mlp", "--data", "ring", "--steps", "30", "--out", str(out),
                  "--resume", "--sample-every", "10", "--no-progress")  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    payload = checkpoints.load_checkpoint(out / "checkpoint.pt")
    assert payload["step"] == 30 and payload["history"]["step"] == list(range(1, 31))


@pytest.mark.parametrize("model", ["mlp", "dcgan"])
def test_mnist_run_writes_an_image_grid(tmp_path, model):
    out = tmp_path / "mnist"
    result = cli("train", "--model", model, "--data", "mnist", "--steps", "2", "--out", str(out),
                 "--batch-size", "16", "--no-progress")  # fmt: skip
    assert result.returncode == 0, result.stderr
    from PIL import Image

    grid = Image.open(out / "samples_step000002.png")
    assert grid.size == (8 * 30 + 2, 8 * 30 + 2)  # 64 digits of 28 px, 2 px padding


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "gpt", "--steps", "5"], "invalid choice: 'gpt'"),
        (["--model", "mlp", "--steps", "0"], "--steps: must be at least 1, got 0"),
        (["--model", "mlp", "--steps", "ten"], "expected a whole number"),
        (["--model", "mlp", "--steps", "5", "--resume"], "no checkpoint at"),
        (["--model", "mlp", "--steps", "5", "--device", "cuda:7"], "no CUDA GPU is available"),
        (["--model", "dcgan", "--steps", "5"], "use it with --data mnist"),
    ],
)
def test_bad_arguments_give_clear_errors(tmp_path, capsys, args, message):
    argv = ["train", "--data", "ring", "--out", str(tmp_path / "bad"), "--no-progress", *args]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse reports usage errors by exiting with code 2
        code = exit_.code
    assert code == 2
    assert message in capsys.readouterr().err


def test_a_bad_argument_in_a_real_process_prints_no_traceback(tmp_path):
    result = cli("train", "--model", "dcgan-xl", "--data", "ring", "--steps", "0", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "invalid choice: 'dcgan-xl'" in result.stderr and "Traceback" not in result.stderr


def test_refuses_to_overwrite_or_resume_with_other_settings(tmp_path):
    out = str(tmp_path / "run")
    assert (
        cli(
            "train", "--model", "mlp", "--data", "ring", "--steps", "3", "--out", out, "--no-progress"
        ).returncode
        == 0
    )
    again = cli("train", "--model", "mlp", "--data", "ring", "--steps", "3", "--out", out, "--no-progress")
    assert again.returncode == 2 and "Add --resume" in again.stderr
    changed = cli("train", "--model", "mlp", "--data", "grid", "--steps", "6", "--out", out, "--resume")
    assert changed.returncode == 2 and "data: 'ring' -> 'grid'" in changed.stderr


def test_export_ships_a_trained_generator_with_its_record(tmp_path):
    from gan_utils import pretrained

    out, weights = tmp_path / "run", tmp_path / "weights"
    assert (
        main(
            ["train", "--model", "mlp", "--data", "ring", "--steps", "4", "--out", str(out), "--no-progress"]
        )
        == 0
    )
    assert main(["export", "--out", str(out), "--name", "mlp-ring", "--weights-dir", str(weights)]) == 0
    entry = pretrained.read_manifest(weights)["mlp-ring"]
    assert entry["steps"] == 4 and entry["device"] == "cpu" and "ring mixture" in entry["data_source"]
    assert entry["command"] == [
        f"python -m gan_utils train --model mlp --data ring --steps 4 --out {out} --no-progress"
    ]
    G = pretrained.load_pretrained("mlp-ring", weights_dir=weights)
    assert G(torch.randn(3, G.latent_dim)).shape == (3, 2)


def test_train_classifier_ships_the_model_with_its_held_out_accuracy(tmp_path, capsys):
    from gan_utils import classifier, pretrained

    weights = tmp_path / "weights"
    args = ["train-classifier", "--source", "bundled", "--epochs", "1", "--name", "clf",
            "--weights-dir", str(weights), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    entry = pretrained.read_manifest(weights)["clf"]
    assert entry["architecture"] == {"class": "MNISTClassifier", "kwargs": {}}
    assert (
        0.5 < entry["metrics"]["held_out_accuracy"] <= 1 and "100 per class" in entry["metrics"]["held_out"]
    )
    model = pretrained.load_pretrained("clf", weights_dir=weights)
    assert isinstance(model, classifier.MNISTClassifier) and not model.training
    assert "held-out accuracy" in capsys.readouterr().out


def test_evaluate_records_the_metrics_of_a_shipped_generator(tmp_path):
    from gan_utils import models, pretrained

    torch.manual_seed(0)
    G = models.DCGANGenerator(latent_dim=8, width=4).apply(models.init_weights)
    pretrained.export_generator(G, "tiny", {"command": ["..."], "metrics": {}}, weights_dir=tmp_path)
    assert main(["evaluate", "tiny", "--weights-dir", str(tmp_path), "--record"]) == 0
    recorded = pretrained.read_manifest(tmp_path)["tiny"]["metrics"]
    assert recorded["samples"] == 5000 and recorded["seed"] == 0
    assert recorded["frechet_distance"] > 100 and recorded["recall"] < 0.05  # an untrained G is far off


def test_evaluate_refuses_a_model_that_is_not_a_generator(capsys):
    assert main(["evaluate", "mnist-classifier"]) == 2
    assert "not a generator" in capsys.readouterr().err
