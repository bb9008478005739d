"""Chapter 8's table: classification from 100 labelled digits, with and without a GAN.

    python benchmarks/semi_supervised.py                   # 3 seeds, the chapter's settings
    python benchmarks/semi_supervised.py --seeds 1 --steps 500
    python benchmarks/semi_supervised.py --steps 2000 --rows "100 labels" "100 labels + GAN (K+1)"

For each seed, `semi_supervised.label_split` picks 10 labelled digits per class from the bundled
training digits (the seed chooses which); the other training digits are unlabelled, and 1,000
held-out digits (100 per class, the same for every seed and never trained on by any model here or
by the shipped generators) score every run. The rows, each with the same network, augmentation,
batch size, learning-rate schedule and number of steps:

- "100 labels": the classifier trained on the labelled digits alone;
- "100 labels + GAN (K+1)": Salimans et al.'s semi-supervised GAN on the labelled and unlabelled
  digits (`semi_supervised.train_semi_supervised`): their K+1 losses and feature matching, on our
  network and schedule (see `gan_utils.semi_supervised` for the differences);
- "100 labels + GAN (K+1) + shifts": the same GAN with the unlabelled digits shifted like the
  labelled ones, and no entropy term: it splits the last GAN row's change into its two parts;
- "100 labels + entropy": no GAN; the unlabelled digits, shifted like the labelled ones, enter only
  through Dai et al.'s conditional-entropy term (weight 1): what the last GAN row gets without G;
- "100 labels + GAN (K+1) + entropy": the K+1 GAN with Dai et al.'s (2017) term (weight 1; their
  SVHN code uses 0.1) and our shifts of the unlabelled digits;
- "100 labels + cdcgan samples": the first run's classifier trained on the labelled digits plus
  ``--samples`` digits drawn from the shipped `cdcgan-mnist`, labelled with the class they were
  drawn for. That generator was trained with the labels of all 4,000 training digits, so this row
  is not a 100-label method; it asks whether a conditional GAN's samples help as extra data.

``--rows`` picks rows (default: all but the two K+1 rows without the entropy term, measured apart:
results/semi_supervised_2000_steps.json and semi_supervised_k_plus_1_4000_steps.json for the plain
GAN, semi_supervised_k_plus_1_shifts_4000_steps.json for the shifts). Results go to
benchmarks/results/semi_supervised.json, which chapter 8 and the performance appendix load.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from gan_utils import data, pretrained, runtime, semi_supervised
from gan_utils.runtime import sample

RESULTS = Path(__file__).resolve().parent / "results"
ROWS = ("100 labels", "100 labels + GAN (K+1)", "100 labels + GAN (K+1) + shifts", "100 labels + entropy",
        "100 labels + GAN (K+1) + entropy", "100 labels + cdcgan samples")  # fmt: skip
# the two K+1 rows without the entropy term have their own results files (see the docstring)
DEFAULT_ROWS = tuple(row for row in ROWS if row not in ROWS[1:3])
STEPS = 4000  # every row takes this many steps
ENTROPY_WEIGHT = 1.0


def run_seed(
    seed: int, steps: int, n_samples: int, mnist: data.MNISTData, rows: tuple[str, ...] = DEFAULT_ROWS
) -> dict[str, float]:
    """Held-out accuracy of ``rows`` for one seed."""
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
    unlabelled = images[split.unlabelled]
    entropy = dict(entropy_weight=ENTROPY_WEIGHT, shift_unlabelled=True)
    settings = {
        "100 labels": dict(unlabelled_images=None),
        "100 labels + GAN (K+1)": dict(unlabelled_images=unlabelled),
        "100 labels + GAN (K+1) + shifts": dict(unlabelled_images=unlabelled, shift_unlabelled=True),
        "100 labels + entropy": dict(unlabelled_images=unlabelled, gan=False, **entropy),
        "100 labels + GAN (K+1) + entropy": dict(unlabelled_images=unlabelled, **entropy),
        "100 labels + cdcgan samples": dict(
            unlabelled_images=None, extra_images=drawn, extra_labels=drawn_labels
        ),
    }
    runs = {
        row: semi_supervised.train_semi_supervised(*labelled, steps=steps, seed=seed, **settings[row])
        for row in rows
    }
    return {row: semi_supervised.held_out_accuracy(run, *held_out) for row, run in runs.items()} | {
        f"{row} seconds": round(run.seconds, 1) for row, run in runs.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--samples", type=int, default=5000, help="cdcgan-mnist samples for that row")
    parser.add_argument("--rows", nargs="+", choices=ROWS, default=list(DEFAULT_ROWS))
    parser.add_argument("--out", type=Path, default=RESULTS / "semi_supervised.json")
    args = parser.parse_args()
    if offset_problem := runtime.seed_offset_problem(f"benchmarks/{Path(__file__).name}"):
        parser.error(offset_problem)
    rows = tuple(row for row in ROWS if row in args.rows)
    mnist = data.load_mnist(source="bundled")
    start = time.perf_counter()
    runs = []
    for seed in range(args.seeds):
        result = run_seed(seed, args.steps, args.samples, mnist, rows)
        runs.append({"seed": seed, **result})
        print(json.dumps(runs[-1]), flush=True)
    summary = {
        row: {"mean": statistics.mean(r[row] for r in runs),
              "std": statistics.stdev(r[row] for r in runs) if len(runs) > 1 else 0.0}
        for row in rows
    }  # fmt: skip
    result = {
        "command": "python benchmarks/semi_supervised.py"
        + (f" --seeds {args.seeds}" if args.seeds != 3 else "")
        + (f" --steps {args.steps}" if args.steps != STEPS else "")
        + (f" --samples {args.samples}" if args.samples != 5000 else "")
        + (" --rows " + " ".join(f'"{row}"' for row in rows) if rows != DEFAULT_ROWS else "")
        + (f" --out {args.out}" if args.out != RESULTS / "semi_supervised.json" else ""),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "date": time.strftime("%Y-%m-%d"),
        "steps": args.steps,
        "labelled": 100,
        "unlabelled": len(semi_supervised.label_split(mnist.labels).unlabelled),
        "held_out": 1000,
        "samples": args.samples,
        "entropy_weight": ENTROPY_WEIGHT,
        "wall_seconds": round(time.perf_counter() - start, 1),
        "runs": runs,
        "summary": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for row, stats in summary.items():
        print(f"{row:34} {stats['mean']:.1%} +- {stats['std']:.1%}")


if __name__ == "__main__":
    main()
