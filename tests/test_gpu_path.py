"""The trainer's GPU options: bf16 autocast, the step recorded as a CUDA graph, the logging interval.

The CUDA tests are skipped on machines without a GPU (CI has none); the performance appendix says
where and when they last ran on one.
"""

import argparse

import pytest
import torch

from gan_utils import __main__ as cli
from gan_utils import data, models, recipes, training

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def ring_batches(device, batch_size=64):
    samples = data.ring().sample(1024, generator=torch.Generator().manual_seed(0)).to(device)
    return data.BatchIterator(samples, batch_size=batch_size, drop_last=True)


def toy_players(device, capturable=False, fused=False):
    recipe = recipes.preset("toy-baseline")
    torch.manual_seed(0)
    G, D = recipe.build_models(device)
    return (G, D, *recipe.optimisers(G, D, capturable=capturable, fused=fused))


def test_bf16_precision_runs_the_players_in_bfloat16_and_the_losses_in_float32():
    torch.manual_seed(0)
    G, D = models.dcgan_mnist_generator(), models.dcgan_mnist_discriminator()
    opt_G, opt_D = torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters())
    conv_dtypes = []
    D.net[0].register_forward_hook(lambda module, inputs, output: conv_dtypes.append(output.dtype))
    images = data.load_mnist().images[:64]

    metrics = training.train_step(G, D, opt_G, opt_D, iter([images]), precision=torch.bfloat16)

    assert set(conv_dtypes) == {torch.bfloat16}
    assert metrics["loss_D"].dtype == metrics["loss_G"].dtype == torch.float32
    assert all(torch.isfinite(value) for value in metrics.values())
    assert all(p.dtype == torch.float32 for p in [*G.parameters(), *D.parameters()])


def test_default_precision_leaves_the_step_in_float32():
    torch.manual_seed(0)
    G, D = models.dcgan_mnist_generator(), models.dcgan_mnist_discriminator()
    conv_dtypes = []
    D.net[0].register_forward_hook(lambda module, inputs, output: conv_dtypes.append(output.dtype))
    opt_G, opt_D = torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters())
    training.train_step(G, D, opt_G, opt_D, iter([data.load_mnist().images[:64]]))
    assert set(conv_dtypes) == {torch.float32}


def test_recipe_precision_reaches_the_step_and_unknown_names_are_refused():
    assert recipes.preset("dcgan-mnist", precision="bfloat16").step().keywords["precision"] is torch.bfloat16
    assert recipes.preset("dcgan-mnist").step().keywords["precision"] is None
    with pytest.raises(ValueError, match="unknown precision 'fp16'; choose one of float32, bfloat16"):
        recipes.preset("dcgan-mnist", precision="fp16")


def test_cuda_graph_step_on_the_cpu_is_refused_with_the_fix():
    G, D, opt_G, opt_D = toy_players("cpu")
    with pytest.raises(ValueError, match=r"models are on cpu; move G and D to one CUDA device"):
        graphed = training.CUDAGraphStep(training.train_step)
        training.train(G, D, opt_G, opt_D, ring_batches("cpu"), 2, graphed, progress=False)


def test_cli_refuses_cuda_graph_without_cuda(tmp_path):
    out = str(tmp_path / "run")
    args = cli.build_parser().parse_args(
        ["train", "--preset", "toy-baseline", "--out", out, "--device", "cpu", "--cuda-graph"]
    )
    args.command_line = "python -m gan_utils train ..."
    with pytest.raises(cli.CommandLineError, match="--cuda-graph records CUDA graphs, but the device is cpu"):
        cli.train_command(args)
    assert not (tmp_path / "run").exists()


def test_the_logging_interval_defaults_to_every_step_on_the_cpu():
    G, D, opt_G, opt_D = toy_players("cpu")
    flushed_at = []

    def spy(state):
        flushed_at.append(len(state.recorder.history["step"]))

    training.train(G, D, opt_G, opt_D, ring_batches("cpu"), 3, callbacks=[spy], progress=False)
    assert flushed_at == [1, 2, 3]  # each step already in the history when callbacks run


def test_learning_rate_decay_writes_into_tensor_learning_rates():
    G, D, opt_G, opt_D = toy_players("cpu")
    for group in opt_G.param_groups:
        group["lr"] = torch.tensor(1e-3)
    decay = training.LinearLearningRateDecay([opt_G, opt_D], total_steps=4)
    lr_tensor = opt_G.param_groups[0]["lr"]
    decay(argparse.Namespace(step=1))
    assert opt_G.param_groups[0]["lr"] is lr_tensor  # the same tensor, so a recorded graph sees the change
    assert lr_tensor.item() == pytest.approx(7.5e-4)
    assert opt_D.param_groups[0]["lr"] == pytest.approx(7.5e-4)


@needs_cuda
@pytest.mark.parametrize("fused", [False, True])
def test_cuda_graph_step_trains_like_the_eager_step(fused):
    """Recorded and replayed, with Adam's usual kernels or its fused one (what train_recipe and the CLI
    use with --cuda-graph), the step trains like the plain eager step."""
    eager = toy_players("cuda", capturable=True)
    torch.manual_seed(1)
    training.train(*eager, ring_batches("cuda"), 12, progress=False, data_seed=0)
    graphed = toy_players("cuda", capturable=True, fused=fused)
    torch.manual_seed(1)
    history = training.train(*graphed, ring_batches("cuda"), 12, training.CUDAGraphStep(training.train_step),
                             progress=False, data_seed=0)  # fmt: skip
    assert history["step"] == list(range(1, 13))
    assert graphed[2].param_groups[0]["fused"] is (True if fused else None)
    for model_eager, model_graphed in ((eager[0], graphed[0]), (eager[1], graphed[1])):
        for p_eager, p_graphed in zip(model_eager.parameters(), model_graphed.parameters(), strict=True):
            torch.testing.assert_close(p_graphed, p_eager, rtol=1e-4, atol=1e-5)


@needs_cuda
def test_an_eager_run_resumes_into_a_recorded_fused_one_with_its_step_counts_on_the_gpu(tmp_path):
    """The checkpoint of a plain eager run keeps Adam's step counts on the CPU and says neither
    capturable nor fused; resuming into the optimisers `--cuda-graph` builds must keep their flags and
    move the counts to the GPU, or the recorded fused step fails."""
    path = tmp_path / "run.pt"
    training.train(*toy_players("cuda"), ring_batches("cuda"), 6, callbacks=[training.Checkpointer(path)],
                   progress=False, data_seed=0)  # fmt: skip
    G, D, opt_G, opt_D = toy_players("cuda", capturable=True, fused=True)
    start = training.resume(path, G, D, opt_G, opt_D)
    for opt in (opt_G, opt_D):
        assert all(group["fused"] is True and group["capturable"] is True for group in opt.param_groups)
        assert all(state["step"].device.type == "cuda" for state in opt.state.values())
    graphed = training.CUDAGraphStep(training.train_step)
    history = training.train(
        G, D, opt_G, opt_D, ring_batches("cuda"), 10, graphed, progress=False, start=start
    )
    assert history["step"][-1] == 10
    assert all(torch.isfinite(p).all() for p in G.parameters())
    assert int(opt_G.state[next(G.parameters())]["step"]) == 10


@needs_cuda
def test_the_command_line_records_with_fused_adam(tmp_path):
    out = tmp_path / "run"
    options = ["--out", str(out), "--device", "cuda", "--cuda-graph", "--steps", "6", "--no-progress"]
    args = cli.build_parser().parse_args(["train", "--preset", "toy-baseline", *options])
    args.command_line = "python -m gan_utils train ..."
    cli.train_command(args)
    saved = torch.load(out / "checkpoint.pt", weights_only=True)
    assert all(group["fused"] and group["capturable"] for group in saved["opt_G"]["param_groups"])


@needs_cuda
def test_cuda_graph_step_follows_the_learning_rate_schedule():
    """After the decay reaches 0 the replayed step must stop moving the weights: a float rate would be
    frozen into the graph and keep them moving."""
    G, D, opt_G, opt_D = toy_players("cuda", capturable=True)
    after_decay = {}

    def remember(state):
        if state.step == 5:
            after_decay.update({name: p.detach().clone() for name, p in G.named_parameters()})

    decay = training.LinearLearningRateDecay([opt_G, opt_D], total_steps=5)
    training.train(G, D, opt_G, opt_D, ring_batches("cuda"), 9, training.CUDAGraphStep(training.train_step),
                   callbacks=[decay, remember], progress=False)  # fmt: skip
    for name, p in G.named_parameters():
        torch.testing.assert_close(p, after_decay[name], rtol=0, atol=0)


@needs_cuda
def test_cuda_graph_step_refuses_optimisers_that_cannot_be_recorded():
    G, D, opt_G, opt_D = toy_players("cuda", capturable=False)
    with pytest.raises(ValueError, match="without capturable=True"):
        graphed = training.CUDAGraphStep(training.train_step)
        training.train(G, D, opt_G, opt_D, ring_batches("cuda"), 2, graphed, progress=False)


@needs_cuda
@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_dcgan_recipe_trains_on_cuda_with_a_recorded_step(precision):
    mnist = data.load_mnist()
    recipe = recipes.preset("dcgan-mnist-stable", steps=60, precision=precision, held_out_per_class=0)
    trained = recipes.train_recipe(recipe, mnist.images, seed=0, device="cuda", cuda_graph=True)
    assert len(trained.history["step"]) == 60
    assert all(torch.isfinite(torch.tensor(trained.history["loss_D"])))
    assert trained.history["loss_D"][-1] != trained.history["loss_D"][0]


def test_the_logging_interval_defaults_to_gpu_log_every_off_the_cpu(monkeypatch):
    """Where G sits on a GPU, metrics reach the history (one host sync) only every GPU_LOG_EVERY steps."""
    monkeypatch.setattr(training, "device_of", lambda module: torch.device("cuda"))
    G, D, opt_G, opt_D = toy_players("cpu")
    flushed_at = []

    def spy(state):
        flushed_at.append(len(state.recorder.history["step"]))

    steps = training.GPU_LOG_EVERY + 2
    training.train(G, D, opt_G, opt_D, ring_batches("cpu"), steps, callbacks=[spy], progress=False)
    assert flushed_at[: training.GPU_LOG_EVERY - 1] == [0] * (training.GPU_LOG_EVERY - 1)
    assert flushed_at[training.GPU_LOG_EVERY - 1 :] == [training.GPU_LOG_EVERY] * 3
