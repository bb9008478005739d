"""Train, score and ship chapter 9's image-to-image models.

    python benchmarks/image_to_image.py                       # the seven shipped presets, exported
    python benchmarks/image_to_image.py --preset sr-mnist --no-export
    python benchmarks/image_to_image.py --preset cyclegan-mnistm-identity --no-export --out /tmp/mine.json
    python benchmarks/image_to_image.py --preset sr-mnist --rescore   # re-score the shipped weights only
    python benchmarks/image_to_image.py --preset cyclegan-mnistm --no-export --seed 1   # another seed

Each preset (`gan_utils.image_to_image.PRESETS`) trains with `gan_utils.training.train` and the
preset's step function, seed 0 (or --seed), on the CPU. With export (the default) the generator is written to
``gan_utils/weights/NAME.pt`` (float16) with its manifest entry: this command, the steps, the wall
time, the device, and the scores of the exported weights on the held-out data, which
tests/test_image_to_image.py recomputes. Scores of every run also go to
benchmarks/results/image_to_image.json (or --out). Presets outside `i2i.SHIPPED` (the CycleGAN variants of the
performance appendix) are measured with --no-export and never ship. A run with --seed N (N > 0) is
scored as "NAME (seed N)" and never ships: the shipped weights are the seed-0 ones.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from gan_utils import image_to_image as i2i
from gan_utils import pretrained, runtime, set_seed, training
from gan_utils.data import PHOTO_TEST_NAMES, BatchIterator, load_photos

RESULTS = Path(__file__).resolve().parent / "results" / "image_to_image.json"


def data_source(recipe: i2i.ImageToImageRecipe, data: i2i.PairedData) -> str:
    """The manifest's description of a recipe's data, counted from the data itself."""
    n_train, n_test = len(data.train[0]), len(data.test[0])
    if recipe.task == "sr-digits":
        side = data.train[1].shape[-1] // 4
        return (
            f"MNIST (bundled): {n_train:,} training digits downscaled to {side}x{side}; {n_test:,} held out"
        )
    if recipe.task == "sr-photos":
        size, n_photos = data.train[1].shape[-1], len(load_photos("train"))
        return (f"scikit-image photos: {n_train:,} {size}x{size} training patches of {n_photos} images; "
                f"{n_test} test patches of {' and '.join(PHOTO_TEST_NAMES)}")  # fmt: skip
    return (f"MNIST (bundled): {n_train:,} training digits vs {len(data.train[1]):,} other digits in MNIST-M "
            f"style; {n_test:,} held out")  # fmt: skip


def baselines() -> dict[str, dict[str, float]]:
    """Bicubic upsampling scored like the models: chapter 9's first rows."""
    digits, photos = i2i.digit_sr_data(), i2i.photo_sr_data(n_train=1)
    return {
        "bicubic-digits": i2i.super_resolution_scores(*digits.test, digits.test_labels),
        "bicubic-photos": i2i.super_resolution_scores(*photos.test),
    }


def run(name: str, export: bool, weights_dir: Path, seed: int = 0) -> dict[str, float]:
    recipe = i2i.PRESETS[name]
    if export:
        pretrained.check_new_name(name, weights_dir, overwrite=True)
    data = recipe.data()
    set_seed(seed)
    G, D = recipe.models()
    opt_G, opt_D = recipe.optimisers(G, D)
    batches = BatchIterator(*data.train, batch_size=recipe.batch_size, drop_last=True)
    start = time.perf_counter()
    training.train(G, D, opt_G, opt_D, batches, recipe.steps, step=recipe.step(), data_seed=seed)
    wall = time.perf_counter() - start
    if export:
        record = {
            "command": [f"python benchmarks/image_to_image.py --preset {name}"],
            "data_source": data_source(recipe, data),
            "steps": recipe.steps,
            "wall_seconds": round(wall, 1),
            "device": f"cpu ({torch.get_num_threads()} threads)",
        }
        pretrained.export_generator(G, name, record, weights_dir=weights_dir, overwrite=True)
        G = pretrained.load_pretrained(name, weights_dir=weights_dir)  # score what ships: float16 weights
        result = i2i.model_scores(recipe, G, data)
        pretrained.record_metrics(name, result, weights_dir=weights_dir, overwrite=True)
    else:
        result = i2i.model_scores(recipe, G.eval(), data)
    print(name, f"{wall:.0f} s", {k: round(v, 4) for k, v in result.items()}, flush=True)
    return {**result, "wall_seconds": round(wall, 1)}


def rescore(name: str, weights_dir: Path) -> dict[str, float]:
    """Score the shipped ``name`` again (after a change to a measure) and record it; no training."""
    recipe = i2i.PRESETS[name]
    result = i2i.model_scores(
        recipe, pretrained.load_pretrained(name, weights_dir=weights_dir), recipe.data()
    )
    pretrained.record_metrics(name, result, weights_dir=weights_dir, overwrite=True)
    print(name, "re-scored", {k: round(v, 4) for k, v in result.items()}, flush=True)
    wall = pretrained.read_manifest(weights_dir)[name]["wall_seconds"]
    return {**result, "wall_seconds": wall}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=list(i2i.PRESETS), action="append")
    parser.add_argument("--no-export", action="store_true", help="score only; leave gan_utils/weights alone")
    parser.add_argument("--rescore", action="store_true", help="score the shipped weights again; no training")
    parser.add_argument("--weights-dir", type=Path, default=pretrained.WEIGHTS_DIR)
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file (default: chapter 9's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the models and data order (default 0)")
    args = parser.parse_args(argv)
    if offset_problem := runtime.seed_offset_problem(f"benchmarks/{Path(__file__).name}"):
        parser.error(offset_problem)
    if args.seed < 0:
        parser.error(f"--seed must be 0 or more, got {args.seed}.")
    if args.seed and args.rescore:
        parser.error("--rescore scores the shipped (seed 0) weights; drop --seed.")
    if args.seed and not args.no_export:
        parser.error(f"the shipped weights are seed 0's; add --no-export to measure seed {args.seed}.")
    unshipped = [name for name in args.preset or () if name not in i2i.SHIPPED]
    if unshipped and args.rescore:
        parser.error(f"no shipped weights to re-score for {', '.join(unshipped)}; train with --no-export.")
    if unshipped and not args.no_export:
        parser.error(f"{', '.join(unshipped)}: measured variants that do not ship; add --no-export.")
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    results |= baselines()
    for name in args.preset or list(i2i.SHIPPED):
        if args.rescore:
            results[name] = rescore(name, args.weights_dir)
        else:
            key = f"{name} (seed {args.seed})" if args.seed else name
            results[key] = run(name, not args.no_export, args.weights_dir, args.seed)
        results["machine"] = (
            f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
        )
        args.out.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    sys.exit(main())
