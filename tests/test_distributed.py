"""The trainer under torchrun: two CPU processes (gloo) against one process with the doubled batch,
and a run stopped with Ctrl-C on rank 0 and resumed, against one that never stopped."""

import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gan_utils import data, distributed, recipes, training
from gan_utils.runtime import set_seed
from tests import ddp_worker

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def torchrun(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*TORCHRUN, *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120,
                          **kwargs)  # fmt: skip


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "results.pt"
    done = torchrun("tests/ddp_worker.py", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    return torch.load(out, weights_only=False)


def rank_noise(world_size: int, same_seed: bool = False):
    """The noise of ``world_size`` ranks drawn in one process: each rank's share from its own generator
    (``same_seed``: every share from rank 0's seed, as if the ranks were not seeded apart)."""
    seeds = [distributed.rank_seed(ddp_worker.SEED, 0 if same_seed else rank) for rank in range(world_size)]
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]

    def draw(n: int, latent_dim: int, device: torch.device) -> torch.Tensor:
        shares = [torch.randn(n // world_size, latent_dim, generator=g) for g in generators]
        return torch.cat(shares).to(device)

    return draw


def one_process_run(
    preset: str, overrides: dict, world_size: int, same_seed: bool = False
) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The same recipe in this process with the global batch (world_size times the per-rank one)."""
    recipe = recipes.preset(preset, **{**overrides, "batch_size": overrides["batch_size"] * world_size})
    set_seed(ddp_worker.SEED)
    G, D = recipe.build_models()
    opt_G, opt_D = recipe.optimisers(G, D)
    samples = ddp_worker.training_samples(recipe)
    batches = data.BatchIterator(samples, batch_size=recipe.batch_size, drop_last=True)
    step = functools.partial(recipe.step(), noise=rank_noise(world_size, same_seed))
    training.train(G, D, opt_G, opt_D, batches, ddp_worker.STEPS, step, progress=False,
                   data_seed=ddp_worker.SEED)  # fmt: skip
    return G, D


def feeding_batchnorm(model: torch.nn.Module) -> set[str]:
    """Names of the weights and biases of layers followed by BatchNorm, which undoes their bias and the
    scale of each output channel: their true gradient is 0 in those directions, so Adam's update there
    normalises rounding noise and differs between two summation orders by up to about 3e-5 here (the
    MNIST MLP's biases, the DCGAN's first layer), against at most 8e-6 for every other weight."""
    layers = list(model.named_modules())
    batchnorm = torch.nn.modules.batchnorm._BatchNorm
    return {f"{name}.{kind}" for (name, layer), (_, after) in zip(layers, layers[1:], strict=False)
            if isinstance(after, batchnorm) for kind in ("weight", "bias")
            if getattr(layer, kind, None) is not None}  # fmt: skip


def assert_same_weights(saved: dict, model: torch.nn.Module, name: str) -> None:
    reference = model.state_dict()
    assert reference.keys() == saved.keys()
    loose = feeding_batchnorm(model)
    for key, value in reference.items():
        atol = 1e-4 if key in loose else 1e-5  # both far below the 1e-3 that per-rank BatchNorm makes
        torch.testing.assert_close(saved[key], value, rtol=1e-4, atol=atol, msg=f"{name}: {key} differs")


def largest_difference(saved: dict, model: torch.nn.Module) -> float:
    return max((saved[k].float() - v.float()).abs().max().item() for k, v in model.state_dict().items())


@pytest.mark.parametrize(
    "name", ["toy, no BatchNorm", "MNIST MLP, SyncBatchNorm in G", "DCGAN, SyncBatchNorm in G and D"]
)
def test_two_processes_equal_one_process_with_the_doubled_batch(two_process_results, name):
    result = two_process_results[name]
    assert result["world_size"] == 2
    assert len(result["rank_differences"]) == ddp_worker.STEPS
    assert max(result["rank_differences"]) == 0.0  # the ranks hold identical parameters after every step
    G, D = one_process_run(*ddp_worker.RUNS[name], world_size=2)
    assert_same_weights(result["G"], G, name)
    assert_same_weights(result["D"], D, name)


def test_without_synchronised_batchnorm_the_ranks_are_not_the_doubled_batch(two_process_results):
    """Each rank normalising its own slice is another computation: the comparison above can fail."""
    name = "MNIST MLP, BatchNorm per rank"
    assert max(two_process_results[name]["rank_differences"]) == 0.0
    G, _ = one_process_run(*ddp_worker.RUNS[name], world_size=2)
    assert largest_difference(two_process_results[name]["G"], G) > 1e-3


def test_the_ranks_draw_different_noise(two_process_results):
    """Had both ranks drawn the same z (one seed for both), the run would differ from the two-process one."""
    name = "toy, no BatchNorm"
    G, _ = one_process_run(*ddp_worker.RUNS[name], world_size=2, same_seed=True)
    assert largest_difference(two_process_results[name]["G"], G) > 1e-3


def train_args(out: Path, *extra: str) -> list[str]:
    return ["-m", "gan_utils", "train", "--preset", "toy-baseline", "--steps", "1000", "--batch-size", "64",
            "--device", "cpu", "--no-progress", "--sample-every", "1000", "--out", str(out),
            *extra]  # fmt: skip


def rank_zero_pid(torchrun_pid: int, timeout: float = 60) -> int:
    """The worker process torchrun started with RANK=0 (Linux: /proc)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = Path(f"/proc/{torchrun_pid}/task/{torchrun_pid}/children").read_text().split()
        for pid in children:
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except (FileNotFoundError, ProcessLookupError):  # a child that exited since the listing
                continue
            if b"RANK=0" in environ:
                return int(pid)
        time.sleep(0.1)
    raise AssertionError("torchrun started no rank 0 worker")


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds torchrun's workers through /proc")
def test_ctrl_c_on_rank_0_then_resume_ends_bitwise_equal_and_another_world_size_is_refused(tmp_path):
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    done = torchrun(*train_args(straight)[1:])
    assert done.returncode == 0, done.stderr[-3000:]

    run = subprocess.Popen([*TORCHRUN, *train_args(stopped, "--checkpoint-every", "20")[1:]], cwd=ROOT,
                           env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    rank_0 = rank_zero_pid(run.pid)
    deadline = time.monotonic() + 60
    while not (stopped / "checkpoint.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(rank_0, signal.SIGINT)
    _, stderr = run.communicate(timeout=120)
    interrupted_at = torch.load(stopped / "checkpoint.pt", weights_only=False)["step"]
    assert 20 <= interrupted_at < 1000, stderr[-3000:]
    assert run.returncode != 0 and "stopped early; continue with:" in stderr  # workers exit with 130

    before = {p.name: p.read_bytes() for p in stopped.iterdir()}
    one_process = subprocess.run([sys.executable, *train_args(stopped, "--resume")], cwd=ROOT, env=ENV,
                                 capture_output=True, text=True, timeout=120)  # fmt: skip
    assert one_process.returncode == 2
    assert "written by a run on 2 process(es), and this one has 1" in one_process.stderr
    assert "Traceback" not in one_process.stderr
    assert {p.name: p.read_bytes() for p in stopped.iterdir()} == before  # nothing written

    resumed = torchrun(*train_args(stopped, "--resume")[1:])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = torch.load(straight / "checkpoint.pt", weights_only=False)
    b = torch.load(stopped / "checkpoint.pt", weights_only=False)
    assert a["step"] == b["step"] == 1000 and b["world_size"] == 2
    for key in ("G", "D"):
        for name, value in a[key].items():
            assert torch.equal(value, b[key][name]), f"{key}.{name} differs after the resume"
    assert a["history"] == b["history"]


def test_rank_slices_of_the_resumable_stream_make_up_the_global_batches():
    samples = torch.arange(40).float().unsqueeze(1)
    one = data.BatchIterator(samples, batch_size=8, drop_last=True).resumable(seed=3)
    ranks = [data.BatchIterator(samples, batch_size=4, drop_last=True).resumable(3, 0, r, 2) for r in (0, 1)]
    for _ in range(12):  # 5 global batches per epoch: past two epoch boundaries
        torch.testing.assert_close(torch.cat([next(ranks[0]), next(ranks[1])]), next(one))
    resumed = data.BatchIterator(samples, batch_size=4, drop_last=True).resumable(3, 7, 1, 2)
    again = data.BatchIterator(samples, batch_size=4, drop_last=True).resumable(3, 0, 1, 2)
    for _ in range(7):
        next(again)
    torch.testing.assert_close(next(resumed), next(again))


def test_sharding_without_drop_last_or_with_too_few_samples_is_refused():
    samples = torch.zeros(10, 2)
    with pytest.raises(ValueError, match="drop_last=True"):
        next(data.BatchIterator(samples, batch_size=4).resumable(0, 0, 0, 2))
    with pytest.raises(ValueError, match="2 processes x batch_size 8 exceed the 10 samples"):
        next(data.BatchIterator(samples, batch_size=8, drop_last=True).resumable(0, 0, 0, 2))


@pytest.mark.parametrize("shape", [(16, 6), (16, 6, 5, 5)])
def test_cross_process_batchnorm_is_plain_batchnorm_in_one_process(shape):
    torch.manual_seed(0)
    plain = torch.nn.BatchNorm2d(6) if len(shape) == 4 else torch.nn.BatchNorm1d(6)
    with torch.no_grad():
        plain.weight.uniform_(0.5, 1.5), plain.bias.uniform_(-1, 1)
    converted = distributed.synchronise_batchnorm(torch.nn.Sequential(plain), torch.device("cpu"))[0]
    assert isinstance(converted, distributed.CrossProcessBatchNorm)
    x = torch.randn(shape) * 3 + 1
    torch.testing.assert_close(converted(x), plain(x))
    torch.testing.assert_close(converted.running_var, plain.running_var)


def test_train_step_draws_z_from_the_noise_sampler_it_is_given():
    recipe = recipes.preset("toy-baseline")
    set_seed(0)
    G, D = recipe.build_models()
    opt_G, opt_D = recipe.optimisers(G, D)
    calls = []

    def zeros(n: int, latent_dim: int, device: torch.device) -> torch.Tensor:
        calls.append((n, latent_dim))
        return torch.zeros(n, latent_dim, device=device)

    batch = data.ring().sample(32, generator=torch.Generator().manual_seed(0))
    training.train_step(G, D, opt_G, opt_D, iter([batch]), noise=zeros)
    assert calls == [(32, G.latent_dim), (32, G.latent_dim)]  # D's fakes, then G's


def test_stop_after_under_torchrun_stops_every_rank_at_the_step_and_says_so_once(tmp_path):
    out = tmp_path / "run"
    done = torchrun(*train_args(out, "--stop-after", "30", "--checkpoint-every", "1000")[1:])
    assert done.returncode == 0, done.stderr[-3000:]
    assert torch.load(out / "checkpoint.pt", weights_only=False)["step"] == 30
    assert done.stdout.count("Stopped after step 30: StopAfter(30) asked for it") == 1  # rank 0 alone prints
