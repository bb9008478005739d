"""Checkpoints that survive crashes and resume to the same numbers.

A checkpoint holds both models, both optimisers, every random number generator, the data stream's
position, the step, the history and the run's config. It is written atomically: to a temporary file
that is flushed and fsynced, then renamed over the old checkpoint, so a crash mid-write leaves the
previous checkpoint intact. It is loaded with ``torch.load(weights_only=True)``, which cannot run
code hidden in a file.

Introduced in chapter 3.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_FORMAT = "gan_utils.checkpoint/1"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or not one of ours."""


def capture_rng_state() -> dict[str, Any]:
    """The state of Python's, NumPy's and torch's generators (CPU and CUDA) as plain tensors and tuples."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Undo `capture_rng_state`."""
    random.setstate(_as_tuples(state["python"]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(value):
    return tuple(_as_tuples(v) for v in value) if isinstance(value, list | tuple) else value


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus the format tag and RNG states) to ``path`` atomically; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": CHECKPOINT_FORMAT, **payload, "rng": capture_rng_state()}
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as file:
        torch.save(payload, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX)
        directory = os.open(path.parent, os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    return path


def first_mismatch(error: Exception) -> str:
    """The first specific line of torch's `load_state_dict` error ("size mismatch for net.0.weight: ..."),
    not its generic heading, cut to 200 characters (a list of missing keys can run to hundreds)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    specific = [line for line in lines if not line.startswith("Error(s) in loading state_dict")]
    first = (specific or lines or [type(error).__name__])[0]
    return first if len(first) <= 200 else first[:199] + "…"


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint written by `save_checkpoint`, safely (weights only), onto the CPU."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file; rename or remove it.")
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; train without --resume to start a new run there.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a damaged or foreign file
        raise CheckpointError(
            f"{path} could not be read as a checkpoint ({error.__class__.__name__}). It may be truncated "
            "or corrupt, or made by another program. Delete it to start afresh, or resume from a copy."
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(
            f"{path} is not a gan_utils checkpoint (expected format {CHECKPOINT_FORMAT!r}, found {found!r})."
        )
    return payload
