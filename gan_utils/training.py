"""One GAN training step, shaped like Algorithm 1 of Goodfellow et al. (2014), and a thin loop.

The step knows nothing about data sets, devices or plotting: it takes the two players, their
optimisers and a stream of real batches. The loop adds the progress bar, the history and callbacks
(sample snapshots, live plots). Tricks such as R1 are opt-in pieces passed to the step.

Introduced in chapter 2 (toy dynamics); chapters 3 and 4 reuse it unchanged on images.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from gan_utils import checkpoints, losses
from gan_utils.data import BatchIterator
from gan_utils.runtime import device_of

# name -> (discriminator loss, generator loss); all are pure functions of logits (losses.py).
LOSSES: dict[str, tuple[Callable, Callable]] = {
    "non-saturating": (losses.minimax_discriminator_loss, losses.non_saturating_generator_loss),
    "saturating": (losses.minimax_discriminator_loss, losses.saturating_generator_loss),
    "hinge": (losses.hinge_discriminator_loss, losses.hinge_generator_loss),
    "wasserstein": (losses.wasserstein_critic_loss, losses.wasserstein_generator_loss),
}


class TrainingDivergedError(RuntimeError):
    """A loss became NaN or infinite; training stopped at the step named in the message."""


def get_losses(name: str) -> tuple[Callable, Callable]:
    """Return the (discriminator loss, generator loss) pair called ``name``."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of " + ", ".join(repr(k) for k in LOSSES) + ".")
    return LOSSES[name]


class R1Penalty:
    """Opt-in R1 regulariser for D (Mescheder et al., 2018): (gamma / 2) E||grad_x D(x)||^2 on real x.

    Pass an instance as ``d_penalty`` to `train_step` or `train`. It runs its own forward pass of D on
    the real batch, so the step itself stays unchanged.
    """

    def __init__(self, gamma: float) -> None:
        if gamma <= 0:
            raise ValueError(f"R1 gamma must be positive, got {gamma}.")
        self.gamma = gamma

    def __call__(self, D: nn.Module, x_real: torch.Tensor, x_fake: torch.Tensor) -> torch.Tensor:
        x_real = x_real.detach().requires_grad_(True)
        return losses.r1_penalty(D(x_real), x_real, self.gamma)

    def __repr__(self) -> str:
        return f"R1Penalty(gamma={self.gamma})"


def _check_batch_fits(x_real: torch.Tensor, x_fake: torch.Tensor) -> None:
    if x_real.shape[1:] != x_fake.shape[1:]:
        raise ValueError(
            f"the real batch has samples of shape {tuple(x_real.shape[1:])} but G makes samples of shape "
            f"{tuple(x_fake.shape[1:])}; D scores both, so the data and the generator must agree "
            "(reshape the data, or build G with the data's sample shape)."
        )


def train_step(
    G: nn.Module,
    D: nn.Module,
    opt_G: torch.optim.Optimizer,
    opt_D: torch.optim.Optimizer,
    real_batches: Iterator[torch.Tensor],
    loss: str = "non-saturating",
    d_steps: int = 1,
    d_penalty: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    reuse_fakes: bool = False,
) -> dict[str, float]:
    """One iteration of Algorithm 1: ``d_steps`` updates of D, then one update of G.

    ``reuse_fakes=True`` (only with ``d_steps=1``) lets the G update score the fakes D was just
    trained on instead of drawing fresh noise, as pytorch/examples' DCGAN does. It saves one forward
    pass of G per step (about a fifth of a DCGAN step on a CPU); the G gradient is still an unbiased
    estimate because z is fresh noise that D saw only once.

    Returns floats: ``loss_D`` and ``loss_G``; ``D(x)`` and ``D(G(z))``, the mean probabilities D gave
    real and fake samples in its last update (before G moves); ``D(G(z)) at G step``, what D said
    about the fakes when G was updated; and ``penalty`` when ``d_penalty`` is given.
    """
    loss_D_fn, loss_G_fn = get_losses(loss)
    if not isinstance(d_steps, int) or d_steps < 1:
        raise ValueError(f"d_steps must be a positive integer, got {d_steps!r}.")
    if reuse_fakes and d_steps != 1:
        raise ValueError(
            "reuse_fakes=True needs d_steps=1: with several D updates, which fakes would G reuse?"
        )

    # ---- update D, k times: maximise log D(x) + log(1 - D(G(z))), i.e. minimise loss_D
    for _ in range(d_steps):
        x_real = next(real_batches)
        z = torch.randn(x_real.shape[0], G.latent_dim, device=x_real.device)
        with torch.set_grad_enabled(reuse_fakes):
            x_fake = G(z)  # keeps its graph only when G will reuse it
        _check_batch_fits(x_real, x_fake)
        real_logits, fake_logits = D(x_real), D(x_fake.detach())
        loss_D = loss_D_fn(real_logits, fake_logits)
        penalty = d_penalty(D, x_real, x_fake.detach()) if d_penalty is not None else None
        opt_D.zero_grad(set_to_none=True)
        (loss_D if penalty is None else loss_D + penalty).backward()
        opt_D.step()

    # ---- update G: the non-saturating loss maximises log D(G(z)) ("real" labels for fakes)
    if not reuse_fakes:
        x_fake = G(torch.randn(x_real.shape[0], G.latent_dim, device=x_real.device))
    fake_logits_G = D(x_fake)
    loss_G = loss_G_fn(fake_logits_G)
    opt_G.zero_grad(set_to_none=True)
    loss_G.backward()
    opt_G.step()

    metrics = {
        "loss_D": loss_D.item(),
        "loss_G": loss_G.item(),
        "D(x)": torch.sigmoid(real_logits).mean().item(),
        "D(G(z))": torch.sigmoid(fake_logits).mean().item(),
        "D(G(z)) at G step": torch.sigmoid(fake_logits_G).mean().item(),
    }
    if penalty is not None:
        metrics["penalty"] = penalty.item()
    return metrics


@dataclass
class TrainState:
    """What a callback sees after each step."""

    step: int  # steps completed so far
    metrics: dict[str, float]
    G: nn.Module
    D: nn.Module
    history: dict[str, list[float]] = field(repr=False)


Callback = Callable[[TrainState], None]


class SampleSnapshots:
    """Callback: every ``every`` steps, store G(fixed_z) so frames are comparable across time."""

    def __init__(self, fixed_z: torch.Tensor, every: int) -> None:
        self.fixed_z = fixed_z
        self.every = every
        self.steps: list[int] = []
        self.samples: list[torch.Tensor] = []

    def __call__(self, state: TrainState) -> None:
        if state.step % self.every == 0 or state.step == 1:
            was_training = state.G.training
            state.G.eval()
            with torch.no_grad():
                self.samples.append(state.G(self.fixed_z.to(device_of(state.G))).cpu())
            state.G.train(was_training)
            self.steps.append(state.step)


class LinearLearningRateDecay:
    """Callback: scale every optimiser's learning rate linearly from its initial value to 0.

    After step t of T the rate is lr * (1 - t / T). Annealing the step size lets the players settle
    instead of circling around the equilibrium (chapter 2 shows both behaviours).
    """

    def __init__(self, optimizers: Iterable[torch.optim.Optimizer], total_steps: int) -> None:
        if total_steps < 1:
            raise ValueError(f"total_steps must be positive, got {total_steps}.")
        self.total_steps = total_steps
        self.optimizers = list(optimizers)
        self.initial = [[group["lr"] for group in opt.param_groups] for opt in self.optimizers]

    def __call__(self, state: TrainState) -> None:
        # computed from the step number alone, so a resumed run continues the same schedule
        scale = max(0.0, 1.0 - state.step / self.total_steps)
        for opt, initial in zip(self.optimizers, self.initial, strict=True):
            for group, lr in zip(opt.param_groups, initial, strict=True):
                group["lr"] = lr * scale


class _CountingStream:
    """Real batches with a count of how many were taken, so a checkpoint can record the position."""

    def __init__(self, batches: Iterator, position: int) -> None:
        self.batches = batches
        self.position = position

    def __iter__(self):
        return self

    def __next__(self) -> torch.Tensor:
        batch = next(self.batches)
        self.position += 1
        return batch[0] if isinstance(batch, tuple | list) else batch


@contextlib.contextmanager
def _stop_at_step_boundary():
    """Turn the first Ctrl-C (or a Jupyter kernel interrupt) into a flag checked between steps.

    Stopping between steps means a checkpoint never holds a half-updated pair of players. A second
    Ctrl-C interrupts at once. Outside the main thread signals cannot be caught; then a Ctrl-C
    interrupts immediately, as usual.
    """
    flag = {"stop": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag["stop"]:
            raise KeyboardInterrupt
        flag["stop"] = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def train(
    G: nn.Module,
    D: nn.Module,
    opt_G: torch.optim.Optimizer,
    opt_D: torch.optim.Optimizer,
    data: BatchIterator | Iterable,
    steps: int,
    loss: str = "non-saturating",
    d_steps: int = 1,
    d_penalty: Callable | None = None,
    reuse_fakes: bool = False,
    callbacks: Iterable[Callback] = (),
    progress: bool = True,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    data_seed: int = 0,
    config: dict | None = None,
) -> dict[str, list[float]]:
    """Train until step ``steps`` and return the history: one list per metric, plus "step".

    Args:
        data: a `BatchIterator` (cycled over epochs) or any iterable of real batches (a tuple batch
            contributes its first tensor).
        steps: the total number of steps; a resumed run continues from its checkpoint up to it.
        loss, d_steps, d_penalty, reuse_fakes: passed to `train_step`.
        checkpoint_path: where to keep the checkpoint (see `gan_utils.checkpoints`). It is written
            every ``checkpoint_every`` steps (0: only at the end), at the end, and when the run is
            interrupted. Needs ``data`` to be a `BatchIterator`, whose position it records.
        resume: continue from ``checkpoint_path``: models, optimisers, random generators, data
            position and history are restored, so the result is the same as one uninterrupted run.
        data_seed: seeds the shuffling of a checkpointed run's data stream.
        config: anything JSON-like describing the run; stored in the checkpoint.

    A NaN or infinite metric raises `TrainingDivergedError` naming the step (the last checkpoint is
    left as it was). Ctrl-C stops after the current step, saves a checkpoint when a path is given,
    and returns the history so far. State held by callbacks is not checkpointed.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}.")
    get_losses(loss)
    if reuse_fakes and d_steps != 1:
        raise ValueError(
            "reuse_fakes=True needs d_steps=1: with several D updates, which fakes would G reuse?"
        )
    callbacks = list(callbacks)
    history: dict[str, list[float]] = {"step": []}
    start, position = 0, 0
    if checkpoint_path is not None and not isinstance(data, BatchIterator):
        raise TypeError(
            "checkpointing needs data as a BatchIterator, so the checkpoint can record its position."
        )
    if resume:
        if checkpoint_path is None:
            raise ValueError("resume=True needs the checkpoint_path to resume from.")
        state = checkpoints.load_checkpoint(checkpoint_path)
        for module, key in ((G, "G"), (D, "D"), (opt_G, "opt_G"), (opt_D, "opt_D")):
            module.load_state_dict(state[key])
        history, start, position = state["history"], state["step"], state["data_position"]
        data_seed = state["data_seed"]
        checkpoints.restore_rng_state(state["rng"])

    def save(step: int) -> None:
        if checkpoint_path is not None:
            checkpoints.save_checkpoint(checkpoint_path, {
                "step": step, "G": G.state_dict(), "D": D.state_dict(), "opt_G": opt_G.state_dict(),
                "opt_D": opt_D.state_dict(), "history": history, "data_position": real_batches.position,
                "data_seed": data_seed, "config": config or {},
            })  # fmt: skip

    if checkpoint_path is not None:
        real_batches = _CountingStream(data.resumable(data_seed, position), position)
    else:
        real_batches = _CountingStream(data.endless() if isinstance(data, BatchIterator) else iter(data), 0)
    G.train()
    D.train()
    bar = tqdm(range(start + 1, steps + 1), desc=f"GAN ({loss})", disable=not progress, mininterval=0.5,
               initial=start, total=steps)  # fmt: skip
    step = start
    with _stop_at_step_boundary() as interrupt:
        for step in bar:
            metrics = train_step(G, D, opt_G, opt_D, real_batches, loss=loss, d_steps=d_steps,
                                 d_penalty=d_penalty, reuse_fakes=reuse_fakes)  # fmt: skip
            bad = [name for name, value in metrics.items() if not math.isfinite(value)]
            if bad:
                raise TrainingDivergedError(
                    f"{', '.join(bad)} became {metrics[bad[0]]} at step {step}. Training stopped"
                    + (f"; the last good checkpoint in {checkpoint_path} is kept" if checkpoint_path else "")
                    + ". Try a smaller learning rate, check the data for NaN or inf values, or add a "
                    "penalty on D such as R1Penalty(gamma=1.0)."
                )
            history["step"].append(step)
            for name, value in metrics.items():
                history.setdefault(name, []).append(value)
            if progress and step % 50 == 0:
                bar.set_postfix(
                    loss_D=f"{metrics['loss_D']:.3f}", loss_G=f"{metrics['loss_G']:.3f}", refresh=False
                )
            state = TrainState(step=step, metrics=metrics, G=G, D=D, history=history)
            for callback in callbacks:
                callback(state)
            if checkpoint_every and step % checkpoint_every == 0 and step < steps:
                save(step)
            if interrupt["stop"]:
                bar.close()
                save(step)
                where = f"; checkpoint saved to {checkpoint_path}" if checkpoint_path else ""
                print(f"Interrupted after step {step}{where}. The history so far is returned.")
                return history
    if step > start:
        save(step)
    return history
