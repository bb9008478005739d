"""The same trainer on several processes: `torchrun` and DistributedDataParallel (DDP).

``torchrun --nproc_per_node=N -m gan_utils train ...`` starts N copies of the command line, each
with RANK, WORLD_SIZE and LOCAL_RANK in its environment. `setup` joins them into a process group
(gloo on the CPU, NCCL on CUDA); `wrap_players` wraps G and D in DDP, which averages their gradients
over the processes after every backward pass; `training.train` then gives each process ("rank")
its own slice of every global batch. The effective batch is WORLD_SIZE times the recipe's.

What this module decides, and why:
- **Data:** every rank shuffles with the same seed and takes slice ``rank`` of each global batch of
  ``batch_size * world_size`` samples (`data.BatchIterator.resumable`), so the ranks together see
  what one process with the global batch would see.
- **Noise:** each rank's random generators are seeded with `rank_seed` (different per rank, so no
  two ranks draw the same z) after the models are built from the common seed. DDP also copies
  rank 0's initial weights to every rank.
- **BatchNorm:** with ``sync_batchnorm`` the statistics of each batch are computed over all ranks
  (`torch.nn.SyncBatchNorm` on CUDA; `CrossProcessBatchNorm` on the CPU, where PyTorch's refuses),
  which is what makes N processes equal one process with the global batch; without it each rank
  normalises with its own slice.
- **Checkpoints:** every rank takes part in a save (each one's random state goes into the file),
  rank 0 alone writes it, atomically; the file records the world size, and a resume with another
  world size is refused.

Introduced in the appendix "Training on more than one GPU or machine".
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_functional
from torch import nn
from torch.nn.parallel import DistributedDataParallel

_CONTROL_GROUP: dist.ProcessGroup | None = None  # gloo, for the small CPU messages of the loop


@dataclass(frozen=True)
class Context:
    """Where this process stands: its rank, the number of processes and its device."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that prints, writes sample grids and saves checkpoints."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """Whether this process is one of several started by torchrun (WORLD_SIZE above 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: torch.device) -> Context:
    """Join the process group torchrun prepared, or return a one-process context without one.

    ``device`` is the device the command asked for; on CUDA each rank takes GPU ``LOCAL_RANK``.
    """
    global _CONTROL_GROUP
    if not launched_by_torchrun():
        return Context(0, 1, device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise ValueError(f"torchrun runs here on the CPU (gloo) or CUDA (NCCL), not on {device.type}.")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    _CONTROL_GROUP = dist.new_group(backend="gloo") if device.type == "cuda" else dist.group.WORLD
    return Context(dist.get_rank(), dist.get_world_size(), device)


def teardown() -> None:
    """Leave the process group, if this process joined one."""
    global _CONTROL_GROUP
    if dist.is_initialized():
        dist.destroy_process_group()
    _CONTROL_GROUP = None


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s random generators in a run seeded with ``seed``.

    Rank 0 keeps ``seed``, so after re-seeding its first draws repeat those that initialised the
    weights (a one-process run does not re-seed, and continues past them); the other ranks are offset
    far apart, so no two ranks share a stream."""
    return seed + 1_000_003 * rank


def any_rank(flag: bool) -> bool:
    """True on every rank if ``flag`` is true on any (e.g. Ctrl-C reached rank 0 only)."""
    rank, world = rank_and_world()
    if world == 1:
        return flag
    value = torch.tensor([int(flag)])
    dist.all_reduce(value, op=dist.ReduceOp.MAX, group=_CONTROL_GROUP or dist.group.WORLD)
    return bool(value.item())


def gather(value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order, on every rank (a list of one outside a process group)."""
    rank, world = rank_and_world()
    if world == 1:
        return [value]
    values: list[Any] = [None] * world
    dist.all_gather_object(values, value, group=_CONTROL_GROUP or dist.group.WORLD)
    return values


class CrossProcessBatchNorm(nn.BatchNorm1d):
    """BatchNorm whose batch statistics cover the batches of all ranks, on any device.

    `torch.nn.SyncBatchNorm` does this on GPUs only. Here each rank sums x and x^2 per channel, one
    differentiable all-reduce adds the sums of all ranks, and the layer normalises with the global
    mean and (biased) variance, then updates its running statistics with the unbiased one, as
    BatchNorm does. For 2-D (N, C) and 4-D (N, C, H, W) inputs. Outside a process group it is
    plain BatchNorm.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rank, world = rank_and_world()
        if not self.training or world == 1:
            return super().forward(x)
        self._check_input_dim(x)
        dims = [0, *range(2, x.ndim)]
        shape = [1, -1] + [1] * (x.ndim - 2)
        statistics_input = x.float()  # sums in float32 even under bfloat16 autocast
        sums = dist_functional.all_reduce(
            torch.stack([statistics_input.sum(dims), (statistics_input * statistics_input).sum(dims)])
        )
        count = x.numel() // x.shape[1] * world
        mean = sums[0] / count
        var = (sums[1] / count - mean * mean).clamp_min(0)  # E[x^2] - mean^2 can round below 0
        with torch.no_grad():
            self.running_mean.lerp_(mean.detach(), self.momentum)
            self.running_var.lerp_(var.detach() * count / (count - 1), self.momentum)
            self.num_batches_tracked.add_(1)
        normalised = (x.float() - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        return (normalised * self.weight.view(shape) + self.bias.view(shape)).to(x.dtype)

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.ndim not in (2, 4):
            raise ValueError(f"CrossProcessBatchNorm takes (N, C) or (N, C, H, W) inputs, got {x.ndim}-D.")


def synchronise_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm layer of ``module`` made to use the statistics of all ranks' batches."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        batchnorm = isinstance(child, nn.modules.batchnorm._BatchNorm)
        if batchnorm and not isinstance(child, CrossProcessBatchNorm):
            replacement = CrossProcessBatchNorm(
                child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
            ).to(device)
            replacement.load_state_dict(child.state_dict())
            setattr(module, name, replacement)
        else:
            synchronise_batchnorm(child, device)
    return module


class _Player(DistributedDataParallel):
    """DDP that still answers ``latent_dim``, which the training step reads from G."""

    @property
    def latent_dim(self) -> int:
        return self.module.latent_dim


def wrap_players(
    G: nn.Module, D: nn.Module, context: Context, sync_batchnorm: bool = False
) -> tuple[nn.Module, nn.Module]:
    """G and D in DistributedDataParallel (unchanged in a one-process context).

    DDP averages each player's gradients over the ranks in its backward pass. A GAN step runs a
    backward through D while updating G, so `training.train_step` does G's update inside
    ``D.no_sync()``: those gradients of D are thrown away anyway, so averaging them would only cost
    an all-reduce, and D's next update, the one backward D's DDP synchronises, starts from zeroed
    gradients. No parameter goes unused, so DDP needs no ``find_unused_parameters``.
    """
    if context.world_size == 1:
        return G, D
    if sync_batchnorm:
        G, D = synchronise_batchnorm(G, context.device), synchronise_batchnorm(D, context.device)
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    # broadcast_buffers=False: by default DDP copies rank 0's buffers (BatchNorm's running statistics)
    # into every rank before each forward pass, in place. D runs twice before its backward pass (real,
    # then fake), and the copy would overwrite statistics the first pass saved for backward, which
    # autograd refuses. Each rank keeps its own running statistics; rank 0's are saved.
    return (_Player(G, device_ids=device_ids, broadcast_buffers=False),
            _Player(D, device_ids=device_ids, broadcast_buffers=False))  # fmt: skip


def unwrap(module: nn.Module) -> nn.Module:
    """The model inside a DDP wrapper (what checkpoints, samples and EMAs use), or ``module`` itself."""
    return module.module if isinstance(module, DistributedDataParallel) else module
