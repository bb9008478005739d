"""One GAN training step, shaped like Algorithm 1 of Goodfellow et al. (2014), and a thin loop.

The step knows nothing about data sets, devices or plotting: it takes the two players, their
optimisers and a stream of real batches, and returns tensors. The loop draws batches from a seeded,
resumable stream, calls the step, turns its tensors into floats once per logging interval (one host
sync, not one per step on a GPU) and hands a `TrainState` to callbacks: the progress bar, sample
snapshots, learning-rate schedules, checkpoints (`Checkpointer`) and live plots are all callbacks.
Tricks such as R1 are opt-in pieces passed to the step. Another kind of GAN (a conditional one, an
image-to-image one) brings its own step function and reuses the loop.

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
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from gan_utils import checkpoints, losses
from gan_utils.data import BatchIterator
from gan_utils.runtime import sample

DiscriminatorLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (real logits, fake logits)
GeneratorLoss = Callable[[torch.Tensor], torch.Tensor]  # (logits of D on G's samples)

# name -> (discriminator loss, generator loss); all are pure functions of logits (losses.py).
LOSSES: dict[str, tuple[DiscriminatorLoss, GeneratorLoss]] = {
    "non-saturating": (losses.minimax_discriminator_loss, losses.non_saturating_generator_loss),
    "saturating": (losses.minimax_discriminator_loss, losses.saturating_generator_loss),
    "hinge": (losses.hinge_discriminator_loss, losses.hinge_generator_loss),
    "wasserstein": (losses.wasserstein_critic_loss, losses.wasserstein_generator_loss),
}


class TrainingDivergedError(RuntimeError):
    """A loss became NaN or infinite; training stopped at the step named in the message."""


def get_losses(
    loss: str | tuple[DiscriminatorLoss, GeneratorLoss],
) -> tuple[DiscriminatorLoss, GeneratorLoss]:
    """The (discriminator loss, generator loss) pair: looked up by name, or checked and passed through."""
    if isinstance(loss, str):
        if loss not in LOSSES:
            choices = ", ".join(repr(k) for k in LOSSES)
            raise ValueError(
                f"unknown loss {loss!r}; choose one of {choices}, or pass (loss_D_fn, loss_G_fn)."
            )
        return LOSSES[loss]
    if isinstance(loss, tuple | list) and len(loss) == 2 and all(callable(fn) for fn in loss):
        return loss[0], loss[1]
    raise TypeError(
        f"loss must be a name ({', '.join(LOSSES)}) or a pair of functions (loss_D_fn(real_logits, "
        f"fake_logits), loss_G_fn(fake_logits)), got {type(loss).__name__}."
    )


class R1Penalty:
    """Opt-in R1 regulariser for D (Mescheder et al., 2018): (gamma / 2) E||grad_x D(x)||^2 on real x.

    Pass an instance as ``d_penalty`` to `train_step`. It runs its own forward pass of D on the real
    batch, so the step itself stays unchanged.
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
    loss: str | tuple[DiscriminatorLoss, GeneratorLoss] = "non-saturating",
    d_steps: int = 1,
    d_penalty: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    reuse_fakes: bool = False,
) -> dict[str, torch.Tensor]:
    """One iteration of Algorithm 1: ``d_steps`` updates of D, then one update of G.

    ``loss`` is a name from `LOSSES` or a pair ``(loss_D_fn, loss_G_fn)`` of functions of logits.
    ``reuse_fakes=True`` (only with ``d_steps=1``) lets the G update score the fakes D was just
    trained on instead of drawing fresh noise, as pytorch/examples' DCGAN does. It saves one forward
    pass of G per step, at a price: D has just taken a step on exactly these fakes, so it rates them
    lower than it would rate a fresh batch from the same G. G's loss and gradient are then a biased
    estimate, in D's favour, of what a fresh batch would give. Chapter 4 measures the bias.

    Returns detached scalar tensors (no host sync): ``loss_D`` and ``loss_G``; ``D(x)`` and
    ``D(G(z))``, the mean sigmoid of D's logits on real and fake samples in its last update (D's
    probability of "real" for the log losses; for hinge and Wasserstein critics only a squashed
    score); ``D(G(z)) at G step``, the same for the fakes G was updated on; and ``penalty`` when
    ``d_penalty`` is given.
    """
    loss_D_fn, loss_G_fn = get_losses(loss)
    if not isinstance(d_steps, int) or d_steps < 1:
        raise ValueError(f"d_steps must be a positive integer, got {d_steps!r}.")
    if reuse_fakes and d_steps != 1:
        raise ValueError(
            "reuse_fakes=True needs d_steps=1: with several D updates, which fakes would G reuse?"
        )

    # ---- update D, k times: minimise loss_D, which rewards high logits on x_real and low ones on G(z)
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

    # ---- update G: minimise loss_G, which rewards high logits of the updated D on G's samples
    if not reuse_fakes:
        x_fake = G(torch.randn(x_real.shape[0], G.latent_dim, device=x_real.device))
    fake_logits_G = D(x_fake)
    loss_G = loss_G_fn(fake_logits_G)
    opt_G.zero_grad(set_to_none=True)
    loss_G.backward()
    opt_G.step()

    metrics = {
        "loss_D": loss_D.detach(),
        "loss_G": loss_G.detach(),
        "D(x)": torch.sigmoid(real_logits.detach()).mean(),
        "D(G(z))": torch.sigmoid(fake_logits.detach()).mean(),
        "D(G(z)) at G step": torch.sigmoid(fake_logits_G.detach()).mean(),
    }
    if penalty is not None:
        metrics["penalty"] = penalty.detach()
    return metrics


StepFunction = Callable[..., dict[str, torch.Tensor]]  # (G, D, opt_G, opt_D, real_batches) -> metrics


class _Recorder:
    """Per-step metric tensors, turned into floats in one transfer when somebody needs them."""

    def __init__(self, history: dict[str, list[float]]) -> None:
        self.history = history
        self.pending: list[tuple[int, dict[str, torch.Tensor]]] = []

    def add(self, step: int, metrics: dict[str, torch.Tensor]) -> None:
        self.pending.append((step, metrics))

    def flush(self, checkpoint_note: str = "") -> None:
        """Move pending steps into the history; a NaN or inf value stops training, naming its step."""
        if not self.pending:
            return
        names = list(self.pending[0][1])
        values = torch.stack([torch.stack([m[name].float() for name in names]) for _, m in self.pending])
        rows = values.cpu().tolist()  # the one host sync per flush
        pending, self.pending = self.pending, []
        for (step, _), row in zip(pending, rows, strict=True):
            bad = [name for name, value in zip(names, row, strict=True) if not math.isfinite(value)]
            if bad:
                raise TrainingDivergedError(
                    f"{', '.join(bad)} became {row[names.index(bad[0])]} at step {step}. Training stopped"
                    f"{checkpoint_note}. Try a smaller learning rate, check the data for NaN or inf "
                    "values, or add a penalty on D such as R1Penalty(gamma=1.0)."
                )
            self.history["step"].append(step)
            for name, value in zip(names, row, strict=True):
                self.history.setdefault(name, []).append(value)


@dataclass
class TrainState:
    """What a callback sees after each step. Reading ``metrics`` or ``history`` syncs with the device."""

    step: int  # steps completed so far
    total_steps: int
    G: nn.Module
    D: nn.Module
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    data_position: int  # real batches drawn so far, over all epochs
    data_seed: int
    recorder: _Recorder = field(repr=False)
    checkpoint_note: str = ""

    @property
    def history(self) -> dict[str, list[float]]:
        """Every finished step's metrics as floats: one list per name, plus "step"."""
        self.recorder.flush(self.checkpoint_note)
        return self.recorder.history

    @property
    def metrics(self) -> dict[str, float]:
        """This step's metrics as floats."""
        history = self.history
        return {name: values[-1] for name, values in history.items() if name != "step"}


Callback = Callable[[TrainState], None]  # may also define close(state), called once when training ends


class SampleSnapshots:
    """Callback: every ``every`` steps, store G(fixed_z) so frames are comparable across time."""

    def __init__(self, fixed_z: torch.Tensor, every: int) -> None:
        self.fixed_z = fixed_z
        self.every = every
        self.steps: list[int] = []
        self.samples: list[torch.Tensor] = []

    def __call__(self, state: TrainState) -> None:
        if state.step % self.every == 0 or state.step == 1:
            self.samples.append(sample(state.G, self.fixed_z))
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


class ProgressBar:
    """Callback: a tqdm bar (a widget in JupyterLab, text in a shell) with the latest losses."""

    def __init__(self, description: str = "GAN", update_every: int = 50) -> None:
        self.description = description
        self.update_every = update_every
        self.bar: tqdm | None = None

    def __call__(self, state: TrainState) -> None:
        if self.bar is None:
            start = state.step - 1
            self.bar = tqdm(desc=self.description, total=state.total_steps, initial=start, mininterval=0.5)
        self.bar.update(1)
        if state.step % self.update_every == 0:
            metrics = state.metrics
            self.bar.set_postfix(
                loss_D=f"{metrics['loss_D']:.3f}", loss_G=f"{metrics['loss_G']:.3f}", refresh=False
            )

    def close(self, state: TrainState) -> None:
        if self.bar is not None:
            self.bar.close()


class Checkpointer:
    """Callback: save everything a resumed run needs (`resume`) to ``path``, atomically.

    It saves every ``every`` steps (0: never in between), and always when training ends or is
    interrupted. ``config`` is anything JSON-like describing the run; it is stored alongside.
    """

    def __init__(self, path: str | os.PathLike, every: int = 0, config: dict | None = None) -> None:
        if not isinstance(every, int) or isinstance(every, bool) or every < 0:
            raise ValueError(f"every must be a non-negative integer (0: only at the end), got {every!r}.")
        self.path = Path(path)
        self.every = every
        self.config = config or {}

    def __call__(self, state: TrainState) -> None:
        if self.every and state.step % self.every == 0 and state.step < state.total_steps:
            self.save(state)

    def close(self, state: TrainState) -> None:
        self.save(state)

    def save(self, state: TrainState) -> Path:
        """Write the checkpoint of ``state`` now."""
        return checkpoints.save_checkpoint(self.path, {
            "step": state.step, "G": state.G.state_dict(), "D": state.D.state_dict(),
            "opt_G": state.opt_G.state_dict(), "opt_D": state.opt_D.state_dict(),
            "history": state.history, "data_position": state.data_position, "data_seed": state.data_seed,
            "config": self.config,
        })  # fmt: skip


@dataclass
class Resumed:
    """Where a checkpointed run stopped: pass it as ``train(..., start=...)``."""

    step: int
    history: dict[str, list[float]]
    data_position: int
    data_seed: int
    config: dict


def resume(
    path: str | os.PathLike,
    G: nn.Module,
    D: nn.Module,
    opt_G: torch.optim.Optimizer,
    opt_D: torch.optim.Optimizer,
) -> Resumed:
    """Load a `Checkpointer` file into the models and optimisers, restore every random generator, and
    return where the run stopped. Training on from there gives the same numbers as never stopping."""
    state = checkpoints.load_checkpoint(path)
    for module, key in ((G, "G"), (D, "D"), (opt_G, "opt_G"), (opt_D, "opt_D")):
        module.load_state_dict(state[key])
    checkpoints.restore_rng_state(state["rng"])
    return Resumed(
        state["step"], state["history"], state["data_position"], state["data_seed"], state["config"]
    )


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
    data: BatchIterator,
    steps: int,
    step: StepFunction = train_step,
    callbacks: Iterable[Callback] = (),
    progress: bool = True,
    log_every: int = 1,
    data_seed: int | None = None,
    start: Resumed | None = None,
) -> dict[str, list[float]]:
    """Call ``step`` until step ``steps`` and return the history: one list of floats per metric, plus "step".

    Args:
        data: a `BatchIterator`. Batches come from its seeded stream (`BatchIterator.resumable`),
            shuffled anew each epoch; a tuple batch contributes its first tensor.
        step: ``step(G, D, opt_G, opt_D, real_batches) -> dict of scalar tensors``; `train_step` by
            default. Options go in with `functools.partial`, e.g.
            ``partial(train_step, loss="hinge", d_penalty=R1Penalty(1.0))``.
        callbacks: called with a `TrainState` after every step; `ProgressBar` is added when
            ``progress`` is true. A callback with a ``close(state)`` method has it called at the end.
        log_every: steps between conversions of the metrics to floats (one host sync each); the
            history still gets every step. Callbacks that read ``state.metrics`` sync earlier.
        data_seed: seeds the data stream's shuffling; None uses the current torch seed, so
            `gan_utils.set_seed` fixes it too.
        start: from `resume`, to continue a checkpointed run up to ``steps``.

    A NaN or infinite metric raises `TrainingDivergedError` naming the step. Ctrl-C stops after the
    current step, lets every callback close (a `Checkpointer` saves), and returns the history so far.
    """
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}.")
    if not isinstance(log_every, int) or isinstance(log_every, bool) or log_every < 1:
        raise ValueError(f"log_every must be a positive integer, got {log_every!r}.")
    if not isinstance(data, BatchIterator):
        raise TypeError(
            f"data must be a gan_utils.data.BatchIterator (its stream is seeded and resumable), got "
            f"{type(data).__name__}; wrap tensors as BatchIterator(images, batch_size=...)."
        )
    callbacks = [*callbacks, *([ProgressBar()] if progress else [])]
    checkpoint_paths = [c.path for c in callbacks if isinstance(c, Checkpointer)]
    note = f"; the last good checkpoint in {checkpoint_paths[0]} is kept" if checkpoint_paths else ""
    if start is None:
        done, history, position = 0, {"step": []}, 0
        data_seed = torch.initial_seed() % 2**63 if data_seed is None else data_seed
    else:
        done, history, position, data_seed = start.step, start.history, start.data_position, start.data_seed
    real_batches = _CountingStream(data.resumable(data_seed, position), position)
    recorder = _Recorder(history)

    def state_at(step_number: int) -> TrainState:
        return TrainState(
            step_number, steps, G, D, opt_G, opt_D, real_batches.position, data_seed, recorder, note
        )

    G.train()
    D.train()
    state = state_at(done)
    with _stop_at_step_boundary() as interrupt:
        for step_number in range(done + 1, steps + 1):
            recorder.add(step_number, step(G, D, opt_G, opt_D, real_batches))
            state = state_at(step_number)
            if step_number % log_every == 0:
                recorder.flush(note)
            for callback in callbacks:
                callback(state)
            if interrupt["stop"]:
                break
        recorder.flush(note)
        for callback in callbacks:
            if hasattr(callback, "close"):
                callback.close(state)
    if interrupt["stop"]:
        saved = f"; checkpoint saved to {checkpoint_paths[0]}" if checkpoint_paths else ""
        print(f"Interrupted after step {state.step}{saved}. The history so far is returned.")
    return history
