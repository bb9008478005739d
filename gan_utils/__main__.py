"""Command line: ``python -m gan_utils train --model mlp --data mnist --steps N --out DIR [--resume]``.

A thin wrapper over `gan_utils.training.train`: it builds the models and data, trains with a
progress bar, writes a checkpoint and sample grids from one fixed noise batch into ``--out``, and
continues a stopped run with ``--resume``. Run ``python -m gan_utils train --help`` for every option.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import torch

from gan_utils import checkpoints, data, models, training
from gan_utils.pretrained import PretrainedError
from gan_utils.runtime import default_device, sample, set_seed

MODELS = ("mlp", "dcgan")
DATASETS = ("mnist", "ring", "grid")
CHECKPOINT_NAME = "checkpoint.pt"


class CommandLineError(Exception):
    """A mistake in the command line or its inputs, reported without a traceback."""


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gan_utils", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser(
        "train",
        help="train a GAN and write checkpoints and sample grids",
        description="Train a GAN. Example: python -m gan_utils train --model mlp --data mnist --steps 3000 "
        "--out runs/mlp. Stop it with Ctrl-C at any time; --resume continues to the same result.",
    )
    train.add_argument("--model", required=True, choices=MODELS, help="architecture")
    train.add_argument("--data", required=True, choices=DATASETS, help="mnist (auto source), ring or grid")
    train.add_argument("--steps", required=True, type=positive_int, help="total generator steps of the run")
    train.add_argument("--out", required=True, type=Path, help="folder for checkpoint.pt, config.json, PNGs")
    train.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    train.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, mps")
    train.add_argument("--seed", type=int, default=0, help="seed for initialisation, noise and data order")
    train.add_argument("--batch-size", type=positive_int, default=64)
    train.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate for both players")
    train.add_argument("--loss", default="non-saturating", choices=list(training.LOSSES))
    train.add_argument(
        "--reuse-fakes", action="store_true", help="G's update scores D's fakes (one G pass less)"
    )
    train.add_argument("--lr-decay", action="store_true", help="decay both learning rates linearly to 0")
    train.add_argument("--sample-every", type=positive_int, default=500, help="steps between sample grids")
    train.add_argument("--checkpoint-every", type=positive_int, default=500, help="steps between checkpoints")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    export = commands.add_parser(
        "export",
        help="ship a trained generator in gan_utils/weights with a MANIFEST.json entry",
        description="Copy the generator of OUT/checkpoint.pt into gan_utils/weights/NAME.pt (float16) and "
        "record its command, data source, steps, wall time, device and sha256 in MANIFEST.json.",
    )
    export.add_argument("--out", required=True, type=Path, help="the training folder (holds checkpoint.pt)")
    export.add_argument("--name", required=True, help="e.g. dcgan-mnist")
    export.add_argument("--weights-dir", type=Path, default=None, help="default: gan_utils/weights")

    evaluate = commands.add_parser(
        "evaluate",
        help="score a shipped generator with chapter 5's metrics (and record them in the manifest)",
        description="Score a shipped generator: 5,000 samples (noise seed 0) against the 5,000 bundled MNIST "
        "digits, in the features of the shipped mnist-classifier. --record writes the scores into "
        "MANIFEST.json, where the tests check that the generator keeps meeting them.",
    )
    evaluate.add_argument("name", help="e.g. dcgan-mnist")
    evaluate.add_argument("--record", action="store_true", help="write the scores into MANIFEST.json")
    evaluate.add_argument("--weights-dir", type=Path, default=None, help="default: gan_utils/weights")

    classifier = commands.add_parser(
        "train-classifier",
        help="train the MNIST classifier that chapter 5's metrics use, and ship it",
        description="Train gan_utils.classifier.MNISTClassifier, measure it on held-out digits and write "
        "it to gan_utils/weights/NAME.pt with a MANIFEST.json entry. With the 60k MNIST it holds out "
        "the 10k test set; with the bundled 5k digits it holds out 100 of each digit.",
    )
    classifier.add_argument("--source", default="auto", choices=data.MNIST_SOURCES, help="MNIST source")
    classifier.add_argument("--epochs", type=positive_int, default=15)
    classifier.add_argument("--seed", type=int, default=0)
    classifier.add_argument("--name", default="mnist-classifier", help="name in the manifest")
    classifier.add_argument("--weights-dir", type=Path, default=None, help="default: gan_utils/weights")
    classifier.add_argument("--no-progress", action="store_true", help="print nothing per epoch")
    return parser


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return default_device()
    try:
        device = torch.device(name)
    except RuntimeError:
        raise CommandLineError(f"--device {name!r} is not a device; use auto, cpu, cuda or mps.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CommandLineError("--device cuda was asked for but no CUDA GPU is available; use --device cpu.")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise CommandLineError("--device mps was asked for but MPS is not available; use --device cpu.")
    return device


def build_models(model: str, dataset: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    if model == "dcgan":
        if dataset != "mnist":
            raise CommandLineError("--model dcgan draws images: use it with --data mnist.")
        return models.dcgan_mnist_generator(), models.dcgan_mnist_discriminator()
    if dataset == "mnist":
        return models.mlp_mnist_generator(), models.mlp_mnist_discriminator()
    return models.MLPGenerator(2, (2,), hidden=(128, 128, 128)), models.MLPDiscriminator(
        (2,), hidden=(128, 128)
    )


def load_data(dataset: str) -> tuple[torch.Tensor, str]:
    """The training samples and a description of where they came from."""
    if dataset == "mnist":
        mnist = data.load_mnist()
        return mnist.images, f"MNIST ({mnist.source}, {len(mnist.images)} images)"
    mixture = data.ring() if dataset == "ring" else data.grid()
    return mixture.sample(
        50_000, generator=torch.Generator().manual_seed(0)
    ), f"{dataset} mixture, 50,000 samples"


def record_run(
    out: Path, command_line: str, device: torch.device, source: str, seconds: float, step: int
) -> None:
    """Keep OUT/run.json: every command that trained this run, its device, data and total wall time."""
    path = out / "run.json"
    run = json.loads(path.read_text()) if path.exists() else {"commands": [], "wall_seconds": 0.0}
    run["commands"].append(command_line)
    run.update(device=device.type, data_source=source, steps=step,
               wall_seconds=round(run["wall_seconds"] + seconds, 1))  # fmt: skip
    path.write_text(json.dumps(run, indent=1) + "\n")


def export_command(args: argparse.Namespace) -> int:
    from gan_utils import pretrained

    checkpoint_path = args.out / CHECKPOINT_NAME
    config = checkpoints.load_checkpoint(checkpoint_path)["config"]
    run_path = args.out / "run.json"
    if not run_path.is_file():
        raise CommandLineError(f"{run_path} is missing; export needs a folder written by 'gan_utils train'.")
    run = json.loads(run_path.read_text())
    G, _ = build_models(config["model"], config["data"])
    pretrained.generator_from_checkpoint(checkpoint_path, G)
    record = {"command": run["commands"], "data_source": run["data_source"], "steps": run["steps"],
              "wall_seconds": run["wall_seconds"], "device": run["device"], "metrics": {}}  # fmt: skip
    weights_dir = args.weights_dir or pretrained.WEIGHTS_DIR
    path = pretrained.export_generator(G, args.name, record, weights_dir=weights_dir)
    manifest = weights_dir / pretrained.MANIFEST_NAME
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) and its entry in {manifest}")
    return 0


def evaluate_command(args: argparse.Namespace) -> int:
    from gan_utils import metrics, pretrained

    weights_dir = args.weights_dir or pretrained.WEIGHTS_DIR
    G = pretrained.load_pretrained(args.name, weights_dir=weights_dir)
    if not hasattr(G, "latent_dim"):
        raise CommandLineError(f"{args.name} is not a generator; evaluate scores generators.")
    real = data.load_mnist(source="bundled").images
    scores = metrics.evaluate_generator(G, real, n=metrics.IMAGE_EVAL_SAMPLES, seed=0)
    scores = {key: round(value, 4) for key, value in scores.items()}
    print(json.dumps(scores, indent=1))
    if args.record:
        record = {**scores, "samples": metrics.IMAGE_EVAL_SAMPLES, "seed": 0,
                  "against": "the 5,000 bundled MNIST digits, in mnist-classifier features"}  # fmt: skip
        pretrained.record_metrics(args.name, record, weights_dir=weights_dir)
        print(f"recorded in {weights_dir / pretrained.MANIFEST_NAME}")
    return 0


def train_classifier_command(args: argparse.Namespace) -> int:
    from gan_utils import classifier, pretrained

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
    record = {"command": [args.command_line], "data_source": f"MNIST ({mnist.source}, {len(train_images)} "
              f"training images)", "epochs": args.epochs, "wall_seconds": round(seconds, 1), "device": "cpu",
              "metrics": {"held_out_accuracy": round(accuracy, 4), "held_out": held_out}}  # fmt: skip
    architecture = {"class": "MNISTClassifier", "kwargs": {}}
    weights_dir = args.weights_dir or pretrained.WEIGHTS_DIR
    path = pretrained.export_generator(model, args.name, record, architecture, weights_dir=weights_dir)
    print(f"held-out accuracy {accuracy:.2%} on {held_out}; wrote {path} in {seconds:.0f} s")
    return 0


class SampleGrids:
    """Callback: write samples from a fixed z to OUT/samples_stepNNNNNN.png every ``every`` steps."""

    def __init__(self, out: Path, dataset: str, fixed_z: torch.Tensor, every: int, last_step: int) -> None:
        self.out, self.dataset, self.fixed_z, self.every, self.last_step = (
            out,
            dataset,
            fixed_z,
            every,
            last_step,
        )

    def __call__(self, state: training.TrainState) -> None:
        if state.step % self.every == 0 or state.step == self.last_step:
            self.write(state.G, state.step)

    def write(self, G: torch.nn.Module, step: int) -> Path:
        from gan_utils import viz  # matplotlib only when a picture is due

        samples = sample(G, self.fixed_z)
        path = self.out / f"samples_step{step:06d}.png"
        if self.dataset == "mnist":
            from torchvision.utils import save_image

            save_image(samples, path, nrow=8, normalize=True, value_range=(-1, 1))
        else:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            mixture = data.ring() if self.dataset == "ring" else data.grid()
            ax = viz.plot_mixture_samples(mixture, samples, title=f"step {step}")
            ax.figure.savefig(path, dpi=80)
            plt.close(ax.figure)
        return path


def train_command(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    checkpoint_path = args.out / CHECKPOINT_NAME
    config = {"model": args.model, "data": args.data, "batch_size": args.batch_size, "lr": args.lr,
              "loss": args.loss, "seed": args.seed, "reuse_fakes": args.reuse_fakes,
              "lr_decay": args.lr_decay}  # fmt: skip
    if args.resume:
        saved = checkpoints.load_checkpoint(checkpoint_path)["config"]
        changed = {k: (saved.get(k), v) for k, v in config.items() if saved.get(k) != v}
        if changed:
            details = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
            raise CommandLineError(f"--resume must repeat the original settings; changed: {details}.")
    elif checkpoint_path.exists():
        raise CommandLineError(
            f"{checkpoint_path} already exists. Add --resume to continue that run, or choose another --out."
        )

    set_seed(args.seed)
    G, D = build_models(args.model, args.data)
    layout = torch.channels_last if args.model == "dcgan" else torch.contiguous_format  # faster convolutions
    G, D = G.to(device, memory_format=layout), D.to(device, memory_format=layout)
    real, source = load_data(args.data)
    batches = data.BatchIterator(real.to(device), batch_size=args.batch_size, drop_last=True)
    start = time.perf_counter()
    opt_G = torch.optim.Adam(G.parameters(), lr=args.lr, betas=(0.5, 0.999))
    opt_D = torch.optim.Adam(D.parameters(), lr=args.lr, betas=(0.5, 0.999))
    fixed_z = torch.randn(64, G.latent_dim, generator=torch.Generator().manual_seed(args.seed))
    (args.out / "config.json").write_text(json.dumps({**config, "steps": args.steps}, indent=1) + "\n")
    grids = SampleGrids(args.out, args.data, fixed_z, args.sample_every, args.steps)
    callbacks = [grids, training.Checkpointer(checkpoint_path, every=args.checkpoint_every, config=config)]
    if args.lr_decay:  # before resuming, so that it keeps the initial rates, not the decayed ones
        callbacks.append(training.LinearLearningRateDecay([opt_G, opt_D], args.steps))
    resumed = training.resume(checkpoint_path, G, D, opt_G, opt_D) if args.resume else None
    step = functools.partial(training.train_step, loss=args.loss, reuse_fakes=args.reuse_fakes)
    history = training.train(
        G, D, opt_G, opt_D, batches, args.steps, step=step, callbacks=callbacks,
        progress=not args.no_progress, data_seed=args.seed, start=resumed,
    )  # fmt: skip
    done = history["step"][-1] if history["step"] else 0
    record_run(args.out, args.command_line, device, source, time.perf_counter() - start, done)
    final = grids.write(G, done)
    print(f"step {done}/{args.steps}: checkpoint {checkpoint_path}, samples {final}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.command_line = "python -m gan_utils " + " ".join(argv)
    try:
        commands = {
            "train": train_command,
            "export": export_command,
            "evaluate": evaluate_command,
            "train-classifier": train_classifier_command,
        }
        return commands[args.command](args)
    except (CommandLineError, checkpoints.CheckpointError, training.TrainingDivergedError,
            PretrainedError) as error:  # fmt: skip
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
