"""Seeding, device choice, the quick-mode training budget, and sampling a model in eval mode.

Every chapter asks `budget(full=..., quick=...)` how long to train; this module is the
only place in the book that reads the ``GAN_BOOK_QUICK`` environment variable.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator

import numpy as np
import torch

QUICK_ENV_VAR = "GAN_BOOK_QUICK"
_TRUE_VALUES = {"1", "true", "yes", "on"}
_FALSE_VALUES = {"", "0", "false", "no", "off"}


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's random number generators.

    Introduced in chapter 0. Importing `gan_utils` never seeds anything by itself.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"set_seed expects a non-negative integer, got {seed!r}.")
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


def sample(G: torch.nn.Module, z: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """``G(z)`` in eval mode without gradients, ``batch_size`` rows at a time, returned on the CPU.

    ``z`` may live on any device; each batch moves to G's. G's training mode is restored afterwards.
    """
    device = device_of(G)
    with evaluating(G), torch.no_grad():
        return torch.cat(
            [G(z[start : start + batch_size].to(device)).cpu() for start in range(0, len(z), batch_size)]
        )


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
    for name, value in (("full", full), ("quick", quick)):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"budget({name}=...) must be a positive integer, got {value!r}.")
    if quick > full:
        raise ValueError(f"budget: quick={quick} exceeds full={full}; quick mode must be smaller.")
    return quick if is_quick_mode() else full
