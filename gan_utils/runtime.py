"""Seeding, device choice, the quick-mode training budget, sampling a model in eval mode, and reading
the benchmarks' recorded results.

Every chapter asks `budget(full=..., quick=...)` how long to train; this module is the
only place in the book that reads the ``GAN_BOOK_QUICK`` environment variable, and the
``GAN_BOOK_SEED_OFFSET`` one that `set_seed` adds to every seed (a robustness check: the book's
conclusions must not hang on the seeds its pages happen to use).
"""

from __future__ import annotations

import contextlib
import json
import math
import operator
import os
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

QUICK_ENV_VAR = "GAN_BOOK_QUICK"
SEED_OFFSET_ENV_VAR = "GAN_BOOK_SEED_OFFSET"
_TRUE_VALUES = {"1", "true", "yes", "on"}
_FALSE_VALUES = {"", "0", "false", "no", "off"}


def check_count(value: object, name: str, minimum: int = 1) -> int:
    """``value`` as a Python int if it is a whole number of at least ``minimum``; else a ValueError.

    NumPy and 0-d torch integers count (``np.int64(5)`` is a size like 5), so sizes computed with
    NumPy work. Booleans and floats are refused, even ``3.0``: ``steps=True`` or ``n=2.5`` is a
    mistake, not a size. The message names ``name`` and the values it accepts.
    """
    kind = {0: "a non-negative integer (0, 1, 2, ...)", 1: "a positive integer (1, 2, 3, ...)"}.get(
        minimum, f"an integer of at least {minimum}"
    )
    if isinstance(value, bool | float):
        raise ValueError(f"{name} must be {kind}, got {value!r}.")
    try:
        number = operator.index(value)  # int, NumPy and torch integers; not floats or strings
    except TypeError:
        raise ValueError(f"{name} must be {kind}, got {value!r}.") from None
    if number < minimum:
        raise ValueError(f"{name} must be {kind}, got {number}.")
    return number


def check_positive_number(value: object, name: str) -> float:
    """``value`` as a float if it is a finite number above 0 (a learning rate, a penalty weight)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            value = float(value)  # NumPy and 0-d torch numbers
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a positive number, got {value!r}.") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}.")
    return float(value)


def seed_offset() -> int:
    """What `set_seed` adds to every seed: ``GAN_BOOK_SEED_OFFSET`` as an integer ≥ 0, 0 when unset.

    Set it to rerun a chapter as a reader with other seeds would: the training runs of the book seed
    through `set_seed` (all but chapter 1's plain-PyTorch listing, which seeds torch itself), so each
    one starts from another draw; the noise that metrics score samples from stays fixed. The
    performance appendix lists the full builds made this way and the checks closest to their bounds.
    The command line and the benchmarks that record seeds refuse it (`seed_offset_problem`).
    """
    value = os.environ.get(SEED_OFFSET_ENV_VAR, "").strip()
    if not value:
        return 0
    if not value.isdigit():
        raise ValueError(
            f"{SEED_OFFSET_ENV_VAR}={value!r} is not a non-negative integer: use, e.g., 1 to shift "
            "every seed by one, or unset it for the book's own seeds."
        )
    return int(value)


def seed_offset_problem(program: str) -> str | None:
    """What is wrong with running ``program`` under ``GAN_BOOK_SEED_OFFSET`` (None when it is 0 or
    unset): ``program`` records the seeds it uses (a checkpoint's config, a manifest, a results file),
    and a silent offset would make that record wrong. The offset is for rerunning the chapters only."""
    offset = seed_offset()
    if not offset:
        return None
    return (f"{SEED_OFFSET_ENV_VAR}={offset} is set, but {program} records the seeds it uses; unset it "
            "(it is for rerunning the chapters) and pass the seed you want instead.")  # fmt: skip


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's random number generators with ``seed + seed_offset()``.

    Introduced in chapter 0. Importing `gan_utils` never seeds anything by itself. The offset is 0
    unless ``GAN_BOOK_SEED_OFFSET`` is set (`seed_offset`).
    """
    try:
        seed = check_count(seed, "seed", minimum=0)
    except ValueError:
        raise ValueError(f"set_seed expects a non-negative integer, got {seed!r}.") from None
    seed += seed_offset()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def default_device() -> torch.device:
    """Return the best available device: CUDA, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` as a `torch.device` that exists on this machine; ``"auto"`` means `default_device()`.

    A name torch does not know, a device type the book does not train on (``meta``, ``xpu``, ...), or a
    CUDA or MPS device this machine lacks, raises a ValueError saying which devices to use, instead of
    failing later inside the first tensor operation.
    """
    if isinstance(device, str) and device == "auto":
        return default_device()
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"{device!r} is not a device; use 'auto', 'cpu', 'cuda' or 'mps'.") from None
    if resolved.type not in ("cpu", "cuda", "mps"):
        raise ValueError(
            f"{device!r} is a {resolved.type} device, which the book does not run on; use 'auto', 'cpu', "
            "'cuda' or 'mps'."
        )
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{device!r} was asked for but no CUDA GPU is available; use 'cpu'.")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(
                f"{device!r} was asked for but this machine has {torch.cuda.device_count()} CUDA GPU(s); "
                "use 'cuda' or 'cuda:0'."
            )
    if resolved.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"{device!r} was asked for but MPS is not available; use 'cpu'.")
    return resolved


def device_of(module: torch.nn.Module) -> torch.device:
    """The device of a module's parameters (the CPU for a module without parameters)."""
    parameter = next(module.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


@contextlib.contextmanager
def evaluating(*modules: torch.nn.Module) -> Iterator[None]:
    """Put ``modules`` in eval mode for the block; afterwards each gets back the mode it had.

    Eval mode matters for BatchNorm: it normalises with running statistics instead of the batch's.
    Gradients are not switched off here (forward-mode Jacobians need them): `sample` does that.
    """
    modes = [module.training for module in modules]
    try:
        for module in modules:
            module.eval()
        yield
    finally:
        for module, mode in zip(modules, modes, strict=True):
            module.train(mode)


def sample(
    G: torch.nn.Module, z: torch.Tensor, batch_size: int = 500, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """``G(z)`` in eval mode without gradients, ``batch_size`` rows at a time, returned on the CPU.

    ``z`` may live on any device; each batch moves to G's. G's training mode is restored afterwards.
    A conditional generator (chapter 8) draws class ``labels[i]`` for row i; without labels it draws
    every class in turn (0, 1, ..., 9, 0, ...), so n samples hold each class equally often.
    """
    from gan_utils.models import balanced_labels, is_conditional

    batch_size = check_count(batch_size, "batch_size")
    if not isinstance(G, torch.nn.Module):
        raise ValueError(
            f"sample takes a generator module, got {type(G).__name__}; load a shipped one with "
            "gan_utils.pretrained.load_pretrained(name)."
        )
    if not isinstance(z, torch.Tensor):
        raise ValueError(f"z must be a torch tensor, got {type(z).__name__}; draw it with torch.randn.")
    device = device_of(G)
    if is_conditional(G) and labels is None:
        labels = balanced_labels(len(z), G.n_classes)
    elif labels is not None and not is_conditional(G):
        raise ValueError(f"{type(G).__name__} is not conditional; sample it without labels.")
    with evaluating(G), torch.no_grad():
        return torch.cat([
            G(*[t[start : start + batch_size].to(device) for t in (z, labels) if t is not None]).cpu()
            for start in range(0, len(z), batch_size)
        ])  # fmt: skip


def is_quick_mode() -> bool:
    """True when ``GAN_BOOK_QUICK`` is set to 1/true/yes/on (the test run sets it)."""
    value = os.environ.get(QUICK_ENV_VAR, "").strip().lower()
    if value in _TRUE_VALUES:
        return True
    if value in _FALSE_VALUES:
        return False
    raise ValueError(
        f"{QUICK_ENV_VAR}={value!r} is not understood: use 1 for quick mode or 0 (or unset) for full mode."
    )


def budget(full: int, quick: int) -> int:
    """Pick a training budget: ``quick`` in quick mode (tests), ``full`` otherwise (the book).

    >>> budget(full=3000, quick=60)  # doctest: +SKIP
    3000
    """
    full, quick = check_count(full, "budget(full=...)"), check_count(quick, "budget(quick=...)")
    if quick > full:
        raise ValueError(f"budget: quick={quick} exceeds full={full}; quick mode must be smaller.")
    return quick if is_quick_mode() else full


BENCHMARK_RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"


def benchmark_results(name: str) -> dict:
    """The results file ``name`` (e.g. "toy_modes.json") that a script of `benchmarks/` wrote.

    The files live in the book's repository beside the library, not inside the package, so they
    are there in a clone (`make lab`, Binder, or the chapters' first cell on Colab, which clones the
    repository) and missing from a bare ``pip install`` of gan_utils; that case gets a message with
    the fix.
    """
    path = BENCHMARK_RESULTS / name
    if not path.is_file():
        known = sorted(p.name for p in BENCHMARK_RESULTS.glob("*.json")) if BENCHMARK_RESULTS.is_dir() else []
        raise FileNotFoundError(
            f"no benchmark results {name!r} at {path}. "
            + (f"Known: {', '.join(known)}." if known else
               "They ship with the book's repository, not with an installed gan_utils: clone the "
               "repository and run `pip install -e .` in it (the chapters' first cell does this).")
        )  # fmt: skip
    return json.loads(path.read_text())
