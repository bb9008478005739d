"""Generators (and chapter 5's classifier) that ship with the book, so chapters that would need long
training can load them instead.

Each file in ``gan_utils/weights/`` is listed in ``MANIFEST.json`` with its sha256, the architecture
to rebuild, the exact command that trained it, the data source, the steps, the wall time, the device
and its metrics. `load_pretrained` checks the hash before loading, and loads with
``torch.load(weights_only=True)``, which cannot run code hidden in a file. Weights are stored as
float16 to keep each file small and are returned as float32.

`export_generator` writes a new entry from a training checkpoint of ``python -m gan_utils train``;
``python -m gan_utils.release export`` calls it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gan_utils import checkpoints, classifier, models

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MANIFEST_NAME = "MANIFEST.json"
ARCHITECTURES = {
    "MLPGenerator": models.MLPGenerator,
    "DCGANGenerator": models.DCGANGenerator,
    "MNISTClassifier": classifier.MNISTClassifier,
}


class PretrainedError(RuntimeError):
    """A shipped generator is unknown, missing, altered or unreadable."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(weights_dir: Path = WEIGHTS_DIR) -> dict[str, Any]:
    path = weights_dir / MANIFEST_NAME
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def available(weights_dir: Path = WEIGHTS_DIR) -> list[str]:
    """Names of the shipped models, e.g. ['dcgan-mnist', 'mlp-mnist', 'mnist-classifier']."""
    return sorted(read_manifest(weights_dir))


def load_pretrained(
    name: str, device: str | torch.device = "cpu", weights_dir: Path = WEIGHTS_DIR
) -> nn.Module:
    """Return the shipped model ``name`` in eval mode, after checking its sha256.

    Names: see `available` (``dcgan-mnist``, ``mlp-mnist`` and the metrics' ``mnist-classifier``).
    """
    manifest = read_manifest(weights_dir)
    if name not in manifest:
        names = ", ".join(repr(n) for n in sorted(manifest)) or "none are installed"
        raise PretrainedError(f"no pretrained model called {name!r}; available: {names}.")
    entry = manifest[name]
    path = weights_dir / entry["file"]
    if not path.is_file():
        raise PretrainedError(f"{path} is missing; reinstall gan_utils (pip install -e .) to restore it.")
    if sha256_of(path) != entry["sha256"]:
        raise PretrainedError(
            f"{path} does not match the sha256 in {MANIFEST_NAME}: the file was changed or damaged. "
            "Restore it from the repository (git checkout -- gan_utils/weights) before loading."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise PretrainedError(f"{path} could not be read safely ({error.__class__.__name__}).") from None
    architecture = entry["architecture"]
    G = ARCHITECTURES[architecture["class"]](**architecture["kwargs"])
    G.load_state_dict(
        {key: value.float() if value.is_floating_point() else value for key, value in state.items()}
    )
    return G.to(device).eval()


def load_classifier(device: str | torch.device = "cpu") -> nn.Module:
    """The shipped ``mnist-classifier`` behind chapter 5's metrics, sha256-checked, in eval mode."""
    return load_pretrained("mnist-classifier", device)


def _architecture_of(G: nn.Module) -> dict[str, Any]:
    if isinstance(G, models.DCGANGenerator | models.MLPGenerator):
        return {"class": type(G).__name__, "kwargs": dict(G.config)}  # generators carry their own config
    raise PretrainedError(f"export supports DCGANGenerator and MLPGenerator, not {type(G).__name__}.")


def export_generator(
    G: nn.Module,
    name: str,
    record: dict[str, Any],
    architecture: dict[str, Any] | None = None,
    weights_dir: Path = WEIGHTS_DIR,
) -> Path:
    """Write G's weights (float16) to ``weights_dir/name.pt`` and its manifest entry; return the path.

    G may be any module (the classifier too); pass ``architecture`` for classes export cannot name.

    ``record`` holds the command, data source, steps, wall time, device and metrics.
    """
    weights_dir.mkdir(parents=True, exist_ok=True)
    path = weights_dir / f"{name}.pt"
    state = {key: value.detach().cpu().half() if value.is_floating_point() else value.detach().cpu()
             for key, value in G.state_dict().items()}  # fmt: skip
    temporary = path.with_name(path.name + ".tmp")
    torch.save(state, temporary)
    os.replace(temporary, path)
    manifest = read_manifest(weights_dir)
    manifest[name] = {"file": path.name, "sha256": sha256_of(path),
                      "architecture": architecture or _architecture_of(G), **record}  # fmt: skip
    (weights_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return path


def record_metrics(name: str, scores: dict[str, Any], weights_dir: Path = WEIGHTS_DIR) -> None:
    """Store ``scores`` as the ``metrics`` of manifest entry ``name`` (the weights file is untouched)."""
    manifest = read_manifest(weights_dir)
    if name not in manifest:
        raise PretrainedError(f"no manifest entry called {name!r}; export the model first.")
    manifest[name]["metrics"] = scores
    (weights_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def generator_from_checkpoint(checkpoint_path: Path, G: nn.Module) -> nn.Module:
    """Load the generator weights of a training checkpoint into ``G`` (same architecture)."""
    G.load_state_dict(checkpoints.load_checkpoint(checkpoint_path)["G"])
    return G.eval()
