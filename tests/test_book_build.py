"""`make book` must fail when a chapter fails: a throwaway book built with the project's settings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.site import REPO, book_config, run_jupyter_book


def _write_notebook(path: Path, title: str, *code_cells: str) -> None:
    cells = [{"cell_type": "markdown", "id": "title", "metadata": {}, "source": f"# {title}\n"}]
    cells += [
        {"cell_type": "code", "id": f"code{i}", "metadata": {}, "execution_count": None, "outputs": [],
         "source": source}
        for i, source in enumerate(code_cells)
    ]  # fmt: skip
    kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook = {"cells": cells, "metadata": {"kernelspec": kernel}, "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(notebook))


def _throwaway_book(root: Path, chapters: dict[str, tuple[str, ...]]) -> Path:
    """A book with the project's bibliography, an intro page and one notebook per entry; returns its toc."""
    (root / "book").mkdir(parents=True)
    shutil.copy(REPO / "book" / "references.bib", root / "book" / "references.bib")
    (root / "book" / "intro.md").write_text("# Throwaway book\n")
    (root / "chapters").mkdir()
    for name, cells in chapters.items():
        _write_notebook(root / "chapters" / f"{name}.ipynb", name, *cells)
    toc = root / "book" / "_toc.yml"
    entries = "".join(f"  - file: chapters/{name}\n" for name in chapters)
    toc.write_text(f"format: jb-book\nroot: book/intro\nchapters:\n{entries}")
    return toc


GOOD = ("x = 2 + 2", "assert x == 4")


def test_a_failing_or_timed_out_chapter_fails_the_build(tmp_path):
    toc = _throwaway_book(tmp_path / "src", {
        "good": GOOD,
        "failing": ("x = 1", "assert x == 2, 'x should be 2'"),
        "slow": ("import time\n" + "x = 0\n" * 12 + "time.sleep(60)",),  # long: nbclient quotes a preview
    })  # fmt: skip
    result = run_jupyter_book(tmp_path / "src", book_config("force", timeout=5), toc, tmp_path / "out",
                              quick=True)  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "2 chapter(s) failed to execute" in output
    assert "chapters/failing: cell 2 raised CellExecutionError: AssertionError: x should be 2" in output
    assert "chapters/slow: cell 1 raised CellTimeoutError: A cell timed out" in output
    assert "chapters/good:" not in output


def test_a_book_whose_chapters_pass_builds(tmp_path):
    toc = _throwaway_book(tmp_path / "src", {"good": GOOD})
    result = run_jupyter_book(tmp_path / "src", book_config("force"), toc, tmp_path / "out", quick=True)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "failed to execute" not in result.stdout + result.stderr


@pytest.mark.parametrize("chapter", sorted(p.stem for p in (REPO / "chapters").glob("*.ipynb")))
def test_every_chapter_is_in_the_table_of_contents(chapter):
    """A notebook left out of the toc would be neither built nor checked by the full-mode build."""
    assert f"chapters/{chapter}" in (REPO / "book" / "_toc.yml").read_text()
