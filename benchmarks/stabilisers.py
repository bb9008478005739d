"""Chapter 6's table: each stabiliser, and the source article's suggestions, at an equal wall-clock budget.

    python benchmarks/stabilisers.py                          # all rows, 3 seeds, 60 s each
    python benchmarks/stabilisers.py --rows baseline EMA --seeds 1 --budget 60
    python benchmarks/stabilisers.py --rows "lr 1e-4" "lr 2e-4 (DCGAN paper)" "lr 1e-3" "lr 2e-3" \\
        --steps 871 --out benchmarks/results/stabilisers_lr_sweep.json   # the learning-rate sweep
    python benchmarks/stabilisers.py --rows "lr 4e-3" "lr 8e-3" "lr 1.6e-2" --steps 871 \\
        --out benchmarks/results/stabilisers_lr_sweep_high.json          # its second part

Every row is the `dcgan-mnist` preset with a few overrides (`ROWS`, and `LR_SWEEP` for the
learning-rate sweep). Equal budget means equal training time, not equal steps: a row whose step
costs more (a penalty's double backward, five critic steps) gets fewer steps. Each row's seconds per
step is measured first on this machine, and its step count is ``budget / seconds per step``; the run
itself is then a fixed number of steps, so a seed's result does not depend on how busy the machine
was during training. The timing visits the rows in turn, ``--timing-rounds`` times, and keeps each
row's fastest round: other work on a shared machine can only slow a round down, so the minimum is
the estimate least affected by it. Rows of equal cost get closer step counts than with one pass
(13 % apart on 2026-11-29, against 33 %); the rounds visit the rows in the same order each time.
Learning rates decay linearly to 0 over each row's steps, as in the preset.

Each run is scored with chapter 5's metrics: 5,000 samples (noise seed 0) against the 5,000
bundled digits, in the shipped classifier's features; rows with an EMA are scored on the averaged G.
Results go to benchmarks/results/stabilisers.json (or ``--out``), which chapter 6 and the performance
appendix load.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shlex
import time
from pathlib import Path

import torch

from gan_utils import data, metrics, recipes, runtime, training

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_OUT = RESULTS / "stabilisers.json"
METRICS = ("frechet_distance", "precision", "recall", "density", "coverage", "class_kl")

# row name -> overrides of the dcgan-mnist preset (which is Adam 5e-4, beta1 0.5, batch 128, NS loss)
ROWS: dict[str, dict] = {
    "baseline": {},
    "hinge + SN": {"loss": "hinge", "d_norm": "spectral"},
    # Gulrajani et al. (2017), Algorithm 1: lr 1e-4, betas (0, 0.9), 5 critic steps, weight 10
    "WGAN-GP": {
        "loss": "wasserstein",
        "d_norm": "none",
        "gp_weight": 10.0,
        "d_steps": 5,
        "reuse_fakes": False,
        "lr": 1e-4,
        "betas": (0.0, 0.9),
    },
    "NS + R1": {"r1_gamma": 1.0, "reuse_fakes": False},
    # D four times faster than G, as in Zhang et al. (2019) (1e-4 / 4e-4), here around our 5e-4
    "TTUR": {"lr": 2.5e-4, "lr_D": 1e-3},
    "EMA": {"ema_decay": 0.999},
    "DiffAugment": {"augment": ("translation", "cutout")},  # Zhao et al.'s policy for small data
    # the source article's suggestions
    "bigger networks": {"generator_width": 64, "discriminator_width": 32},
    "lr 2e-4 (DCGAN paper)": {"lr": 2e-4},
    "RMSprop": {"optimiser": "rmsprop", "lr": 1e-4},
}
# the learning-rate sweep (not in the default rows): each does the baseline's work per step, so
# `--steps` trains them for the baseline's step count with no timing, and no timing noise
LR_SWEEP: dict[str, dict] = {
    "lr 1e-4": {"lr": 1e-4},
    "lr 1e-3": {"lr": 1e-3},
    "lr 2e-3": {"lr": 2e-3},
    "lr 4e-3": {"lr": 4e-3},
    "lr 8e-3": {"lr": 8e-3},
    "lr 1.6e-2": {"lr": 1.6e-2},
}
BEST = "best combination"  # filled in from the rows' results: see best_overrides


def best_overrides() -> dict:
    """The combination chapter 6 recommends; the shipped chapter-6 models build on it (recipes.PRESETS)."""
    base, best = recipes.PRESETS["dcgan-mnist"], recipes.PRESETS["dcgan-mnist-stable"]
    # every row trains on all 5,000 digits for the same time: no held-out digits, no step count
    return best.with_overrides(steps=base.steps, name=base.name, held_out_per_class=0).overrides_from(base)


def row_recipe(row: str, steps: int) -> recipes.Recipe:
    overrides = best_overrides() if row == BEST else {**ROWS, **LR_SWEEP}[row]
    return recipes.PRESETS["dcgan-mnist"].with_overrides(name=row, steps=steps, **overrides)


def seconds_per_step(row: str, images: torch.Tensor, steps: int = 40, warmup: int = 5) -> float:
    """Wall time of one step of ``row``'s recipe, EMA update included, on this machine."""
    recipe = row_recipe(row, steps=warmup + steps)
    G, D = recipe.build_models()
    opt_G, opt_D = recipe.optimisers(G, D)
    callbacks = [c for c in [recipe.ema(G)] if c]
    batches = iter(data.BatchIterator(images, batch_size=recipe.batch_size, drop_last=True).resumable(0))
    step = recipe.step()

    def run(n: int) -> None:
        for _ in range(n):
            step(G, D, opt_G, opt_D, batches)
            for callback in callbacks:
                callback(training.TrainState(0, 1, G, D, opt_G, opt_D, 0, 0, None))

    run(warmup)
    start = time.perf_counter()
    run(steps)
    return (time.perf_counter() - start) / steps


def interleaved_timing(rows: list[str], images: torch.Tensor, rounds: int = 3) -> dict[str, list[float]]:
    """Seconds per step of every row, measured ``rounds`` times with the rows in turn in each round."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    timings: dict[str, list[float]] = {row: [] for row in rows}
    for _ in range(rounds):
        for row in rows:
            timings[row].append(seconds_per_step(row, images))
    return timings


def steps_for_budget(budget: float, timings: list[float]) -> int:
    """Steps that fit in ``budget`` seconds at the fastest of a row's measured seconds per step."""
    return max(1, round(budget / min(timings)))


def score(G: torch.nn.Module, images: torch.Tensor, classifier: torch.nn.Module) -> dict[str, float]:
    return metrics.evaluate_generator(G, images, n=metrics.IMAGE_EVAL_SAMPLES, classifier=classifier)


def summarise(runs: list[dict]) -> dict[str, dict]:
    """Mean and sample std over seeds of each metric, per row, in the rows' order."""
    table: dict[str, dict] = {}
    for run in runs:
        table.setdefault(run["row"], []).append(run)
    summary = {}
    for row, row_runs in table.items():
        entry = {"seeds": len(row_runs), "steps": row_runs[0]["steps"]}
        for name in METRICS:
            values = torch.tensor([r["metrics"][name] for r in row_runs], dtype=torch.float64)
            std = values.std().item() if len(values) > 1 else math.nan
            entry[name] = [values.mean().item(), std]
        summary[row] = entry
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    known = [*ROWS, BEST, *LR_SWEEP]
    parser.add_argument("--rows", nargs="+", default=[*ROWS, BEST], help=f"rows to run: {known}")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", type=float, help="training seconds per run (default 60)")
    parser.add_argument("--timing-rounds", type=int, help="rounds of the interleaved timing (default 3)")
    parser.add_argument("--steps", type=int, help="instead: train each row this many steps, untimed "
                        "(fair only for rows of equal cost per step, such as LR_SWEEP's)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    if offset_problem := runtime.seed_offset_problem(f"benchmarks/{Path(__file__).name}"):
        parser.error(offset_problem)
    unknown = [r for r in args.rows if r not in known]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {known}")
    if args.steps is not None and args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps}")
    if args.steps is not None and (args.budget is not None or args.timing_rounds is not None):
        parser.error("--steps trains every row for a fixed number of steps, untimed; drop --budget and "
                     "--timing-rounds, or drop --steps to train for a time budget")  # fmt: skip
    args.budget = 60.0 if args.budget is None else args.budget
    args.timing_rounds = 3 if args.timing_rounds is None else args.timing_rounds
    if args.timing_rounds < 1:
        parser.error(f"--timing-rounds must be at least 1, got {args.timing_rounds}")

    images = data.load_mnist(source="bundled").images
    classifier = metrics.load_classifier()
    started = time.perf_counter()
    fixed = args.steps is not None
    timing = {} if fixed else interleaved_timing(args.rows, images, rounds=args.timing_rounds)
    runs = []
    for row in args.rows:
        steps = args.steps if fixed else steps_for_budget(args.budget, timing[row])
        for seed in range(args.seeds):
            trained = recipes.train_recipe(row_recipe(row, steps), images, seed=seed)
            scores = score(trained.G, images, classifier)
            runs.append({"row": row, "seed": seed, "steps": steps, "train_seconds": round(trained.seconds, 1),
                         "metrics": scores})  # fmt: skip
            print(f"{row:>24} seed {seed}: {steps} steps in {trained.seconds:.0f} s, "
                  + ", ".join(f"{k} {scores[k]:.3f}" for k in METRICS), flush=True)  # fmt: skip
            write(args, timing, runs, started)  # after every run, so a stopped benchmark keeps its results
    print(f"wrote {args.out}")


def write(args: argparse.Namespace, timing: dict[str, list[float]], runs: list[dict], started: float) -> None:
    result = {
        "command": "python benchmarks/stabilisers.py "
        + " ".join(
            [
                *(["--rows", *map(shlex.quote, args.rows)] if args.rows != [*ROWS, BEST] else []),
                f"--seeds {args.seeds}",
                *(
                    [f"--steps {args.steps}"]
                    if args.steps is not None
                    else [f"--budget {args.budget:g}", f"--timing-rounds {args.timing_rounds}"]
                ),
                *([f"--out {shlex.quote(str(args.out))}"] if args.out != DEFAULT_OUT else []),
            ]
        ),  # fmt: skip
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "date": time.strftime("%Y-%m-%d"),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "budget_seconds": None if args.steps is not None else args.budget,
        "seconds_per_step": {row: min(rounds) for row, rounds in timing.items()},
        "timing_rounds": timing,  # every round's seconds per step; the fastest sets the step count
        "overrides": {
            row: {
                k: v
                for k, v in row_recipe(row, 1).overrides_from(recipes.preset("dcgan-mnist", steps=1)).items()
                if k != "name"
            }
            for row in args.rows
        },  # fmt: skip
        "runs": runs,
        "summary": summarise(runs),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=list) + "\n")


if __name__ == "__main__":
    main()
