"""Seeding, device choice and the quick-mode training budget.

Every chapter asks `budget(full=..., quick=...)` how long to train; this module is the
only place in the book that reads the ``GAN_BOOK_QUICK`` environment variable.
"""

from __future__ import annotations

import os
import random

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
