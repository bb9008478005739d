"""Chapter 3's reconstruction of the source article's listing fails and misbehaves as the chapter says.

The listing is read from the notebook, from the cells tagged ``article-listing``, so this file keeps
no copy of it. Two of the chapter's statements are checked: the listing's first error is a
``NameError`` for ``generator`` (erratum bug 1), and once the missing names exist, its D step passes
the very same outputs and targets to both loss terms (bug 4), before G has made a single image.
"""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest
import torch

CHAPTER = Path(__file__).resolve().parent.parent / "chapters" / "03_mlp_gan.ipynb"
LISTING_TAG = "article-listing"
BATCH = 4  # images in the one batch of the stand-in train_loader


def listing_code() -> types.CodeType:
    """The tagged listing cells of chapter 3, compiled, without their leading cell-magic lines."""
    cells = json.loads(CHAPTER.read_text(encoding="utf-8"))["cells"]
    tagged = [cell for cell in cells if LISTING_TAG in cell.get("metadata", {}).get("tags", [])]
    assert tagged, f"no cell of {CHAPTER.name} is tagged {LISTING_TAG!r}"
    lines = []
    for cell in tagged:
        source = "".join(cell["source"]).splitlines()
        while source and source[0].startswith("%%"):  # e.g. %%keep_as, which only stores and runs the listing
            source = source[1:]
        lines += source
    return compile("\n".join(lines) + "\n", f"<{LISTING_TAG} of {CHAPTER.name}>", "exec")


class _DiscriminatorStepRecordedError(Exception):
    """Raised by the spy loss to end the listing's loop once the D step has built both loss terms."""


class _RecordingBCELoss(torch.nn.Module):
    """Stands in for ``nn.BCELoss``: records each (input, target) pair and stops after the second."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.calls.append((input, target))
        if len(self.calls) == 2:  # error_real and error_fake: the whole D loss
            raise _DiscriminatorStepRecordedError
        return torch.nn.functional.binary_cross_entropy(input, target)


def test_the_listing_fails_first_because_generator_is_never_created():
    with pytest.raises(NameError, match=r"name 'generator' is not defined"):
        exec(listing_code(), {})


def test_the_d_step_passes_identical_tensors_to_both_loss_terms(monkeypatch):
    code = listing_code()
    namespace: dict = {}
    with pytest.raises(NameError):  # a first run defines the listing's classes, then stops (bug 1)
        exec(code, namespace)

    torch.manual_seed(0)
    generator_calls = []
    generator = namespace["Generator"]()
    generator.register_forward_pre_hook(lambda module, args: generator_calls.append(args[0]))
    namespace.update(  # the names the listing never defines (bugs 1 and 2), with flattened images (bug 3)
        generator=generator,
        discriminator=namespace["Discriminator"](),
        train_loader=[(torch.rand(BATCH, 784) * 2 - 1, torch.zeros(BATCH, dtype=torch.long))],
        labels=torch.ones(1),  # the only shape its label expression accepts (bug 5)
        noise=torch.randn(BATCH, 100),
    )
    spy = _RecordingBCELoss()
    # The listing runs `import torch.nn as nn` itself, so the spy goes into torch.nn for this test.
    monkeypatch.setattr(torch.nn, "BCELoss", lambda *args, **kwargs: spy)
    with pytest.raises(_DiscriminatorStepRecordedError):
        exec(code, namespace)

    assert len(spy.calls) == 2
    (input_real, target_real), (input_fake, target_fake) = spy.calls
    assert input_real.shape == (BATCH, 1)
    assert input_fake is input_real  # error_fake scores D's outputs on the real batch again
    assert torch.equal(input_fake, input_real)
    assert torch.equal(target_fake, target_real)  # ... with the same target
    assert torch.equal(target_real, torch.ones(BATCH, 1))  # "real" for every image
    assert not generator_calls  # G made no image before D's loss was complete
