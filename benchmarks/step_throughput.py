"""Training images per second of chapter 4's step alone: the CPU before/after check of a change.

    python benchmarks/step_throughput.py            # 150 timed steps after 5 warm-up steps, 2 threads
    python benchmarks/step_throughput.py --compile  # the same with G and D wrapped in torch.compile
    python benchmarks/step_throughput.py --preset dcgan-mnist-stable --widths 128 128 --timed 40

Run it from a worktree of each commit in turn, alternating several times, and compare the means: on
a shared machine single runs vary by more than the small differences this is meant to find.
``--compile`` answers whether `torch.compile` pays for the step on this CPU; the warm-up line shows
what the compilation costs first. It refuses recipes with a penalty on D (R1, WGAN-GP): in torch
2.14 a compiled D's backward cannot be differentiated again, which both penalties need.
"""

import argparse
import time

import torch

from gan_utils import data, recipes

WARMUP = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="dcgan-mnist", choices=list(recipes.PRESETS))
    parser.add_argument("--widths", type=int, nargs=2, metavar=("G", "D"), help="G's and D's widths")
    parser.add_argument("--timed", type=int, default=150, help="timed steps after the warm-up")
    parser.add_argument("--compile", action="store_true", help="wrap G and D in torch.compile")
    args = parser.parse_args()
    torch.set_num_threads(2)
    overrides = {}
    if args.widths:
        overrides = dict(generator_width=args.widths[0], discriminator_width=args.widths[1])
    recipe = recipes.preset(args.preset, lr_decay=False, **overrides)
    images = data.load_mnist(source="bundled").images
    torch.manual_seed(0)
    G, D = recipe.build_models()
    opt_G, opt_D = recipe.optimisers(G, D)
    if args.compile and (recipe.r1_gamma or recipe.gp_weight):
        raise SystemExit(
            f"--compile: {args.preset} puts a gradient penalty on D (R1 or WGAN-GP), which differentiates "
            "D's backward pass again; torch.compile's backward cannot be. Pick a preset without one."
        )
    if args.compile:
        G, D = torch.compile(G), torch.compile(D)
    batches = data.BatchIterator(images, batch_size=recipe.batch_size, drop_last=True).endless()
    step = recipe.step()
    start = time.perf_counter()
    for _ in range(WARMUP):
        step(G, D, opt_G, opt_D, batches)
    print(f"{WARMUP} warm-up steps: {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    for _ in range(args.timed):
        step(G, D, opt_G, opt_D, batches)
    print(f"{args.timed * recipe.batch_size / (time.perf_counter() - start):.0f} training images/s")


if __name__ == "__main__":
    main()
