import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
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
    ax = viz.plot_mixture_samples(ring, ring.sample(100))
    means_layer = ax.collections[1]
    assert means_layer.get_offsets().shape == (8, 2)
    plt.close("all")
