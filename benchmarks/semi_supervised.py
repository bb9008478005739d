"""Chapter 8's table: classification from 100 labelled digits, with and without a GAN.

    python benchmarks/semi_supervised.py                   # 3 seeds, the chapter's settings
    python benchmarks/semi_supervised.py --seeds 1 --steps 500

For each seed, `semi_supervised.label_split` picks 10 labelled digits per class from the bundled
training digits (the seed chooses which); the other training digits are unlabelled, and 1,000
held-out digits (100 per class, the same for every seed and never trained on by any model here or
by the shipped generators) score every run. Three runs per seed, with the same network,
augmentation, batch size, learning-rate schedule and number of steps:

- "100 labels": the classifier trained on the labelled digits alone;
- "100 labels + GAN (K+1)": Salimans et al.'s semi-supervised GAN on the labelled and unlabelled
  digits (`semi_supervised.train_semi_supervised`);
- "100 labels + cdcgan samples": the first run's classifier trained on the labelled digits plus
  ``--samples`` digits drawn from the shipped `cdcgan-mnist`, labelled with the class they were
  drawn for. That generator was trained with the labels of all 4,000 training digits, so this row
  is not a 100-label method; it asks whether a conditional GAN's samples help as extra data.

Results go to benchmarks/results/semi_supervised.json, which chapter 8 and the performance appendix load.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from gan_utils import data, pretrained, semi_supervised
from gan_utils.runtime import sample

RESULTS = Path(__file__).resolve().parent / "results"
ROWS = ("100 labels", "100 labels + GAN (K+1)", "100 labels + cdcgan samples")
STEPS = 2000  # every row takes this many steps


def run_seed(seed: int, steps: int, n_samples: int, mnist: data.MNISTData) -> dict[str, float]:
    """Held-out accuracy of the three rows for one seed."""
    split = semi_supervised.label_split(
        mnist.labels, labelled_per_class=10, held_out_per_class=100, seed=seed
    )
    images, labels = mnist.images, mnist.labels
    held_out = (images[split.held_out], labels[split.held_out])
    labelled = (images[split.labelled], labels[split.labelled])
    G = pretrained.load_pretrained("cdcgan-mnist")
    drawn_labels = torch.arange(n_samples) % G.n_classes
    z = torch.randn(n_samples, G.latent_dim, generator=torch.Generator().manual_seed(1000 + seed))
    drawn = sample(G, z, labels=drawn_labels)
    runs = {
        ROWS[0]: semi_supervised.train_semi_supervised(*labelled, None, steps=steps, seed=seed),
        ROWS[1]: semi_supervised.train_semi_supervised(
            *labelled, images[split.unlabelled], steps=steps, seed=seed
        ),
        ROWS[2]: semi_supervised.train_semi_supervised(
            *labelled, None, steps=steps, seed=seed, extra_images=drawn, extra_labels=drawn_labels
        ),
    }
    return {row: semi_supervised.held_out_accuracy(run, *held_out) for row, run in runs.items()} | {
        f"{row} seconds": round(run.seconds, 1) for row, run in runs.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--samples", type=int, default=5000, help="cdcgan-mnist samples in the third row")
    parser.add_argument("--out", type=Path, default=RESULTS / "semi_supervised.json")
    args = parser.parse_args()
    mnist = data.load_mnist(source="bundled")
    start = time.perf_counter()
    runs = []
    for seed in range(args.seeds):
        result = run_seed(seed, args.steps, args.samples, mnist)
        runs.append({"seed": seed, **result})
        print(json.dumps(runs[-1]), flush=True)
    summary = {
        row: {"mean": statistics.mean(r[row] for r in runs),
              "std": statistics.stdev(r[row] for r in runs) if len(runs) > 1 else 0.0}
        for row in ROWS
    }  # fmt: skip
    result = {
        "command": "python benchmarks/semi_supervised.py"
        + (f" --seeds {args.seeds}" if args.seeds != 3 else "")
        + (f" --steps {args.steps}" if args.steps != STEPS else ""),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "date": time.strftime("%Y-%m-%d"),
        "steps": args.steps,
        "labelled": 100,
        "unlabelled": len(semi_supervised.label_split(mnist.labels).unlabelled),
        "held_out": 1000,
        "samples": args.samples,
        "wall_seconds": round(time.perf_counter() - start, 1),
        "runs": runs,
        "summary": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for row, stats in summary.items():
        print(f"{row:30} {stats['mean']:.1%} +- {stats['std']:.1%}")


if __name__ == "__main__":
    main()
