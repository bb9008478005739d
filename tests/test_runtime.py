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


def test_seed_offset_shifts_every_seed(monkeypatch):
    """With GAN_BOOK_SEED_OFFSET=3, set_seed(4) draws what set_seed(7) draws without it."""
    monkeypatch.delenv(runtime.SEED_OFFSET_ENV_VAR, raising=False)
    gan_utils.set_seed(7)
    unshifted = (random.random(), np.random.rand(), torch.rand(3))
    gan_utils.set_seed(4)
    other_seed = torch.rand(3)
    monkeypatch.setenv(runtime.SEED_OFFSET_ENV_VAR, " 3 ")
    gan_utils.set_seed(4)
    shifted = (random.random(), np.random.rand(), torch.rand(3))
    assert shifted[:2] == unshifted[:2] and torch.equal(shifted[2], unshifted[2])
    assert not torch.equal(shifted[2], other_seed)
    assert torch.initial_seed() == 7  # the training loop's data stream is seeded from it


@pytest.mark.parametrize("value", ["-1", "1.5", "one"])
def test_seed_offset_rejects_what_is_not_a_count(monkeypatch, value):
    monkeypatch.setenv(runtime.SEED_OFFSET_ENV_VAR, value)
    with pytest.raises(ValueError, match="GAN_BOOK_SEED_OFFSET=.*non-negative integer.*unset it"):
        gan_utils.set_seed(0)


def test_importing_every_module_has_no_side_effects_on_random_state():
    """A fresh interpreter draws the same numbers after importing every gan_utils module as without."""
    import subprocess
    import sys

    draw = "import torch, random, numpy; print(torch.rand(1).item(), random.random(), numpy.random.rand())"
    imports = "import gan_utils, pkgutil, importlib; [importlib.import_module(m.name) for m in "
    imports += "pkgutil.iter_modules(gan_utils.__path__, 'gan_utils.') if m.name != 'gan_utils.__main__']; "
    seed = "import torch, random, numpy; torch.manual_seed(5); random.seed(5); numpy.random.seed(5); "
    outputs = [
        subprocess.run(
            [sys.executable, "-c", seed + prefix + draw], capture_output=True, text=True, check=True
        )
        for prefix in ("", imports)
    ]
    assert outputs[0].stdout == outputs[1].stdout and outputs[0].stdout.strip()


class _ModeRecorder(torch.nn.Module):
    """A 'generator' that records the mode and grad state it ran in, and doubles z."""

    latent_dim = 3

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(2.0))
        self.calls: list[tuple[bool, bool, int]] = []

    def forward(self, z):
        self.calls.append((self.training, torch.is_grad_enabled(), z.shape[0]))
        return self.scale * z


@pytest.mark.parametrize("training", [True, False])
def test_sample_runs_in_eval_mode_without_grad_in_batches_and_restores_the_mode(training):
    G = _ModeRecorder().train(training)
    z = torch.arange(21.0).view(7, 3)
    out = runtime.sample(G, z, batch_size=3)
    assert torch.equal(out, 2 * z) and not out.requires_grad
    assert G.calls == [(False, False, 3), (False, False, 3), (False, False, 1)]
    assert G.training is training


def test_evaluating_restores_each_mode_even_after_an_error():
    G, D = _ModeRecorder().train(True), _ModeRecorder().train(False)
    with pytest.raises(RuntimeError, match="boom"), runtime.evaluating(G, D):
        assert not G.training and not D.training and torch.is_grad_enabled()
        raise RuntimeError("boom")
    assert G.training and not D.training


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


def test_importing_viz_does_not_load_the_classifier_or_the_pretrained_weights():
    import subprocess
    import sys

    code = "import sys, gan_utils.viz; print(sorted(m for m in sys.modules if m.startswith('gan_utils')))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "gan_utils.viz" in loaded
    assert "gan_utils.classifier" not in loaded and "gan_utils.pretrained" not in loaded


def test_benchmark_results_reads_the_recorded_files_and_says_how_to_get_them(monkeypatch, tmp_path):
    assert runtime.benchmark_results("toy_modes.json")["command"].startswith("python benchmarks/toy_modes.py")
    with pytest.raises(FileNotFoundError, match="Known: .*toy_modes.json"):
        runtime.benchmark_results("toy_mode.json")
    monkeypatch.setattr(runtime, "BENCHMARK_RESULTS", tmp_path / "site-packages" / "benchmarks" / "results")
    with pytest.raises(FileNotFoundError, match=r"clone the repository and run `pip install -e \.`"):
        runtime.benchmark_results("toy_modes.json")


def test_sample_refuses_what_is_not_a_generator_and_a_tensor():
    with pytest.raises(ValueError, match="z must be a torch tensor, got ndarray"):
        runtime.sample(_ModeRecorder(), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"takes a generator module, got str.*load_pretrained\(name\)"):
        runtime.sample("dcgan-mnist", torch.zeros(2, 3))
