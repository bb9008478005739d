"""The first code cell of every chapter: installs gan_utils when a launched notebook lacks it.

Colab and Binder open a chapter without the book's library. This cell clones the repository that
`book/_config.yml` names (``repository.url``) into ~/gan-book and installs it from there (a clone,
because chapters also read `benchmarks/results`, which is not part of the package); in the
repository's own environment (after `make lab`), where gan_utils is installed already, it does
nothing. Run
``python book/setup_cell.py`` after changing the repository URL to rewrite the cell in every
chapter; `tests/test_launch.py` checks that all chapters carry the current cell.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
TAG = "setup"


def repository_url() -> str:
    return yaml.safe_load((REPO / "book" / "_config.yml").read_text())["repository"]["url"]


def setup_source(url: str | None = None) -> str:
    """The cell's code for the repository at ``url`` (default: the one in _config.yml)."""
    url = url or repository_url()
    return f"""# Colab / Binder: install the book's library if it is missing (does nothing after `make lab`).
import importlib.util
import subprocess
import sys
from pathlib import Path

if importlib.util.find_spec("gan_utils") is None:
    # a clone, not a bare install: chapters also read the benchmark results kept beside the library
    clone = Path.home() / "gan-book"
    if not clone.exists():
        subprocess.run(["git", "clone", "--quiet", "--depth", "1", "{url}", str(clone)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "-e", str(clone)], check=True)
    sys.path.insert(0, str(clone))  # this kernel started before the install
    importlib.invalidate_caches()"""


def setup_cell() -> dict:
    return {
        "cell_type": "code",
        "execution_count": None,
        "id": "setup",
        "metadata": {"tags": ["remove-cell", TAG]},
        "outputs": [],
        "source": setup_source().splitlines(keepends=True),
    }


def install_in(notebook: Path) -> bool:
    """Put the current setup cell first in ``notebook``; return whether the file changed."""
    book = json.loads(notebook.read_text())
    cells = [c for c in book["cells"] if TAG not in c.get("metadata", {}).get("tags", [])]
    first_code = next(i for i, c in enumerate(cells) if c["cell_type"] == "code")
    new_cells = cells[:first_code] + [setup_cell()] + cells[first_code:]
    if new_cells == book["cells"]:
        return False
    book["cells"] = new_cells
    notebook.write_text(json.dumps(book, indent=1, ensure_ascii=False) + "\n")
    return True


if __name__ == "__main__":
    for path in sorted((REPO / "chapters").glob("*.ipynb")):
        print(f"{path.name}: {'updated' if install_in(path) else 'up to date'}")
