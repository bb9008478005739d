"""DCGAN training speed: chapter 4's trainer against a loop written the way pytorch/examples'
dcgan/main.py is written, measured in one run on the same data and device.

    python benchmarks/dcgan_speed.py                      # CPU, about 25 minutes on 2 cores
    python benchmarks/dcgan_speed.py --skip-quality       # throughput only, about 3 minutes
    python benchmarks/dcgan_speed.py --device cuda --throughput-steps 300 --limit-ours 60 \
        --limit-reference 240 --eval-every 3              # GPU mode, about 6 minutes on an H100
    ... --device cuda --large-batches 256 512 1024      # also the recorded steps at larger batches
    python benchmarks/dcgan_speed.py --fd-target 20       # chapter 6's recipe vs chapter 4's, to FD <= 20

The two sides:
- **ours**: `gan_utils.training.train_step` on the chapter's 28x28 DCGAN (G width 32, D width 16),
  data resident on the device in a `BatchIterator`, channels_last, `reuse_fakes=True`, batch 128.
- **reference**: the 64x64 DCGAN of pytorch/examples (nz 100, ngf = ndf = 64), a DataLoader with 2
  workers that resizes PIL images to 64x64 on the fly, sigmoid + BCELoss, Adam 2e-4 with
  beta1 0.5, batch 64, and a host sync per step for the log line.

On a GPU (``--device cuda``) our side is also measured with the trainer's GPU options: bf16 mixed
precision (``precision="bfloat16"``), the step recorded as a CUDA graph (`training.CUDAGraphStep`),
both, and the recorded step driven by `training.train` itself (metrics read once per 50 steps), so
the loop's own cost shows. The step rows call the step function directly and leave its metrics on
the device; the reference reads its losses every step, as its log line does. Time to quality on a
GPU trains our side as ``--cuda-graph`` does (the recorded step with fused Adam), and with
``--large-batches`` also the fastest larger batch of each architecture.

It prints training images per second and time-to-quality for both, and their ratios.
Time-to-quality is the training time (evaluation excluded) until 1,000 generated digits reach
QUALITY: at least 40 % of them are read by the shipped classifier with >= 90 % confidence (real
digits: about 95 %), and each of the ten digits makes up at least 3 % of those
(`gan_utils.metrics.recognisable_digits`). The 64x64 samples are resized to 28x28 for the
classifier. The Fréchet distance in the classifier's features is recorded alongside.
Results go to benchmarks/results/dcgan_speed_<device>.json; the book's performance appendix
quotes them.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import re
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from gan_utils import data, metrics, models, recipes, training

RESULTS = Path(__file__).resolve().parent / "results"
QUALITY = {"confidence": 0.9, "recognisable": 0.4, "smallest_class": 0.03}
EVAL_SAMPLES = 1000
FD_SAMPLES = 2000  # --fd-target: FD of this many samples against all 5,000 digits (the appendix's trace)


class PILDigits(Dataset):
    """MNIST digits as PIL images, the form torchvision.datasets.MNIST hands to its transform."""

    def __init__(self, images: torch.Tensor, transform) -> None:
        self.pixels = ((images[:, 0] + 1) * 127.5).round().to(torch.uint8).numpy()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, index: int):
        return self.transform(Image.fromarray(self.pixels[index], mode="L")), 0


class ReferenceSide:
    """The pytorch/examples-style loop: 64x64 models, DataLoader, sigmoid + BCELoss, item() per step."""

    name = "reference (pytorch/examples style, 64x64)"
    batch_size = 64

    def __init__(self, images: torch.Tensor, device: torch.device) -> None:
        self.device = device
        transform = transforms.Compose(
            [transforms.Resize(64), transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))]
        )
        self.loader = DataLoader(PILDigits(images, transform), batch_size=self.batch_size, shuffle=True,
                                 num_workers=2, drop_last=True, persistent_workers=True)  # fmt: skip
        self.batches = iter(())
        self.netG = models.DCGANGenerator(latent_dim=100, width=64, image_size=64).apply(models.init_weights)
        self.netD = nn.Sequential(models.DCGANDiscriminator(width=64, image_size=64), nn.Sigmoid())
        self.netD.apply(models.init_weights)
        self.netG, self.netD = self.netG.to(device), self.netD.to(device)
        self.criterion = nn.BCELoss()
        self.optimizerD = torch.optim.Adam(self.netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.optimizerG = torch.optim.Adam(self.netG.parameters(), lr=2e-4, betas=(0.5, 0.999))

    def next_batch(self) -> torch.Tensor:
        try:
            return next(self.batches)[0]
        except StopIteration:
            self.batches = iter(self.loader)
            return next(self.batches)[0]

    def step(self) -> None:
        real = self.next_batch().to(self.device)
        b_size = real.size(0)
        label = torch.full((b_size,), 1.0, device=self.device)
        self.netD.zero_grad()
        errD_real = self.criterion(self.netD(real), label)
        errD_real.backward()
        noise = torch.randn(b_size, 100, device=self.device)
        fake = self.netG(noise)
        label.fill_(0.0)
        errD_fake = self.criterion(self.netD(fake.detach()), label)
        errD_fake.backward()
        self.optimizerD.step()
        self.netG.zero_grad()
        label.fill_(1.0)
        errG = self.criterion(self.netD(fake), label)
        errG.backward()
        self.optimizerG.step()
        self.last_log = (errD_real + errD_fake).item(), errG.item()  # the per-iteration log line syncs

    @torch.no_grad()
    def samples(self, n: int) -> torch.Tensor:
        self.netG.eval()
        z = torch.randn(n, 100, generator=torch.Generator().manual_seed(0)).to(self.device)
        images = self.netG(z).float().cpu()
        self.netG.train()
        return F.interpolate(images, size=28, mode="bilinear", antialias=True).clamp(-1, 1)


# Chapter 4's dcgan-mnist preset, shipped as dcgan-mnist-baseline (batch 128, Adam 5e-4, channels_last,
# reuse_fakes), without its learning-rate decay: these runs are timed by the clock, not by a fixed
# number of steps.
RECIPE = recipes.preset("dcgan-mnist", lr_decay=False)


def options_label(precision: str, cuda_graph: bool, compiled: str = "", fused: bool = False) -> str:
    options = (["bf16 autocast"] * (precision == "bfloat16") + [f"torch.compile {compiled}"] * bool(compiled)
               + ["CUDA graph"] * cuda_graph + ["fused Adam"] * fused)  # fmt: skip
    return ", ".join(options) or "eager fp32"


class OurSide:
    """Chapter 4's trainer: resident data, channels_last, reuse_fakes, batch 128.

    ``compiled`` ("default" or "reduce-overhead") wraps G and D in `torch.compile` with that mode for
    the step (samples come from the plain G, which shares the weights); the trainer does not compile
    (see the appendix). ``fused`` gives Adam its fused kernel, as the trainer does with a CUDA graph.
    ``channels_last=False`` keeps the default NCHW layout."""

    def __init__(
        self,
        images: torch.Tensor,
        device: torch.device,
        precision: str = "float32",
        cuda_graph: bool = False,
        batch_size: int = RECIPE.batch_size,
        compiled: str = "",
        fused: bool = False,
        channels_last: bool = True,
    ) -> None:
        self.batch_size = batch_size
        recipe = RECIPE.with_overrides(
            precision=precision, batch_size=batch_size, channels_last=channels_last
        )
        self.name = f"ours (gan_utils, chapter 4's 28x28 DCGAN; " \
                    f"{options_label(precision, cuda_graph, compiled, fused)}" \
                    f"{'' if batch_size == RECIPE.batch_size else f', batch {batch_size}'})"  # fmt: skip
        self._set_up(recipe, *recipe.build_models(device), cuda_graph, compiled, fused)
        self.batches = data.BatchIterator(
            images.to(device), batch_size=self.batch_size, drop_last=True
        ).endless()

    def _set_up(self, recipe, G, D, cuda_graph: bool, compiled: str, fused: bool) -> None:
        self.G, self.D = G, D
        self.opt_G, self.opt_D = recipe.optimisers(G, D, capturable=cuda_graph, fused=fused)
        self.players = tuple(torch.compile(m, mode=compiled) for m in (G, D)) if compiled else (G, D)
        self.step_function = training.CUDAGraphStep(recipe.step()) if cuda_graph else recipe.step()

    def step(self) -> None:
        self.step_function(*self.players, self.opt_G, self.opt_D, self.batches)

    @torch.no_grad()
    def samples(self, n: int) -> torch.Tensor:
        return metrics.sample_images(self.G, n, seed=0).float()


class OurTrainerAt64(OurSide):
    """Our trainer on the reference's 64x64 architecture: what the loop alone is worth."""

    def __init__(
        self,
        images: torch.Tensor,
        device: torch.device,
        precision: str = "float32",
        cuda_graph: bool = False,
        batch_size: int = 64,
        compiled: str = "",
        fused: bool = False,
        channels_last: bool = True,
    ) -> None:
        self.batch_size = batch_size
        batch = "" if batch_size == 64 else f", batch {batch_size}"
        self.name = f"ours at 64x64 (gan_utils trainer, pytorch/examples architecture; " \
                    f"{options_label(precision, cuda_graph, compiled, fused)}{batch})"  # fmt: skip
        G = models.DCGANGenerator(latent_dim=100, width=64, image_size=64).apply(models.init_weights)
        D = models.DCGANDiscriminator(width=64, image_size=64).apply(models.init_weights)
        layout = torch.channels_last if channels_last else torch.contiguous_format
        G, D = G.to(device, memory_format=layout), D.to(device, memory_format=layout)
        recipe = RECIPE.with_overrides(lr=2e-4, precision=precision)  # the reference's Adam settings
        self._set_up(recipe, G, D, cuda_graph, compiled, fused)
        resized = F.interpolate(images, size=64, mode="bilinear", antialias=True).clamp(
            -1, 1
        )  # once, up front
        self.batches = data.BatchIterator(
            resized.to(device), batch_size=self.batch_size, drop_last=True
        ).endless()

    @torch.no_grad()
    def samples(self, n: int) -> torch.Tensor:
        """64x64 samples resized to the classifier's 28x28, as the reference's are."""
        images = metrics.sample_images(self.G, n, seed=0).float()
        return F.interpolate(images, size=28, mode="bilinear", antialias=True).clamp(-1, 1)


class RecipeSide:
    """A preset as `recipes.train_recipe` trains it (its own step, R1, EMA and held-out digits), at a
    constant learning rate because the clock, not a step count, ends the run; samples from the EMA."""

    def __init__(self, name: str, images: torch.Tensor, labels: torch.Tensor, device: torch.device) -> None:
        self.recipe = recipes.preset(name, lr_decay=False)
        self.name, self.batch_size = f"{name} (constant learning rate)", self.recipe.batch_size
        self.G, self.D = self.recipe.build_models(device)
        self.opt_G, self.opt_D = self.recipe.optimisers(self.G, self.D)
        self.ema = self.recipe.ema(self.G)
        self.batches = self.recipe.batches(images, labels, device).endless()
        self.step_function = self.recipe.step()

    def step(self) -> None:
        self.step_function(self.G, self.D, self.opt_G, self.opt_D, self.batches)
        if self.ema is not None:
            self.ema.averaged.update_parameters(self.G)

    @torch.no_grad()
    def samples(self, n: int) -> torch.Tensor:
        return metrics.sample_images(self.ema.generator if self.ema is not None else self.G, n, seed=0)


def time_to_fd(args: argparse.Namespace, mnist: data.MNISTData, device: torch.device, result: dict) -> None:
    """Issue 15's time to quality: each preset in ``args.fd_recipes`` until FD <= ``args.fd_target``."""
    classifier = metrics.load_classifier()
    real = metrics.digit_features(mnist.images, classifier)
    result.update(fd_target=args.fd_target, fd_samples=FD_SAMPLES)
    for name in args.fd_recipes:
        torch.manual_seed(0)
        side = RecipeSide(name, mnist.images, mnist.labels, device)
        result[name] = time_to_quality(side, device, real, classifier, args.fd_limit, args.fd_every,
                                       done=lambda scores: scores["frechet_distance"] <= args.fd_target,
                                       n_samples=FD_SAMPLES)  # fmt: skip
        outcome = result[name]
        print(
            f"{name}: FD <= {args.fd_target} {'after' if outcome['reached'] else 'not reached in'} "
            f"{outcome['seconds']:.0f} s of training ({outcome['steps']} steps)",
            flush=True,
        )


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def throughput(side, device: torch.device, steps: int, warmup: int = 5) -> tuple[float, float]:
    """Training images per second over ``steps`` steps, and the seconds the ``warmup`` steps before
    them took (where compilation or recording happens)."""
    start = time.perf_counter()
    for _ in range(warmup):
        side.step()
    synchronise(device)
    warmup_seconds = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        side.step()
    synchronise(device)
    return steps * side.batch_size / (time.perf_counter() - start), warmup_seconds


class _StartClock:
    """`training.train` callback: note the time when step ``after`` ends (the warm-up is over)."""

    def __init__(self, after: int, device: torch.device) -> None:
        self.after, self.device, self.start = after, device, 0.0

    def __call__(self, state: training.TrainState) -> None:
        if state.step == self.after:
            synchronise(self.device)
            self.start = time.perf_counter()


def loop_throughput(images: torch.Tensor, device: torch.device, steps: int, warmup: int = 5) -> float:
    """Images per second of the whole trainer, `training.train` around the recorded step (CUDA graph)
    with fused Adam, as `--cuda-graph` trains (until 2026-11-28's commit 527f878: without fused Adam)."""
    side = OurSide(images, device, cuda_graph=device.type == "cuda", fused=device.type == "cuda")
    batches = data.BatchIterator(images.to(device), batch_size=side.batch_size, drop_last=True)
    clock = _StartClock(warmup, device)
    training.train(side.G, side.D, side.opt_G, side.opt_D, batches, warmup + steps, side.step_function,
                   callbacks=[clock], progress=False, data_seed=0)  # fmt: skip
    synchronise(device)
    return steps * side.batch_size / (time.perf_counter() - clock.start)


def reached(scores: dict[str, float]) -> bool:
    return (
        scores["recognisable"] >= QUALITY["recognisable"]
        and scores["smallest_class"] >= QUALITY["smallest_class"]
    )


def time_to_quality(
    side,
    device,
    real: metrics.DigitFeatures,
    classifier,
    limit: float,
    every: float,
    done=reached,
    n_samples: int = EVAL_SAMPLES,
) -> dict:
    """Train until ``done(scores)`` (QUALITY by default) or ``limit`` seconds of training; evaluate
    ``n_samples`` samples every ``every`` training seconds (evaluation time excluded)."""
    trained, steps, trace = 0.0, 0, []
    while trained < limit:
        synchronise(device)
        start = time.perf_counter()
        while time.perf_counter() - start < every:
            side.step()
            steps += 1
        synchronise(device)
        trained += time.perf_counter() - start
        fake = metrics.digit_features(side.samples(n_samples), classifier)
        scores = {
            **metrics.recognisable_digits(fake.probabilities, QUALITY["confidence"]),
            "frechet_distance": metrics.frechet_distance(real.features, fake.features),
        }
        trace.append(
            {"seconds": round(trained, 1), "steps": steps, **{k: round(v, 3) for k, v in scores.items()}}
        )
        print(f"  {side.name}: {trained:6.0f} s, {steps} steps, recognisable {scores['recognisable']:.1%}, "
              f"rarest digit {scores['smallest_class']:.1%}, FD {scores['frechet_distance']:.1f}",
              flush=True)  # fmt: skip
        if done(scores):
            return {"seconds": round(trained, 1), "steps": steps, "reached": True, "trace": trace}
    return {"seconds": round(trained, 1), "steps": steps, "reached": False, "trace": trace}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--throughput-steps", type=int, default=40)
    parser.add_argument("--limit-ours", type=float, default=300.0, help="seconds of training at most")
    parser.add_argument("--limit-reference", type=float, default=1200.0, help="seconds of training at most")
    parser.add_argument("--eval-every", type=float, default=15.0, help="training seconds between checks")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--large-batches", type=int, nargs="*", default=[],
                        help="CUDA only: also time the recorded steps at these batch sizes, and train the "
                        "fastest of each architecture to the quality bar")  # fmt: skip
    parser.add_argument("--compile", action="store_true",
                        help="also time torch.compile'd players (on CUDA: inside the recorded step, and "
                        "with fused Adam)")  # fmt: skip
    parser.add_argument("--rows", help="time only the rows whose key matches this regex (and the reference)")
    parser.add_argument("--fd-target", type=float,
                        help="instead: train --fd-recipes until FD (2,000 samples) is this")  # fmt: skip
    parser.add_argument("--fd-recipes", nargs="+", default=["dcgan-mnist-stable", "dcgan-mnist"])
    parser.add_argument("--fd-limit", type=float, default=1200.0, help="seconds of training per recipe")
    parser.add_argument("--fd-every", type=float, default=60.0, help="training seconds between FD checks")
    args = parser.parse_args()
    if args.large_batches and torch.device(args.device).type != "cuda":
        parser.error("--large-batches times recorded CUDA graphs: use it with --device cuda")
    if any(size < 1 for size in args.large_batches):
        parser.error("--large-batches takes positive batch sizes, e.g. 256 512 1024")
    device = torch.device(args.device)
    torch.manual_seed(0)
    mnist = data.load_mnist()
    print(f"data: {mnist.source}, {len(mnist.images)} images; device {device}; torch {torch.__version__}")
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
              or platform.machine(), "cpu_threads": torch.get_num_threads(), "torch": torch.__version__,
              "data": f"MNIST ({mnist.source}, {len(mnist.images)} images)", "quality": QUALITY,
              "command": shlex.join(["python", "benchmarks/dcgan_speed.py", *sys.argv[1:]])}  # fmt: skip
    if args.fd_target is not None:
        time_to_fd(args, mnist, device, result)
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"dcgan_time_to_fd_{device.type}.json"
        path.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {path}")
        return
    # key -> a side; the GPU adds the trainer's GPU options (bf16 autocast, the step as a CUDA graph)
    rows = {"ours": lambda: OurSide(mnist.images, device),
            "reference": lambda: ReferenceSide(mnist.images, device),
            "ours_64": lambda: OurTrainerAt64(mnist.images, device)}  # fmt: skip
    if device.type == "cuda":
        for suffix, precision, graph in (("bf16", "bfloat16", False), ("graph", "float32", True),
                                         ("graph_bf16", "bfloat16", True)):  # fmt: skip
            for key, side_class in ((f"ours_{suffix}", OurSide), (f"ours_64_{suffix}", OurTrainerAt64)):
                rows[key] = functools.partial(side_class, mnist.images, device, precision, graph)
        # Larger batches, recorded steps only: the same models and data, more images per kernel launch.
        for batch_size in args.large_batches:
            rows[f"ours_graph_b{batch_size}"] = functools.partial(
                OurSide, mnist.images, device, "float32", True, batch_size
            )
            rows[f"ours_64_graph_bf16_b{batch_size}"] = functools.partial(
                OurTrainerAt64, mnist.images, device, "bfloat16", True, batch_size
            )
    if args.compile:
        # torch.compile (inductor), alone and inside the recorded step, and Adam's fused kernel
        compiled = {"ours_compiled": dict(compiled="default"),
                    "ours_64_compiled": dict(compiled="default")}  # fmt: skip
        if device.type == "cuda":
            compiled.update(
                ours_compiled_reduce_overhead=dict(compiled="reduce-overhead"),
                ours_graph_fused=dict(cuda_graph=True, fused=True),
                ours_compiled_graph=dict(cuda_graph=True, compiled="default"),
                ours_compiled_graph_fused=dict(cuda_graph=True, compiled="default", fused=True),
                ours_64_graph_bf16_fused=dict(precision="bfloat16", cuda_graph=True, fused=True),
                ours_64_compiled_graph_bf16=dict(precision="bfloat16", cuda_graph=True, compiled="default"),
                ours_64_compiled_graph_bf16_fused=dict(
                    precision="bfloat16", cuda_graph=True, compiled="default", fused=True
                ),  # fmt: skip
            )
            # the same in the default (NCHW) layout: compiled channels_last players failed on the H200
            for key, options in list(compiled.items()):
                compiled[f"{key}_nchw"] = dict(options, channels_last=False)
            compiled.update(ours_graph_nchw=dict(cuda_graph=True, channels_last=False),
                            ours_64_graph_bf16_nchw=dict(precision="bfloat16", cuda_graph=True,
                                                         channels_last=False))  # fmt: skip
        for key, options in compiled.items():
            side_class = OurTrainerAt64 if key.startswith("ours_64") else OurSide
            rows[key] = functools.partial(side_class, mnist.images, device, **options)
    if args.rows:
        rows = {key: row for key, row in rows.items() if key == "reference" or re.search(args.rows, key)}
    for key, make_side in rows.items():
        torch.manual_seed(0)
        try:
            side = make_side()
            speed, warmup_seconds = throughput(side, device, args.throughput_steps)
        except Exception as error:  # a failed option is a result too; the other rows still run
            result[f"{key}_error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
            print(f"{key}: failed, {result[f'{key}_error']}", flush=True)
            continue
        result[f"{key}_img_per_s"], result[f"{key}_warmup_s"] = round(speed, 1), round(warmup_seconds, 1)
        del side
        print(f"{key}: {speed:.0f} training images/s (warm-up {warmup_seconds:.1f} s)", flush=True)
    if device.type == "cuda":
        torch.manual_seed(0)
        result["ours_graph_train_loop_img_per_s"] = round(
            loop_throughput(mnist.images, device, args.throughput_steps), 1
        )
        print(f"ours_graph_train_loop: {result['ours_graph_train_loop_img_per_s']:.0f} training images/s")
    reference = result["reference_img_per_s"]
    speeds = {k: v for k, v in result.items() if k.startswith("ours") and k.endswith("img_per_s")}
    # throughput_ratio and same_architecture_ratio: at each side's own batch (128 and 64), as in earlier files
    at_own_batch = {k: v for k, v in speeds.items() if not re.search(r"_b\d+_img_per_s$", k)}
    for key, rows in (("throughput_ratio", at_own_batch), ("throughput_ratio_large_batches", speeds)):
        result[key] = round(max((v for k, v in rows.items() if "_64" not in k), default=0) / reference, 1)
        result[key.replace("throughput", "same_architecture")] = round(
            max((v for k, v in rows.items() if "_64" in k), default=0) / reference, 1
        )  # 0 where --rows timed none of that size
    result["fastest_at_own_batch"] = {
        size: max((k for k in at_own_batch if ("_64" in k) == (size == "64x64")), key=at_own_batch.get,
                  default=None)
        for size in ("28x28", "64x64")
    }  # fmt: skip
    if not args.large_batches:
        del result["throughput_ratio_large_batches"], result["same_architecture_ratio_large_batches"]
    print(f"throughput, our fastest / reference at each side's batch: {result['throughput_ratio']}x with "
          f"the 28x28 model, {result['same_architecture_ratio']}x on the reference's 64x64 one "
          f"(fastest rows: {result['fastest_at_own_batch']})")  # fmt: skip
    if args.large_batches:
        print(f"with the larger batches: {result['throughput_ratio_large_batches']}x and "
              f"{result['same_architecture_ratio_large_batches']}x")  # fmt: skip

    if not args.skip_quality:
        classifier = metrics.load_classifier()
        real = metrics.digit_features(mnist.images[:5000], classifier)
        cuda = device.type == "cuda"  # there: the recorded step with fused Adam, as --cuda-graph trains
        sides = {"ours": functools.partial(OurSide, cuda_graph=cuda, fused=cuda), "reference": ReferenceSide}
        for pattern, side_class, name, options in (
            (r"ours_graph_b(\d+)_img_per_s", OurSide, "ours", {}),
            (r"ours_64_graph_bf16_b(\d+)_img_per_s", OurTrainerAt64, "ours_64", {"precision": "bfloat16"}),
        ):  # the fastest larger batch of each architecture, if --large-batches timed any
            large = {
                int(match[1]): value for key, value in result.items() if (match := re.fullmatch(pattern, key))
            }
            if large:
                batch_size = max(large, key=large.get)
                sides[f"{name}_b{batch_size}"] = functools.partial(
                    side_class, cuda_graph=True, fused=True, batch_size=batch_size, **options
                )
        for key, side_class in sides.items():
            torch.manual_seed(0)
            side = side_class(mnist.images, device)
            limit = args.limit_reference if key == "reference" else args.limit_ours
            result[f"{key}_time_to_quality"] = time_to_quality(
                side, device, real, classifier, limit, args.eval_every
            )
        ours, reference = result["ours_time_to_quality"], result["reference_time_to_quality"]
        if ours["reached"]:
            bound = "" if reference["reached"] else "at least "
            ratio = reference["seconds"] / ours["seconds"]
            result["time_to_quality_ratio"] = f"{bound}{ratio:.1f}"
            print(f"time to quality: reference / ours = {bound}{ratio:.1f}x "
                  f"({reference['seconds']:.0f} s vs {ours['seconds']:.0f} s)")  # fmt: skip
        else:
            print("ours did not reach the quality bar within its limit")
    RESULTS.mkdir(exist_ok=True)
    suffix = "_compile" * args.compile + "_throughput" * args.skip_quality
    path = RESULTS / f"dcgan_speed_{device.type}{suffix}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
