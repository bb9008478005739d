import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from gan_utils import data, viz  # noqa: E402


def test_image_grid_draws_one_image_of_the_right_size():
    ax = viz.show_image_grid(torch.zeros(16, 1, 28, 28), nrow=4)
    shown = ax.get_images()[0].get_array()
    assert shown.shape[:2] == (4 * 30 + 2, 4 * 30 + 2)  # 28 px + 2 px padding per cell
    plt.close("all")


def test_image_grid_rejects_flat_vectors_with_a_hint():
    with pytest.raises(ValueError, match=r"view\(-1, 1, 28, 28\)"):
        viz.show_image_grid(torch.zeros(16, 784))


def test_mixture_plot_marks_every_mean():
    ring = data.ring()
    samples = ring.sample(100)
    ax = viz.plot_mixture_samples(ring, samples)
    samples_layer, means_layer = ax.collections[0], ax.collections[1]
    assert np.allclose(samples_layer.get_offsets(), samples.numpy())
    assert np.allclose(means_layer.get_offsets(), ring.means.numpy())
    plt.close("all")


def test_decision_surface_is_sigmoid_of_d_on_the_grid():
    D = torch.nn.Linear(2, 1)
    with torch.no_grad():
        D.weight.copy_(torch.tensor([[1.0, 0.0]]))
        D.bias.zero_()

    def logits(x):
        return D(x).view(-1)

    logits.parameters = D.parameters  # the surface helper moves points to D's device
    logits.training, logits.eval, logits.train = False, lambda: None, lambda mode=True: None
    surface = viz.decision_surface(logits, (-2.0, 2.0, -1.0, 1.0), resolution=5)
    assert surface.shape == (5, 5)
    expected_row = torch.sigmoid(torch.linspace(-2, 2, 5))
    torch.testing.assert_close(surface[0], expected_row)
    torch.testing.assert_close(surface[4], expected_row)


def test_toy_movie_records_frames_and_renders_self_contained_html():
    from gan_utils import models, training

    ring = data.ring()
    G = models.MLPGenerator(2, (2,), hidden=(8,))
    D = models.MLPDiscriminator((2,), hidden=(8,))
    movie = viz.ToyTrainingMovie(ring, torch.randn(50, 2), every=2, resolution=10)
    opt_G, opt_D = torch.optim.SGD(G.parameters(), lr=0.01), torch.optim.SGD(D.parameters(), lr=0.01)
    training.train(G, D, opt_G, opt_D, data.BatchIterator(ring.sample(64), batch_size=16), steps=6,
                   callbacks=[movie], progress=False)  # fmt: skip
    assert movie.steps == [2, 4, 6] and len(movie.surfaces) == 3
    html = movie.to_jshtml()
    assert html.count("data:image/png;base64") >= 3
    assert "http://" not in html and "https://" not in html, "the player must not load anything remotely"
    assert 'class="fa' not in html, "icons need the Font Awesome stylesheet, which is not loaded"


def test_offline_jshtml_has_no_external_link_and_every_player_button():
    from matplotlib import animation

    fig, ax = plt.subplots()
    (line,) = ax.plot([0, 1], [0, 0])
    movie = animation.FuncAnimation(fig, lambda i: line.set_ydata([i, i]), frames=2)
    html = viz.offline_jshtml(movie)
    plt.close(fig)
    assert "font-awesome" not in html and "<i class=" not in html
    assert "http://" not in html and "https://" not in html
    assert html.count("<button") >= 9 and "\u25b6" in html  # play is a Unicode triangle now


def test_moving_average_is_the_mean_of_each_window():
    expected = torch.tensor([1.5, 2.5, 4.5], dtype=torch.float64)
    torch.testing.assert_close(viz.moving_average([1.0, 2.0, 3.0, 6.0], 2), expected)
    torch.testing.assert_close(viz.moving_average([4.0, 8.0], 50), torch.tensor([6.0]).double())


def test_training_curves_plot_each_metric_smoothed_at_its_last_step():
    steps = list(range(1, 101))
    history = {"step": steps, "loss_D": [1.0] * 100, "loss_G": [float(s) for s in steps],
               "D(x)": [0.75] * 100, "D(G(z))": [0.25] * 100}  # fmt: skip
    marks, reference = {"resumed here": 50}, ("log 4", 1.386)
    fig = viz.plot_training_curves(history, smooth=10, marks=marks, reference_loss=reference)
    ax_loss, ax_d = fig.axes
    curves = {line.get_label(): line for line in ax_loss.lines + ax_d.lines}
    x, y = curves["loss_G"].get_data()
    assert x[0] == 10 and x[-1] == 100 and len(x) == 91  # plotted at each window's last step
    assert y[0] == pytest.approx(5.5) and y[-1] == pytest.approx(95.5)
    assert set(curves["D(x)"].get_ydata()) == {0.75}
    assert "resumed here" in curves and "log 4" in curves
    plt.close(fig)
    with pytest.raises(ValueError, match="no steps yet"):
        viz.plot_training_curves({"step": [], "loss_D": [], "loss_G": [], "D(x)": [], "D(G(z))": []})


def test_gan_diagram_names_both_players_the_data_and_both_losses():
    ax = viz.draw_gan_diagram()
    text = " ".join(t.get_text() for t in ax.texts)
    for part in ("noise", "generator", "fake sample", "real sample", "discriminator", "logit",
                 "$D$ minimises", "$G$ minimises", "non-saturating"):  # fmt: skip
        assert part in text
    arrows = [a for a in ax.texts if getattr(a, "arrow_patch", None) is not None]
    assert len(arrows) == 7  # z->G->fake->D<-real, D->logit->losses, and the gradient back to G
    plt.close(ax.figure)


def test_architecture_blocks_follow_the_models_own_layers():
    from gan_utils import models

    G, D = models.dcgan_mnist_generator(64), models.dcgan_mnist_discriminator(32)
    g_blocks = viz.architecture_blocks(G, torch.zeros(1, 64))
    assert [b["shape"] for b in g_blocks] == [(128, 7, 7), (64, 14, 14), (1, 28, 28)]
    assert g_blocks[0]["layer"].startswith("ConvTranspose2d\n7×7, stride 1")
    assert g_blocks[-1]["after"] == ["Tanh"]
    d_blocks = viz.architecture_blocks(D, torch.zeros(1, 1, 28, 28))
    assert [b["shape"] for b in d_blocks] == [(32, 14, 14), (64, 7, 7), (1, 1, 1)]
    assert d_blocks[1]["after"] == ["BatchNorm2d", "LeakyReLU"]
    G.train()
    ax = viz.draw_architecture(G, torch.zeros(1, 64), "z")
    assert G.training  # the drawing ran G in eval mode and restored its mode
    assert len(ax.patches) == 1 + len(g_blocks)
    assert any(t.get_text().endswith("Tanh\n1×28×28") for t in ax.texts)
    plt.close(ax.figure)


def test_snapshot_animation_has_one_frame_per_grid_and_loads_nothing_from_outside():
    grids = [torch.full((4, 1, 8, 8), value) for value in (-1.0, 0.0, 1.0)]
    html = viz.snapshots_jshtml([1, 50, 100], grids, nrow=2)
    assert html.count("data:image/png;base64") == 3
    assert "font-awesome" not in html and "https://" not in html
    with pytest.raises(ValueError, match="one grid per step"):
        viz.snapshots_jshtml([1, 2], grids)


@pytest.mark.parametrize(
    ("images", "nrow", "message"),
    [
        (torch.full((4, 1, 8, 8), 255.0), 8, r"expected images in \[-1, 1\], got values in \[255, 255\]"),
        (torch.full((4, 1, 8, 8), float("nan")), 8, "NaN or infinite"),
        (torch.zeros(0, 1, 8, 8), 8, "0 images"),
        (torch.zeros(4, 1, 8, 8), 0, "nrow must be a positive integer"),
    ],
)
def test_show_image_grid_refuses_what_it_would_draw_wrongly(images, nrow, message):
    with pytest.raises(ValueError, match=message):
        viz.show_image_grid(images, nrow=nrow)


def test_plot_training_curves_names_what_the_history_lacks():
    with pytest.raises(ValueError, match=r"history lacks \['step', 'loss_D'.*what training.train returns"):
        viz.plot_training_curves({})
