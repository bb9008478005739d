"""Chapter 8's conditional GAN: the models' contract, the projection discriminator, labelled training."""

import functools
import math

import pytest
import torch

from gan_utils import data, models, recipes, runtime, semi_supervised, training


@pytest.fixture
def labelled_digits():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(160, 1, 28, 28, generator=generator) * 2 - 1
    return images, torch.arange(160) % 10


@pytest.mark.parametrize("conditioning", models.DISCRIMINATOR_CONDITIONINGS)
def test_conditional_models_follow_the_contract(conditioning):
    G = models.cdcgan_mnist_generator()
    D = models.cdcgan_mnist_discriminator(conditioning=conditioning)
    z, y = torch.randn(5, G.latent_dim), torch.tensor([0, 3, 9, 9, 1])
    images = G(z, y)
    assert images.shape == (5, 1, 28, 28) and images.abs().max() <= 1
    assert D(images, y).shape == (5,)
    assert models.is_conditional(G) and models.is_conditional(D) and G.n_classes == D.n_classes == 10
    assert not models.is_conditional(models.dcgan_mnist_generator())
    rebuilt = models.ConditionalDCGANGenerator(**G.config)
    rebuilt.load_state_dict(G.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(z, y), G.eval()(z, y))


def test_the_label_changes_the_image_but_not_the_rest():
    G = models.cdcgan_mnist_generator().eval()
    z = torch.randn(1, G.latent_dim).expand(2, -1)
    with torch.no_grad():
        two = G(z, torch.tensor([2, 7]))
    assert not torch.allclose(two[0], two[1])


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (None, "pass class labels too"),
        (torch.zeros(4), "integer tensor"),
        (torch.zeros(4, 10, dtype=torch.long), r"shape \[4\]"),
        (torch.tensor([0, 1, 2, 10]), r"0\.\.9"),
        (torch.tensor([0, -1, 2, 3]), r"0\.\.9"),
    ],
)
def test_bad_labels_are_refused_with_the_fix(labels, message):
    G = models.cdcgan_mnist_generator()
    D = models.cdcgan_mnist_discriminator()
    with pytest.raises(ValueError, match=message):
        G(torch.randn(4, G.latent_dim), labels)
    with pytest.raises(ValueError, match=message):
        D(torch.zeros(4, 1, 28, 28), labels)


class FixedFeatures(torch.nn.Module):
    def __init__(self, phi: torch.Tensor) -> None:
        super().__init__()
        self.phi = phi

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.phi


def test_projection_discriminator_equals_a_hand_computation():
    D = models.ConditionalDCGANDiscriminator(width=1, conditioning="projection")
    # phi: sample 0 all ones, sample 1 all twos; head: sum of phi; e(0) = 0.5, e(1) = -1 everywhere
    phi = torch.stack([torch.ones(2, 7, 7), 2 * torch.ones(2, 7, 7)])
    D.features = FixedFeatures(phi)
    with torch.no_grad():
        D.head.weight.fill_(1.0)
        D.head.bias.zero_()
        D.embedding.weight[0].fill_(0.5)
        D.embedding.weight[1].fill_(-1.0)
    logits = D(torch.zeros(2, 1, 28, 28), torch.tensor([0, 1]))
    # 98 features: 98 * 1 + 0.5 * 98 * 1 = 147;  98 * 2 - 1 * 98 * 2 = 0
    assert logits.tolist() == pytest.approx([147.0, 0.0])


def test_projection_discriminator_starts_unconditional():
    D = models.cdcgan_mnist_discriminator(conditioning="projection").eval()
    x = torch.randn(3, 1, 28, 28).clamp(-1, 1)
    with torch.no_grad():
        assert torch.equal(D(x, torch.tensor([0, 0, 0])), D(x, torch.tensor([4, 5, 6])))


def test_concat_discriminator_sees_one_hot_planes():
    D = models.cdcgan_mnist_discriminator(conditioning="concat").eval()
    assert D.features[0].in_channels == 1 + 10
    x = torch.randn(2, 1, 28, 28).clamp(-1, 1)
    with torch.no_grad():
        assert not torch.allclose(D(x, torch.tensor([0, 0])), D(x, torch.tensor([1, 1])))


@pytest.mark.parametrize("penalty", [training.R1Penalty(1.0), None])
def test_train_step_feeds_each_batch_with_its_labels(penalty):
    labels = torch.arange(160) % 10
    images = (labels / 10 - 0.9).view(-1, 1, 1, 1).expand(-1, 1, 28, 28).clone()  # pixels hold the label
    G, D = models.cdcgan_mnist_generator(), models.cdcgan_mnist_discriminator()
    d_calls, g_labels = [], []
    d_forward, g_forward = D.forward, G.forward

    def d_spy(x, y=None):
        d_calls.append((x.detach().clone(), y))
        return d_forward(x, y)

    def g_spy(z, y=None):
        g_labels.append(y)
        return g_forward(z, y)

    D.forward, G.forward = d_spy, g_spy
    opt_G, opt_D = torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters())
    batches = data.BatchIterator(images, labels, batch_size=32, drop_last=True)  # shuffles pairs together
    step = functools.partial(training.train_step, d_penalty=penalty)
    history = training.train(G, D, opt_G, opt_D, batches, 2, step, progress=False)
    assert history["step"] == [1, 2] and all(math.isfinite(v) for v in history["loss_D"])

    def label_in_pixels(x):
        return ((x[:, 0, 0, 0] + 0.9) * 10).round().long()

    def is_real(x):  # constant images at one of the ten label values
        return torch.equal(x, x[:, :, :1, :1].expand_as(x)) and torch.allclose(
            x[:, 0, 0, 0], label_in_pixels(x) / 10 - 0.9
        )

    real_calls = [(x, y) for x, y in d_calls if is_real(x)]
    assert len(real_calls) == 2 * (2 if penalty else 1)  # D(x_real), and R1's pass on the real batch
    for x, y in real_calls:  # the labels are this batch's own, not another batch's or all zeros
        assert torch.equal(y, label_in_pixels(x))
    per_step = len(d_calls) // 2
    for number in range(2):  # G drew its fakes, and D scored them, with the real batch's labels
        calls = d_calls[number * per_step : (number + 1) * per_step]
        real_y = next(y for x, y in calls if is_real(x))
        assert all(torch.equal(y, real_y) for _, y in calls)
        assert sum(torch.equal(y, real_y) for y in g_labels) == 2, len(g_labels)  # D's fakes, then G's
    assert len(set(tuple(y.tolist()) for _, y in real_calls)) == 2  # two batches, two label orders


def test_a_conditional_generator_needs_labelled_data(labelled_digits):
    images, _ = labelled_digits
    G, D = models.cdcgan_mnist_generator(), models.cdcgan_mnist_discriminator()
    opt_G, opt_D = torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters())
    with pytest.raises(ValueError, match=r"BatchIterator\(images, labels"):
        training.train(G, D, opt_G, opt_D, data.BatchIterator(images, batch_size=32), 1, progress=False)


def test_an_unconditional_gan_ignores_labels_in_the_data(labelled_digits):
    images, labels = labelled_digits
    G, D = models.dcgan_mnist_generator(), models.dcgan_mnist_discriminator()
    opt_G, opt_D = torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters())
    batches = data.BatchIterator(images, labels, batch_size=32, drop_last=True)
    assert training.train(G, D, opt_G, opt_D, batches, 1, progress=False)["step"] == [1]


def test_sample_draws_every_class_in_turn_or_the_labels_asked_for():
    G = models.cdcgan_mnist_generator().train()
    z = torch.randn(20, G.latent_dim)
    with torch.no_grad():
        in_turn, sevens = G.eval()(z, torch.arange(20) % 10), G(z, torch.full((20,), 7))
    G.train()
    assert torch.equal(runtime.sample(G, z), in_turn)
    assert torch.equal(runtime.sample(G, z, labels=torch.full((20,), 7), batch_size=7), sevens)
    assert not torch.allclose(in_turn, sevens) and G.training


def test_cdcgan_recipe_trains_on_labelled_batches(labelled_digits):
    images, labels = labelled_digits
    recipe = recipes.preset("cdcgan-mnist", steps=2, batch_size=16, ema_decay=None, held_out_per_class=0)
    batches = recipe.batches(images, labels)
    assert len(batches.tensors) == 2
    run = recipes.train_recipe(recipe, images, seed=0, labels=labels)
    assert models.is_conditional(run.G) and run.history["step"] == [1, 2]
    with pytest.raises(ValueError, match="pass the labels too"):
        recipe.batches(images)
    with pytest.raises(ValueError, match="model='cdcgan'"):
        recipes.preset("dcgan-mnist", conditioning="concat")
    with pytest.raises(ValueError, match="unknown conditioning"):
        recipes.preset("cdcgan-mnist", conditioning="sideways")


def test_an_ema_of_a_conditional_generator_recomputes_its_batchnorm_with_labels(labelled_digits):
    images, labels = labelled_digits
    recipe = recipes.preset("cdcgan-mnist", steps=2, batch_size=16, held_out_per_class=0)
    run = recipes.train_recipe(recipe, images, seed=0, labels=labels)
    assert run.G is not run.G_trained and models.is_conditional(run.G)  # the averaged generator
    running_means = [m.running_mean for m in run.G.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert running_means and all(torch.isfinite(m).all() and m.abs().sum() > 0 for m in running_means)


def test_k_plus_one_losses_match_the_formula_on_hand_computed_logits():
    # K = 2. Unlabelled logits (0, 0): Z = 2, 1 - p(fake) = 2/3. Fake logits (0, log 2): Z = 3,
    # p(fake) = 1/4. Labelled logits (0, log 3) with label 1: p(1 | x, real) = 3/4.
    supervised, unsupervised = semi_supervised.k_plus_one_losses(
        torch.tensor([[0.0, math.log(3)]]),
        torch.tensor([1]),
        torch.tensor([[0.0, 0.0]]),
        torch.tensor([[0.0, math.log(2)]]),
    )
    assert supervised.item() == pytest.approx(-math.log(3 / 4))
    assert unsupervised.item() == pytest.approx(-math.log(2 / 3) - math.log(1 / 4))
    assert semi_supervised.probability_real(torch.tensor([[0.0, 0.0]])).item() == pytest.approx(2 / 3)


def test_feature_matching_is_the_squared_distance_of_the_means():
    real = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # mean (2, 3)
    fake = torch.tensor([[0.0, 0.0], [2.0, 2.0]])  # mean (1, 1)
    assert semi_supervised.feature_matching_loss(real, fake).item() == pytest.approx(1 + 4)


def test_label_split_keeps_the_held_out_digits_apart():
    labels = torch.arange(1000) % 10
    split = semi_supervised.label_split(labels, labelled_per_class=3, held_out_per_class=20, seed=1)
    assert torch.bincount(labels[split.labelled], minlength=10).tolist() == [3] * 10
    parts = [set(split.labelled.tolist()), set(split.unlabelled.tolist()), set(split.held_out.tolist())]
    assert sum(map(len, parts)) == 1000 and len(set.union(*parts)) == 1000
    other_seed = semi_supervised.label_split(labels, labelled_per_class=3, held_out_per_class=20, seed=2)
    assert torch.equal(split.held_out, other_seed.held_out)
    assert not torch.equal(split.labelled, other_seed.labelled)


def test_semi_supervised_training_learns_from_a_few_labels():
    # Two well-separated "digits" (left half lit vs right half lit): 2 labels each are enough.
    images = -torch.ones(40, 1, 28, 28)
    labels = torch.arange(40) % 2
    images[labels == 0, :, :, :14] = 1
    images[labels == 1, :, :, 14:] = 1
    run = semi_supervised.train_semi_supervised(
        images[:4], labels[:4], images[4:], steps=30, batch_size=8, max_shift=0, seed=0
    )
    assert semi_supervised.held_out_accuracy(run, images[4:], labels[4:]) == 1.0
    assert run.generator is not None and len(run.history["unsupervised"]) == 30


def test_conditional_entropy_matches_the_formula_by_hand():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])  # p = (1/2, 1/2) and (3/4, 1/4)
    by_hand = (math.log(2) + -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))) / 2
    assert semi_supervised.conditional_entropy(logits).item() == pytest.approx(by_hand, rel=1e-6)
    assert semi_supervised.conditional_entropy(torch.tensor([[50.0, 0.0, 0.0]])).item() < 1e-12


def test_entropy_minimisation_without_a_gan_and_its_misuse():
    images = -torch.ones(40, 1, 28, 28)
    labels = torch.arange(40) % 2
    images[labels == 0, :, :, :14] = 1
    images[labels == 1, :, :, 14:] = 1
    train = semi_supervised.train_semi_supervised
    settings = dict(steps=30, batch_size=8, max_shift=2, seed=0)
    run = train(images[:4], labels[:4], images[4:], gan=False, entropy_weight=1.0, **settings)
    baseline = train(images[:4], labels[:4], None, **settings)
    assert run.generator is None and run.history["unsupervised"] == []
    assert semi_supervised.held_out_accuracy(run, images[4:], labels[4:]) == 1.0
    with torch.no_grad():  # the term does its job: far more confident on the unlabelled digits
        entropy = {name: semi_supervised.conditional_entropy(r.classifier(images[4:])).item()
                   for name, r in (("with the term", run), ("labels alone", baseline))}  # fmt: skip
    assert entropy["with the term"] < entropy["labels alone"] / 5, entropy
    shifted = train(images[:4], labels[:4], images[4:], gan=False, entropy_weight=1.0, shift_unlabelled=True,
                    **settings)  # fmt: skip
    assert shifted.history["supervised"] != run.history["supervised"]  # the unlabelled shifts draw too
    with pytest.raises(ValueError, match="give entropy_weight > 0"):
        train(images[:4], labels[:4], images[4:], steps=1, gan=False)
    with pytest.raises(ValueError, match="pass unlabelled_images"):
        train(images[:4], labels[:4], None, steps=1, entropy_weight=1.0)
    with pytest.raises(ValueError, match="entropy_weight must be 0 or more"):
        train(images[:4], labels[:4], images[4:], steps=1, entropy_weight=-1.0)


def test_spectral_projection_discriminator_starts_finite():
    D = models.cdcgan_mnist_discriminator(conditioning="projection", norm="spectral")
    logits = D(torch.zeros(3, 1, 28, 28), torch.tensor([0, 1, 2]))
    assert torch.isfinite(logits).all()


def test_training_checks_the_labels_of_the_first_batch(labelled_digits):
    images, labels = labelled_digits
    G, D = models.cdcgan_mnist_generator(), models.cdcgan_mnist_discriminator()
    opt_G, opt_D = torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters())
    batches = data.BatchIterator(images, labels + 5, batch_size=32, drop_last=True)  # up to 14
    with pytest.raises(ValueError, match=r"0\.\.9"):
        training.train(G, D, opt_G, opt_D, batches, 1, progress=False)


def test_sampling_an_unconditional_generator_with_labels_is_refused():
    with pytest.raises(ValueError, match="not conditional"):
        runtime.sample(models.dcgan_mnist_generator(), torch.randn(2, 64), labels=torch.tensor([0, 1]))
