"""Run by tests/test_distributed.py under torchrun on CPU processes (gloo); not a test module itself.

    torchrun --nproc_per_node=2 tests/ddp_worker.py OUT.pt

Trains a few steps of two MLP recipes through the library's distributed path (`distributed.setup`,
`wrap_players`, `rank_seed`, `training.train`), checks after every step that all ranks hold the same
parameters, and has rank 0 save the final weights and the largest difference between ranks.
"""

import functools
import sys

import torch

from gan_utils import data, distributed, recipes, training
from gan_utils.runtime import set_seed

# name -> (preset, overrides); the same table drives the single-process runs of the test
RUNS = {
    "toy, no BatchNorm": ("toy-baseline", {"batch_size": 32}),
    "MNIST MLP, SyncBatchNorm in G": ("mlp-mnist", {"batch_size": 16, "sync_batchnorm": True}),
    "MNIST MLP, BatchNorm per rank": ("mlp-mnist", {"batch_size": 16}),
    # BatchNorm in D too (which DDP's default buffer broadcast would break) and 4-D cross-process BatchNorm
    "DCGAN, SyncBatchNorm in G and D": (
        "dcgan-mnist",
        {"batch_size": 16, "sync_batchnorm": True, "channels_last": False},
    ),
}
STEPS = 4
SEED = 0


def training_samples(recipe: recipes.Recipe) -> torch.Tensor:
    if recipe.data == "mnist":
        return data.load_mnist(source="bundled").images[:512]
    return data.ring().sample(512, generator=torch.Generator().manual_seed(SEED))


def compare_ranks(differences: list[float], state: training.TrainState) -> None:
    """Callback: append the largest difference between any rank's weights and rank 0's."""
    weights = torch.cat([p.detach().flatten() for p in [*state.G.parameters(), *state.D.parameters()]])
    every_rank = distributed.gather(weights)
    differences.append(max((w - every_rank[0]).abs().max().item() for w in every_rank))


def main(out: str) -> None:
    context = distributed.setup(torch.device("cpu"))
    results = {}
    for name, (preset, overrides) in RUNS.items():
        recipe = recipes.preset(preset, **overrides)
        set_seed(SEED)
        G, D = recipe.build_models()
        G, D = distributed.wrap_players(G, D, context, recipe.sync_batchnorm)
        set_seed(distributed.rank_seed(SEED, context.rank))
        opt_G, opt_D = recipe.optimisers(G, D)
        differences: list[float] = []
        batches = data.BatchIterator(training_samples(recipe), batch_size=recipe.batch_size, drop_last=True)
        check = functools.partial(compare_ranks, differences)
        training.train(G, D, opt_G, opt_D, batches, STEPS, recipe.step(), callbacks=[check], progress=False,
                       data_seed=SEED)  # fmt: skip
        results[name] = {"G": distributed.unwrap(G).state_dict(), "D": distributed.unwrap(D).state_dict(),
                         "rank_differences": differences, "world_size": context.world_size}  # fmt: skip
    if context.is_main:
        torch.save(results, out)
    distributed.teardown()


if __name__ == "__main__":
    main(sys.argv[1])
