"""The reader's command line: ``python -m gan_utils train|sample|evaluate``.

``train --preset NAME --out DIR`` trains a named recipe (`gan_utils.recipes.PRESETS`) with a
progress bar, writing a checkpoint and sample grids from one fixed noise batch into ``--out``;
``--resume`` continues a stopped run to the same result. ``sample`` writes a grid of digits from a
run folder or a shipped generator, and ``evaluate`` scores one with chapter 5's metrics. Release
tooling (exporting weights, recording metrics) lives in `gan_utils.release`.

Every mistake in a command line is refused before anything is written, with one line on stderr
that names the problem and the fix, and exit code 2 (no traceback). Nothing a user saved is
overwritten: ``train`` only continues its own run (``--resume``), and ``sample`` replaces an
existing picture only with ``--force``. Ctrl-C stops training after the current step, saves, and
exits with code 130; a second Ctrl-C waits for the save. SIGTERM (``kill``, ``timeout``, a job
scheduler) does the same and exits with code 143 (128 + SIGTERM). ``--stop-after N`` ends the run
after step N of its ``--steps`` schedule in the same way, but exits with code 0, since that stop was
asked for.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shlex
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import torch

from gan_utils import checkpoints, data, distributed, models, recipes, runtime, training
from gan_utils.pretrained import PretrainedError
from gan_utils.runtime import sample, set_seed

CHECKPOINT_NAME = "checkpoint.pt"
CONFIG_NAME = "config.json"
RUN_RECORD_NAME = "run.json"
MAX_GRID_SAMPLES = 1024  # 128 rows of 8 digits; more makes an unreadable picture (and can exhaust memory)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
INTERRUPTED = 130  # the shell's exit code for a process stopped by Ctrl-C (128 + SIGINT)
# recipe settings a reader may override on the command line: option -> Recipe field
OVERRIDES = {"steps": "steps", "batch_size": "batch_size", "lr": "lr", "lr_d": "lr_D", "loss": "loss",
             "data": "data", "reuse_fakes": "reuse_fakes", "lr_decay": "lr_decay", "ema_decay": "ema_decay",
             "augment": "augment", "precision": "precision", "sync_batchnorm": "sync_batchnorm",
             "generator_width": "generator_width", "discriminator_width": "discriminator_width",
             "r1_gamma": "r1_gamma", "clusters": "clusters", "conditioning": "conditioning"}  # fmt: skip


class CommandLineError(Exception):
    """A mistake in the command line or its inputs, reported without a traceback."""


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse that reports a usage mistake in one line (with where to find help), not a usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def path_option(text: str) -> Path:
    """A path option; an empty one is refused (``Path("")`` is the current folder, rarely what was meant)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty path; give the file or folder it names (see --help)")
    return Path(text)


def _whole_number(text: str, minimum: int, rule: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be {rule}, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    return _whole_number(text, 1, "at least 1")


def non_negative_int(text: str) -> int:
    """argparse type: a whole number of at least 0 (seeds)."""
    return _whole_number(text, 0, "0 or more")


def positive_float(text: str) -> float:
    """argparse type: a finite number above 0 (learning rates); refuses nan, inf, 0 and negatives."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive finite number (e.g. 2e-4), got {text}")
    return value


def augment_policy(text: str) -> tuple[str, ...]:
    """``--augment``: a comma-separated DiffAugment policy, or none."""
    from gan_utils.stabilisers import AUGMENTATIONS

    policy = () if text == "none" else tuple(part.strip() for part in text.split(","))
    if any(part not in AUGMENTATIONS for part in policy):
        raise argparse.ArgumentTypeError(
            f"{text!r}: name some of {', '.join(AUGMENTATIONS)} (comma-separated), or none"
        )
    return policy


def grid_size(text: str) -> int:
    """argparse type: a number of samples for one grid, 1 to MAX_GRID_SAMPLES."""
    value = positive_int(text)
    if value > MAX_GRID_SAMPLES:
        raise argparse.ArgumentTypeError(
            f"at most {MAX_GRID_SAMPLES} samples fit a readable grid, got {value}"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m gan_utils``: train, sample and evaluate."""
    parser = OneLineErrorParser(prog="python -m gan_utils", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser(
        "train",
        help="train a GAN recipe and write checkpoints and sample grids",
        description="Train a named recipe. Example: python -m gan_utils train --preset dcgan-mnist --out "
        "runs/dcgan. Stop it with Ctrl-C at any time; --resume continues to the same result. Options "
        "given here override the preset's settings.",
    )
    train.add_argument("--preset", required=True, choices=list(recipes.PRESETS), help="the recipe to train")
    train.add_argument(
        "--out", required=True, type=path_option, help="folder for checkpoint.pt, config.json, PNGs"
    )
    train.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    train.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda or mps")
    train.add_argument(
        "--seed", type=non_negative_int, default=0, help="seed for initialisation, noise, data"
    )
    train.add_argument("--steps", type=positive_int, help="total generator steps (default: the preset's)")
    train.add_argument("--batch-size", type=positive_int)
    train.add_argument(
        "--lr", type=positive_float, help="learning rate of G, and of D unless --lr-d is given"
    )
    train.add_argument("--lr-d", type=positive_float, help="D's own learning rate (TTUR)")
    train.add_argument("--ema-decay", type=positive_float, help="keep and ship an EMA of G, e.g. 0.999")
    train.add_argument("--r1-gamma", type=positive_float, help="R1 penalty on D's gradient at real data")
    train.add_argument("--generator-width", type=positive_int, help="DCGAN: G's last hidden channels")
    train.add_argument("--discriminator-width", type=positive_int, help="DCGAN: D's first-layer channels")
    train.add_argument(
        "--augment",
        type=augment_policy,
        help="DiffAugment in front of D: translation, cutout, translation,cutout or none",
    )
    train.add_argument(
        "--clusters",
        type=positive_int,
        help="self-conditioning (chapter 6): k-means clusters in place of labels",
    )
    train.add_argument(
        "--conditioning",
        choices=models.DISCRIMINATOR_CONDITIONINGS,
        help="how a conditional D sees the label (chapter 8): projection or concat",
    )
    train.add_argument("--loss", choices=list(training.LOSSES),
                       help="wasserstein is refused: its critic needs a penalty set in Python")  # fmt: skip
    train.add_argument("--data", choices=recipes.DATASETS, help="mnist (auto source), ring or grid")
    train.add_argument("--reuse-fakes", action=argparse.BooleanOptionalAction, help="G scores D's fakes")
    train.add_argument("--lr-decay", action=argparse.BooleanOptionalAction, help="linear decay to 0")
    train.add_argument(
        "--precision", choices=list(recipes.PRECISIONS), help="bfloat16: mixed precision (autocast)"
    )
    train.add_argument(
        "--cuda-graph",
        action="store_true",
        help="record the step as a CUDA graph and replay it, with fused Adam (CUDA only)",
    )
    train.add_argument(
        "--sync-batchnorm",
        action=argparse.BooleanOptionalAction,
        help="under torchrun: BatchNorm statistics over all processes",
    )
    train.add_argument(
        "--stop-after",
        type=positive_int,
        help="end after this step, with the learning-rate schedule of --steps (as Ctrl-C would)",
    )
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
    sample_parser.add_argument("--out", required=True, type=path_option, help="the PNG file to write")
    sample_parser.add_argument(
        "--n", type=grid_size, default=64, help=f"number of samples (1..{MAX_GRID_SAMPLES})"
    )
    sample_parser.add_argument("--seed", type=non_negative_int, default=0, help="noise seed")
    sample_parser.add_argument("--force", action="store_true", help="replace OUT if it exists")

    evaluate = commands.add_parser(
        "evaluate",
        help="score a digit generator with chapter 5's metrics",
        description="Score a shipped generator or the generator of a training folder: 5,000 samples (noise "
        "seed 0) against the 5,000 bundled MNIST digits, in the features of the shipped mnist-classifier.",
    )
    evaluate.add_argument("source", help="a shipped name (e.g. dcgan-mnist) or a training folder")
    return parser


def resolve_device(name: str) -> torch.device:
    """``--device`` as a torch device this machine has (`gan_utils.runtime.resolve_device`)."""
    try:
        return runtime.resolve_device(name)
    except ValueError as error:
        raise CommandLineError(f"--device: {error}") from None


def check_writable_folder(folder: Path, option: str = "--out") -> None:
    """Refuse a folder that is a file or cannot be written, without creating anything.

    The probe is a temporary file in the nearest folder that exists (the folder itself, or the
    ancestor it would be created in); it disappears when closed.
    """
    if folder.exists() and not folder.is_dir():
        raise CommandLineError(f"{option} {folder} is a file; give a folder (it is created if missing).")
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise CommandLineError(
            f"{option} {folder} cannot be created: {existing} is a file; choose another path."
        )
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise CommandLineError(
            f"cannot write to {option} {folder} ({error.strerror or error.__class__.__name__} in "
            f"{existing}); choose a folder you can write to."
        ) from None


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename, so a crash leaves the old file."""
    temporary = path.with_name(path.name + ".tmp")
    try:
        temporary.write_text(text)
        os.replace(temporary, path)
    except OSError as error:
        raise CommandLineError(
            f"cannot write {path} ({error.strerror or error.__class__.__name__})."
        ) from None


def recipe_from_args(args: argparse.Namespace) -> recipes.Recipe:
    """The preset with the options the command line sets."""
    overrides = {field: getattr(args, option) for option, field in OVERRIDES.items()
                 if getattr(args, option) is not None}  # fmt: skip
    try:
        recipe = recipes.preset(args.preset, **overrides)
    except ValueError as error:
        raise CommandLineError(str(error).replace("data='mnist'", "--data mnist")) from None
    if recipe.loss == "wasserstein" and recipe.gp_weight is None and recipe.d_norm != "spectral":
        no_batchnorm = "" if recipe.model == "mlp" else "d_norm='none', "  # the MLP critics have none
        raise CommandLineError(
            f"--loss wasserstein needs a critic with a Lipschitz constraint, and preset {args.preset} has "
            "none (no gradient penalty, no spectral norm), so its scores could grow without bound "
            f"(chapter 6). Use --loss hinge, or train WGAN-GP from Python: recipes.preset({args.preset!r}, "
            f"loss='wasserstein', {no_batchnorm}gp_weight=10.0, d_steps=5, reuse_fakes=False, lr=1e-4, "
            "betas=(0.0, 0.9))."
        )
    return recipe


def load_data(recipe: recipes.Recipe) -> tuple[torch.Tensor, torch.Tensor | None, int, str]:
    """The recipe's data (samples, labels or None), how many samples it trains on, and their source."""
    if recipe.data == "mnist":
        mnist = data.load_mnist()
        kept = len(recipe.training_set(mnist.images, mnist.labels))
        held_out = f", {len(mnist.images) - kept} held out" if kept < len(mnist.images) else ""
        return mnist.images, mnist.labels, kept, f"MNIST ({mnist.source}, {kept} images{held_out})"
    mixture = data.ring() if recipe.data == "ring" else data.grid()
    samples = mixture.sample(50_000, generator=torch.Generator().manual_seed(0))
    return samples, None, len(samples), f"{recipe.data} mixture, 50,000 samples"


class RunRecord:
    """Callback keeping OUT/run.json: every command that trained this run ("leg"), its device, data and time.

    A leg is recorded when it starts (`start`), and its step and wall time are updated whenever the
    checkpoint is saved and when it ends, so after a crash or ``kill -9`` the record still lists the
    leg, with the time up to its last checkpoint. The top-level ``commands``, ``device``,
    ``data_source``, ``steps`` and ``wall_seconds`` (the sum over legs) are what a release export
    copies into the manifest.
    """

    def __init__(self, out: Path, command_line: str, device: torch.device, source: str, every: int) -> None:
        self.path = out / RUN_RECORD_NAME
        self.command_line, self.device, self.source, self.every = command_line, device, source, every
        self.run = self.read()
        self.started = 0.0

    def read(self) -> dict:
        if not self.path.exists():
            return {"commands": [], "legs": []}
        try:
            run = json.loads(self.path.read_text())
            run.setdefault("legs", [])
            run.setdefault("earlier_wall_seconds", 0.0 if run["legs"] else run.get("wall_seconds", 0.0))
            return run
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, KeyError, TypeError):
            raise CommandLineError(
                f"{self.path} is damaged; move it away to resume (the record of earlier legs goes with it)."
            ) from None

    def start(self, step: int) -> None:
        """Record the leg now, before its first step."""
        self.started = time.perf_counter()
        self.run["commands"].append(self.command_line)
        leg = {"command": self.command_line, "device": self.device.type, "from_step": step, "to_step": step,
               "wall_seconds": 0.0, "finished": False}  # fmt: skip
        self.run["legs"].append(leg)
        self.write(step)

    def write(self, step: int, finished: bool = False) -> None:
        leg = self.run["legs"][-1]
        leg.update(to_step=step, wall_seconds=round(time.perf_counter() - self.started, 1), finished=finished)
        total = self.run.get("earlier_wall_seconds", 0.0) + sum(
            leg["wall_seconds"] for leg in self.run["legs"]
        )
        self.run.update(
            device=self.device.type, data_source=self.source, steps=step, wall_seconds=round(total, 1)
        )
        write_text_atomically(self.path, json.dumps(self.run, indent=1) + "\n")

    def __call__(self, state: training.TrainState) -> None:
        if state.step % self.every == 0 and state.step < state.total_steps:  # when the checkpoint is saved
            self.write(state.step)

    def close(self, state: training.TrainState) -> None:
        self.write(state.step, finished=True)


class SampleGrids:
    """Callback: write samples from a fixed z to OUT/samples_stepNNNNNN.png every ``every`` steps and at the
    end (in close, so the last grid is written even after Ctrl-C)."""

    def __init__(
        self,
        out: Path,
        dataset: str,
        fixed_z: torch.Tensor,
        every: int,
        generator: Callable[[], torch.nn.Module] | None = None,
    ) -> None:
        self.out, self.dataset, self.fixed_z, self.every = out, dataset, fixed_z, every
        # what to draw, asked anew at every grid (an EMA's generator recomputes its BatchNorm statistics
        # then); None: the trained G
        self.generator = generator
        self.last: tuple[int, Path] | None = None

    def __call__(self, state: training.TrainState) -> None:
        if state.step % self.every == 0:
            self.write(self.generator() if self.generator is not None else state.G, state.step)

    def close(self, state: training.TrainState) -> None:
        if self.last is None or self.last[0] != state.step:
            self.write(self.generator() if self.generator is not None else state.G, state.step)

    def write(self, G: torch.nn.Module, step: int) -> Path:
        from gan_utils import viz  # matplotlib only when a picture is due

        samples = sample(G, self.fixed_z)
        path = self.out / f"samples_step{step:06d}.png"
        if self.dataset == "mnist":
            from torchvision.utils import save_image

            save_image(samples, path, nrow=grid_columns(G), normalize=True, value_range=(-1, 1))
        else:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            mixture = data.ring() if self.dataset == "ring" else data.grid()
            ax = viz.plot_mixture_samples(mixture, samples, title=f"step {step}")
            ax.figure.savefig(path, dpi=80)
            plt.close(ax.figure)
        self.last = (step, path)
        return path


def grid_columns(G: torch.nn.Module) -> int:
    """8 columns, or one per class for a conditional generator (`sample` draws the classes in turn)."""
    return G.n_classes if models.is_conditional(G) else 8


def check_new_run_folder(out: Path) -> None:
    """Refuse to start a run where it would overwrite a checkpoint or another run's files."""
    if (out / CHECKPOINT_NAME).is_dir():
        raise CommandLineError(f"{out / CHECKPOINT_NAME} is a folder, not a checkpoint; rename or remove it.")
    if (out / CHECKPOINT_NAME).exists():
        raise CommandLineError(
            f"{out / CHECKPOINT_NAME} already exists. Add --resume to continue that run, or choose another "
            "--out."
        )
    if out.is_dir():
        ours = [out / name for name in (CONFIG_NAME, RUN_RECORD_NAME)] + sorted(out.glob("samples_step*.png"))
        found = [path.name for path in ours if path.exists()]
        if found:
            listed = ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")
            raise CommandLineError(
                f"{out} holds files of a run ({listed}) but no checkpoint to resume (a run that failed "
                "before its first checkpoint leaves such files); choose another --out, or delete them first."
            )


def train_command(args: argparse.Namespace) -> int:
    """Train a preset into --out; every check runs before the first file is written. Under torchrun
    (``torchrun --nproc_per_node=N -m gan_utils train ...``) each process runs this, and
    `gan_utils.distributed` says how they share the work."""
    try:
        offset_problem = runtime.seed_offset_problem(
            "python -m gan_utils train (--seed goes in its checkpoint)"
        )
    except ValueError as error:  # GAN_BOOK_SEED_OFFSET is not a number
        raise CommandLineError(str(error)) from None
    if offset_problem:
        raise CommandLineError(offset_problem)
    device = resolve_device(args.device)
    steps = args.steps or recipes.PRESETS[args.preset].steps
    if args.stop_after and args.stop_after >= steps:
        raise CommandLineError(
            f"--stop-after {args.stop_after} is not before the run's last step ({steps}); drop it, or pass a "
            "smaller step."
        )
    if args.cuda_graph and device.type != "cuda":
        raise CommandLineError(f"--cuda-graph records CUDA graphs, but the device is {device.type}; drop it.")
    recipe = recipe_from_args(args)
    if args.cuda_graph and distributed.launched_by_torchrun():
        raise CommandLineError(
            "--cuda-graph records one process's step; under torchrun the step also holds DDP's "
            "communication, which this trainer does not record. Drop --cuda-graph (or train on one GPU)."
        )
    try:
        context = distributed.setup(device)
    except (ValueError, RuntimeError) as error:
        raise CommandLineError(f"torchrun: {str(error).splitlines()[0]}") from None
    try:
        return train_in_context(args, recipe, context)
    finally:
        distributed.teardown()


def train_in_context(args: argparse.Namespace, recipe: recipes.Recipe, context: distributed.Context) -> int:
    """`train_command` on one process; rank 0 alone prints, writes grids, records and checkpoint files."""
    device, main = context.device, context.is_main
    check_writable_folder(args.out)
    checkpoint_path = args.out / CHECKPOINT_NAME
    overrides = recipe.overrides_from(recipes.PRESETS[args.preset])
    overrides.pop("steps", None)  # a resumed run may go on for longer
    config = {"preset": args.preset, "overrides": overrides, "seed": args.seed}
    config = json.loads(json.dumps(config))  # tuples become lists, as a checkpoint stores them
    if args.resume:
        saved = checkpoints.load_checkpoint(checkpoint_path)
        changed = {k: (saved["config"].get(k), v) for k, v in config.items() if saved["config"].get(k) != v}
        if changed:
            details = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
            raise CommandLineError(f"--resume must repeat the original settings; changed: {details}.")
        if args.stop_after and args.stop_after <= saved["step"]:
            raise CommandLineError(
                f"{args.out} already finished step {saved['step']}; --stop-after must be later than that."
            )
        if recipe.steps <= saved["step"]:
            raise CommandLineError(
                f"{args.out} already finished step {saved['step']}, so --steps {recipe.steps} leaves nothing "
                f"to train; resume with --steps larger than {saved['step']}."
            )
    elif main:  # the other ranks would find rank 0's first files
        check_new_run_folder(args.out)
    real, labels, n_train, source = load_data(recipe)
    if recipe.batch_size > n_train:
        raise CommandLineError(
            f"--batch-size {recipe.batch_size} is larger than the {n_train:,} training samples ({source}); "
            f"use at most {n_train}."
        )
    if recipe.batch_size * context.world_size > n_train:
        raise CommandLineError(
            f"{context.world_size} processes x --batch-size {recipe.batch_size} exceed the {n_train:,} "
            f"training samples; use --batch-size {n_train // context.world_size} or less."
        )
    record = RunRecord(args.out, args.command_line, device, source, args.checkpoint_every)  # reads it first
    if recipe.clusters:  # self-conditioned: the checkpoint keeps the cluster sizes that sampling needs
        try:
            ids = recipe.cluster_ids(real, labels)
        except ValueError as error:
            raise CommandLineError(str(error)) from None
        config["cluster_sizes"] = torch.bincount(ids, minlength=recipe.clusters).tolist()

    set_seed(args.seed)
    G, D = recipe.build_models(device)
    ema = recipe.ema(G)  # with an EMA, the grids and the shipped weights show the averaged G
    G, D = distributed.wrap_players(G, D, context, recipe.sync_batchnorm)
    if context.world_size > 1:  # same initial models everywhere (DDP also copies rank 0's), own noise
        set_seed(distributed.rank_seed(args.seed, context.rank))
    batches = recipe.batches(real, labels, device)
    opt_G, opt_D = recipe.optimisers(G, D, capturable=args.cuda_graph, fused=args.cuda_graph)
    step = training.CUDAGraphStep(recipe.step()) if args.cuda_graph else recipe.step()
    grid_size = 80 if recipe.conditional else 64  # a conditional grid: 8 rows of the 10 classes
    fixed_z = torch.randn(grid_size, G.latent_dim, generator=torch.Generator().manual_seed(args.seed))
    if main:
        try:
            args.out.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise CommandLineError(f"cannot create --out {args.out} ({error.strerror}).") from None
        recipe_json = {**dataclasses.asdict(recipe), **config}
        write_text_atomically(args.out / CONFIG_NAME, json.dumps(recipe_json, indent=1) + "\n")
    if context.world_size > 1 and main:
        world, batch = context.world_size, recipe.batch_size
        print(f"torchrun: {world} processes on {device.type}, effective batch {world} x {batch} = "
              f"{world * batch}, learning rate {recipe.lr:g} (D: {recipe.lr_D or recipe.lr:g}), not scaled "
              "with the batch")  # fmt: skip
    extra = {"G_ema": ema.averaged} if ema else {}
    grids = SampleGrids(
        args.out, recipe.data, fixed_z, args.sample_every, (lambda: ema.generator) if ema else None
    )
    # every rank takes part in a checkpoint (its random state goes in); rank 0 writes it
    checkpointer = training.Checkpointer(checkpoint_path, args.checkpoint_every, config, extra)
    # The final grid, checkpoint and record are written in close(), where a second Ctrl-C waits for them.
    # The schedule is built before resume (see Recipe.schedule); the EMA updates before the grids read it.
    stop_after = training.StopAfter(args.stop_after) if args.stop_after else None
    callbacks = [ema, grids, checkpointer, record, *recipe.schedule(opt_G, opt_D), stop_after]
    callbacks = [c for c in callbacks if c is not None and (main or c not in (grids, record))]
    try:
        resumed = training.resume(checkpoint_path, G, D, opt_G, opt_D, extra) if args.resume else None
    except ValueError as error:
        raise CommandLineError(str(error)) from None
    if main:
        record.start(resumed.step if resumed else 0)
    exit_code_if_stopped = INTERRUPTED
    try:
        history = training.train(G, D, opt_G, opt_D, batches, recipe.steps, step, callbacks=callbacks,
                                 progress=main and not args.no_progress, data_seed=args.seed,
                                 start=resumed)  # fmt: skip
    except training.TrainingTerminated as terminated:  # saved like a Ctrl-C, then ends with its own code
        history, exit_code_if_stopped = terminated.history, terminated.code
    except training.TrainingDivergedError as error:
        # --resume repeats the settings, data order and noise, so it would diverge again: advise a new run
        raise CommandLineError(
            f"{error.problem} at step {error.step}: training diverged and stopped. Start a new run with a "
            f"lower learning rate, e.g. --lr {recipe.lr / 10:g} and another --out."
        ) from None
    done = history["step"][-1] if history["step"] else 0
    final = grids.last[1] if grids.last else None
    if main:
        print(f"step {done}/{recipe.steps}: checkpoint {checkpoint_path}, samples {final}")
    if args.stop_after and done == args.stop_after:
        return 0
    if done < recipe.steps:  # stopped by Ctrl-C or SIGTERM; the run resumes with --resume
        again = args.command_line if args.resume else f"{args.command_line} --resume"
        if main:
            print(f"stopped early; continue with: {again}", file=sys.stderr)
        return exit_code_if_stopped
    return 0


def generator_from(source: str) -> torch.nn.Module:
    """A shipped generator by name, or the generator of a training folder's checkpoint."""
    from gan_utils import pretrained

    folder = Path(source)
    if (folder / CHECKPOINT_NAME).is_file():
        config = checkpoints.load_checkpoint(folder / CHECKPOINT_NAME)["config"]
        try:
            recipe = recipes.preset(config["preset"], **config["overrides"])
            G, _ = recipe.build_models()
        except (KeyError, TypeError, ValueError) as error:
            raise CommandLineError(
                f"the checkpoint in {folder} names a recipe this version cannot build ({error}); sample it "
                "with the gan_utils version that trained it."
            ) from None
        G = pretrained.generator_from_checkpoint(folder / CHECKPOINT_NAME, G)
        if recipe.clusters:  # self-conditioned (chapter 6): the cluster sizes the run recorded
            try:
                G = models.self_conditioned(G, config["cluster_sizes"]).eval()
            except (KeyError, TypeError, ValueError) as error:
                raise CommandLineError(
                    f"the checkpoint in {folder} lacks usable cluster sizes ({error}); retrain it with this "
                    "gan_utils version."
                ) from None
        return G
    if folder.exists():
        raise CommandLineError(f"{folder} has no {CHECKPOINT_NAME}; give a folder written by 'train'.")
    return pretrained.load_pretrained(source)


IMAGE_TO_IMAGE_HINT = (
    "(an image-to-image model of chapter 9 runs with gan_utils.image_to_image.apply, a CycleGAN's "
    "generators as .a_to_b and .b_to_a)"
)


def check_digit_generator(G: torch.nn.Module, source: str, command: str) -> None:
    """Refuse anything but a generator of 28x28 digits, before any slow scoring."""
    if not hasattr(G, "latent_dim"):
        raise CommandLineError(
            f"{source} is not a noise-to-image generator; {command} scores generators {IMAGE_TO_IMAGE_HINT}."
        )
    shape = tuple(sample(G, torch.zeros(2, G.latent_dim)).shape[1:])
    if shape != (1, 28, 28):
        raise CommandLineError(
            f"{source} makes samples of shape {shape}, not 28x28 digit images; {command} scores MNIST "
            "generators (score a 2-D toy generator with gan_utils.metrics.toy_mode_metrics)."
        )


def sample_command(args: argparse.Namespace) -> int:
    """Write a grid of samples; an existing picture is replaced only with --force."""
    from torchvision.utils import save_image

    if args.out.suffix.lower() not in IMAGE_SUFFIXES:
        raise CommandLineError(f"--out {args.out} must name a .png or .jpg file, e.g. --out digits.png.")
    if args.out.is_dir():
        raise CommandLineError(
            f"--out {args.out} is a folder; name the picture to write, e.g. {args.out / 'digits.png'}."
        )
    if args.out.exists() and not args.force:
        raise CommandLineError(
            f"{args.out} already exists; choose another --out, or add --force to replace it."
        )
    check_writable_folder(args.out.parent, "the folder of --out")
    G = generator_from(args.source)
    if not hasattr(G, "latent_dim"):
        raise CommandLineError(
            f"{args.source} is not a noise-to-image generator; sample draws from generators "
            f"{IMAGE_TO_IMAGE_HINT}."
        )
    images = sample(G, torch.randn(args.n, G.latent_dim, generator=torch.Generator().manual_seed(args.seed)))
    if images.ndim != 4:
        raise CommandLineError(
            f"{args.source} makes samples of shape {tuple(images.shape[1:])}, not images; plot 2-D samples "
            "with gan_utils.viz.plot_mixture_samples."
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_image(images, args.out, nrow=grid_columns(G), normalize=True, value_range=(-1, 1))
    print(f"wrote {args.n} samples of {args.source} to {args.out}")
    return 0


def evaluate_command(args: argparse.Namespace) -> int:
    """Print chapter 5's metrics of a digit generator (shipped, or a training folder's)."""
    from gan_utils import metrics

    G = generator_from(args.source)
    check_digit_generator(G, args.source, "evaluate")
    real = data.load_mnist(source="bundled").images
    scores = metrics.evaluate_generator(G, real, n=metrics.IMAGE_EVAL_SAMPLES, seed=0)
    print(json.dumps({key: round(value, 4) for key, value in scores.items()}, indent=1))
    return 0


def main(argv: list[str] | None = None, exiting: bool = False) -> int:
    """Run the command line ``argv``; ``exiting`` (set when run as a program) ignores a late Ctrl-C."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.command_line = shlex.join(["python", "-m", "gan_utils", *argv])
    commands = {"train": train_command, "sample": sample_command, "evaluate": evaluate_command}
    return run_reporting_errors(commands[args.command], args, exiting)


def run_reporting_errors(
    command: Callable[[argparse.Namespace], int], args: argparse.Namespace, exiting: bool = False
) -> int:
    """Run ``command``; a mistake prints one line and returns 2, a Ctrl-C returns 130, neither a traceback.

    With ``exiting``, Ctrl-C is ignored once the command is done: a late second press (training has
    already saved) must not print a traceback from the interpreter's exit, which runs torch's clean-up.
    """
    try:
        return command(args)
    except (CommandLineError, checkpoints.CheckpointError, training.TrainingDivergedError,
            PretrainedError) as error:  # fmt: skip
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a Ctrl-C outside training
        print("interrupted", file=sys.stderr)
        return INTERRUPTED
    finally:
        if exiting and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)


if __name__ == "__main__":
    sys.exit(main(exiting=True))
