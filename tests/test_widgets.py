import base64
import json
import re

import numpy as np
import pytest
import torch
from torch import nn

from gan_utils import models, widgets


@pytest.fixture
def tiny_dcgan():
    torch.manual_seed(0)
    return models.DCGANGenerator(latent_dim=8, width=4).apply(models.init_weights).eval()


def test_explorer_builds_without_a_display_and_sliders_redraw_the_image(tiny_dcgan):
    explorer = widgets.LatentExplorer(tiny_dcgan, n_sliders=3)
    assert len(explorer.sliders) == 3 and bytes(explorer.image.value).startswith(b"\x89PNG")
    before = bytes(explorer.image.value)
    explorer.sliders[0].value = 2.5
    assert bytes(explorer.image.value) != before
    expected = explorer.z_start + 2.5 * explorer.directions[0]
    assert torch.allclose(explorer.z(), expected)


def test_seed_box_and_random_button_pick_a_new_starting_z(tiny_dcgan, monkeypatch):
    explorer = widgets.LatentExplorer(tiny_dcgan, directions=torch.eye(8)[:2], seed=3)
    first_z, first_image = explorer.z_start.clone(), bytes(explorer.image.value)
    explorer.seed.value = 4
    assert not torch.equal(explorer.z_start, first_z) and bytes(explorer.image.value) != first_image
    seed_4_z, seed_4_image = explorer.z_start.clone(), bytes(explorer.image.value)
    monkeypatch.setattr(widgets.random, "randrange", lambda stop: 777)
    explorer.random_button.click()
    assert explorer.seed.value == 777 and bytes(explorer.image.value) != seed_4_image
    assert torch.equal(explorer.z_start, torch.randn(8, generator=torch.Generator().manual_seed(777)))
    assert not torch.equal(explorer.z_start, seed_4_z)


def test_explorer_rejects_bad_generators_and_directions(tiny_dcgan):
    with pytest.raises(TypeError, match="latent_dim"):
        widgets.LatentExplorer(nn.Sequential(nn.Linear(8, 784)))
    with pytest.raises(ValueError, match="not an image"):
        widgets.LatentExplorer(models.MLPGenerator(2, (2,), hidden=(8,)))
    with pytest.raises(ValueError, match=r"directions must have shape \[k, 8\]"):
        widgets.LatentExplorer(tiny_dcgan, directions=torch.zeros(2, 5))


def _model_json(page: str) -> dict:
    return json.loads(
        re.search(r'<script type="application/json" id="[^"]+">(.*?)</script>', page, re.S).group(1)
    )


@pytest.mark.parametrize("kind", ["dcgan", "mlp"])
def test_static_html_holds_every_layer_and_no_external_reference(kind):
    torch.manual_seed(0)
    if kind == "dcgan":
        G = models.DCGANGenerator(latent_dim=8, width=4).apply(models.init_weights).eval()
    else:
        G = models.MLPGenerator(
            8, (1, 28, 28), hidden=(16,), batch_norm=True, output="tanh", leaky=True
        ).eval()
    page = widgets.static_explorer_html(G, f"tiny-{kind}", torch.eye(8)[:2])
    model = _model_json(page)
    assert [layer["type"] for layer in model["layers"]][-1] == "tanh"
    assert len(model["layers"]) == len(G.net) and model["dtype"] == "float32"  # float32 weights stay float32
    assert page.count('class="gan-direction"') == 2
    assert "http://" not in page and "https://" not in page and "<script src" not in page


def test_static_html_stores_float16_valued_weights_as_float16_losslessly():
    torch.manual_seed(0)
    G = models.DCGANGenerator(latent_dim=8, width=4).apply(models.init_weights).eval()
    with torch.no_grad():
        for p in G.parameters():
            p.copy_(p.half().float())
    model = _model_json(widgets.static_explorer_html(G, "half", torch.eye(8)[:1]))
    assert model["dtype"] == "float16"
    raw = np.frombuffer(base64.b64decode(model["weights"]), dtype=np.float16)
    stored = torch.from_numpy(raw.copy()).float()
    first_conv = G.net[0]
    start, length = model["layers"][0]["weight"]
    assert model["layers"][0]["type"] == "conv_transpose2d" and length == first_conv.weight.numel()
    assert torch.equal(stored[start : start + length], first_conv.weight.detach().flatten())  # bit for bit
    assert len(stored) == sum(p.numel() for p in G.parameters()) + sum(b.numel() for b in G.buffers()) - sum(
        1 for m in G.modules() if isinstance(m, nn.BatchNorm2d)
    )  # every weight and running statistic (not BatchNorm's step counter)


def test_static_explorer_refuses_layers_it_has_no_javascript_for():
    G = models.DCGANGenerator(latent_dim=8, width=4)
    G.net[2] = nn.SiLU()
    with pytest.raises(TypeError, match="no JavaScript version of SiLU"):
        widgets.static_explorer_html(G, "silu", torch.eye(8)[:1])


@pytest.fixture
def tiny_conditional():
    torch.manual_seed(0)
    G = models.ConditionalDCGANGenerator(latent_dim=8, embedding_dim=4, width=4)
    return G.apply(models.init_weights).eval()


def test_conditional_explorer_has_a_class_selector_that_redraws(tiny_conditional):
    explorer = widgets.LatentExplorer(tiny_conditional, directions=torch.eye(8)[:2], label=3)
    assert explorer.label.options == tuple(range(10)) and explorer.label.value == 3
    before = bytes(explorer.image.value)
    explorer.label.value = 7
    assert bytes(explorer.image.value) != before
    expected = widgets.image_png(tiny_conditional(explorer.z()[None], torch.tensor([7]))[0].detach())
    assert bytes(explorer.image.value) == expected
    assert widgets.LatentExplorer(models.DCGANGenerator(latent_dim=8, width=4)).label is None
    with pytest.raises(ValueError, match=r"class index in 0\.\.9"):
        widgets.LatentExplorer(tiny_conditional, directions=torch.eye(8)[:2], label=10)


def test_static_html_of_a_conditional_generator_carries_its_embedding(tiny_conditional):
    page = widgets.static_explorer_html(tiny_conditional, "tiny-conditional", torch.eye(8)[:2], label=4)
    model = _model_json(page)
    assert model["embedding"]["n_classes"] == 10 and model["embedding"]["dim"] == 4
    assert len(model["layers"]) == len(tiny_conditional.body.net)
    assert page.count("<option") == 10 and '<option value="4" selected>' in page
    default = widgets.static_explorer_html(tiny_conditional, "tiny-conditional", torch.eye(8)[:2])
    assert '<option value="0" selected>' in default
    unconditional = _model_json(
        widgets.static_explorer_html(models.DCGANGenerator(8, width=4), "u", torch.eye(8)[:1])
    )
    assert unconditional["embedding"] is None


def test_static_html_of_a_self_conditioned_generator_carries_its_thresholds_and_no_class_selector():
    torch.manual_seed(0)
    inner = models.ConditionalDCGANGenerator(latent_dim=8, n_classes=3, width=4).apply(models.init_weights)
    G = models.SelfConditionedGenerator.around(inner, [10, 30, 60]).eval()
    page = widgets.static_explorer_html(G, "tiny-self-conditioned", torch.eye(9)[:2])
    model = _model_json(page)
    assert model["latent_dim"] == 9 and model["embedding"]["n_classes"] == 3
    assert model["embedding"]["thresholds"] == G.thresholds().tolist()
    assert "<option" not in page  # z's last coordinate picks the cluster
    with pytest.raises(ValueError, match=r"label=3 was given, but this generator has no class input"):
        widgets.static_explorer_html(G, "tiny-self-conditioned", torch.eye(9)[:2], label=3)


def test_a_label_for_a_generator_without_classes_is_refused_not_ignored():
    unconditional = models.DCGANGenerator(latent_dim=8, width=4)
    with pytest.raises(ValueError, match=r"label=0 was given.*Leave label out"):
        widgets.LatentExplorer(unconditional, directions=torch.eye(8)[:1], label=0)
    with pytest.raises(ValueError, match=r"label=2 was given"):
        widgets.static_explorer_html(unconditional, "u", torch.eye(8)[:1], label=2)
