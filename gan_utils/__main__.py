"""The reader's command line: ``python -m gan_utils train|sample|evaluate``.

``train --preset NAME --out DIR`` trains a named recipe (`gan_utils.recipes.PRESETS`) with a
progress bar, writing a checkpoint and sample grids from one fixed noise batch into ``--out``;
``--resume`` continues a stopped run to the same result. ``sample`` writes a grid of digits from a
run folder or a shipped generator, and ``evaluate`` scores a shipped generator with chapter 5's
metrics. Release tooling (exporting weights, recording metrics) lives in `gan_utils.release`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path

import torch

from gan_utils import checkpoints, data, recipes, training
from gan_utils.pretrained import PretrainedError
from gan_utils.runtime import default_device, sample, set_seed

CHECKPOINT_NAME = "checkpoint.pt"
# recipe settings a reader may override on the command line: option -> Recipe field
OVERRIDES = {"steps": "steps", "batch_size": "batch_size", "lr": "lr", "loss": "loss", "data": "data",
             "reuse_fakes": "reuse_fakes", "lr_decay": "lr_decay"}  # fmt: skip


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
        help="train a GAN recipe and write checkpoints and sample grids",
        description="Train a named recipe. Example: python -m gan_utils train --preset dcgan-mnist --out "
        "runs/dcgan. Stop it with Ctrl-C at any time; --resume continues to the same result. Options "
        "given here override the preset's settings.",
    )
    train.add_argument("--preset", required=True, choices=list(recipes.PRESETS), help="the recipe to train")
    train.add_argument("--out", required=True, type=Path, help="folder for checkpoint.pt, config.json, PNGs")
    train.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    train.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, mps")
    train.add_argument("--seed", type=int, default=0, help="seed for initialisation, noise and data order")
    train.add_argument("--steps", type=positive_int, help="total generator steps (default: the preset's)")
    train.add_argument("--batch-size", type=positive_int)
    train.add_argument("--lr", type=float, help="Adam learning rate for both players")
    train.add_argument("--loss", choices=list(training.LOSSES))
    train.add_argument("--data", choices=recipes.DATASETS, help="mnist (auto source), ring or grid")
    train.add_argument("--reuse-fakes", action=argparse.BooleanOptionalAction, help="G scores D's fakes")
    train.add_argument("--lr-decay", action=argparse.BooleanOptionalAction, help="linear decay to 0")
    train.add_argument("--sample-every", type=positive_int, default=500, help="steps between sample grids")
    train.add_argument("--checkpoint-every", type=positive_int, default=500, help="steps between checkpoints")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    sample_parser = commands.add_parser(
        "sample",
        help="write a grid of samples from a training run or a shipped generator",
        description="Example: python -m gan_utils sample dcgan-mnist --out digits.png. SOURCE is a "
        "shipped generator's name or a folder written by 'train'.",
    )
    sample_parser.add_argument("source", help="a shipped name (e.g. dcgan-mnist) or a training folder")
    sample_parser.add_argument("--out", required=True, type=Path, help="the PNG file to write")
    sample_parser.add_argument("--n", type=positive_int, default=64, help="number of samples")
    sample_parser.add_argument("--seed", type=int, default=0, help="noise seed")

    evaluate = commands.add_parser(
        "evaluate",
        help="score a shipped generator with chapter 5's metrics",
        description="Score a shipped generator: 5,000 samples (noise seed 0) against the 5,000 bundled MNIST "
        "digits, in the features of the shipped mnist-classifier.",
    )
    evaluate.add_argument("name", help="e.g. dcgan-mnist")
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


def recipe_from_args(args: argparse.Namespace) -> recipes.Recipe:
    """The preset with the options the command line sets."""
    overrides = {field: getattr(args, option) for option, field in OVERRIDES.items()
                 if getattr(args, option) is not None}  # fmt: skip
    try:
        return recipes.preset(args.preset, **overrides)
    except ValueError as error:
        raise CommandLineError(str(error).replace("data='mnist'", "--data mnist")) from None


def load_data(dataset: str) -> tuple[torch.Tensor, str]:
    """The training samples and a description of where they came from."""
    if dataset == "mnist":
        mnist = data.load_mnist()
        return mnist.images, f"MNIST ({mnist.source}, {len(mnist.images)} images)"
    mixture = data.ring() if dataset == "ring" else data.grid()
    samples = mixture.sample(50_000, generator=torch.Generator().manual_seed(0))
    return samples, f"{dataset} mixture, 50,000 samples"


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
    recipe = recipe_from_args(args)
    args.out.mkdir(parents=True, exist_ok=True)
    checkpoint_path = args.out / CHECKPOINT_NAME
    overrides = recipe.overrides_from(recipes.PRESETS[args.preset])
    overrides.pop("steps", None)  # a resumed run may go on for longer
    config = {"preset": args.preset, "overrides": overrides, "seed": args.seed}
    config = json.loads(json.dumps(config))  # tuples become lists, as a checkpoint stores them
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
    G, D = recipe.build_models(device)
    real, source = load_data(recipe.data)
    batches = data.BatchIterator(real.to(device), batch_size=recipe.batch_size, drop_last=True)
    start = time.perf_counter()
    opt_G, opt_D = recipe.optimisers(G, D)
    fixed_z = torch.randn(64, G.latent_dim, generator=torch.Generator().manual_seed(args.seed))
    recipe_json = {**dataclasses.asdict(recipe), **config}
    (args.out / "config.json").write_text(json.dumps(recipe_json, indent=1) + "\n")
    grids = SampleGrids(args.out, recipe.data, fixed_z, args.sample_every, recipe.steps)
    checkpointer = training.Checkpointer(checkpoint_path, every=args.checkpoint_every, config=config)
    callbacks = [grids, checkpointer, *recipe.schedule(opt_G, opt_D)]  # schedule before resume (see there)
    resumed = training.resume(checkpoint_path, G, D, opt_G, opt_D) if args.resume else None
    history = training.train(G, D, opt_G, opt_D, batches, recipe.steps, recipe.step(), callbacks=callbacks,
                             progress=not args.no_progress, data_seed=args.seed, start=resumed)  # fmt: skip
    done = history["step"][-1] if history["step"] else 0
    record_run(args.out, args.command_line, device, source, time.perf_counter() - start, done)
    final = grids.write(G, done)
    print(f"step {done}/{recipe.steps}: checkpoint {checkpoint_path}, samples {final}")
    return 0


def generator_from(source: str) -> torch.nn.Module:
    """A shipped generator by name, or the generator of a training folder's checkpoint."""
    from gan_utils import pretrained

    folder = Path(source)
    if (folder / CHECKPOINT_NAME).is_file():
        config = checkpoints.load_checkpoint(folder / CHECKPOINT_NAME)["config"]
        G, _ = recipes.preset(config["preset"], **config["overrides"]).build_models()
        return pretrained.generator_from_checkpoint(folder / CHECKPOINT_NAME, G)
    if folder.exists():
        raise CommandLineError(f"{folder} has no {CHECKPOINT_NAME}; give a folder written by 'train'.")
    return pretrained.load_pretrained(source)


def sample_command(args: argparse.Namespace) -> int:
    from torchvision.utils import save_image

    G = generator_from(args.source)
    images = sample(G, torch.randn(args.n, G.latent_dim, generator=torch.Generator().manual_seed(args.seed)))
    if images.ndim != 4:
        raise CommandLineError(f"{args.source} makes samples of shape {tuple(images.shape[1:])}, not images.")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_image(images, args.out, nrow=8, normalize=True, value_range=(-1, 1))
    print(f"wrote {args.n} samples of {args.source} to {args.out}")
    return 0


def evaluate_command(args: argparse.Namespace) -> int:
    from gan_utils import metrics, pretrained

    G = pretrained.load_pretrained(args.name)
    if not hasattr(G, "latent_dim"):
        raise CommandLineError(f"{args.name} is not a generator; evaluate scores generators.")
    real = data.load_mnist(source="bundled").images
    scores = metrics.evaluate_generator(G, real, n=metrics.IMAGE_EVAL_SAMPLES, seed=0)
    print(json.dumps({key: round(value, 4) for key, value in scores.items()}, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.command_line = shlex.join(["python", "-m", "gan_utils", *argv])
    commands = {"train": train_command, "sample": sample_command, "evaluate": evaluate_command}
    try:
        return commands[args.command](args)
    except (CommandLineError, checkpoints.CheckpointError, training.TrainingDivergedError,
            PretrainedError) as error:  # fmt: skip
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
