import math
import struct
import time
from pathlib import Path

import pytest
import torch

from gan_utils import data

# ----------------------------------------------------------------------------- mixtures


def test_ring_has_eight_distinct_modes_on_the_unit_circle():
    ring = data.ring()
    assert ring.means.shape == (8, 2)
    distinct = torch.unique(ring.means.round(decimals=5), dim=0)
    assert len(distinct) == 8, "linspace(0, 2*pi, 8) would give 7 distinct modes"
    torch.testing.assert_close(ring.means.norm(dim=1), torch.ones(8))
    angles = torch.atan2(ring.means[:, 1], ring.means[:, 0]).remainder(2 * math.pi)
    expected = 2 * math.pi * torch.arange(8) / 8
    torch.testing.assert_close(angles.sort().values, expected, atol=1e-5, rtol=0)
    assert ring.sigma == 0.01


def _per_mode_spread(mixture, samples):
    nearest = torch.cdist(samples, mixture.means).argmin(dim=1)
    offsets = samples - mixture.means[nearest]
    return nearest, offsets


def test_ring_samples_have_sigma_point_zero_one():
    ring = data.ring()
    samples = ring.sample(40_000, generator=torch.Generator().manual_seed(0))
    nearest, offsets = _per_mode_spread(ring, samples)
    assert torch.bincount(nearest, minlength=8).min() > 4_500  # ~5,000 each
    assert abs(offsets.std().item() - 0.01) < 0.0005
    assert offsets.mean(dim=0).abs().max() < 0.0005


def test_grid_has_25_modes_at_the_lattice_with_sigma_point_zero_five():
    grid = data.grid()
    lattice = {(x, y) for x in (-4, -2, 0, 2, 4) for y in (-4, -2, 0, 2, 4)}
    assert {tuple(m) for m in grid.means.round().int().tolist()} == lattice
    samples = grid.sample(50_000, generator=torch.Generator().manual_seed(1))
    nearest, offsets = _per_mode_spread(grid, samples)
    counts = torch.bincount(nearest, minlength=25)
    assert counts.min() > 1_700 and counts.max() < 2_300  # 2,000 expected per mode
    assert abs(offsets.std().item() - 0.05) < 0.002
    # every sample lies near its mode: the modes are sampled, not just declared
    assert offsets.norm(dim=1).max() < 0.05 * 7


@pytest.mark.parametrize(
    ("mixture", "half_width", "points"), [(data.ring(), 1.1, 1401), (data.grid(), 4.5, 1801)]
)
def test_log_prob_integrates_to_one(mixture, half_width, points):
    axis = torch.linspace(-half_width, half_width, points)
    cell = (axis[1] - axis[0]) ** 2
    xs, ys = torch.meshgrid(axis, axis, indexing="ij")
    grid_points = torch.stack([xs.flatten(), ys.flatten()], dim=1)
    mass = mixture.log_prob(grid_points).exp().sum() * cell
    assert abs(mass.item() - 1.0) < 2e-3


def test_log_prob_matches_hand_computation_at_a_mode():
    ring = data.ring()
    # At a mean the other modes are > 0.76 away = 76 sigma: only one term counts.
    expected = -math.log(2 * math.pi * 0.01**2) - math.log(8)
    assert abs(ring.log_prob(ring.means[:1]).item() - expected) < 1e-4


def test_sample_is_reproducible_with_a_generator():
    a = data.grid().sample(5, generator=torch.Generator().manual_seed(3))
    b = data.grid().sample(5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


@pytest.mark.parametrize("bad_n", [0, -3, 2.5, "10"])
def test_sample_rejects_non_positive_counts(bad_n):
    with pytest.raises(ValueError, match=r"sample\(n\) must be a positive integer \(1, 2, 3, \.\.\.\)"):
        data.ring().sample(bad_n)


def test_log_prob_rejects_wrong_shapes():
    with pytest.raises(ValueError, match=r"shape \[n, 2\]"):
        data.ring().log_prob(torch.zeros(4, 3))


# ----------------------------------------------------------------------------- MNIST


def test_bundled_mnist_is_5000_balanced_images_in_range():
    images, labels, source = data.load_mnist("bundled")
    assert source == "bundled"
    assert images.shape == (5000, 1, 28, 28) and images.dtype == torch.float32
    assert images.min().item() == -1.0 and images.max().item() == 1.0
    assert labels.dtype == torch.int64
    assert torch.bincount(labels, minlength=10).tolist() == [500] * 10


def test_unknown_source_names_the_allowed_values():
    with pytest.raises(ValueError, match="'auto', 'torchvision', 'bundled'"):
        data.load_mnist(source="nope")


def _write_idx(path, array_bytes, dims, magic):
    with open(path, "wb") as f:
        f.write(struct.pack(">I", magic))
        f.write(struct.pack(">" + "I" * len(dims), *dims))
        f.write(array_bytes)


@pytest.fixture
def tiny_mnist_root(tmp_path):
    """A 12-image MNIST in torchvision's raw IDX layout: image i is filled with the value 20 * i."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    n = 12
    pixels = bytes(v for i in range(n) for v in [20 * i] * 28 * 28)
    labels = bytes(i % 10 for i in range(n))
    for split in ("train", "t10k"):
        _write_idx(raw / f"{split}-images-idx3-ubyte", pixels, (n, 28, 28), 0x803)
        _write_idx(raw / f"{split}-labels-idx1-ubyte", labels, (n,), 0x801)
    return tmp_path


def test_torchvision_source_reads_idx_files_offline(tiny_mnist_root):
    images, labels, source = data.load_mnist("torchvision", root=tiny_mnist_root)
    assert source == "torchvision"
    assert images.shape == (12, 1, 28, 28)
    assert labels.tolist() == [i % 10 for i in range(12)]
    # pixel value v maps to v / 127.5 - 1
    expected = torch.tensor([20 * i / 127.5 - 1 for i in range(12)])
    torch.testing.assert_close(images[:, 0, 5, 5], expected)


def test_auto_prefers_torchvision_files_when_present(tiny_mnist_root, capsys):
    result = data.load_mnist("auto", root=tiny_mnist_root)
    assert result.source == "torchvision"
    assert "MNIST source: torchvision" in capsys.readouterr().out


def test_auto_falls_back_to_bundled_when_mirrors_refuse(tmp_path, monkeypatch, capsys):
    from torchvision.datasets import MNIST

    monkeypatch.setattr(MNIST, "mirrors", ["http://127.0.0.1:9/"])  # discard port: refused
    start = time.monotonic()
    result = data.load_mnist("auto", root=tmp_path)
    assert time.monotonic() - start < 10
    assert result.source == "bundled" and result.images.shape[0] == 5000
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and printed[0].startswith("MNIST source: bundled")
    assert "127.0.0.1: connection refused" in printed[0]


def test_the_source_line_names_a_home_folder_as_tilde_and_a_dns_failure_in_words(monkeypatch, capsys):
    def no_dns(*args, **kwargs):
        raise data.socket.gaierror(-3, "Temporary failure in name resolution")

    monkeypatch.setattr(data.socket, "create_connection", no_dns)
    root = Path.home() / ".cache" / "gan-book-test-missing"
    data.load_mnist("auto", root=root, timeout=2)
    line = capsys.readouterr().out
    assert "files not in ~/.cache/gan-book-test-missing;" in line and str(Path.home()) not in line
    assert "name not resolved (no DNS: offline?)" in line and "gaierror" not in line
    assert not root.exists()


def test_auto_gives_up_on_a_hanging_network_within_the_timeout(tmp_path, monkeypatch, capsys):
    def never_answers(*args, **kwargs):
        time.sleep(30)
        raise OSError("gave up")

    monkeypatch.setattr(data.socket, "create_connection", never_answers)
    start = time.monotonic()
    result = data.load_mnist("auto", root=tmp_path, timeout=1.0)
    assert time.monotonic() - start < 10
    assert result.source == "bundled"
    assert "no answer within 1 s" in capsys.readouterr().out


def test_torchvision_source_without_files_or_network_explains_the_fix(tmp_path, monkeypatch):
    from torchvision.datasets import MNIST

    monkeypatch.setattr(MNIST, "mirrors", ["http://127.0.0.1:9/"])
    with pytest.raises(RuntimeError, match="source='bundled'"):
        data.load_mnist("torchvision", root=tmp_path)


# ----------------------------------------------------------------------------- batches


@pytest.mark.parametrize(("n", "batch_size"), [(10, 3), (12, 4), (5, 8)])
def test_batch_iterator_yields_every_sample_once_per_epoch(n, batch_size):
    values = torch.arange(n)
    batches = data.BatchIterator(values, batch_size=batch_size, generator=torch.Generator().manual_seed(0))
    for _ in range(3):
        epoch = torch.cat(list(batches))
        assert sorted(epoch.tolist()) == list(range(n))
    assert len(batches) == math.ceil(n / batch_size)


def test_batch_iterator_keeps_pairs_together_and_shuffles():
    x = torch.arange(100)
    batches = data.BatchIterator(x, x * 10, batch_size=10, generator=torch.Generator().manual_seed(0))
    first_epoch = []
    for xb, yb in batches:
        assert torch.equal(yb, xb * 10)
        first_epoch.append(xb)
    assert not torch.equal(torch.cat(first_epoch), x), "batches should be shuffled"


def test_batch_iterator_drop_last_and_endless():
    batches = data.BatchIterator(torch.arange(10), batch_size=4, drop_last=True)
    assert len(batches) == 2 and all(len(b) == 4 for b in batches)
    stream = batches.endless()
    assert len([next(stream) for _ in range(7)]) == 7


@pytest.mark.parametrize("bad_size", [0, -4, 2.0])
def test_batch_iterator_rejects_bad_batch_sizes(bad_size):
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        data.BatchIterator(torch.arange(4), batch_size=bad_size)


def test_batch_iterator_rejects_mismatched_tensors():
    with pytest.raises(ValueError, match="same first dimension"):
        data.BatchIterator(torch.arange(4), torch.arange(5), batch_size=2)


def test_resumable_stream_depends_only_on_seed_and_position():
    batches = data.BatchIterator(torch.arange(10.0), batch_size=3, drop_last=True)  # 3 batches per epoch
    straight = batches.resumable(seed=4)
    first_eight = [next(straight) for _ in range(8)]
    resumed = batches.resumable(seed=4, start=5)  # epoch 1, its third batch
    assert all(torch.equal(next(resumed), expected) for expected in first_eight[5:])
    epoch_0 = torch.cat(first_eight[:3])
    assert len(set(epoch_0.tolist())) == 9  # one epoch draws without replacement
    assert not torch.equal(epoch_0, torch.cat(first_eight[3:6]))  # each epoch is shuffled anew
    other_seed = batches.resumable(seed=5)
    assert not torch.equal(torch.cat([next(other_seed) for _ in range(3)]), epoch_0)


def test_random_shift_moves_each_image_within_the_bound_and_fills_with_background():
    from gan_utils.classifier import random_shift

    images = torch.full((200, 1, 28, 28), -1.0)
    images[:, :, 14, 14] = 1.0  # one ink pixel in the middle
    shifted = random_shift(images, max_shift=2, generator=torch.Generator().manual_seed(0))
    assert shifted.shape == images.shape and set(shifted.unique().tolist()) == {-1.0, 1.0}
    rows, cols = (shifted[:, 0] == 1.0).nonzero(as_tuple=True)[1:]
    offsets = {(r - 14, c - 14) for r, c in zip(rows.tolist(), cols.tolist(), strict=True)}
    assert offsets == {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)}  # all 25 shifts, no more


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"n_modes": 2.5}, "ring's n_modes must be a positive integer"), ({"n_modes": "8"}, "ring's n_modes"),
     ({"radius": float("nan")}, "ring's radius must be a positive finite number")],
)  # fmt: skip
def test_ring_refuses_settings_that_would_draw_another_mixture(kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.ring(**kwargs)
