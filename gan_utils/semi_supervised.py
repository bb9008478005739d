"""Semi-supervised classification with a GAN: a discriminator that is also the classifier.

Salimans et al. (2016, sec. 5) give the discriminator K + 1 outputs, the K classes and "fake". With
logits l_1..l_K for the classes and the fake logit fixed at 0 (the softmax does not change when every
logit moves by the same amount), p(fake | x) = 1 / (Z(x) + 1) with Z(x) = sum_k exp(l_k(x)), so

    L_supervised   = -E_{(x, y) labelled} log p(y | x, y < K + 1)          (cross-entropy on l)
    L_unsupervised = -E_{x unlabelled} log(1 - p(fake | x)) - E_z log p(fake | G(z))
                   = -E_x [LSE(l(x)) - softplus(LSE(l(x)))] + E_z softplus(LSE(l(G(z))))

where LSE is log-sum-exp (their section 5). The unlabelled digits teach the network
what digits look like; the labelled ones which is which. G is trained by feature matching (their
section 3.1), ||E_x f(x) - E_z f(G(z))||^2 on D's last hidden layer, which they found best for this task.

Salimans et al.'s MNIST discriminator is a permutation-invariant MLP (784-1000-500-250-250-250-10 with
Gaussian noise and weight normalisation), trained for 300 epochs of 60,000 digits. That budget is far
beyond a chapter's CPU minutes, so chapter 8 uses a small convolutional discriminator with dropout
(`SemiSupervisedDiscriminator`) and chapter 4's generator, and compares it with the same network trained
on the labels alone. Their code also weights the unsupervised loss by 1/2; we use the paper's sum.
Chapter 8 trains both on 100 labelled bundled digits.

Dai et al. (2017) add a conditional-entropy term on unlabelled images to D's loss
(`conditional_entropy`, in their SVHN runs, with weight 0.1); chapter 8's best row uses it with
weight 1 and, our choice, the unlabelled digits shifted like the labelled ones, and measures the
same term without the GAN so that the GAN's own share shows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gan_utils import models
from gan_utils.classifier import accuracy, random_shift, stratified_split
from gan_utils.runtime import check_count, set_seed

N_CLASSES = 10


def k_plus_one_losses(
    labelled_logits: torch.Tensor,
    labels: torch.Tensor,
    unlabelled_logits: torch.Tensor,
    fake_logits: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Salimans et al.'s (L_supervised, L_unsupervised) from the K class logits of three batches."""
    return F.cross_entropy(labelled_logits, labels), unsupervised_loss(unlabelled_logits, fake_logits)


def unsupervised_loss(unlabelled_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-E_x log(1 - p(fake | x)) - E_z log p(fake | G(z)), from the K class logits of each batch."""
    lse_real = torch.logsumexp(unlabelled_logits, dim=1)  # log Z(x)
    lse_fake = torch.logsumexp(fake_logits, dim=1)
    return -(lse_real - F.softplus(lse_real)).mean() + F.softplus(lse_fake).mean()


def conditional_entropy(logits: torch.Tensor) -> torch.Tensor:
    """-E_x sum_k p(k | x) log p(k | x) over the K classes: the conditional-entropy term that Dai et al.
    (2017) add to the discriminator's loss on unlabelled images in their SVHN runs (weight 0.1 in their
    code; their MNIST discriminator has no such term, and a PixelCNN term in G's loss pushes G's
    samples into low-density regions instead). Low entropy asks for a confident class on every
    unlabelled image, which pushes the class boundaries away from where the unlabelled data lie."""
    log_p = F.log_softmax(logits, dim=1)
    return -(log_p.exp() * log_p).sum(dim=1).mean()


def probability_real(logits: torch.Tensor) -> torch.Tensor:
    """1 - p(fake | x) = Z(x) / (Z(x) + 1): how real the K+1-class discriminator finds each sample."""
    return torch.sigmoid(torch.logsumexp(logits, dim=1))


def feature_matching_loss(real_features: torch.Tensor, fake_features: torch.Tensor) -> torch.Tensor:
    """||E f(x) - E f(G(z))||^2 over a batch of each (Salimans et al., 2016, section 3.1)."""
    return (real_features.mean(dim=0) - fake_features.mean(dim=0)).pow(2).sum()


class SemiSupervisedDiscriminator(nn.Module):
    """images [n, 1, 28, 28] -> K class logits [n, K]; ``features`` gives the pooled last hidden layer.

    Chapter 4's discriminator layout (two 4x4 convolutions of stride 2, LeakyReLU 0.2, no BatchNorm:
    batch statistics would mix labelled, unlabelled and generated batches), then a 3x3 convolution,
    global average pooling and a linear head with dropout, as in Salimans et al.'s convolutional
    discriminators for CIFAR-10 and SVHN. On MNIST they used a permutation-invariant MLP, which
    learns much more slowly on a CPU budget.
    """

    def __init__(self, width: int = 32, n_classes: int = N_CLASSES, dropout: float = 0.5) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 4, 2, 1), nn.LeakyReLU(0.2),  # 14 x 14
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2),  # 7 x 7
            nn.Dropout(dropout / 2),
            nn.Conv2d(2 * width, 4 * width, 3, 1, 0), nn.LeakyReLU(0.2),  # 5 x 5
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),  # [n, 4w]
        )  # fmt: skip
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(4 * width, n_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


@dataclass(frozen=True)
class LabelSplit:
    """Indices into the bundled digits: a few labelled ones, the unlabelled rest, and a held-out test set."""

    labelled: torch.Tensor
    unlabelled: torch.Tensor
    held_out: torch.Tensor


def label_split(labels: torch.Tensor, labelled_per_class: int = 10, held_out_per_class: int = 100,
                seed: int = 0) -> LabelSplit:  # fmt: skip
    """``labelled_per_class`` labelled digits of each class (chosen by ``seed``), the rest of the training
    digits unlabelled, and the held-out set of `classifier.stratified_split(labels, held_out_per_class,
    seed=0)`: the digits chapter 6's and 8's shipped generators never trained on, whatever ``seed``."""
    labelled_per_class = check_count(labelled_per_class, "labelled_per_class")
    train, held_out = stratified_split(labels, held_out_per_class, seed=0)
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for digit in range(N_CLASSES):
        members = train[labels[train] == digit]
        if len(members) < labelled_per_class:
            raise ValueError(
                f"digit {digit} has {len(members)} training images, fewer than {labelled_per_class}."
            )
        chosen.append(members[torch.randperm(len(members), generator=generator)[:labelled_per_class]])
    labelled = torch.cat(chosen)
    unlabelled = train[~torch.isin(train, labelled)]
    return LabelSplit(labelled, unlabelled, held_out)


@dataclass
class SemiSupervisedRun:
    """What `train_semi_supervised` returns: the classifier, G (None without the GAN), history, time."""

    classifier: SemiSupervisedDiscriminator
    generator: nn.Module | None
    history: dict[str, list[float]]
    seconds: float


def train_semi_supervised(
    labelled_images: torch.Tensor,
    labels: torch.Tensor,
    unlabelled_images: torch.Tensor | None,
    steps: int = 3000,
    batch_size: int = 100,
    lr: float = 3e-3,
    max_shift: int = 2,
    extra_images: torch.Tensor | None = None,
    extra_labels: torch.Tensor | None = None,
    seed: int = 0,
    held_out: tuple[torch.Tensor, torch.Tensor] | None = None,
    evaluate_every: int = 250,
    gan: bool = True,
    entropy_weight: float = 0.0,
    shift_unlabelled: bool = False,
) -> SemiSupervisedRun:
    """Train `SemiSupervisedDiscriminator` for ``steps`` Adam steps (lr falling linearly to 0, beta1 0.5).

    With ``unlabelled_images``, each step adds Salimans et al.'s unsupervised loss on a batch of them
    and a batch of G's samples, and updates G by feature matching; ``entropy_weight`` adds that weight
    times Dai et al.'s `conditional_entropy` of the unlabelled batch, ``shift_unlabelled`` shifts the
    unlabelled digits as the labelled ones are shifted, and ``gan=False`` leaves G out (entropy
    minimisation alone, the ablation that tells what the GAN adds). Without ``unlabelled_images``
    it is the supervised baseline: the same network, augmentation (random shifts of up to
    ``max_shift`` pixels), batches and steps, on the labelled digits alone.
    ``extra_images``/``extra_labels`` join the labelled set (chapter 8 adds a conditional GAN's
    samples there). With ``held_out`` = (images, labels), the history records the accuracy on them
    every ``evaluate_every`` steps (``held_out_accuracy``).
    """
    steps, batch_size = check_count(steps, "steps"), check_count(batch_size, "batch_size")
    if not entropy_weight >= 0:
        raise ValueError(f"entropy_weight must be 0 or more, got {entropy_weight}.")
    if unlabelled_images is not None and not gan and not entropy_weight:
        raise ValueError(
            "with gan=False only the entropy term uses the unlabelled digits: give entropy_weight > 0, "
            "or pass unlabelled_images=None for the supervised baseline."
        )
    if unlabelled_images is None and (entropy_weight or shift_unlabelled):
        raise ValueError(
            "entropy_weight and shift_unlabelled act on unlabelled digits; pass unlabelled_images."
        )
    set_seed(seed)
    if extra_images is not None:
        labelled_images, labels = (
            torch.cat([labelled_images, extra_images]),
            torch.cat([labels, extra_labels]),
        )
    D = SemiSupervisedDiscriminator()
    G = models.dcgan_mnist_generator() if unlabelled_images is not None and gan else None
    opt_D = torch.optim.Adam(D.parameters(), lr=lr, betas=(0.5, 0.999))
    optimisers = [opt_D]
    if G is not None:
        opt_G = torch.optim.Adam(G.parameters(), lr=lr, betas=(0.5, 0.999))
        optimisers.append(opt_G)
    schedules = [torch.optim.lr_scheduler.LambdaLR(o, lambda s: 1 - s / steps) for o in optimisers]
    shifts = torch.Generator().manual_seed(torch.initial_seed())  # seed, plus any GAN_BOOK_SEED_OFFSET
    history: dict[str, list[float]] = {"supervised": [], "unsupervised": [], "held_out_accuracy": []}
    start = time.perf_counter()
    for _ in range(steps):
        pick = torch.randint(len(labelled_images), (batch_size,))
        x = random_shift(labelled_images[pick], max_shift, shifts)
        supervised = F.cross_entropy(D(x), labels[pick])
        loss = supervised
        if unlabelled_images is not None:
            x_unlabelled = unlabelled_images[torch.randint(len(unlabelled_images), (batch_size,))]
            if shift_unlabelled:
                x_unlabelled = random_shift(x_unlabelled, max_shift, shifts)
            unlabelled_logits = D(x_unlabelled)
            if entropy_weight:
                loss = loss + entropy_weight * conditional_entropy(unlabelled_logits)
        if G is not None:
            x_fake = G(torch.randn(batch_size, G.latent_dim))
            unsupervised = unsupervised_loss(unlabelled_logits, D(x_fake.detach()))
            loss = loss + unsupervised
            history["unsupervised"].append(unsupervised.item())
        opt_D.zero_grad(set_to_none=True)
        loss.backward()
        opt_D.step()
        if G is not None:
            fake_features = D.features(G(torch.randn(batch_size, G.latent_dim)))
            with torch.no_grad():
                real_features = D.features(x_unlabelled)
            loss_G = feature_matching_loss(real_features, fake_features)
            opt_G.zero_grad(set_to_none=True)
            loss_G.backward()
            opt_G.step()
        for schedule in schedules:
            schedule.step()
        history["supervised"].append(supervised.item())
        if held_out is not None and (len(history["supervised"]) % evaluate_every == 0):
            with torch.no_grad():
                history["held_out_accuracy"].append(accuracy(D, *held_out))
            D.train()
    return SemiSupervisedRun(
        D.eval(), G.eval() if G is not None else None, history, time.perf_counter() - start
    )


def held_out_accuracy(run: SemiSupervisedRun, images: torch.Tensor, labels: torch.Tensor) -> float:
    """The trained classifier's accuracy on held-out digits (its K class logits; "fake" is ignored)."""
    with torch.no_grad():
        return accuracy(run.classifier, images, labels)
