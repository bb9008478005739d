"""Mode collapse on the VEEGAN/PacGAN toys: chapter 2's and 6's recipes over many seeds.

Usage (from the repository root, after `make venv`):
    .venv/bin/python benchmarks/toy_modes.py --seeds 10 --workers 2

Trains every recipe in ``RECIPES`` (chapter 2's baseline and R1 + LR decay, chapter 6's
R1 + LR decay + EMA and its self-conditioned version), or those named by ``--recipes``, on the ring
and the grid for each seed, evaluates 2,500 samples with the VEEGAN/PacGAN protocol, and prints the
table: modes captured, % high-quality samples, KL(mode histogram || uniform) and seconds per run, as
mean ± std.
The raw rows and the table go to benchmarks/results/toy_modes.json, which chapters 2 and 6 display.
Each worker process uses one thread; --workers 2 suits a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import time
from pathlib import Path

import torch

from gan_utils import data, recipes, runtime, toys

RESULTS = Path(__file__).resolve().parent / "results" / "toy_modes.json"
RECIPES = {
    recipe.name: recipe
    for recipe in (
        toys.BASELINE,
        toys.STABLE,
        *(recipes.PRESETS[n] for n in ("toy-r1-decay-ema", "toy-self-conditioned")),
    )
}
MIXTURES = {"ring": data.ring, "grid": data.grid}


def run_one(job: tuple[str, str, int, int | None]) -> dict:
    recipe_name, mixture_name, seed, steps = job
    torch.set_num_threads(1)
    run = toys.train_toy_gan(RECIPES[recipe_name], MIXTURES[mixture_name](), seed=seed, steps=steps)
    print(f"  {recipe_name:>14} {mixture_name} seed {seed}: {run.summary()}", flush=True)
    return run.summary()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=None, help="override every recipe's steps (smoke tests)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), help=f"some of {list(RECIPES)}")
    parser.add_argument("--mixtures", nargs="+", default=list(MIXTURES), help=f"some of {list(MIXTURES)}")
    args = parser.parse_args()
    if offset_problem := runtime.seed_offset_problem(f"benchmarks/{Path(__file__).name}"):
        parser.error(offset_problem)

    # A partial run replaces only its own rows in an existing results file, and adds itself to "runs",
    # the header of every run whose rows the file holds.
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    kept = previous.get("rows", [])
    kept = [row for row in kept if not (row["recipe"] in args.recipes and row["data"] in args.mixtures)]
    jobs = [(r, m, s, args.steps) for r in args.recipes for m in args.mixtures for s in range(args.seeds)]
    start = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        rows = pool.map(run_one, jobs, chunksize=1)
    wall = time.perf_counter() - start
    rows = kept + rows
    table = toys.summarise(rows)
    print(toys.format_table(table))
    print(f"wall time {wall:.0f} s with {args.workers} workers")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    header = {
        "command": f"python benchmarks/toy_modes.py --seeds {args.seeds} --workers {args.workers}"
        + (f" --steps {args.steps}" if args.steps else "")
        + (f" --recipes {' '.join(map(repr, args.recipes))}" if args.recipes != list(RECIPES) else "")
        + (f" --mixtures {' '.join(args.mixtures)}" if args.mixtures != list(MIXTURES) else ""),
        "machine": f"{platform.machine()}, {multiprocessing.cpu_count()} CPUs, torch {torch.__version__}",
        "date": time.strftime("%Y-%m-%d"),
        "wall_seconds": round(wall, 1),
        "ran": {"recipes": args.recipes, "mixtures": args.mixtures},
    }
    still_in_file = [
        run
        for run in previous.get("runs", [])
        if any(
            row["recipe"] in run["ran"]["recipes"] and row["data"] in run["ran"]["mixtures"] for row in kept
        )
    ]
    record = {
        **header,  # the last run; "runs" has every run whose rows are kept
        "runs": [*still_in_file, header],
        "recipes": {name: toys.recipe_table(recipe) for name, recipe in RECIPES.items()},
        "rows": rows,
        "table": table,
    }
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
