import random

import numpy as np
import pytest
import torch

import gan_utils
from gan_utils import runtime


def test_set_seed_makes_all_three_generators_repeat():
    gan_utils.set_seed(123)
    first = (random.random(), np.random.rand(), torch.rand(3))
    gan_utils.set_seed(123)
    second = (random.random(), np.random.rand(), torch.rand(3))
    assert first[0] == second[0] and first[1] == second[1]
    assert torch.equal(first[2], second[2])


@pytest.mark.parametrize("bad_seed", [-1, 1.5, "7", True])
def test_set_seed_rejects_non_integers(bad_seed):
    with pytest.raises(ValueError, match="non-negative integer"):
        gan_utils.set_seed(bad_seed)


def test_import_has_no_side_effects_on_random_state():
    import importlib

    torch.manual_seed(5)
    expected = torch.rand(2)
    torch.manual_seed(5)
    importlib.reload(gan_utils)
    assert torch.equal(torch.rand(2), expected)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", 30), ("true", 30), ("YES", 30), ("0", 500), ("", 500), ("off", 500)],
)
def test_budget_follows_quick_mode(monkeypatch, value, expected):
    monkeypatch.setenv(runtime.QUICK_ENV_VAR, value)
    assert gan_utils.budget(full=500, quick=30) == expected


def test_budget_in_full_mode_when_variable_unset(monkeypatch):
    monkeypatch.delenv(runtime.QUICK_ENV_VAR, raising=False)
    assert gan_utils.budget(full=500, quick=30) == 500
    assert not gan_utils.is_quick_mode()


def test_budget_rejects_unclear_settings(monkeypatch):
    monkeypatch.setenv(runtime.QUICK_ENV_VAR, "maybe")
    with pytest.raises(ValueError, match="use 1 for quick mode"):
        gan_utils.is_quick_mode()
    monkeypatch.setenv(runtime.QUICK_ENV_VAR, "1")
    with pytest.raises(ValueError, match="positive integer"):
        gan_utils.budget(full=0, quick=1)
    with pytest.raises(ValueError, match="quick mode must be smaller"):
        gan_utils.budget(full=10, quick=20)


def test_default_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert gan_utils.default_device() == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert gan_utils.default_device() == torch.device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert gan_utils.default_device() == torch.device("cpu")
