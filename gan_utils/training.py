"""One GAN training step, shaped like Algorithm 1 of Goodfellow et al. (2014), and a thin loop.

The step knows nothing about data sets, devices or plotting: it takes the two players, their
optimisers and a stream of real batches, and returns tensors. The loop draws batches from a seeded,
resumable stream, calls the step, turns its tensors into floats once per logging interval (one host
sync, not one per step on a GPU) and hands a `TrainState` to callbacks: the progress bar, sample
snapshots, learning-rate schedules, checkpoints (`Checkpointer`) and live plots are all callbacks.
Tricks such as R1 are opt-in pieces passed to the step. A conditional GAN (chapter 8) uses the same
step on labelled batches; another kind of GAN (an image-to-image one) brings its own step function
and reuses the loop.

Introduced in chapter 2 (toy dynamics); chapters 3 and 4 reuse it unchanged on images.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from gan_utils import checkpoints, distributed, losses
from gan_utils.data import BatchIterator, check_image_range
from gan_utils.models import check_labels, is_conditional
from gan_utils.runtime import check_count, device_of, evaluating, sample

DiscriminatorLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (real logits, fake logits)
GeneratorLoss = Callable[[torch.Tensor], torch.Tensor]  # (logits of D on G's samples)

# name -> (discriminator loss, generator loss); all are pure functions of logits (losses.py).
LOSSES: dict[str, tuple[DiscriminatorLoss, GeneratorLoss]] = {
    "non-saturating": (losses.minimax_discriminator_loss, losses.non_saturating_generator_loss),
    "saturating": (losses.minimax_discriminator_loss, losses.saturating_generator_loss),
    "hinge": (losses.hinge_discriminator_loss, losses.hinge_generator_loss),
    "wasserstein": (losses.wasserstein_critic_loss, losses.wasserstein_generator_loss),
}


# A loss beyond this size means training has diverged. Healthy GAN losses are O(1) to O(100) (the
# log losses, hinge); a Wasserstein critic's can reach thousands, so the bound is generous. The ring
# MLP at a learning rate of 10 or more passes it by its second step (its losses grow to 1e14 and beyond).
DIVERGENCE_BOUND = 1e6

# `train`'s default logging interval on a GPU: one host sync per this many steps (`ProgressBar` reads
# the losses as often).
GPU_LOG_EVERY = 50


class TrainingDivergedError(RuntimeError):
    """Training diverged and stopped at the step named in the message.

    "Diverged" means that a metric became NaN or infinite, or that a loss (a metric whose name starts
    with "loss", or "penalty") left [-DIVERGENCE_BOUND, DIVERGENCE_BOUND]. The message also says what
    became of the models: a `Checkpointer`'s file keeps the state before the failing step; without
    one, the models in memory hold the diverged weights (no copy is kept: copying both models and
    optimisers at every logging interval would cost more than the training step on the CPU).
    ``step`` is the step that diverged and ``problem`` what went wrong (e.g. "loss_D became nan"), so a
    caller such as the command line can phrase its own advice.
    """

    def __init__(self, message: str, step: int | None = None, problem: str = "") -> None:
        super().__init__(message)
        self.step, self.problem = step, problem


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

    def __call__(self, D: nn.Module, x_real: torch.Tensor, x_fake: torch.Tensor, *labels) -> torch.Tensor:
        x_real = x_real.detach().requires_grad_(True)
        return losses.r1_penalty(D(x_real, *labels), x_real, self.gamma)

    def __repr__(self) -> str:
        return f"R1Penalty(gamma={self.gamma})"


def _check_batch_fits(x_real: torch.Tensor, x_fake: torch.Tensor) -> None:
    if not x_real.is_floating_point():  # a dtype check reads no values, so it costs no host sync
        raise ValueError(
            f"the real batch has dtype {x_real.dtype}, but the players compute in floats; convert the "
            "data first (uint8 pixels to [-1, 1]: x.float() / 127.5 - 1)."
        )
    if x_real.shape[1:] != x_fake.shape[1:]:
        raise ValueError(
            f"the real batch has samples of shape {tuple(x_real.shape[1:])} but G makes samples of shape "
            f"{tuple(x_fake.shape[1:])}; D scores both, so the data and the generator must agree "
            "(reshape the data, or build G with the data's sample shape)."
        )


NoiseSampler = Callable[[int, int, torch.device], torch.Tensor]  # (n, latent_dim, device) -> z


def standard_normal(n: int, latent_dim: int, device: torch.device) -> torch.Tensor:
    """``n`` codes z ~ N(0, I) of size ``latent_dim`` from torch's global generator (the default)."""
    return torch.randn(n, latent_dim, device=device)


def _no_sync(D: nn.Module) -> contextlib.AbstractContextManager:
    """DDP's ``no_sync()`` for a wrapped D, else a context that does nothing."""
    return D.no_sync() if hasattr(D, "no_sync") else contextlib.nullcontext()


def _images_and_labels(batch: torch.Tensor | tuple | list) -> tuple[torch.Tensor, ...]:
    """(images,) for an unconditional batch, (images, labels) for a labelled one."""
    return tuple(batch) if isinstance(batch, tuple | list) else (batch,)


def _autocast(x: torch.Tensor, precision: torch.dtype | None) -> torch.autocast:
    """Mixed precision on ``x``'s device when ``precision`` is given, else a context that changes nothing.

    The autocast cache is off: it would keep float32-to-bfloat16 weight copies across a CUDA graph's
    replays (`CUDAGraphStep`), where the weights change in place."""
    return torch.autocast(x.device.type, dtype=precision, enabled=precision is not None, cache_enabled=False)


def train_step(
    G: nn.Module,
    D: nn.Module,
    opt_G: torch.optim.Optimizer,
    opt_D: torch.optim.Optimizer,
    real_batches: Iterator[torch.Tensor | tuple[torch.Tensor, torch.Tensor]],
    loss: str | tuple[DiscriminatorLoss, GeneratorLoss] = "non-saturating",
    d_steps: int = 1,
    d_penalty: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    reuse_fakes: bool = False,
    precision: torch.dtype | None = None,
    noise: NoiseSampler | None = None,
) -> dict[str, torch.Tensor]:
    """One iteration of Algorithm 1: ``d_steps`` updates of D, then one update of G.

    ``loss`` is a name from `LOSSES` or a pair ``(loss_D_fn, loss_G_fn)`` of functions of logits.
    ``reuse_fakes=True`` (only with ``d_steps=1``) lets the G update score the fakes D was just
    trained on instead of drawing fresh noise, as pytorch/examples' DCGAN does. It saves one forward
    pass of G per step, at a price: D has just taken a step on exactly these fakes, so it rates them
    lower than it would rate a fresh batch from the same G. G's loss and gradient are then a biased
    estimate, in D's favour, of what a fresh batch would give. Chapter 4 measures the bias.

    ``precision=torch.bfloat16`` runs the players' forward passes under `torch.autocast` (mixed
    precision: matrix products and convolutions in bfloat16, the rest in float32); the losses, the
    penalty and the backward passes stay in float32, as PyTorch's AMP guide advises. None: all float32.

    ``noise(n, latent_dim, device)`` draws G's inputs; None draws ``torch.randn`` from torch's
    global generator.

    Conditional GANs (chapter 8): when the batches are pairs (images, labels), G draws its fakes for
    the real batch's labels, D scores every batch with its labels, and ``d_penalty`` gets them too.
    So the fakes follow the data's class frequencies, and D compares real and fake of the same classes.

    Returns detached scalar tensors (no host sync): ``loss_D`` and ``loss_G``; ``D(x)`` and
    ``D(G(z))``, the mean sigmoid of D's logits on real and fake samples in its last update (D's
    probability of "real" for the log losses; for hinge and Wasserstein critics only a squashed
    score); ``D(G(z)) at G step``, the same for the fakes G was updated on; and ``penalty`` when
    ``d_penalty`` is given.
    """
    loss_D_fn, loss_G_fn = get_losses(loss)
    d_steps = check_count(d_steps, "d_steps")
    draw = noise or standard_normal
    if reuse_fakes and d_steps != 1:
        raise ValueError(
            "reuse_fakes=True needs d_steps=1: with several D updates, which fakes would G reuse?"
        )

    # ---- update D, k times: minimise loss_D, which rewards high logits on x_real and low ones on G(z)
    for _ in range(d_steps):
        x_real, *y = _images_and_labels(next(real_batches))  # y: [labels] (conditional) or []
        z = draw(x_real.shape[0], G.latent_dim, x_real.device)
        with torch.set_grad_enabled(reuse_fakes), _autocast(x_real, precision):
            x_fake = G(z, *y)  # keeps its graph only when G will reuse it
        _check_batch_fits(x_real, x_fake)
        with _autocast(x_real, precision):
            real_logits, fake_logits = D(x_real, *y), D(x_fake.detach(), *y)
        loss_D = loss_D_fn(real_logits.float(), fake_logits.float())
        penalty = d_penalty(D, x_real, x_fake.detach(), *y) if d_penalty is not None else None
        opt_D.zero_grad(set_to_none=True)
        (loss_D if penalty is None else loss_D + penalty).backward()
        opt_D.step()

    # ---- update G: minimise loss_G, which rewards high logits of the updated D on G's samples.
    # The backward pass also reaches D's weights; under DDP (gan_utils.distributed) no_sync keeps
    # D from averaging those gradients, which D's next update discards (zero_grad) anyway.
    with _no_sync(D):
        with _autocast(x_real, precision):
            if not reuse_fakes:
                x_fake = G(draw(x_real.shape[0], G.latent_dim, x_real.device), *y)
            fake_logits_G = D(x_fake, *y)
        loss_G = loss_G_fn(fake_logits_G.float())
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


class CUDAGraphStep:
    """A step function recorded once as a CUDA graph and then replayed: opt-in, CUDA only.

    A GAN step on 28x28 images launches a few hundred small kernels, and on a GPU launching them
    takes longer than running them. Replaying a recorded graph launches the whole step at once
    (PyTorch's "whole-network capture", see torch.cuda.graphs). ``CUDAGraphStep(recipe.step())``
    replaces the step given to `train`; nothing else changes. The first ``warmup`` calls run the step
    as usual on a side stream (they are real training steps), the next one records it and replays
    it, and every later call copies its real batches into the recorded input buffers and replays.

    What recording needs, and what this class checks:
    - models, optimisers and batches on one CUDA device, every batch of the same shape
      (``BatchIterator(..., drop_last=True)``);
    - optimisers that can be recorded: ``Recipe.optimisers(G, D, capturable=True)``. Learning rates
      become 0-d tensors on the device before recording, so `LinearLearningRateDecay`, which writes
      into them, keeps working; a float written into ``group["lr"]`` afterwards would be ignored;
    - a step whose Python control flow does not read tensor values (`train_step`'s does not).
    The noise comes from CUDA's graph-safe generator, so every replay draws fresh z.
    """

    def __init__(self, step: StepFunction, warmup: int = 3) -> None:
        self.step = step
        self.warmup = check_count(warmup, "warmup")
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.inputs: list[torch.Tensor] = []
        self.names: list[str] = []
        self.outputs: torch.Tensor | None = None

    def __call__(self, G, D, opt_G, opt_D, real_batches) -> dict[str, torch.Tensor]:
        self.calls += 1
        if self.graph is None and self.calls <= self.warmup:
            _check_recordable(G, D, opt_G, opt_D)
            counted = _CountedBatches(real_batches)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                metrics = self.step(G, D, opt_G, opt_D, counted)
            torch.cuda.current_stream().wait_stream(side)
            self.inputs = [torch.empty_like(batch) for batch in counted.seen]
            return metrics
        if self.graph is None:
            self._record(G, D, opt_G, opt_D)
        for buffer in self.inputs:
            buffer.copy_(next(real_batches))
        self.graph.replay()
        return dict(zip(self.names, self.outputs.clone().unbind(), strict=True))

    def _record(self, G, D, opt_G, opt_D) -> None:
        for opt in (opt_G, opt_D):
            for group in opt.param_groups:
                if not isinstance(group["lr"], torch.Tensor):
                    group["lr"] = torch.tensor(float(group["lr"]), device=self.inputs[0].device)
            opt.zero_grad(set_to_none=True)  # gradients then live in the graph's own memory
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            metrics = self.step(G, D, opt_G, opt_D, iter(self.inputs))
            self.names = list(metrics)
            self.outputs = torch.stack([value.float() for value in metrics.values()])


class _CountedBatches:
    """Pass batches through and remember them: how many a step draws, and of which shapes."""

    def __init__(self, batches: Iterator[torch.Tensor]) -> None:
        self.batches, self.seen = batches, []

    def __iter__(self):
        return self

    def __next__(self) -> torch.Tensor:
        batch = next(self.batches)
        if not isinstance(batch, torch.Tensor):
            raise ValueError(
                "CUDAGraphStep records steps on image batches only; a conditional GAN's (images, labels) "
                "batches are not supported yet: train it without --cuda-graph."
            )
        self.seen.append(batch)
        return batch


def _check_recordable(G: nn.Module, D: nn.Module, *optimisers: torch.optim.Optimizer) -> None:
    """Refuse, with the fix, what a CUDA graph cannot record."""
    devices = {p.device for model in (G, D) for p in model.parameters()}
    if any(d.type != "cuda" for d in devices) or len(devices) != 1:
        found = ", ".join(sorted(str(d) for d in devices))
        raise ValueError(
            f"CUDAGraphStep records CUDA graphs, but the models are on {found}; move G and D to one CUDA "
            "device (recipe.build_models('cuda')), or train without CUDAGraphStep."
        )
    for opt in optimisers:
        if any(group.get("capturable") is False for group in opt.param_groups):
            raise ValueError(
                f"{type(opt).__name__} was built without capturable=True, so a CUDA graph cannot record its "
                "update; build the optimisers with recipe.optimisers(G, D, capturable=True)."
            )


def _is_loss(name: str) -> bool:
    return name.startswith("loss") or name == "penalty"


def _divergence(names: list[str], row: list[float]) -> str | None:
    """What diverged in one step's metrics, or None: any non-finite metric, or a loss beyond the bound."""
    for name, value in zip(names, row, strict=True):
        if not math.isfinite(value):
            return f"{name} became {value}"
    for name, value in zip(names, row, strict=True):
        if _is_loss(name) and abs(value) > DIVERGENCE_BOUND:
            return f"{name} reached {value:.3g}, beyond the bound of {DIVERGENCE_BOUND:g} on any loss"
    return None


class _Recorder:
    """Per-step metric tensors, turned into floats in one transfer when somebody needs them.

    ``describe_state`` says, when training diverges, what became of the models (see `train`).
    """

    def __init__(self, history: dict[str, list[float]], describe_state: Callable[[], str] = str) -> None:
        self.history = history
        self.describe_state = describe_state
        self.pending: list[tuple[int, dict[str, torch.Tensor]]] = []

    def add(self, step: int, metrics: dict[str, torch.Tensor]) -> None:
        self.pending.append((step, metrics))

    def flush(self) -> None:
        """Move pending steps into the history; a diverged value (`_divergence`) stops training at its step.

        Both checks read the floats this flush transfers anyway, so they cost no extra host sync.
        """
        if not self.pending:
            return
        names = list(self.pending[0][1])
        values = torch.stack([torch.stack([m[name].float() for name in names]) for _, m in self.pending])
        rows = values.cpu().tolist()  # the one host sync per flush
        pending, self.pending = self.pending, []
        for (step, _), row in zip(pending, rows, strict=True):
            problem = _divergence(names, row)
            if problem is not None:
                raise TrainingDivergedError(
                    f"{problem} at step {step}: training diverged and stopped. {self.describe_state()} "
                    "Try a lower learning rate (10 times lower is a good first try), check the data for "
                    "NaN or inf values, or add a penalty on D such as R1Penalty(gamma=1.0).",
                    step,
                    problem,
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

    @property
    def history(self) -> dict[str, list[float]]:
        """Every finished step's metrics as floats: one list per name, plus "step"."""
        self.recorder.flush()
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
        self.every = check_count(every, "every")
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
        self.total_steps = check_count(total_steps, "total_steps")
        self.optimizers = list(optimizers)
        self.initial = [[float(group["lr"]) for group in opt.param_groups] for opt in self.optimizers]

    def __call__(self, state: TrainState) -> None:
        # computed from the step number alone, so a resumed run continues the same schedule
        scale = max(0.0, 1.0 - state.step / self.total_steps)
        for opt, initial in zip(self.optimizers, self.initial, strict=True):
            for group, lr in zip(opt.param_groups, initial, strict=True):
                if isinstance(group["lr"], torch.Tensor):  # a recorded step reads it (CUDAGraphStep)
                    group["lr"].fill_(lr * scale)
                else:
                    group["lr"] = lr * scale


class StopTraining(Exception):  # noqa: N818 (a request, like StopIteration, not an error)
    """Raised by a callback to end training after the current step, as Ctrl-C does: callbacks close and
    a `Checkpointer` saves."""


class TrainingTerminated(SystemExit):
    """Raised by `train` after a SIGTERM, once the step finished and every callback closed (a
    `Checkpointer` saved): SIGTERM asks the process to end, so a script that called `train` ends too
    instead of going on with a half-trained model. Its exit code is 143 (128 + SIGTERM); ``step`` is
    the last finished step and ``history`` the history so far."""

    def __init__(self, step: int, history: dict[str, list[float]]) -> None:
        super().__init__(128 + signal.SIGTERM)
        self.step, self.history = step, history


class StopAfter:
    """Callback: end training after step ``step`` of a longer run (the schedule still spans ``train``'s
    ``steps``), so the result is that run's state at ``step``; ``--stop-after`` on the command line."""

    def __init__(self, step: int) -> None:
        self.step = check_count(step, "step")

    def __call__(self, state: TrainState) -> None:
        if state.step >= self.step:
            raise StopTraining(f"StopAfter({self.step}) asked for it")


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
            shown = {k: f"{v:.3f}" for k, v in state.metrics.items() if k in ("loss_D", "loss_G")}
            self.bar.set_postfix(shown, refresh=False)  # a step without D (pix2pix's L1 only) has no loss_D

    def close(self, state: TrainState) -> None:
        if self.bar is not None:
            self.bar.close()


class Checkpointer:
    """Callback: save everything a resumed run needs (`resume`) to ``path``, atomically.

    It saves every ``every`` steps (0: never in between), and always when training ends or is
    interrupted. ``config`` is anything JSON-like describing the run; it is stored alongside.
    ``extra_modules`` are saved too, by name (e.g. ``{"G_ema": ema.averaged}``); pass the same names
    to `resume`.
    A save whose models hold NaN or inf weights is refused (`TrainingDivergedError`), so the file
    always keeps the last finite state.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        every: int = 0,
        config: dict | None = None,
        extra_modules: dict[str, nn.Module] | None = None,
    ) -> None:
        try:
            self.every = check_count(every, "every", minimum=0)
        except ValueError:
            raise ValueError(
                f"every must be a non-negative integer (0: only at the end), got {every!r}."
            ) from None
        self.path = Path(path)
        self.config = config or {}
        self.extra_modules = dict(extra_modules or {})

    def __call__(self, state: TrainState) -> None:
        if self.every and state.step % self.every == 0 and state.step < state.total_steps:
            self.save(state)

    def close(self, state: TrainState) -> None:
        self.save(state)

    def save(self, state: TrainState) -> Path:
        """Write the checkpoint of ``state`` now, unless a model holds NaN or inf weights."""
        history = state.history  # flushes first: a diverged loss stops here, before anything is written
        # Under torchrun every rank calls save: each one's random state goes into the file (rank 0's
        # writes it), so a resumed run draws the noise every rank would have drawn.
        random_states = distributed.gather(checkpoints.capture_rng_state())
        rank, world_size = distributed.rank_and_world()
        models = {"G": state.G, "D": state.D, **self.extra_modules}
        broken = [name for name, model in models.items() if not _all_finite(model)]
        if broken:
            problem = f"{' and '.join(broken)} got NaN or inf weights"
            raise TrainingDivergedError(
                f"{problem} at step {state.step}: training diverged and stopped. {self.path} was not "
                "overwritten and keeps the last finite state. Try a lower learning rate (10 times lower is a "
                "good first try).",
                state.step,
                problem,
            )
        if rank != 0:
            return self.path
        return checkpoints.save_checkpoint(self.path, {
            "step": state.step, "G": state.G.state_dict(), "D": state.D.state_dict(),
            "opt_G": state.opt_G.state_dict(), "opt_D": state.opt_D.state_dict(),
            "history": history, "data_position": state.data_position, "data_seed": state.data_seed,
            "config": self.config, "world_size": world_size, "rng_per_rank": random_states,
            "extra": {name: module.state_dict() for name, module in self.extra_modules.items()},
        })  # fmt: skip


def _all_finite(model: nn.Module) -> bool:
    """Whether every floating-point parameter and buffer of ``model`` is finite (one host sync)."""
    tensors = [t for t in model.state_dict().values() if t.is_floating_point()]
    return not tensors or bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


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
    extra_modules: dict[str, nn.Module] | None = None,
) -> Resumed:
    """Load a `Checkpointer` file into the models and optimisers, restore every random generator, and
    return where the run stopped. Training on from there gives the same numbers as never stopping.

    ``extra_modules`` must name the same modules as the `Checkpointer` that wrote the file did."""
    state = checkpoints.load_checkpoint(path)
    rank, world_size = distributed.rank_and_world()
    saved_world = state.get("world_size", 1)
    if saved_world != world_size:
        raise ValueError(
            f"{path} was written by a run on {saved_world} process(es), and this one has {world_size}; the "
            f"data slices and random streams differ between the two, so resume with {saved_world} "
            f"process(es) in all (under torchrun, --nnodes times --nproc_per_node; without torchrun for 1), "
            f"or start a new run."
        )
    extra_modules, saved_extra = dict(extra_modules or {}), state.get("extra", {})
    if set(extra_modules) != set(saved_extra):
        raise ValueError(
            f"{path} holds the extra modules {sorted(saved_extra)} but resume was given "
            f"{sorted(extra_modules)}; resume with the recipe the run was started with."
        )
    for module, key in ((distributed.unwrap(G), "G"), (distributed.unwrap(D), "D")):
        try:
            module.load_state_dict(state[key])
        except RuntimeError as error:  # torch lists every mismatched tensor; the first says enough
            raise checkpoints.CheckpointError(
                f"the {key} saved in {path} does not fit this run's {type(module).__name__} "
                f"({checkpoints.first_mismatch(error)}); resume with the settings the run was started "
                "with, or start a new run in another folder."
            ) from None
    for optimiser, key in ((opt_G, "opt_G"), (opt_D, "opt_D")):
        # the file's param groups replace the optimiser's: keep how this run built it (capturable or
        # not, for CUDAGraphStep; fused or not) and take learning rates as floats (a recorded run
        # stores tensors)
        built = [
            {flag: group.get(flag) for flag in ("capturable", "fused")} for group in optimiser.param_groups
        ]
        optimiser.load_state_dict(state[key])
        for group, flags in zip(optimiser.param_groups, built, strict=True):
            group["lr"] = float(group["lr"])
            group.update({flag: value for flag, value in flags.items() if flag in group})
            if any(value is not None for value in flags.values()):  # capturable or fused: steps on the device
                on_device = bool(flags["capturable"] or flags["fused"])
                for parameter in group["params"]:
                    step = optimiser.state.get(parameter, {}).get("step")
                    if isinstance(step, torch.Tensor):
                        optimiser.state[parameter]["step"] = step.to(parameter.device if on_device else "cpu")
    for name, module in extra_modules.items():
        module.load_state_dict(saved_extra[name])
    checkpoints.restore_rng_state(state["rng_per_rank"][rank] if "rng_per_rank" in state else state["rng"])
    return Resumed(
        state["step"], state["history"], state["data_position"], state["data_seed"], state["config"]
    )


def _check_optimisers(
    G: nn.Module, D: nn.Module, opt_G: torch.optim.Optimizer, opt_D: torch.optim.Optimizer
) -> None:
    """Refuse optimisers that would update the other player's weights (e.g. opt_G and opt_D swapped)
    or none of their own (an optimiser of a copy)."""
    for name, optimiser in (("opt_G", opt_G), ("opt_D", opt_D)):
        if not isinstance(optimiser, torch.optim.Optimizer):
            raise TypeError(f"{name} must be a torch.optim.Optimizer, got {type(optimiser).__name__}.")
    for player, other_player, model, other_model in (("G", "D", G, D), ("D", "G", D, G)):
        name, optimiser = f"opt_{player}", opt_G if player == "G" else opt_D
        own, other = {id(p) for p in model.parameters()}, {id(p) for p in other_model.parameters()}
        trainable = {id(p) for p in model.parameters() if p.requires_grad}
        held = {id(p) for group in optimiser.param_groups for p in group["params"]}
        if held & (other - own):
            raise ValueError(
                f"{name} updates {other_player}'s parameters: the call is train(G, D, opt_G, opt_D, ...), "
                "with opt_G built on G.parameters() and opt_D on D.parameters()."
            )
        if trainable and not held & trainable:
            raise ValueError(
                f"{name} holds none of the parameters of the {player} being trained, so {player} would never "
                f"change; build it on {player}.parameters() of this {player} (not of a copy, and not before "
                "replacing the model)."
            )


def _check_first_batch(batch: torch.Tensor) -> None:
    """Refuse training data that would train silently on the wrong scale; run once, on the first batch.

    Image batches (4-D) must be floats in [-1, 1] (`check_image_range`), the range of the generators'
    tanh: pixels in [0, 255] or images in [0, 1] are refused with the fix. Other data (the 2-D toys,
    which span [-4.2, 4.2]) only has to be floating point. One host sync, once per `train` call.
    """
    if not isinstance(batch, torch.Tensor):
        raise TypeError(f"the data yields {type(batch).__name__}, not tensors; build it from torch tensors.")
    if batch.ndim == 4:
        check_image_range(batch, "the first batch of training images")
    elif not batch.is_floating_point():
        raise ValueError(
            f"the training data has dtype {batch.dtype}; convert it to floats first (x.float())."
        )


class _CountingStream:
    """Real batches with a count of how many were taken, so a checkpoint can record the position."""

    def __init__(
        self, batches: Iterator, position: int, n_classes: int | None = None, paired: bool = False
    ) -> None:
        self.batches = batches
        self.position = position
        self.keep_labels, self.n_classes = n_classes is not None, n_classes
        self.paired = paired  # pairs of image batches (chapter 9): both are checked and both passed on
        self.checked = False

    def __iter__(self):
        return self

    def __next__(self) -> torch.Tensor:
        batch = next(self.batches)
        self.position += 1
        images = batch[0] if isinstance(batch, tuple | list) else batch
        if self.paired:
            if not self.checked:
                for images_of_one_side in batch:
                    _check_first_batch(images_of_one_side)
                self.checked = True
            return batch
        if not self.checked:
            _check_first_batch(images)
            if self.keep_labels:  # once, on any device (a conditional model reads values on the CPU only)
                check_labels(batch[1].cpu(), len(images), self.n_classes)
            self.checked = True
        return (images, batch[1]) if self.keep_labels else images


def _say_at_once(text: str, queue: list[str]) -> None:
    """Print ``text`` to stderr from a signal handler, or queue it for the loop to print.

    A handler may run while the loop is in the middle of writing to stderr (the progress bar does
    that constantly), and a buffered stream refuses a re-entrant write. Writing to the file
    descriptor directly is safe; where stderr is not the real one (Jupyter, pytest), the message
    waits for the end of the step, which in a notebook is a fraction of a second.
    """
    if sys.stderr is not None and sys.stderr is sys.__stderr__:
        try:
            os.write(sys.stderr.fileno(), ("\n" + text + "\n").encode())
            return
        except (OSError, ValueError, AttributeError):
            pass
    queue.append(text)


def _print_queued(interrupt: dict) -> None:
    while interrupt["queue"]:
        print(interrupt["queue"].pop(0), file=sys.stderr, flush=True)


_STOP_SIGNALS = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}  # SIGTERM: `kill`, `timeout`, Slurm


@contextlib.contextmanager
def _stop_at_step_boundary(announcement: str):
    """Turn Ctrl-C (or a Jupyter kernel interrupt) and SIGTERM into a flag checked between steps.

    The first such signal prints its name and ``announcement`` at once (e.g. "Ctrl-C: stopping after
    this step, saving ...") and training stops after the current step, so a checkpoint never holds a
    half-updated pair of players. SIGTERM, which `kill`, `timeout` and job schedulers send, is
    treated like Ctrl-C, so a killed run keeps every finished step. Every later signal, until the
    block ends, is deferred with a message: the block includes the final save, and abandoning it
    would lose every step since the last checkpoint (an impatient second press used to do exactly
    that). Outside the main thread signals cannot be caught; then they act immediately, as usual.
    """
    interrupt: dict = {"stop": False, "signal": None, "queue": []}
    if threading.current_thread() is not threading.main_thread():
        yield interrupt
        return

    def handler(signum, frame):
        name = _STOP_SIGNALS.get(signum, f"signal {signum}")
        if interrupt["stop"]:
            _say_at_once(
                f"{name} again: still finishing the step and saving; please wait (ending the process now "
                "would lose every step since the last checkpoint).",
                interrupt["queue"],
            )
        else:
            interrupt["stop"], interrupt["signal"] = True, signum
            _say_at_once(f"{name}: {announcement}", interrupt["queue"])

    previous = {number: signal.signal(number, handler) for number in _STOP_SIGNALS}
    try:
        yield interrupt
    finally:
        for number, old_handler in previous.items():
            signal.signal(number, old_handler)
        _print_queued(interrupt)


def _explain_step_failure(error: RuntimeError, G: nn.Module) -> Exception | None:
    """A clearer error when a step fails on a shape because G cannot take z of its own ``latent_dim``.

    Runs only after a failure: G gets a batch of two zero codes in eval mode without gradients, so
    neither BatchNorm statistics nor any random generator change. None when G is not the culprit.
    """
    if not re.search(r"shape|size|channels", str(error)) or not hasattr(G, "latent_dim"):
        return None
    try:
        latent_dim = check_count(G.latent_dim, "G.latent_dim")
    except ValueError as bad_latent_dim:
        return bad_latent_dim
    try:
        with evaluating(G), torch.no_grad():
            G(torch.zeros(2, latent_dim, device=device_of(G)))
    except (RuntimeError, ValueError) as probe_error:
        reason = str(probe_error).splitlines()[0] if str(probe_error) else type(probe_error).__name__
        return ValueError(
            f"G cannot take z of shape [n, G.latent_dim] = [n, {latent_dim}] ({reason}); make G.latent_dim "
            "equal the input size of G's first layer."
        )
    return None


def _state_after_divergence(checkpointers: list[Checkpointer]) -> str:
    """What a diverged run leaves: the checkpoint before the failing step, or nothing good in memory."""
    if not checkpointers:
        return ("The models in memory now hold the diverged weights (possibly NaN) and are lost; to keep a "
                "good state, train with callbacks=[training.Checkpointer(path, every=N)].")  # fmt: skip
    path = checkpointers[0].path
    if path.exists():
        return f"{path} keeps the last checkpoint written before this step; the models in memory are lost."
    return (f"No checkpoint was written to {path} before this step (save more often with every=N); the "
            "models in memory hold the diverged weights.")  # fmt: skip


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
    log_every: int | None = None,
    data_seed: int | None = None,
    start: Resumed | None = None,
) -> dict[str, list[float]]:
    """Call ``step`` until step ``steps`` and return the history: one list of floats per metric, plus "step".

    Args:
        data: a `BatchIterator`. Batches come from its seeded stream (`BatchIterator.resumable`),
            shuffled anew each epoch. A tuple batch contributes its first tensor, and its second
            (the labels) too when G is conditional (chapter 8). An image-to-image G (chapter 9,
            ``G.paired_batches``) gets both tensors of each batch, both checked like images.
        step: ``step(G, D, opt_G, opt_D, real_batches) -> dict of scalar tensors``; `train_step` by
            default. Options go in with `functools.partial`, e.g.
            ``partial(train_step, loss="hinge", d_penalty=R1Penalty(1.0))``.
        callbacks: called with a `TrainState` after every step; `ProgressBar` is added when
            ``progress`` is true. A callback with a ``close(state)`` method has it called at the end.
        log_every: steps between conversions of the metrics to floats (one host sync each); the
            history still gets every step. None: every step on the CPU, where a sync costs nothing,
            and every `GPU_LOG_EVERY` steps on a GPU, where each sync stalls the queue of kernels.
            Callbacks that read ``state.metrics`` sync earlier.
        data_seed: seeds the data stream's shuffling; None uses the current torch seed, so
            `gan_utils.set_seed` fixes it too.
        start: from `resume`, to continue a checkpointed run up to ``steps``.

    Checks: opt_G and opt_D update only their own player (not swapped); the first real batch, once
    (`_check_first_batch`: image batches must be floats in [-1, 1]).
    A NaN or infinite metric, or a loss beyond `DIVERGENCE_BOUND`, raises `TrainingDivergedError`
    naming the step (`_Recorder.flush`). A step that fails because G cannot take z of its own
    ``latent_dim`` says so. ``steps`` below the step ``start`` reached is refused.

    Ctrl-C (or SIGTERM, e.g. from `kill`) prints at once that training stops after the current step,
    lets every callback close (a `Checkpointer` saves) while further signals wait, and returns the
    history so far; after a SIGTERM it then raises `TrainingTerminated`, which ends the process.
    """
    steps = check_count(steps, "steps")
    _check_optimisers(G, D, opt_G, opt_D)
    if log_every is None:
        log_every = 1 if device_of(G).type == "cpu" else GPU_LOG_EVERY
    log_every = check_count(log_every, "log_every")
    if not isinstance(data, BatchIterator):
        raise TypeError(
            f"data must be a gan_utils.data.BatchIterator (its stream is seeded and resumable), got "
            f"{type(data).__name__}; wrap tensors as BatchIterator(images, batch_size=...)."
        )
    if start is not None and start.step > steps:
        raise ValueError(
            f"the resumed run already finished step {start.step}, beyond steps={steps}; pass steps larger "
            f"than {start.step} to train on."
        )
    callbacks = [*callbacks, *([ProgressBar()] if progress else [])]
    checkpointers = [c for c in callbacks if isinstance(c, Checkpointer)]
    if start is None:
        done, history, position = 0, {"step": []}, 0
        data_seed = torch.initial_seed() % 2**63 if data_seed is None else data_seed
    else:
        done, history, position, data_seed = start.step, start.history, start.data_position, start.data_seed
    rank, world_size = distributed.rank_and_world()  # under torchrun each rank takes its own slice
    n_classes = distributed.unwrap(G).n_classes if is_conditional(distributed.unwrap(G)) else None
    if n_classes and len(data.tensors) < 2:
        raise ValueError(
            f"{type(distributed.unwrap(G)).__name__} is conditional: build the data with its labels, "
            "BatchIterator(images, labels, batch_size=...)."
        )
    paired = getattr(distributed.unwrap(G), "paired_batches", False)  # image-to-image (chapter 9)
    if paired and len(data.tensors) != 2:
        raise ValueError(
            f"{type(distributed.unwrap(G)).__name__} trains on pairs of image batches: build the data as "
            "BatchIterator(inputs, targets, batch_size=...) (or domain A and domain B images)."
        )
    stream = data.resumable(data_seed, position, rank, world_size)
    real_batches = _CountingStream(stream, position, n_classes, paired)
    recorder = _Recorder(history, functools.partial(_state_after_divergence, checkpointers))

    def state_at(step_number: int) -> TrainState:  # callbacks see the models, not their DDP wrappers
        return TrainState(step_number, steps, distributed.unwrap(G), distributed.unwrap(D), opt_G, opt_D,
                          real_batches.position, data_seed, recorder)  # fmt: skip

    for callback in callbacks:
        if isinstance(callback, StopAfter) and callback.step <= done:
            raise ValueError(
                f"StopAfter({callback.step}) is not after step {done}, where the resumed run starts; "
                "pass a later step."
            )
    G.train()
    D.train()
    state, requested = state_at(done), None
    saving = f"saving {checkpointers[0].path}" if checkpointers else "no Checkpointer, so nothing to save"
    with _stop_at_step_boundary(f"stopping after this step, {saving}...") as interrupt:
        for step_number in range(done + 1, steps + 1):
            try:
                recorder.add(step_number, step(G, D, opt_G, opt_D, real_batches))
            except RuntimeError as error:
                explained = _explain_step_failure(error, G)
                if explained is None:
                    raise
                raise explained from error
            state = state_at(step_number)
            if step_number % log_every == 0:
                recorder.flush()
            for callback in callbacks:  # every callback sees the step, even after one asks to stop
                try:
                    callback(state)
                except StopTraining as request:
                    requested = str(request)
            _print_queued(interrupt)
            # all ranks stop after the same step, whichever of them was interrupted or asked to stop
            if distributed.any_rank(interrupt["stop"] or requested is not None):
                interrupt["stop"] = True
                break
        recorder.flush()
        for callback in callbacks:
            if hasattr(callback, "close"):
                callback.close(state)
    if interrupt["stop"] and rank == 0:
        saved = f"; checkpoint saved to {checkpointers[0].path}" if checkpointers else ""
        reason = (
            f"Stopped after step {state.step}: {requested}"
            if requested
            else f"Interrupted after step {state.step}"
        )
        terminated = interrupt["signal"] == signal.SIGTERM
        ending = "The process ends, as SIGTERM asks" if terminated else "The history so far is returned"
        print(f"{reason}{saved}. {ending}.")
    if interrupt["signal"] == signal.SIGTERM:
        raise TrainingTerminated(state.step, history)
    return history
