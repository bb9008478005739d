import os
import signal

import pytest
import torch

from gan_utils import checkpoints, data, models, training


def make_run(seed):
    torch.manual_seed(seed)
    G = models.MLPGenerator(2, (2,), hidden=(16,))
    D = models.MLPDiscriminator((2,), hidden=(16,))
    opt_G = torch.optim.Adam(G.parameters(), lr=1e-3, betas=(0.5, 0.9))
    opt_D = torch.optim.Adam(D.parameters(), lr=1e-3, betas=(0.5, 0.9))
    batches = data.BatchIterator(
        data.ring().sample(200, generator=torch.Generator().manual_seed(0)), batch_size=32
    )
    return G, D, opt_G, opt_D, batches


def train_run(path, steps, seed=0, resume=False, config=None, callbacks=()):
    G, D, opt_G, opt_D, batches = make_run(seed)
    start = training.resume(path, G, D, opt_G, opt_D) if resume else None
    if not resume:
        torch.manual_seed(100)  # the noise and data streams of the run
    checkpointer = [training.Checkpointer(path, config=config)] if path is not None else []
    history = training.train(G, D, opt_G, opt_D, batches, steps, callbacks=[*callbacks, *checkpointer],
                             progress=False, start=start)  # fmt: skip
    return G, D, opt_G, opt_D, history


def assert_bitwise_equal(run_a, run_b):
    G_a, D_a, opt_G_a, opt_D_a, history_a = run_a
    G_b, D_b, opt_G_b, opt_D_b, history_b = run_b
    for a, b in [(G_a, G_b), (D_a, D_b)]:
        for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
            assert torch.equal(x, y), name
    for a, b in [(opt_G_a, opt_G_b), (opt_D_a, opt_D_b)]:
        for x, y in zip(a.state_dict()["state"].values(), b.state_dict()["state"].values(), strict=True):
            assert all(torch.equal(x[k], y[k]) for k in x)
    assert history_a == history_b


def test_stop_and_resume_equals_one_straight_run(tmp_path):
    straight = train_run(tmp_path / "straight.pt", steps=40)
    train_run(tmp_path / "split.pt", steps=23)  # N steps, then the process "stops"
    resumed = train_run(tmp_path / "split.pt", steps=40, seed=999, resume=True)  # fresh models, then M more
    assert len(resumed[4]["step"]) == 40
    assert_bitwise_equal(straight, resumed)


def test_checkpointing_does_not_change_the_result(tmp_path):
    with_checkpoints = train_run(tmp_path / "run.pt", steps=30)
    without = train_run(None, steps=30)
    assert_bitwise_equal(with_checkpoints, without)


def test_checkpoint_records_the_step_the_config_and_the_data_position(tmp_path):
    path = tmp_path / "run.pt"
    train_run(path, steps=5, config={"model": "mlp"})
    payload = checkpoints.load_checkpoint(path)
    assert payload["step"] == 5 and payload["config"] == {"model": "mlp"}
    assert payload["data_position"] == 5  # one real batch per step with d_steps=1


def test_a_save_that_dies_after_the_temp_file_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "run.pt"
    train_run(path, steps=3)

    def dies(*args, **kwargs):
        raise OSError("simulated crash between writing the temp file and the rename")

    monkeypatch.setattr(checkpoints.os, "replace", dies)
    with pytest.raises(OSError, match="simulated crash"):
        train_run(path, steps=6, resume=True)
    assert (tmp_path / "run.pt.tmp").exists()
    assert checkpoints.load_checkpoint(path)["step"] == 3


def test_corrupt_or_foreign_checkpoints_give_clear_errors(tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    train_run(corrupt, steps=2)
    corrupt.write_bytes(corrupt.read_bytes()[:200])
    with pytest.raises(checkpoints.CheckpointError, match="truncated or corrupt"):
        checkpoints.load_checkpoint(corrupt)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": torch.zeros(2)}, foreign)
    with pytest.raises(checkpoints.CheckpointError, match="not a gan_utils checkpoint"):
        checkpoints.load_checkpoint(foreign)
    with pytest.raises(checkpoints.CheckpointError, match="no checkpoint at"):
        checkpoints.load_checkpoint(tmp_path / "missing.pt")


def test_loading_never_runs_pickled_code(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": checkpoints.CHECKPOINT_FORMAT, "payload": Exploit()}, evil)
    with pytest.raises(checkpoints.CheckpointError, match="could not be read"):
        checkpoints.load_checkpoint(evil)


def test_nan_in_the_weights_stops_training_and_keeps_the_last_checkpoint(tmp_path):
    path = tmp_path / "run.pt"
    train_run(path, steps=4)
    G, D, opt_G, opt_D, batches = make_run(0)

    def poison(state):
        if state.step == 6:
            with torch.no_grad():
                next(state.G.parameters()).fill_(float("nan"))

    start = training.resume(path, G, D, opt_G, opt_D)
    message = r"at step 7: training diverged.*run.pt keeps the last checkpoint written before this step"
    with pytest.raises(training.TrainingDivergedError, match=message):
        training.train(G, D, opt_G, opt_D, batches, 10, callbacks=[poison, training.Checkpointer(path)],
                       progress=False, start=start)  # fmt: skip
    assert checkpoints.load_checkpoint(path)["step"] == 4


def test_ctrl_c_stops_after_the_step_keeps_history_and_checkpoint(tmp_path):
    path = tmp_path / "run.pt"

    def press_ctrl_c(state):
        if state.step == 5:
            os.kill(os.getpid(), signal.SIGINT)

    G, D, opt_G, opt_D, batches = make_run(0)
    torch.manual_seed(100)
    history = training.train(G, D, opt_G, opt_D, batches, 40, progress=False,
                             callbacks=[press_ctrl_c, training.Checkpointer(path)])  # fmt: skip
    assert history["step"] == [1, 2, 3, 4, 5]
    assert checkpoints.load_checkpoint(path)["step"] == 5
    # and the interrupted run resumes to the same numbers as a straight one
    resumed = train_run(path, steps=40, seed=7, resume=True)
    straight = train_run(tmp_path / "straight.pt", steps=40)
    assert_bitwise_equal(straight, resumed)


def test_resume_from_a_missing_file_says_how_to_start_afresh(tmp_path):
    G, D, opt_G, opt_D, _ = make_run(0)
    with pytest.raises(checkpoints.CheckpointError, match="no checkpoint at"):
        training.resume(tmp_path / "missing.pt", G, D, opt_G, opt_D)


def test_resume_keeps_how_this_run_built_its_optimisers(tmp_path):
    """A checkpoint of a plain Adam resumed into fused Adam stays fused (the file's param groups would
    say otherwise) and continues the same run, to rounding."""
    path = tmp_path / "run.pt"
    straight = train_run(None, steps=12)
    train_run(path, steps=6)
    G, D, opt_G, opt_D, batches = make_run(seed=999)
    opt_G, opt_D = (torch.optim.Adam(m.parameters(), lr=1e-3, betas=(0.5, 0.9), fused=True) for m in (G, D))
    start = training.resume(path, G, D, opt_G, opt_D)
    assert all(group["fused"] is True for opt in (opt_G, opt_D) for group in opt.param_groups)
    training.train(G, D, opt_G, opt_D, batches, 12, progress=False, start=start)
    for p_resumed, p_straight in zip(G.parameters(), straight[0].parameters(), strict=True):
        torch.testing.assert_close(p_resumed, p_straight, rtol=1e-4, atol=1e-5)


def test_resuming_into_other_networks_names_the_first_mismatch(tmp_path):
    path = tmp_path / "run.pt"
    train_run(path, steps=3)
    G = models.MLPGenerator(2, (2,), hidden=(32,))  # the run's G was 16 wide
    D = models.MLPDiscriminator((2,), hidden=(16,))
    opt_G, opt_D = torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters())
    message = (
        r"the G saved in .*run.pt does not fit this run's MLPGenerator "
        r"\(size mismatch for net.0.weight: .*\); resume with the settings the run was started with"
    )
    with pytest.raises(checkpoints.CheckpointError, match=message):
        training.resume(path, G, D, opt_G, opt_D)
