"""An exploration for chapter 6's open target: a DCGAN conditioned on clusters of its own training
digits, with no labels (after Liu et al., 2020, "Diverse Image Generation via Self-Conditioned GANs").

    python benchmarks/self_conditioned.py                        # 12,000 steps, 30 clusters, seed 0
    python benchmarks/self_conditioned.py --steps 200 --out /tmp/try.json
    python benchmarks/self_conditioned.py --seed 1 --out benchmarks/results/self_conditioned_seed1.json

Liu et al. cluster the discriminator's features and re-cluster during training. This script does
the simplest version: k-means (k-means++ start, 100 Lloyd steps, seed 0) on the raw pixels of the
4,000 training digits of `cdcgan-mnist` (chapter 6's recipe: the same 100 digits per class held
out), once, before training. The cluster index takes the place of the class label in chapter 8's
conditional DCGAN (projection discriminator), trained with `cdcgan-mnist`'s recipe. The true labels
are used only to hold out the same digits as the other models and to report the clusters' purity.
To sample, a cluster is drawn with its frequency in the training digits, so the model is an
unconditional generator of digits. Scored like every shipped generator: chapter 5's metrics on
5,000 samples (noise seed 0) against the 5,000 bundled digits, plus each digit's share of the
samples as the classifier reads them. Nothing ships; results go to
benchmarks/results/self_conditioned.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from gan_utils import classifier, data, metrics, models, recipes
from gan_utils.runtime import sample

RESULTS = Path(__file__).resolve().parent / "results" / "self_conditioned.json"


@dataclasses.dataclass(frozen=True)
class ClusterConditionedRecipe(recipes.Recipe):
    """`cdcgan-mnist`'s recipe with ``clusters`` classes instead of 10."""

    clusters: int = 30

    def build_models(self, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, torch.nn.Module]:
        k, conditioning = self.clusters, self.conditioning
        G = models.ConditionalDCGANGenerator(latent_dim=64, width=self.generator_width, n_classes=k)
        G.apply(models.init_weights)  # before D is built, as `cdcgan-mnist`'s models draw their weights
        D = models.ConditionalDCGANDiscriminator(n_classes=k, width=self.discriminator_width,
                                                 conditioning=conditioning, norm=self.d_norm)  # fmt: skip
        D.apply(models.init_weights)
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        return G.to(device, memory_format=layout), D.to(device, memory_format=layout)


def pixel_kmeans(images: torch.Tensor, k: int, seed: int = 0, iterations: int = 100) -> torch.Tensor:
    """The cluster index of each image: k-means on raw pixels, k-means++ start, ``iterations`` Lloyd steps."""
    x = images.flatten(1)
    generator = torch.Generator().manual_seed(seed)
    centres = x[torch.randint(len(x), (1,), generator=generator)]
    for _ in range(k - 1):
        squared = torch.cdist(x, centres).min(1).values ** 2
        centres = torch.cat([centres, x[torch.multinomial(squared / squared.sum(), 1, generator=generator)]])
    for _ in range(iterations):
        assign = torch.cdist(x, centres).argmin(1)
        centres = torch.stack([x[assign == c].mean(0) for c in range(k)])
    return torch.cdist(x, centres).argmin(1)


def memorisation(
    G: torch.nn.Module, frequencies: torch.Tensor, mnist: data.MNISTData, recipe: recipes.Recipe
) -> dict[str, float]:
    """Chapter 5's memorisation check: pixel distances to the nearest training digit of 1,000 samples
    (noise seed 1) and of the 1,000 held-out digits. Copying shows as samples much nearer than those."""
    train = recipe.training_set(mnist.images, mnist.labels)
    held_out = mnist.images[classifier.stratified_split(mnist.labels, recipe.held_out_per_class, seed=0)[1]]
    drawn = torch.multinomial(frequencies / frequencies.sum(), 1000, replacement=True,
                              generator=torch.Generator().manual_seed(1))  # fmt: skip
    z = torch.randn(1000, 64, generator=torch.Generator().manual_seed(1))
    fake_nn = metrics.nearest_neighbours(sample(G, z, labels=drawn), train)[0].view(-1)
    real_nn = metrics.nearest_neighbours(held_out, train)[0].view(-1)
    below = (fake_nn < real_nn.quantile(0.01)).float().mean().item()
    return {"samples_median": fake_nn.median().item(), "held_out_median": real_nn.median().item(),
            "samples_min": fake_nn.min().item(), "held_out_min": real_nn.min().item(),
            "samples_below_held_out_1st_percentile": below}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12000)
    parser.add_argument("--clusters", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0, help="training seed; the clusters stay seed 0's")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.clusters < 2 or args.seed < 0:
        parser.error(
            "--steps must be 1 or more, --clusters 2 or more and --seed 0 or more; got "
            f"{args.steps}, {args.clusters}, {args.seed}"
        )
    mnist = data.load_mnist(source="bundled")
    base = recipes.preset("cdcgan-mnist", steps=args.steps)
    train_images = base.training_set(mnist.images, mnist.labels)
    train_labels = base.training_set(mnist.labels, mnist.labels)
    clusters = pixel_kmeans(train_images, args.clusters)
    purity = sum(torch.bincount(train_labels[clusters == c], minlength=10).max().item()
                 for c in range(args.clusters) if (clusters == c).any()) / len(clusters)  # fmt: skip
    recipe = ClusterConditionedRecipe(**{**dataclasses.asdict(base), "held_out_per_class": 0,
                                         "name": "self-conditioned"}, clusters=args.clusters)  # fmt: skip
    start = time.perf_counter()
    run = recipes.train_recipe(recipe, train_images, seed=args.seed, labels=clusters)
    train_seconds = time.perf_counter() - start
    frequencies = torch.bincount(clusters, minlength=args.clusters).float()
    drawn = torch.multinomial(frequencies / frequencies.sum(), 5000, replacement=True,
                              generator=torch.Generator().manual_seed(0))  # fmt: skip
    z = torch.randn(5000, 64, generator=torch.Generator().manual_seed(0))
    classifier = metrics.load_classifier()
    fake = metrics.digit_features(sample(run.G, z, labels=drawn), classifier)
    scores = metrics.image_metrics(fake, metrics.digit_features(mnist.images, classifier))
    shares = torch.bincount(fake.probabilities.argmax(1), minlength=10).float() / 5000
    copying = memorisation(run.G, frequencies, mnist, base)
    result = {
        "command": shlex.join(["python", "benchmarks/self_conditioned.py", *(argv or sys.argv[1:])]),
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "seed": args.seed, "steps": args.steps, "clusters": args.clusters,
        "cluster_sizes": torch.bincount(clusters).tolist(),
        "purity": purity, "train_seconds": round(train_seconds, 1), "metrics": scores,
        "digit_shares": [round(share, 4) for share in shares.tolist()],
        "memorisation": copying,
    }  # fmt: skip
    print(json.dumps(result, indent=1), flush=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
