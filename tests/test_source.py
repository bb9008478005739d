import inspect
from pathlib import Path

import pytest

from gan_utils import losses
from gan_utils.source import show_source


def test_show_source_returns_the_exact_lines_of_the_library_file():
    listing = show_source(losses.non_saturating_generator_loss)
    assert listing.location.startswith("gan_utils/losses.py, lines ")
    first, last = map(int, listing.location.split("lines ")[1].split("-"))
    file_lines = Path(losses.__file__).read_text().splitlines()
    assert file_lines[first - 1].startswith("def non_saturating_generator_loss(")
    assert listing.code.splitlines() == file_lines[first - 1 : last]
    assert file_lines[last].strip() == "" and "return" in file_lines[last - 1]  # the whole function
    markdown = listing._repr_markdown_()
    assert "```python\ndef non_saturating_generator_loss" in markdown


def test_show_source_refuses_code_from_other_packages():
    with pytest.raises(ValueError, match="gan_utils code only"):
        show_source(inspect.getsource)


def test_every_listing_in_the_chapters_is_shown():
    """A SourceListing renders only as a cell's last expression; anywhere else it is silently dropped."""
    import json

    dropped = []
    for path in sorted(Path(__file__).resolve().parent.parent.glob("chapters/*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            lines = "".join(cell["source"]).rstrip().splitlines()
            if cell["cell_type"] == "code" and any(line.startswith("show_source(") for line in lines[:-1]):
                dropped.append(f"{path.name} {cell['id']}")
    assert not dropped, f"show_source is not the last line of: {dropped}; give it its own cell or display()"
