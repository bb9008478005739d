"""tests/notebook_cache.py: a chapter that passes nbval lands in the quick cache; a failing one does not."""

from __future__ import annotations

import json

import nbformat
import pytest
from jupyter_cache import get_cache

import tests.site
from tests.notebook_cache import executed_notebook

pytest_plugins = ["pytester"]


def _notebook(*sources: str) -> nbformat.NotebookNode:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.cells = [nbformat.v4.new_markdown_cell("# A chapter")]
    notebook.cells += [nbformat.v4.new_code_cell(source) for source in sources]
    return notebook


def test_executed_notebook_puts_each_cells_outputs_in_order():
    notebook = _notebook("x = 1", "x + 1")
    result = {"output_type": "execute_result", "data": {"text/plain": "2"}, "metadata": {}}
    result["execution_count"] = 9
    executed = executed_notebook(notebook, {0: [], 1: [result]})
    code_cells = [cell for cell in executed.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code_cells] == [1, 2]
    assert code_cells[1].outputs[0].data["text/plain"] == "2"
    assert code_cells[1].outputs[0].execution_count == 2
    assert notebook.cells[2].outputs == []  # the original is left alone


def test_executed_notebook_refuses_a_partial_run():
    with pytest.raises(ValueError, match="outputs for code cells"):
        executed_notebook(_notebook("x = 1", "y = 2"), {0: []})


def test_a_chapter_that_passes_nbval_is_served_from_the_cache_and_a_failing_one_is_not(
    pytester, monkeypatch, tmp_path
):
    cache_path = tmp_path / "cache"
    monkeypatch.setattr(tests.site, "QUICK_CACHE", cache_path)
    monkeypatch.setenv("GAN_BOOK_QUICK", "1")
    passing = _notebook("import os\nprint('quick =', os.environ['GAN_BOOK_QUICK'])", "6 * 7")
    failing = _notebook("x = 1", "assert x == 2")
    (pytester.path / "passing.ipynb").write_text(json.dumps(passing))
    (pytester.path / "failing.ipynb").write_text(json.dumps(failing))

    cache = get_cache(str(cache_path))  # imported out here: pytester unloads what the inner run imports
    result = pytester.runpytest_inprocess("-p", "tests.notebook_cache", "--nbval-lax", "--nbval-current-env")
    result.assert_outcomes(passed=3, failed=1)

    _, merged = cache.merge_match_into_notebook(passing)
    printed, answer = (cell.outputs for cell in merged.cells if cell.cell_type == "code")
    assert printed[0].text == "quick = 1\n"
    assert answer[0].data["text/plain"] == "42"
    with pytest.raises(KeyError):
        cache.match_cache_notebook(failing)
    edited = _notebook("import os\nprint('quick =', os.environ['GAN_BOOK_QUICK'])", "6 * 8")
    with pytest.raises(KeyError):  # an edit after nbval ran means the quick build executes it again
        cache.match_cache_notebook(edited)
