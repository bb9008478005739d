"""Seeds of chapter 6's self-conditioned DCGAN, trained on clusters of its own digits with no labels.

After Liu et al., 2020, "Diverse Image Generation via Self-Conditioned GANs". The shipped dcgan-mnist
is this preset with --clusters 35 and seed 1; the preset's default is 50.

    python benchmarks/self_conditioned.py --seed 1   # writes results/self_conditioned_k50_seed1.json
    python benchmarks/self_conditioned.py --steps 200 --out /tmp/try.json
    python benchmarks/self_conditioned.py --shipped dcgan-mnist \
        --out benchmarks/results/self_conditioned_k35_seed1_shipped.json   # score shipped weights

It trains preset ``dcgan-mnist-self-conditioned`` (``--clusters`` overrides its k) with
`recipes.train_recipe`, which is what ``python -m gan_utils train`` runs: pixel k-means on the 4,000
training digits (the same 100 per class held out as the other shipped models), chapter 8's
conditional DCGAN trained on the cluster ids, and `models.SelfConditionedGenerator`, which draws
each sample's cluster from z's last coordinate, to sample. The true labels are used only to hold
out digits and to report the clusters' purity. Scored like every shipped generator: chapter 5's
metrics on 5,000 samples (noise seed 0) against the 5,000 bundled digits, each digit's share of
the samples as the classifier reads them, and chapter 5's memorisation check. Nothing ships.

``--shipped NAME`` trains nothing: it scores the shipped weights NAME the same way and takes the
clusters, seed, steps, training command and seconds from their manifest entry. That is how the
50-cluster seed-0 row was kept when ``dcgan-mnist`` was reshipped at 35 clusters.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from gan_utils import classifier, data, metrics, pretrained, recipes, runtime

RESULTS = Path(__file__).resolve().parent / "results"


def memorisation(G: torch.nn.Module, mnist: data.MNISTData, recipe: recipes.Recipe) -> dict[str, float]:
    """Chapter 5's memorisation checks: pixel distances to the nearest training digit of 1,000 samples
    (noise seed 1) and of the 1,000 held-out digits, and Meehan et al.'s test within 20 cells (C_T,
    and how often a sample is the farther of a within-cell pair). Copying shows as samples much nearer
    than the held-out digits: a C_T far below 0, and ``farther`` near 0."""
    train = recipe.training_set(mnist.images, mnist.labels)
    held_out = mnist.images[classifier.stratified_split(mnist.labels, recipe.held_out_per_class, seed=0)[1]]
    samples = metrics.sample_images(G, 1000, seed=1)
    fake_nn = metrics.nearest_neighbours(samples, train)[0].view(-1)
    real_nn = metrics.nearest_neighbours(held_out, train)[0].view(-1)
    below = (fake_nn < real_nn.quantile(0.01)).float().mean().item()
    within_cells = metrics.data_copying_test(samples, held_out, train)
    return {"samples_median": fake_nn.median().item(), "held_out_median": real_nn.median().item(),
            "samples_min": fake_nn.min().item(), "held_out_min": real_nn.min().item(),
            "samples_below_held_out_1st_percentile": below, "C_T": within_cells.statistic,
            "C_T_null_std": within_cells.null_std, "farther": within_cells.farther}  # fmt: skip


def shipped_entry(name: str, parser: argparse.ArgumentParser) -> dict:
    """The manifest entry of shipped weights NAME, checked to come from this benchmark's preset."""
    entry = pretrained.read_manifest().get(name)
    if entry is None or entry.get("preset") != "dcgan-mnist-self-conditioned":
        parser.error(
            f"--shipped needs a model trained from preset dcgan-mnist-self-conditioned; {name!r} is not"
        )
    return entry


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12000)
    parser.add_argument(
        "--clusters", type=int, default=recipes.PRESETS["dcgan-mnist-self-conditioned"].clusters
    )
    parser.add_argument("--seed", type=int, default=0, help="training seed; the clusters stay seed 0's")
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/self_conditioned_kK_seedS.json")
    parser.add_argument("--shipped", metavar="NAME", help="score these shipped weights instead of training")
    args = parser.parse_args(argv)
    shipped = None
    if args.shipped:
        shipped = shipped_entry(args.shipped, parser)
        args.steps, args.seed = shipped["steps"], shipped["seed"]
        args.clusters = shipped["overrides"].get("clusters", args.clusters)
    if offset_problem := runtime.seed_offset_problem(f"benchmarks/{Path(__file__).name}"):
        parser.error(offset_problem)
    if args.steps < 1 or args.clusters < 2 or args.seed < 0:
        parser.error(
            "--steps must be 1 or more, --clusters 2 or more and --seed 0 or more; got "
            f"{args.steps}, {args.clusters}, {args.seed}"
        )
    out = args.out or RESULTS / f"self_conditioned_k{args.clusters}_seed{args.seed}.json"
    if shipped and out.exists() and "scored_weights" not in json.loads(out.read_text()):
        parser.error(f"{out} records a training run; keep it and give --shipped another --out FILE")
    mnist = data.load_mnist(source="bundled")
    recipe = recipes.preset("dcgan-mnist-self-conditioned", steps=args.steps, clusters=args.clusters)
    clusters = recipe.cluster_ids(mnist.images, mnist.labels)
    train_labels = recipe.training_set(mnist.labels, mnist.labels)
    purity = sum(torch.bincount(train_labels[clusters == c], minlength=10).max().item()
                 for c in range(args.clusters) if (clusters == c).any()) / len(clusters)  # fmt: skip
    if shipped:
        G = pretrained.load_pretrained(args.shipped)
        if G.cluster_sizes.tolist() != torch.bincount(clusters, minlength=args.clusters).tolist():
            parser.error(
                f"{args.shipped}'s cluster sizes differ from this recipe's k-means; nothing to compare"
            )
        train_seconds = shipped["wall_seconds"]
    else:
        start = time.perf_counter()
        G = recipes.train_recipe(recipe, mnist.images, seed=args.seed, labels=mnist.labels).G
        train_seconds = time.perf_counter() - start
    classifier = metrics.load_classifier()
    fake = metrics.digit_features(metrics.sample_images(G, metrics.IMAGE_EVAL_SAMPLES, seed=0), classifier)
    scores = metrics.image_metrics(fake, metrics.digit_features(mnist.images, classifier))
    shares = torch.bincount(fake.probabilities.argmax(1), minlength=10).float() / len(fake.probabilities)
    copying = memorisation(G, mnist, recipe)
    result = {
        "command": shlex.join(["python", "benchmarks/self_conditioned.py", *(argv or sys.argv[1:])]),
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "seed": args.seed, "steps": args.steps, "clusters": args.clusters,
        "cluster_sizes": torch.bincount(clusters, minlength=args.clusters).tolist(),
        "sampling": "clusters from z's last coordinate (models.SelfConditionedGenerator)",
        "purity": purity, "train_seconds": round(train_seconds, 1), "metrics": scores,
        "digit_shares": [round(share, 4) for share in shares.tolist()],
        "memorisation": copying,
    }  # fmt: skip
    if shipped:
        result["scored_weights"] = {"name": args.shipped, "sha256": shipped["sha256"], "float16": True,
                                    "trained_by": shipped["command"]}  # fmt: skip
    print(json.dumps(result, indent=1), flush=True)
    out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
