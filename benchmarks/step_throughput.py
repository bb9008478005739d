"""Training images per second of chapter 4's step alone: the CPU before/after check of a change.

    python benchmarks/step_throughput.py            # 150 timed steps after 5 warm-up steps, 2 threads

Run it from a worktree of each commit in turn, alternating several times, and compare the means: on
a shared machine single runs vary by more than the small differences this is meant to find.
"""

import time

import torch

from gan_utils import data, recipes

WARMUP, TIMED = 5, 150


def main() -> None:
    torch.set_num_threads(2)
    recipe = recipes.preset("dcgan-mnist", lr_decay=False)
    images = data.load_mnist(source="bundled").images
    torch.manual_seed(0)
    G, D = recipe.build_models()
    opt_G, opt_D = recipe.optimisers(G, D)
    batches = data.BatchIterator(images, batch_size=recipe.batch_size, drop_last=True).endless()
    step = recipe.step()
    for _ in range(WARMUP):
        step(G, D, opt_G, opt_D, batches)
    start = time.perf_counter()
    for _ in range(TIMED):
        step(G, D, opt_G, opt_D, batches)
    print(f"{TIMED * recipe.batch_size / (time.perf_counter() - start):.0f} training images/s")


if __name__ == "__main__":
    main()
