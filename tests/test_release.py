"""Maintainer tooling: python -m gan_utils.release export|record|train-classifier into a weights folder."""

import torch

from gan_utils import pretrained
from gan_utils.__main__ import main as reader_cli
from gan_utils.release import main


def test_export_ships_a_trained_generator_with_its_preset_and_record(tmp_path):
    out, weights = tmp_path / "run", tmp_path / "weights"
    train = ["train", "--preset", "toy-baseline", "--steps", "4", "--out", str(out), "--no-progress"]
    assert reader_cli(train) == 0
    assert main(["export", "--run", str(out), "--name", "mlp-ring", "--weights-dir", str(weights)]) == 0
    entry = pretrained.read_manifest(weights)["mlp-ring"]
    assert entry["steps"] == 4 and entry["device"] == "cpu" and "ring mixture" in entry["data_source"]
    assert entry["preset"] == "toy-baseline" and entry["overrides"] == {} and entry["seed"] == 0
    assert entry["command"] == [
        f"python -m gan_utils train --preset toy-baseline --steps 4 --out {out} --no-progress"
    ]
    assert (
        entry["reproduce"]
        == "python -m gan_utils train --preset toy-baseline --steps 4 --seed 0 --out runs/mlp-ring"
    )
    G = pretrained.load_pretrained("mlp-ring", weights_dir=weights)
    assert G(torch.randn(3, G.latent_dim)).shape == (3, 2)


def test_train_classifier_ships_the_model_with_its_held_out_accuracy(tmp_path, capsys):
    from gan_utils import classifier

    weights = tmp_path / "weights"
    args = ["train-classifier", "--source", "bundled", "--epochs", "1", "--name", "clf",
            "--weights-dir", str(weights), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    entry = pretrained.read_manifest(weights)["clf"]
    assert entry["architecture"] == {"class": "MNISTClassifier", "kwargs": {}}
    assert 0.5 < entry["metrics"]["held_out_accuracy"] <= 1
    assert "100 per class" in entry["metrics"]["held_out"]
    assert entry["reproduce"] == (
        "python -m gan_utils.release train-classifier --source bundled --epochs 1 --seed 0 --name clf "
        "--weights-dir runs/weights"
    )
    model = pretrained.load_pretrained("clf", weights_dir=weights)
    assert isinstance(model, classifier.MNISTClassifier) and not model.training
    assert "held-out accuracy" in capsys.readouterr().out


def test_record_writes_the_metrics_of_a_shipped_generator(tmp_path):
    from gan_utils import models

    torch.manual_seed(0)
    G = models.DCGANGenerator(latent_dim=8, width=4).apply(models.init_weights)
    pretrained.export_generator(G, "tiny", {"command": ["..."], "metrics": {}}, weights_dir=tmp_path)
    assert main(["record", "tiny", "--weights-dir", str(tmp_path)]) == 0
    recorded = pretrained.read_manifest(tmp_path)["tiny"]["metrics"]
    assert recorded["samples"] == 5000 and recorded["seed"] == 0
    assert recorded["frechet_distance"] > 100 and recorded["recall"] < 0.05  # an untrained G is far off


def test_every_release_command_needs_an_explicit_weights_dir(capsys):
    for command in (["export", "--run", "x", "--name", "y"], ["record", "dcgan-mnist"], ["train-classifier"]):
        try:
            code = main(command)
        except SystemExit as exit_:
            code = exit_.code
        assert code == 2 and "--weights-dir" in capsys.readouterr().err


def test_a_run_stopped_early_exports_a_reproduce_line_that_retrains_the_same_weights(tmp_path):
    """Width and R1 overrides reach the manifest; a run ended before its last step (Ctrl-C, a time limit,
    --stop-after) is recorded as the longer run stopped at its step, not as a shorter run."""
    import shlex

    from gan_utils import checkpoints

    out, weights = tmp_path / "run", tmp_path / "weights"
    train = ["train", "--preset", "dcgan-mnist-stable", "--steps", "6", "--stop-after", "3",
             "--r1-gamma", "0.5", "--generator-width", "8", "--discriminator-width", "4", "--out", str(out),
             "--no-progress"]  # fmt: skip
    assert reader_cli(train) == 0
    assert main(["export", "--run", str(out), "--name", "small", "--weights-dir", str(weights)]) == 0
    entry = pretrained.read_manifest(weights)["small"]
    assert entry["steps"] == 3 and entry["planned_steps"] == 6
    assert entry["overrides"] == {"r1_gamma": 0.5, "generator_width": 8, "discriminator_width": 4}
    words = shlex.split(entry["reproduce"])
    assert words[words.index("--steps") + 1] == "6" and words[words.index("--stop-after") + 1] == "3"

    again = tmp_path / "again"
    words[words.index("--out") + 1] = str(again)
    assert reader_cli([*words[3:], "--no-progress"]) == 0  # after "python -m gan_utils"
    first, second = (checkpoints.load_checkpoint(folder / "checkpoint.pt") for folder in (out, again))
    assert second["step"] == 3
    assert all(torch.equal(first["G"][key], second["G"][key]) for key in first["G"])


def test_stop_after_must_come_before_the_last_step(tmp_path, capsys):
    out = tmp_path / "r"
    train = ["train", "--preset", "toy-baseline", "--steps", "5", "--stop-after", "5", "--out", str(out)]
    assert reader_cli(train) == 2
    assert "--stop-after 5 is not before the run's last step (5)" in capsys.readouterr().err
    assert not out.exists()


def test_a_run_stopped_by_stop_after_resumes_to_the_uninterrupted_result(tmp_path, capsys):
    from gan_utils import checkpoints

    base = ["train", "--preset", "toy-baseline", "--steps", "8", "--no-progress"]
    assert reader_cli([*base, "--out", str(tmp_path / "straight")]) == 0
    stopped = tmp_path / "stopped"
    assert reader_cli([*base, "--stop-after", "3", "--out", str(stopped)]) == 0
    assert reader_cli([*base, "--stop-after", "2", "--resume", "--out", str(stopped)]) == 2
    assert "--stop-after must be later than that" in capsys.readouterr().err
    assert reader_cli([*base, "--resume", "--out", str(stopped)]) == 0
    a, b = (checkpoints.load_checkpoint(tmp_path / run / "checkpoint.pt") for run in ("straight", "stopped"))
    assert a["step"] == b["step"] == 8
    assert all(torch.equal(a["G"][key], b["G"][key]) for key in a["G"])


def parses_with_todays_command_line(command: str) -> bool:
    """Whether a recorded ``python -m gan_utils[.release] ...`` command parses with today's options."""
    import contextlib
    import io
    import shlex

    from gan_utils import __main__ as reader
    from gan_utils import release

    words = shlex.split(command)
    parser = {"gan_utils": reader.build_parser, "gan_utils.release": release.build_parser}[words[2]]()
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            parser.parse_args(words[3:])
    except SystemExit:
        return False
    return True


def test_every_shipped_command_parses_with_todays_command_line_or_says_why_not():
    """A reader copies the manifest's commands: each must parse, or its entry explain it in a
    ``command_note``; every ``reproduce`` line must parse."""
    import json

    assert not parses_with_todays_command_line("python -m gan_utils train --model dcgan --out runs/x")
    assert not parses_with_todays_command_line("python -m gan_utils train-classifier --epochs 15")
    manifest = json.loads((pretrained.WEIGHTS_DIR / pretrained.MANIFEST_NAME).read_text())
    failing = []
    for name, entry in manifest.items():
        recorded = entry.get("command", [])
        for command in [recorded] if isinstance(recorded, str) else recorded:
            stale = command.startswith("python -m ") and not parses_with_todays_command_line(command)
            if stale and "command_note" not in entry:
                failing.append((name, command))
        reproduce = entry.get("reproduce", "")
        if reproduce.startswith("python -m ") and not parses_with_todays_command_line(reproduce):
            failing.append((name, reproduce))
    assert failing == []
