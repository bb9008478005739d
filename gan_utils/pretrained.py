"""Generators (and chapter 5's classifier) that ship with the book, so chapters that would need long
training can load them instead.

Each file in ``gan_utils/weights/`` is listed in ``MANIFEST.json`` with its sha256, the architecture
to rebuild, the exact command that trained it, the data source, the steps, the wall time, the device
and its metrics. `load_pretrained` checks the hash before loading, and loads with
``torch.load(weights_only=True)``, which cannot run code hidden in a file. Weights are stored as
float16 to keep each file small and are returned as float32.

`export_generator` writes a new entry from a training checkpoint of ``python -m gan_utils train``;
``python -m gan_utils.release export`` calls it. Names are plain (`NAME_PATTERN`), so a file can
only land inside the weights folder, and an existing entry is replaced only when asked
(``overwrite=True``, ``--force`` on the command line). The manifest is written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gan_utils import checkpoints, classifier, image_to_image, models, stabilisers
from gan_utils.runtime import resolve_device

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MANIFEST_NAME = "MANIFEST.json"
ARCHITECTURES = {
    "MLPGenerator": models.MLPGenerator,
    "DCGANGenerator": models.DCGANGenerator,
    "ConditionalDCGANGenerator": models.ConditionalDCGANGenerator,
    "SelfConditionedGenerator": models.SelfConditionedGenerator,  # chapter 6's shipped dcgan-mnist
    "ConditionalMLPGenerator": models.ConditionalMLPGenerator,  # chapter 6's self-conditioned toys
    "SelfConditionedMLPGenerator": models.SelfConditionedMLPGenerator,
    "MNISTClassifier": classifier.MNISTClassifier,
    "UNetGenerator": image_to_image.UNetGenerator,  # chapter 9's super-resolution
    "CycleGAN": image_to_image.CycleGAN,  # chapter 9: both generators of a CycleGAN
    "TextureCodeCycleGAN": image_to_image.TextureCodeCycleGAN,  # chapter 9: with its texture encoder
}
# lower-case letters and digits, joined by single "-", "_" or ".": no "/", no "..", no hidden files
NAME_PATTERN = re.compile(r"[a-z0-9]+(?:[-_.][a-z0-9]+)*")


class PretrainedError(RuntimeError):
    """A shipped generator is unknown, missing, altered or unreadable."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _folder(weights_dir: str | os.PathLike) -> Path:
    """``weights_dir`` as a Path: a string works as well as a Path."""
    if not isinstance(weights_dir, str | os.PathLike):
        raise TypeError(f"weights_dir must be a folder path (str or Path), got {type(weights_dir).__name__}.")
    return Path(weights_dir)


def read_manifest(weights_dir: str | os.PathLike = WEIGHTS_DIR) -> dict[str, Any]:
    """The manifest of ``weights_dir`` as a dict (empty when the folder has none)."""
    path = _folder(weights_dir) / MANIFEST_NAME
    if not path.is_file():
        return {}
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PretrainedError(
            f"{path} is damaged ({error.__class__.__name__}: {str(error).splitlines()[0]}); restore it from "
            "the repository (git checkout -- gan_utils/weights) or from a copy."
        ) from None
    if not isinstance(manifest, dict) or not all(isinstance(entry, dict) for entry in manifest.values()):
        raise PretrainedError(
            f"{path} is not a gan_utils manifest (expected an object of entries); restore it from a copy."
        )
    return manifest


def _write_manifest(weights_dir: Path, manifest: dict[str, Any]) -> None:
    """Write the manifest atomically, so a crash mid-write leaves the previous one."""
    path = weights_dir / MANIFEST_NAME
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    os.replace(temporary, path)


def available(weights_dir: str | os.PathLike = WEIGHTS_DIR) -> list[str]:
    """Names of the shipped models, e.g. ['dcgan-mnist', 'mlp-mnist', 'mnist-classifier']."""
    return sorted(read_manifest(weights_dir))


def load_pretrained(
    name: str, device: str | torch.device = "cpu", weights_dir: str | os.PathLike = WEIGHTS_DIR
) -> nn.Module:
    """Return the shipped model ``name`` in eval mode on ``device``, after checking its sha256.

    Names: see `available` (``dcgan-mnist``, ``mlp-mnist`` and the metrics' ``mnist-classifier``).
    ``device`` is checked first (`gan_utils.runtime.resolve_device`, "auto" allowed), so a device
    this machine lacks is a one-line ValueError, not an error deep inside torch.
    """
    device = resolve_device(device)
    weights_dir = _folder(weights_dir)
    manifest = read_manifest(weights_dir)
    if name not in manifest:
        names = ", ".join(repr(n) for n in sorted(manifest)) or "none are installed"
        raise PretrainedError(f"no pretrained model called {name!r}; available: {names}.")
    entry = manifest[name]
    broken = [key for key in ("file", "sha256", "architecture") if key not in entry]
    if broken or not isinstance(entry["file"], str) or Path(entry["file"]).name != entry["file"]:
        raise PretrainedError(
            f"the {MANIFEST_NAME} entry of {name!r} is damaged (missing or bad: "
            f"{', '.join(broken) or 'file'}); restore the manifest from the repository."
        )
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
    if not isinstance(architecture, dict) or architecture.get("class") not in ARCHITECTURES:
        known = ", ".join(ARCHITECTURES)
        raise PretrainedError(f"{name!r} names an architecture this version cannot build (known: {known}).")
    try:
        G = ARCHITECTURES[architecture["class"]](**architecture.get("kwargs", {}))
        G.load_state_dict(
            {key: value.float() if value.is_floating_point() else value for key, value in state.items()}
        )
    except (TypeError, ValueError, RuntimeError, AttributeError) as error:
        raise PretrainedError(
            f"{path} does not fit the architecture its manifest entry names ({error.__class__.__name__}); "
            "export it again."
        ) from None
    return G.to(device).eval()


def load_classifier(device: str | torch.device = "cpu") -> nn.Module:
    """The shipped ``mnist-classifier`` behind chapter 5's metrics, sha256-checked, in eval mode."""
    return load_pretrained("mnist-classifier", device)


def _architecture_of(G: nn.Module) -> dict[str, Any]:
    if type(G).__name__ in ARCHITECTURES and hasattr(G, "config"):
        return {"class": type(G).__name__, "kwargs": dict(G.config)}  # generators carry their own config
    generators = ", ".join(name for name in ARCHITECTURES if name.endswith("Generator"))
    raise PretrainedError(f"export supports {generators}, not {type(G).__name__}.")


def check_new_name(name: str, weights_dir: str | os.PathLike = WEIGHTS_DIR, overwrite: bool = False) -> Path:
    """The file ``weights_dir/name.pt`` that an export of ``name`` would write, once it may be written.

    Refused (`PretrainedError`): a name that is not plain (`NAME_PATTERN`: ``../evil`` would write
    outside the folder), a ``weights_dir`` that is a file, and, unless ``overwrite``, a name that
    already has a file or a manifest entry. Release tools call it before any slow work.
    """
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise PretrainedError(
            f"{name!r} is not a valid weights name; use lower-case letters and digits joined by '-', '_' "
            "or '.', e.g. 'dcgan-mnist'."
        )
    weights_dir = _folder(weights_dir)
    if weights_dir.exists() and not weights_dir.is_dir():
        raise PretrainedError(f"the weights folder {weights_dir} is a file; give a folder.")
    path = weights_dir / f"{name}.pt"
    if not overwrite and (path.exists() or name in read_manifest(weights_dir)):
        raise PretrainedError(
            f"{name!r} already exists in {weights_dir}; choose another name, or replace it with --force "
            "(overwrite=True)."
        )
    return path


def export_generator(
    G: nn.Module,
    name: str,
    record: dict[str, Any],
    architecture: dict[str, Any] | None = None,
    weights_dir: str | os.PathLike = WEIGHTS_DIR,
    overwrite: bool = False,
) -> Path:
    """Write G's weights (float16) to ``weights_dir/name.pt`` and its manifest entry; return the path.

    G may be any module (the classifier too); pass ``architecture`` for classes export cannot name.
    ``record`` holds the command, data source, steps, wall time, device and metrics. An existing
    ``name`` is replaced only with ``overwrite=True`` (`check_new_name`).
    """
    path = check_new_name(name, weights_dir, overwrite)
    weights_dir = path.parent
    entry = {"file": path.name, "architecture": architecture or _architecture_of(G), **record}
    weights_dir.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu().half() if value.is_floating_point() else value.detach().cpu()
             for key, value in G.state_dict().items()}  # fmt: skip
    temporary = path.with_name(path.name + ".tmp")
    torch.save(state, temporary)
    manifest = read_manifest(weights_dir)
    manifest[name] = {**entry, "sha256": sha256_of(temporary)}
    os.replace(temporary, path)  # the file, then at once its entry: the window between them is tiny
    _write_manifest(weights_dir, manifest)
    return path


def record_metrics(
    name: str, scores: dict[str, Any], weights_dir: str | os.PathLike = WEIGHTS_DIR, overwrite: bool = False
) -> None:
    """Store ``scores`` as the ``metrics`` of manifest entry ``name`` (the weights file is untouched).

    Metrics already recorded are replaced only with ``overwrite=True`` (``--force``).
    """
    weights_dir = _folder(weights_dir)
    manifest = read_manifest(weights_dir)
    if name not in manifest:
        raise PretrainedError(f"no manifest entry called {name!r}; export the model first.")
    if manifest[name].get("metrics") and not overwrite:
        raise PretrainedError(
            f"{name!r} already has metrics recorded in {weights_dir / MANIFEST_NAME}; replace them with "
            "--force (overwrite=True)."
        )
    manifest[name]["metrics"] = scores
    _write_manifest(weights_dir, manifest)


def generator_from_checkpoint(checkpoint_path: Path, G: nn.Module) -> nn.Module:
    """Load the generator weights of a training checkpoint into ``G`` (same architecture): the EMA of
    G's weights when the run kept one (chapter 6), with its BatchNorm statistics recomputed as
    `stabilisers.GeneratorEMA.generator` does, else the trained G."""
    state = checkpoints.load_checkpoint(checkpoint_path)
    averaged = state.get("extra", {}).get("G_ema")
    try:
        G.load_state_dict(stabilisers.generator_state(averaged) if averaged is not None else state["G"])
    except RuntimeError as error:  # torch lists every mismatched tensor; the first line says enough
        raise PretrainedError(
            f"the generator in {checkpoint_path} does not fit {type(G).__name__} "
            f"({checkpoints.first_mismatch(error)}); rebuild G with the run's recipe."
        ) from None
    if averaged is not None:
        stabilisers.recompute_batchnorm(G)
    return G.eval()
