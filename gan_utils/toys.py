"""The toy experiments of chapters 2 and 6 as named recipes, shared by the chapters and the benchmark.

`benchmarks/toy_modes.py` runs these recipes over 10 seeds; chapters 2 and 6 run them live for one
seed and show the benchmark's table. Both call `train_toy_gan`, so the two can never disagree on what a
recipe is.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from gan_utils import metrics, models, recipes, training
from gan_utils.data import BatchIterator, GaussianMixture2D, check_mixture
from gan_utils.runtime import sample, seed_offset, set_seed

# The toy family's presets live with every other recipe, in recipes.py.
BASELINE = recipes.PRESETS["toy-baseline"]
STABLE = recipes.PRESETS["toy-r1-decay"]


@dataclass
class ToyRun:
    recipe: recipes.Recipe
    mixture_name: str
    seed: int
    steps: int
    G: nn.Module
    D: nn.Module
    history: dict[str, list[float]] = field(repr=False)
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> dict:
        """JSON-friendly result; KL is None when no sample is high quality (it is undefined then)."""
        kl = self.metrics["kl"]
        return {"recipe": self.recipe.name, "data": self.mixture_name, "seed": self.seed, "steps": self.steps,
                **self.metrics, "kl": kl if math.isfinite(kl) else None,
                "seconds": round(self.seconds, 1)}  # fmt: skip


def sample_generator(G: nn.Module, n: int = metrics.TOY_EVAL_SAMPLES, seed: int = 0) -> torch.Tensor:
    """n samples from G in eval mode, from a fixed noise seed so evaluations are repeatable."""
    return sample(G, torch.randn(n, G.latent_dim, generator=torch.Generator().manual_seed(seed)))


def train_toy_gan(
    recipe: recipes.Recipe,
    mixture: GaussianMixture2D,
    seed: int,
    steps: int | None = None,
    callbacks: Iterable[training.Callback] = (),
    progress: bool = False,
) -> ToyRun:
    """Train one MLP GAN on ``mixture`` with ``recipe`` and evaluate it with the VEEGAN/PacGAN metrics."""
    mixture = check_mixture(mixture, "train_toy_gan(recipe, mixture, seed)")
    steps = recipe.steps if steps is None else steps
    set_seed(seed)
    recipe = recipe.with_overrides(data=mixture.name, steps=steps)
    points = mixture.sample(50_000)
    # self-conditioned (chapter 6): full batches of (point, cluster), as `recipe.batches` gives them; the
    # k-means runs once here, as it is the slowest part of a short run
    clusters = recipe.cluster_ids(points) if recipe.clusters else None
    if clusters is None:
        data = BatchIterator(points, batch_size=recipe.batch_size)
    else:
        data = BatchIterator(points, clusters, batch_size=recipe.batch_size, drop_last=True)
    G, D = recipe.build_models()
    opt_G, opt_D = recipe.optimisers(G, D)
    ema = recipe.ema(G)  # chapter 6: with an EMA, the averaged generator is the one evaluated
    callbacks = [*callbacks, *recipe.schedule(opt_G, opt_D), *([ema] if ema else [])]
    start = time.perf_counter()
    history = training.train(
        G, D, opt_G, opt_D, data, steps, recipe.step(), callbacks=callbacks, progress=progress
    )
    seconds = time.perf_counter() - start
    G = ema.generator if ema else G
    if clusters is not None:  # what `recipe.sampling_generator` returns: G drawing its cluster from z
        G = models.self_conditioned(G, torch.bincount(clusters, minlength=recipe.clusters).tolist()).eval()
    result = metrics.toy_mode_metrics(sample_generator(G, seed=seed), mixture)
    # the seed the run really used: set_seed adds GAN_BOOK_SEED_OFFSET, when a reader sets it
    return ToyRun(recipe, mixture.name, seed + seed_offset(), steps, G, D, history, result, seconds)


def recipe_table(recipe: recipes.Recipe) -> dict:
    """The recipe's settings as a flat dict, for printing beside results."""
    return asdict(recipe)


def summarise(results: Iterable[dict]) -> list[dict]:
    """Group run summaries by (recipe, data) and give mean and std of modes, % high quality, KL, seconds."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in results:
        groups.setdefault((row["recipe"], row["data"]), []).append(row)
    table = []
    for (recipe, data_name), rows in groups.items():
        entry = {"recipe": recipe, "data": data_name, "runs": len(rows)}
        for key in ("modes", "high_quality", "kl", "seconds"):
            present = [float(r[key]) for r in rows if r[key] is not None and math.isfinite(r[key])]
            values = torch.tensor(present, dtype=torch.float64)
            mean = values.mean().item() if present else math.nan
            std = values.std().item() if len(present) > 1 else 0.0
            entry[key] = (mean, std)
        entry["kl_undefined"] = len(rows) - sum(r["kl"] is not None and math.isfinite(r["kl"]) for r in rows)
        table.append(entry)
    return table


def format_table(table: list[dict]) -> str:
    """A Markdown table of `summarise` output: mean ± std over runs.

    KL is averaged over the runs where it is defined (at least one high-quality sample); the table
    says how many runs had none.
    """
    lines = [
        "| recipe | data | runs | modes | high quality (%) | KL | seconds per run |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in table:
        modes, quality, kl = e["modes"], e["high_quality"], e["kl"]
        kl_text = "undefined" if math.isnan(kl[0]) else f"{kl[0]:.3f} ± {kl[1]:.3f}"
        if e["kl_undefined"] and not math.isnan(kl[0]):
            kl_text += f" ({e['kl_undefined']} runs undefined)"
        lines.append(
            f"| {e['recipe']} | {e['data']} | {e['runs']} | {modes[0]:.1f} ± {modes[1]:.1f} "
            f"| {quality[0]:.1f} ± {quality[1]:.1f} | {kl_text} | {e['seconds'][0]:.0f} |"
        )
    return "\n".join(lines)
