import copy

import pytest
import torch

from gan_utils import data, models, training


def tiny_gan(seed=0, lr=0.05):
    torch.manual_seed(seed)
    G = models.MLPGenerator(2, (2,), hidden=(16,))
    D = models.MLPDiscriminator((2,), hidden=(16,))
    return G, D, torch.optim.SGD(G.parameters(), lr=lr), torch.optim.SGD(D.parameters(), lr=lr)


def grid_batches(batch_size=64, seed=0):
    samples = data.grid().sample(512, generator=torch.Generator().manual_seed(seed))
    return data.BatchIterator(samples, batch_size=batch_size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("loss", ["non-saturating", "saturating", "hinge", "wasserstein"])
def test_one_step_moves_each_players_loss_in_the_right_direction(loss):
    G, D, opt_G, opt_D = tiny_gan()
    loss_D_fn, loss_G_fn = training.get_losses(loss)
    x_real = data.grid().sample(256, generator=torch.Generator().manual_seed(1))
    z = torch.randn(256, 2, generator=torch.Generator().manual_seed(2))
    G_before, D_before = copy.deepcopy(G), copy.deepcopy(D)

    training.train_step(G, D, opt_G, opt_D, iter([x_real]), loss=loss)

    with torch.no_grad():
        # D moved first, against the old G: its loss on the same real batch must fall
        assert loss_D_fn(D(x_real), D(G_before(z))) < loss_D_fn(D_before(x_real), D_before(G_before(z)))
        # then G moved against the new D: its loss must fall
        assert loss_G_fn(D(G(z))) < loss_G_fn(D(G_before(z)))


def test_step_reports_hand_computed_values_for_an_undecided_discriminator():
    """D's last layer zeroed: every logit is 0, so D says 1/2 everywhere and the losses are logs of 2."""
    G, D, _, _ = tiny_gan()
    with torch.no_grad():
        D.net[-1].weight.zero_()
        D.net[-1].bias.zero_()
    frozen = [torch.optim.SGD(model.parameters(), lr=0.0) for model in (G, D)]
    metrics = training.train_step(
        G, D, *frozen, grid_batches().endless(), d_penalty=training.R1Penalty(1.0)
    )  # fmt: skip
    assert all(value.ndim == 0 and not value.requires_grad for value in metrics.values())  # tensors, no sync
    metrics = {name: value.item() for name, value in metrics.items()}
    log2 = torch.log(torch.tensor(2.0)).item()
    assert metrics["D(x)"] == pytest.approx(0.5) and metrics["D(G(z))"] == pytest.approx(0.5)
    assert metrics["D(G(z)) at G step"] == pytest.approx(0.5)
    assert metrics["loss_D"] == pytest.approx(2 * log2)  # -log(1/2) - log(1 - 1/2)
    assert metrics["loss_G"] == pytest.approx(log2)  # non-saturating: -log(1/2)
    assert metrics["penalty"] == pytest.approx(0.0)  # D is constant in x, so its gradient is 0


def test_k_discriminator_steps_consume_k_real_batches():
    G, D, opt_G, opt_D = tiny_gan()
    batches = iter([torch.zeros(8, 2) + i for i in range(5)])
    training.train_step(G, D, opt_G, opt_D, batches, d_steps=3)
    assert next(batches)[0, 0].item() == 3.0


def test_training_is_deterministic_for_a_fixed_seed_on_cpu():
    def run():
        G, D, opt_G, opt_D = tiny_gan(seed=3)
        torch.manual_seed(3)
        history = training.train(G, D, opt_G, opt_D, grid_batches(), steps=25, progress=False)
        return history, [p.detach().clone() for p in G.parameters()]

    (history_a, params_a), (history_b, params_b) = run(), run()
    assert history_a == history_b
    assert all(torch.equal(a, b) for a, b in zip(params_a, params_b, strict=True))


def test_history_has_one_entry_per_step_and_callbacks_see_every_step():
    G, D, opt_G, opt_D = tiny_gan()
    seen = []
    history = training.train(G, D, opt_G, opt_D, grid_batches(), steps=7, progress=False,
                             callbacks=[lambda state: seen.append(state.step)])  # fmt: skip
    assert history["step"] == list(range(1, 8)) and seen == list(range(1, 8))
    assert len(history["loss_D"]) == 7


def test_step_rejects_a_batch_that_does_not_fit_d_with_a_clear_error():
    G, D, opt_G, opt_D = tiny_gan()
    with pytest.raises(ValueError, match=r"shape \(3,\) but G makes samples of shape \(2,\)"):
        training.train_step(G, D, opt_G, opt_D, iter([torch.zeros(8, 3)]))


def test_unknown_loss_name_lists_the_choices():
    G, D, opt_G, opt_D = tiny_gan()
    with pytest.raises(ValueError, match="'non-saturating', 'saturating', 'hinge', 'wasserstein'"):
        training.train_step(G, D, opt_G, opt_D, grid_batches().endless(), loss="minmax")
    with pytest.raises(TypeError, match="a pair of functions"):
        training.train_step(G, D, opt_G, opt_D, grid_batches().endless(), loss=torch.nn.BCELoss())


def test_step_takes_a_custom_pair_of_loss_functions():
    """A least-squares GAN (Mao et al., 2017) plugged in as two functions of logits."""
    G, D, opt_G, opt_D = tiny_gan()
    with torch.no_grad():
        D.net[-1].weight.zero_()
        D.net[-1].bias.fill_(0.5)  # every logit is 0.5

    def least_squares_d(real_logits, fake_logits):
        return 0.5 * ((real_logits - 1) ** 2).mean() + 0.5 * (fake_logits**2).mean()

    def least_squares_g(fake_logits):
        return 0.5 * ((fake_logits - 1) ** 2).mean()

    frozen = [torch.optim.SGD(model.parameters(), lr=0.0) for model in (G, D)]
    metrics = training.train_step(
        G, D, *frozen, grid_batches().endless(), loss=(least_squares_d, least_squares_g)
    )
    assert metrics["loss_D"].item() == pytest.approx(0.25)  # 0.5 * 0.25 + 0.5 * 0.25
    assert metrics["loss_G"].item() == pytest.approx(0.125)  # 0.5 * 0.25


def test_train_refuses_data_that_is_not_a_batch_iterator():
    G, D, opt_G, opt_D = tiny_gan()
    with pytest.raises(TypeError, match=r"wrap tensors as BatchIterator\(images, batch_size=...\)"):
        training.train(G, D, opt_G, opt_D, [torch.randn(16, 2)], steps=1, progress=False)


@pytest.mark.parametrize("log_every", [1, 5])
def test_nan_in_the_data_stops_training_naming_the_step_whatever_the_logging_interval(log_every):
    G, D, opt_G, opt_D = tiny_gan()
    samples = torch.randn(64, 2)
    samples[48:] = float("nan")  # the fourth batch of the first epoch (no shuffling)
    batches = data.BatchIterator(samples, batch_size=16, shuffle=False)
    message = r"at step 4: training diverged.*in memory.*lower learning rate"
    with pytest.raises(training.TrainingDivergedError, match=message):
        training.train(G, D, opt_G, opt_D, batches, steps=6, progress=False, log_every=log_every)


def test_history_is_the_same_whatever_the_logging_interval():
    histories = []
    for log_every in (1, 4):
        G, D, opt_G, opt_D = tiny_gan(seed=3)
        torch.manual_seed(3)
        histories.append(training.train(G, D, opt_G, opt_D, grid_batches(), steps=10, progress=False,
                                        log_every=log_every))  # fmt: skip
    assert histories[0] == histories[1] and len(histories[0]["loss_D"]) == 10


def test_lr_decay_reaches_zero_at_the_last_step():
    G, D, opt_G, opt_D = tiny_gan(lr=0.1)
    decay = training.LinearLearningRateDecay([opt_G, opt_D], total_steps=10)
    training.train(G, D, opt_G, opt_D, grid_batches(), steps=10, callbacks=[decay], progress=False)
    assert opt_G.param_groups[0]["lr"] == 0.0 and opt_D.param_groups[0]["lr"] == 0.0


def test_r1_penalty_piece_matches_the_loss_function_on_a_linear_d():
    D = torch.nn.Linear(2, 1)
    with torch.no_grad():
        D.weight.copy_(torch.tensor([[3.0, 4.0]]))

    def critic(x):
        return D(x).view(-1)

    penalty = training.R1Penalty(gamma=2.0)(critic, torch.randn(10, 2), torch.randn(10, 2))
    assert abs(penalty.item() - 25.0) < 1e-4  # (gamma / 2) * ||w||^2 = 1 * 25


def test_r1_penalty_piece_takes_the_gradient_on_the_real_batch_only():
    def squared_norm(x, *labels):  # D(x) = ||x||^2, so grad_x D = 2x and R1 = (gamma / 2) E||2x||^2
        return x.pow(2).sum(1)

    x_real, x_fake = torch.full((4, 2), 1.0), torch.full((4, 2), 3.0)
    penalty = training.R1Penalty(gamma=2.0)(squared_norm, x_real, x_fake)
    assert penalty.item() == pytest.approx(8.0, rel=1e-6)  # 1 * ||(2, 2)||^2; on x_fake it would be 72


def test_reuse_fakes_scores_the_d_step_fakes_with_one_generator_pass():
    G, D, opt_G, opt_D = tiny_gan()
    G_before = copy.deepcopy(G)
    x_real = data.grid().sample(128, generator=torch.Generator().manual_seed(1))
    calls = []
    G.register_forward_hook(lambda *_: calls.append(1))
    torch.manual_seed(5)
    metrics = training.train_step(G, D, opt_G, opt_D, iter([x_real]), reuse_fakes=True)
    assert len(calls) == 1
    torch.manual_seed(5)
    z = torch.randn(128, 2)  # the noise the D step drew
    with torch.no_grad():
        expected = torch.sigmoid(D(G_before(z))).mean().item()  # D after its update, G before its own
    assert metrics["D(G(z)) at G step"].item() == pytest.approx(expected, rel=1e-6)


def test_reuse_fakes_without_it_draws_fresh_noise_for_g():
    G, D, opt_G, opt_D = tiny_gan()
    calls = []
    G.register_forward_hook(lambda *_: calls.append(1))
    training.train_step(G, D, opt_G, opt_D, iter([data.grid().sample(64)]))
    assert len(calls) == 2


def test_reuse_fakes_needs_a_single_d_step():
    G, D, opt_G, opt_D = tiny_gan()
    with pytest.raises(ValueError, match="reuse_fakes=True needs d_steps=1"):
        training.train_step(G, D, opt_G, opt_D, iter([]), d_steps=2, reuse_fakes=True)


def test_lr_decay_resumed_from_a_checkpoint_continues_the_same_schedule(tmp_path):
    path = tmp_path / "run.pt"
    G, D, opt_G, opt_D = tiny_gan(lr=0.1)
    decay = training.LinearLearningRateDecay([opt_G, opt_D], total_steps=10)
    training.train(G, D, opt_G, opt_D, grid_batches(), steps=4, progress=False,
                   callbacks=[decay, training.Checkpointer(path)])  # fmt: skip
    G, D, opt_G, opt_D = tiny_gan(lr=0.1)  # a new process: fresh optimisers at the initial rate
    decay = training.LinearLearningRateDecay([opt_G, opt_D], total_steps=10)
    start = training.resume(path, G, D, opt_G, opt_D)
    training.train(
        G, D, opt_G, opt_D, grid_batches(), steps=7, callbacks=[decay], progress=False, start=start
    )
    assert opt_G.param_groups[0]["lr"] == pytest.approx(0.1 * (1 - 7 / 10))


def test_stop_after_ends_a_longer_run_at_its_step_and_the_checkpoint_holds_that_state(tmp_path):
    path = tmp_path / "run.pt"
    G, D, opt_G, opt_D = tiny_gan(lr=0.1)
    decay = training.LinearLearningRateDecay([opt_G, opt_D], total_steps=10)
    callbacks = [training.StopAfter(6), decay, training.Checkpointer(path)]
    history = training.train(G, D, opt_G, opt_D, grid_batches(), 10, progress=False, callbacks=callbacks)
    assert history["step"] == [1, 2, 3, 4, 5, 6]
    # the schedule is the 10-step run's (at step 6 of 10), and the callbacks after StopAfter still ran
    assert opt_G.param_groups[0]["lr"] == pytest.approx(0.1 * (1 - 6 / 10))
    assert torch.load(path, weights_only=False)["step"] == 6

    G_full, D_full, opt_G_full, opt_D_full = tiny_gan(lr=0.1)
    snapshots = {}

    def keep_step_6(state):
        if state.step == 6:
            snapshots.update(copy.deepcopy(state.G.state_dict()))

    decay = training.LinearLearningRateDecay([opt_G_full, opt_D_full], total_steps=10)
    training.train(G_full, D_full, opt_G_full, opt_D_full, grid_batches(), steps=10, progress=False,
                   callbacks=[decay, keep_step_6])  # fmt: skip
    assert all(torch.equal(snapshots[key], value) for key, value in G.state_dict().items())


def test_stop_after_a_step_the_resumed_run_has_passed_is_refused(tmp_path):
    path = tmp_path / "run.pt"
    G, D, opt_G, opt_D = tiny_gan()
    checkpointer = training.Checkpointer(path)
    training.train(G, D, opt_G, opt_D, grid_batches(), 4, progress=False, callbacks=[checkpointer])
    start = training.resume(path, G, D, opt_G, opt_D)
    with pytest.raises(ValueError, match=r"StopAfter\(4\) is not after step 4"):
        training.train(G, D, opt_G, opt_D, grid_batches(), 8, progress=False, start=start,
                       callbacks=[training.StopAfter(4)])  # fmt: skip
