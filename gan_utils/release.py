"""Release tooling for maintainers: ship weights, record their metrics, train the metrics' classifier.

    python -m gan_utils.release export --run runs/dcgan-mnist --name dcgan-mnist \
        --weights-dir gan_utils/weights
    python -m gan_utils.release record dcgan-mnist --weights-dir gan_utils/weights
    python -m gan_utils.release train-classifier --source bundled --epochs 15 --weights-dir gan_utils/weights

Every command writes into the ``--weights-dir`` it is given, never into the installed package by
default, and replaces nothing already there (a model, its manifest entry, recorded metrics) unless
``--force`` is given; names are checked before any slow work. Readers use ``python -m gan_utils``
(train, sample, evaluate) instead.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time

from gan_utils import checkpoints, data, models, recipes
from gan_utils.__main__ import (
    CHECKPOINT_NAME,
    CONFIG_NAME,
    RUN_RECORD_NAME,
    CommandLineError,
    OneLineErrorParser,
    check_digit_generator,
    generator_from,
    non_negative_int,
    path_option,
    positive_int,
    run_reporting_errors,
)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="python -m gan_utils.release", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser(
        "export",
        help="ship a trained generator with a MANIFEST.json entry",
        description="Copy the generator of RUN/checkpoint.pt into WEIGHTS_DIR/NAME.pt (float16) and record "
        "its preset, overrides, commands, data source, steps, wall time, device and sha256 in MANIFEST.json.",
    )
    export.add_argument(
        "--run", required=True, type=path_option, help="the training folder (holds checkpoint.pt)"
    )
    export.add_argument("--name", required=True, help="e.g. dcgan-mnist")
    export.add_argument("--weights-dir", required=True, type=path_option, help="e.g. gan_utils/weights")
    export.add_argument("--force", action="store_true", help="replace an existing model of that name")

    record = commands.add_parser(
        "record",
        help="score a shipped generator with chapter 5's metrics and write them into the manifest",
        description="5,000 samples (noise seed 0) against the 5,000 bundled digits, in the features of "
        "mnist-classifier; the tests check that the generator keeps meeting the recorded scores.",
    )
    record.add_argument("name", help="e.g. dcgan-mnist")
    record.add_argument("--weights-dir", required=True, type=path_option, help="e.g. gan_utils/weights")
    record.add_argument("--force", action="store_true", help="replace metrics recorded before")

    classifier = commands.add_parser(
        "train-classifier",
        help="train the MNIST classifier that chapter 5's metrics use, and ship it",
        description="Train gan_utils.classifier.MNISTClassifier, measure it on held-out digits and write "
        "it to WEIGHTS_DIR/NAME.pt with a MANIFEST.json entry. With the 60k MNIST it holds out the 10k "
        "test set; with the bundled 5k digits it holds out 100 of each digit.",
    )
    classifier.add_argument("--source", default="auto", choices=data.MNIST_SOURCES, help="MNIST source")
    classifier.add_argument("--epochs", type=positive_int, default=15)
    classifier.add_argument("--seed", type=non_negative_int, default=0)
    classifier.add_argument("--name", default="mnist-classifier", help="name in the manifest")
    classifier.add_argument("--weights-dir", required=True, type=path_option, help="e.g. gan_utils/weights")
    classifier.add_argument("--force", action="store_true", help="replace an existing model of that name")
    classifier.add_argument("--no-progress", action="store_true", help="print nothing per epoch")
    return parser


def export_command(args: argparse.Namespace) -> int:
    """Ship RUN's generator as NAME; the name is checked (plain; new unless --force) before any reading."""
    from gan_utils import pretrained

    pretrained.check_new_name(args.name, args.weights_dir, overwrite=args.force)  # before reading the run
    checkpoint_path, run_path = args.run / CHECKPOINT_NAME, args.run / RUN_RECORD_NAME
    if not checkpoint_path.is_file() or not run_path.is_file():
        raise CommandLineError(
            f"--run {args.run} has no {CHECKPOINT_NAME} and {RUN_RECORD_NAME}; give a folder written by "
            "'python -m gan_utils train'."
        )
    config = checkpoints.load_checkpoint(checkpoint_path)["config"]
    try:
        run = json.loads(run_path.read_text())
        record = {"preset": config["preset"], "overrides": config["overrides"], "seed": config["seed"],
                  "command": run["commands"], "data_source": run["data_source"], "steps": run["steps"],
                  "wall_seconds": run["wall_seconds"], "device": run["device"], "metrics": {}}  # fmt: skip
        planned = json.loads((args.run / CONFIG_NAME).read_text())["steps"]  # the schedule's length
        if run["steps"] < planned:  # stopped early: the weights are step run["steps"] of the longer run
            record["planned_steps"] = planned
        record["reproduce"] = reproduce_command(args.name, config, planned, stop_after=run["steps"])
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as error:
        raise CommandLineError(
            f"{run_path}, {CONFIG_NAME} or the checkpoint's config is damaged or incomplete "
            f"({error.__class__.__name__}: {error}); export needs an intact folder written by "
            "'python -m gan_utils train'."
        ) from None
    G = generator_from(str(args.run))
    path = pretrained.export_generator(
        G, args.name, record, weights_dir=args.weights_dir, overwrite=args.force
    )
    manifest = args.weights_dir / pretrained.MANIFEST_NAME
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) and its entry in {manifest}")
    return 0


def reproduce_command(name: str, config: dict, steps: int, stop_after: int | None = None) -> str:
    """The shortest command that retrains ``name``: preset, overrides, steps (if not the preset's), seed,
    and ``--stop-after`` when the run ended (Ctrl-C, a time limit) before its last step."""
    flags = {"batch_size": "--batch-size", "lr": "--lr", "lr_D": "--lr-d", "loss": "--loss",
             "ema_decay": "--ema-decay", "data": "--data", "precision": "--precision",
             "r1_gamma": "--r1-gamma", "generator_width": "--generator-width",
             "discriminator_width": "--discriminator-width", "clusters": "--clusters"}  # fmt: skip
    switches = {"reuse_fakes": "--reuse-fakes", "lr_decay": "--lr-decay",
                "sync_batchnorm": "--sync-batchnorm"}  # fmt: skip
    preset, overrides = config["preset"], config["overrides"]
    stopped = bool(stop_after) and stop_after < steps  # ended before the last step of its schedule
    stop_note = f", stopped after step {stop_after}" if stopped else ""
    if preset not in recipes.PRESETS:
        seed = config["seed"]
        return (f"preset {preset!r} (not in this gan_utils version), steps {steps}, overrides {overrides!r}, "
                f"seed {seed}{stop_note}")  # fmt: skip
    words = ["python", "-m", "gan_utils", "train", "--preset", preset]
    if steps != recipes.PRESETS[preset].steps:
        words += ["--steps", str(steps)]
    for key, value in overrides.items():
        if key in flags:
            words += [flags[key], str(value)]
        elif key in switches:
            words.append(switches[key] if value else switches[key].replace("--", "--no-", 1))
        elif key == "augment":
            words += ["--augment", ",".join(value) or "none"]
        else:
            seed = config["seed"]
            return f"recipes.preset({preset!r}, steps={steps}, **{overrides!r}) with seed {seed}{stop_note}"
    if stopped:
        words += ["--stop-after", str(stop_after)]
    return shlex.join([*words, "--seed", str(config["seed"]), "--out", f"runs/{name}"])


def record_command(args: argparse.Namespace) -> int:
    """Score a shipped digit generator and store the scores; metrics recorded before need --force."""
    from gan_utils import metrics, pretrained

    G = pretrained.load_pretrained(args.name, weights_dir=args.weights_dir)
    check_digit_generator(G, args.name, "record")
    if pretrained.read_manifest(args.weights_dir)[args.name].get("metrics") and not args.force:
        raise CommandLineError(
            f"{args.name} already has metrics in {args.weights_dir / pretrained.MANIFEST_NAME}; add --force "
            "to replace them."
        )
    mnist = data.load_mnist(source="bundled")
    scores = metrics.evaluate_generator(G, mnist.images, n=metrics.IMAGE_EVAL_SAMPLES, seed=0)
    if models.is_conditional(G):  # chapter 8: 500 samples per class, scored class by class
        per_class = metrics.IMAGE_EVAL_SAMPLES // G.n_classes
        conditional = metrics.conditional_metrics(G, mnist.images, mnist.labels, n_per_class=per_class)
        scores |= {key: value for key, value in conditional.items() if key != "frechet_distance"}
    scores = {key: [round(v, 4) for v in value] if isinstance(value, list) else round(value, 4)
              for key, value in scores.items()}  # fmt: skip
    print(json.dumps(scores, indent=1))
    record = {**scores, "samples": metrics.IMAGE_EVAL_SAMPLES, "seed": 0,
              "against": "the 5,000 bundled MNIST digits, in mnist-classifier features"}  # fmt: skip
    pretrained.record_metrics(args.name, record, weights_dir=args.weights_dir, overwrite=args.force)
    print(f"recorded in {args.weights_dir / pretrained.MANIFEST_NAME}")
    return 0


def train_classifier_command(args: argparse.Namespace) -> int:
    """Train and ship the metrics' classifier; the name is checked before the minutes of training."""
    from gan_utils import classifier, pretrained

    pretrained.check_new_name(args.name, args.weights_dir, overwrite=args.force)  # before minutes of training
    start = time.perf_counter()
    mnist = data.load_mnist(source=args.source)
    if mnist.source == "torchvision":
        train_images, train_labels = mnist.images, mnist.labels
        test = data.load_mnist(source="torchvision", train=False)
        test_images, test_labels, held_out = test.images, test.labels, "the 10,000 MNIST test digits"
    else:
        train_index, test_index = classifier.stratified_split(
            mnist.labels, held_out_per_class=100, seed=args.seed
        )
        train_images, train_labels = mnist.images[train_index], mnist.labels[train_index]
        test_images, test_labels = mnist.images[test_index], mnist.labels[test_index]
        held_out = "1,000 bundled digits (100 per class) kept out of training"
    model = classifier.train_classifier(
        train_images, train_labels, epochs=args.epochs, seed=args.seed, progress=not args.no_progress
    )
    accuracy = classifier.accuracy(model, test_images, test_labels)
    seconds = time.perf_counter() - start
    # into a fresh folder, since the shipped one refuses a second entry of the same name
    reproduce = ["python", "-m", "gan_utils.release", "train-classifier", "--source", mnist.source,
                 "--epochs", str(args.epochs), "--seed", str(args.seed), "--name", args.name,
                 "--weights-dir", "runs/weights"]  # fmt: skip
    record = {"command": [args.command_line], "data_source": f"MNIST ({mnist.source}, {len(train_images)} "
              f"training images)", "epochs": args.epochs, "wall_seconds": round(seconds, 1), "device": "cpu",
              "metrics": {"held_out_accuracy": round(accuracy, 4), "held_out": held_out},
              "reproduce": shlex.join(reproduce)}  # fmt: skip
    architecture = {"class": "MNISTClassifier", "kwargs": {}}
    path = pretrained.export_generator(
        model, args.name, record, architecture, weights_dir=args.weights_dir, overwrite=args.force
    )
    print(f"held-out accuracy {accuracy:.2%} on {held_out}; wrote {path} in {seconds:.0f} s")
    return 0


def main(argv: list[str] | None = None, exiting: bool = False) -> int:
    """Run the command line ``argv``; ``exiting`` (set when run as a program) ignores a late Ctrl-C."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.command_line = shlex.join(["python", "-m", "gan_utils.release", *argv])
    commands = {
        "export": export_command,
        "record": record_command,
        "train-classifier": train_classifier_command,
    }
    return run_reporting_errors(commands[args.command], args, exiting)


if __name__ == "__main__":
    sys.exit(main(exiting=True))
