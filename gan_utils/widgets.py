"""Latent explorers for chapter 7: sliders over z that redraw a generator's image.

- `LatentExplorer` runs in JupyterLab on ipywidgets: sliders along latent directions, a seed box,
  a "random z" button and a live image, all driven by the PyTorch generator.
- `static_explorer_html` writes the same explorer as self-contained HTML for the static website,
  where no kernel runs: the generator's weights go into the page (base64) and a hand-written
  JavaScript forward pass (``static/latent_explorer.js``) redraws a canvas as a slider moves.

Both accept any generator that follows the book's contract (`gan_utils.latent.check_image_generator`).
Introduced in chapter 7.
"""

from __future__ import annotations

import base64
import html
import io
import json
import random
from pathlib import Path

import torch
from torch import nn

from gan_utils import latent
from gan_utils.models import is_conditional
from gan_utils.runtime import sample

STATIC_JS = Path(__file__).resolve().parent / "static" / "latent_explorer.js"


def _check_directions(directions: torch.Tensor, latent_dim: int) -> torch.Tensor:
    directions = torch.as_tensor(directions, dtype=torch.float32)
    if directions.ndim != 2 or directions.shape[1] != latent_dim or len(directions) == 0:
        raise ValueError(
            f"directions must have shape [k, {latent_dim}], a row per slider; got {tuple(directions.shape)}."
        )
    return directions


def _check_label(label: int | None, n_classes: int | None) -> int:
    """The class to draw first: ``label``, or 0 when None. Refuses a label for a G with no class selector."""
    if n_classes is None:
        if label is not None:
            raise ValueError(
                f"label={label!r} was given, but this generator has no class input (only chapter 8's "
                "conditional generators do; a self-conditioned one picks its cluster from z). "
                "Leave label out."
            )
        return 0
    label = 0 if label is None else label
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < n_classes:
        raise ValueError(f"label must be a class index in 0..{n_classes - 1}, got {label!r}.")
    return label


def image_png(image: torch.Tensor, scale: int = 6) -> bytes:
    """One image [C, H, W] in [-1, 1] as PNG bytes, enlarged ``scale`` times with square pixels."""
    from PIL import Image

    pixels = ((image.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    array = pixels[0].numpy() if pixels.shape[0] == 1 else pixels.permute(1, 2, 0).numpy()
    picture = Image.fromarray(array)
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


class LatentExplorer:
    """An ipywidgets explorer: z = z_seed + sum_k a_k v_k, with one slider per direction v_k.

    Args:
        G: a generator with ``latent_dim`` that returns images [n, C, H, W] in [-1, 1].
        directions: ``[k, latent_dim]`` slider directions; default `latent.steepest_directions`, the
            directions that change the image most on average.
        n_sliders: how many default directions to compute when ``directions`` is None.
        seed: seed of the starting z (the seed box); "random z" draws a new seed.
        limit: sliders run from -limit to +limit.
        label: the class drawn first by a conditional generator (chapter 8), which gets a class
            selector; default 0. Refused for any other generator.

    Display it as the last expression of a cell. ``explorer.sliders``, ``explorer.seed``,
    ``explorer.label`` (None for an unconditional G) and ``explorer.image`` are the widgets; setting
    a slider's or the class selector's ``value`` redraws ``explorer.image``.
    """

    def __init__(
        self,
        G: nn.Module,
        directions: torch.Tensor | None = None,
        n_sliders: int = 4,
        seed: int = 0,
        limit: float = 3.0,
        label: int | None = None,
    ) -> None:
        import ipywidgets as widgets

        self.output_shape = latent.check_image_generator(G)
        self.G = G
        if directions is None:
            directions = latent.steepest_directions(G, k=n_sliders)
        self.directions = _check_directions(directions, G.latent_dim)
        self.seed = widgets.IntText(value=seed, description="seed", layout=widgets.Layout(width="180px"))
        self.random_button = widgets.Button(description="random z", icon="")
        self.sliders = [
            widgets.FloatSlider(
                value=0.0,
                min=-limit,
                max=limit,
                step=0.1,
                description=f"direction {k + 1}",
                continuous_update=True,
            )  # fmt: skip
            for k in range(len(self.directions))
        ]
        self.label = None
        label = _check_label(label, G.n_classes if is_conditional(G) else None)
        if is_conditional(G):
            self.label = widgets.Dropdown(options=list(range(G.n_classes)), value=label, description="class")
            self.label.observe(lambda change: self.redraw(), names="value")
        self.image = widgets.Image(format="png")
        self.seed.observe(lambda change: self._new_start(), names="value")
        self.random_button.on_click(lambda button: setattr(self.seed, "value", random.randrange(100_000)))
        for slider in self.sliders:
            slider.observe(lambda change: self.redraw(), names="value")
        header = [self.seed, self.random_button, *([self.label] if self.label is not None else [])]
        controls = widgets.VBox([widgets.HBox(header), *self.sliders])
        self.widget = widgets.HBox([self.image, controls])
        self._new_start()

    def _new_start(self) -> None:
        generator = torch.Generator().manual_seed(int(self.seed.value))
        self.z_start = torch.randn(self.G.latent_dim, generator=generator)
        self.redraw()

    def z(self) -> torch.Tensor:
        """The current latent vector [latent_dim]."""
        amounts = torch.tensor([slider.value for slider in self.sliders], dtype=torch.float32)
        return self.z_start + amounts @ self.directions

    def redraw(self) -> None:
        labels = torch.tensor([self.label.value]) if self.label is not None else None
        self.image.value = image_png(sample(self.G, self.z()[None], labels=labels)[0])

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


# ----------------------------------------------------------------------------- static explorer


def _export_layers(G: nn.Module) -> tuple[list[dict], list[torch.Tensor], str, dict | None]:
    """Describe G.net layer by layer for the JavaScript forward pass; return (layers, tensors, input,
    embedding). A conditional generator's class embedding, concatenated after z, is the last item; a
    self-conditioned one's also holds the ``thresholds`` of z's last coordinate that pick its cluster."""
    from gan_utils.models import (
        ConditionalDCGANGenerator,
        DCGANGenerator,
        MLPGenerator,
        SelfConditionedGenerator,
    )

    embedding_layer, thresholds = None, None
    if isinstance(G, SelfConditionedGenerator):
        thresholds, G = G.thresholds().tolist(), G.conditional
    if isinstance(G, ConditionalDCGANGenerator):
        embedding_layer, G = G.embedding, G.body
    if isinstance(G, DCGANGenerator):
        input_kind = "map"  # z enters as a [latent_dim, 1, 1] feature map
    elif isinstance(G, MLPGenerator):
        input_kind = "vector"
    else:
        raise TypeError(
            f"the static explorer has JavaScript layers for MLPGenerator, DCGANGenerator and "
            f"ConditionalDCGANGenerator, not {type(G).__name__}; use LatentExplorer in JupyterLab for "
            "other generators."
        )
    layers, tensors, offset = [], [], 0

    def slot(tensor: torch.Tensor) -> list[int]:
        nonlocal offset
        flat = tensor.detach().float().cpu().flatten()
        tensors.append(flat)
        offset += len(flat)
        return [offset - len(flat), len(flat)]

    for module in G.net:
        if isinstance(module, nn.Linear):
            layers.append({"type": "linear", "in": module.in_features, "out": module.out_features,
                           "weight": slot(module.weight), "bias": slot(module.bias)})  # fmt: skip
        elif isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
            layers.append({"type": "batchnorm", "channels": module.num_features, "eps": module.eps,
                           "mean": slot(module.running_mean), "var": slot(module.running_var),
                           "weight": slot(module.weight), "bias": slot(module.bias)})  # fmt: skip
        elif isinstance(module, nn.ConvTranspose2d):
            if module.output_padding != (0, 0) or module.dilation != (1, 1) or module.groups != 1:
                raise ValueError(
                    "the JavaScript transposed convolution supports no output padding, dilation or groups."
                )
            layers.append({"type": "conv_transpose2d", "out": module.out_channels,
                           "kernel": module.kernel_size[0], "stride": module.stride[0],
                           "padding": module.padding[0], "weight": slot(module.weight),
                           "bias": slot(module.bias) if module.bias is not None else None})  # fmt: skip
        elif isinstance(module, nn.LeakyReLU):
            layers.append({"type": "leaky_relu", "slope": module.negative_slope})
        elif isinstance(module, nn.ReLU):
            layers.append({"type": "relu"})
        elif isinstance(module, nn.Tanh):
            layers.append({"type": "tanh"})
        else:
            raise TypeError(f"the static explorer has no JavaScript version of {type(module).__name__}.")
    embedding = None
    if embedding_layer is not None:  # rows: one vector per class, appended to z
        embedding = {"n_classes": embedding_layer.num_embeddings, "dim": embedding_layer.embedding_dim,
                     "weight": slot(embedding_layer.weight)}  # fmt: skip
        if thresholds is not None:  # cluster c when thresholds[c - 1] <= z[-1] < thresholds[c]
            embedding["thresholds"] = thresholds
    return layers, tensors, input_kind, embedding


def static_explorer_html(
    G: nn.Module,
    name: str,
    directions: torch.Tensor,
    seed: int = 0,
    limit: float = 3.0,
    scale: int = 6,
    label: int | None = None,
) -> str:
    """Self-contained HTML+JS for the static site: canvas, seed box, "random z" and one slider per direction.

    A conditional generator (chapter 8) also gets a class selector, starting at ``label`` (default
    0); the JavaScript looks up the class's embedding and appends it to z, as the PyTorch model does.
    A self-conditioned one (chapter 6) has no selector: z's last coordinate picks the cluster. A
    ``label`` for a generator without a selector is refused rather than ignored.

    Weights are stored as float16 when that loses nothing (the shipped generators are float16 on
    disk), else float32. The page exposes ``window.ganLatentExplorers[name].forward(z, label)`` so tests can
    compare the JavaScript forward pass with PyTorch's. Nothing is loaded from the network.
    """
    output_shape = latent.check_image_generator(G)
    directions = _check_directions(directions, G.latent_dim)
    layers, tensors, input_kind, embedding = _export_layers(G)
    flat = torch.cat(tensors)
    lossless_half = torch.equal(flat.half().float(), flat)
    raw = (flat.half() if lossless_half else flat).numpy().tobytes()
    model = {
        "name": name, "latent_dim": G.latent_dim, "input": input_kind, "output_shape": list(output_shape),
        "layers": layers, "embedding": embedding, "directions": directions.tolist(),
        "dtype": "float16" if lossless_half else "float32",
        "weights": base64.b64encode(raw).decode("ascii"),
    }  # fmt: skip
    element_id = f"gan-latent-{''.join(c if c.isalnum() else '-' for c in name)}"
    payload = json.dumps(model).replace("</", "<\\/")
    sliders = "\n".join(
        f'<label style="display:block">direction {k + 1} <input class="gan-direction" type="range" '
        f'min="{-limit}" max="{limit}" step="0.1" value="0" style="vertical-align:middle">'
        f'<span style="font-family:monospace">0.0</span></label>'
        for k in range(len(directions))
    )
    class_selector = ""
    has_selector = embedding is not None and "thresholds" not in embedding
    label = _check_label(label, embedding["n_classes"] if has_selector else None)
    if has_selector:
        options = "".join(
            f'<option value="{c}"{" selected" if c == label else ""}>{c}</option>'
            for c in range(embedding["n_classes"])
        )
        class_selector = f' &nbsp;<label>class <select class="gan-class">{options}</select></label>'
    size = output_shape[1] * scale, output_shape[2] * scale
    box = "display:flex;gap:1.5em;align-items:center;flex-wrap:wrap"
    look = f"width:{size[1]}px;height:{size[0]}px;image-rendering:pixelated;border:1px solid #888"
    return f"""<div class="gan-latent-explorer" data-model="{element_id}" style="{box}">
<canvas width="{output_shape[2]}" height="{output_shape[1]}" style="{look}"></canvas>
<div>
<div style="margin-bottom:0.4em"><strong>{html.escape(name)}</strong> in your browser &nbsp;
<label>seed <input class="gan-seed" type="number" value="{seed}" style="width:6em"></label>
<button class="gan-random" type="button">random z</button>{class_selector}</div>
{sliders}
<div class="gan-timing" style="font-size:80%;color:#666"></div>
</div>
</div>
<script type="application/json" id="{element_id}">{payload}</script>
<script>{STATIC_JS.read_text()}</script>"""
