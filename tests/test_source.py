import inspect

import pytest

from gan_utils import losses
from gan_utils.source import show_source


def test_show_source_returns_the_exact_library_code():
    listing = show_source(losses.non_saturating_generator_loss)
    assert listing.code == inspect.getsource(losses.non_saturating_generator_loss).rstrip("\n")
    assert listing.location.startswith("gan_utils/losses.py, lines ")
    first, last = map(int, listing.location.split("lines ")[1].split("-"))
    assert last - first + 1 == len(listing.code.splitlines())
    markdown = listing._repr_markdown_()
    assert "```python\ndef non_saturating_generator_loss" in markdown


def test_show_source_refuses_code_from_other_packages():
    with pytest.raises(ValueError, match="gan_utils code only"):
        show_source(inspect.getsource)
