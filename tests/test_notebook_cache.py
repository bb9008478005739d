"""tests/notebook_cache.py: a chapter that passes nbval lands in the quick cache; a failing one does not."""

from __future__ import annotations

import json

import nbformat
import pytest
from jupyter_cache import get_cache

import tests.site
from tests.notebook_cache import executed_notebook
from tests.site import QUICK_CACHE, quick_site_config

pytest_plugins = ["pytester"]


@pytest.fixture(scope="module", autouse=True)
def _jupyter_cache_fully_imported(tmp_path_factory):
    """One round trip through jupyter-cache before any inner pytest run. pytester unloads the modules
    an inner run imports, and SQLAlchemy fails when its lazily imported parts are loaded twice."""
    from jupyter_cache.base import CacheBundleIn

    cache = get_cache(str(tmp_path_factory.mktemp("warm-cache")))
    notebook = executed_notebook(_notebook("1"), {0: []})
    cache.cache_notebook_bundle(CacheBundleIn(notebook, "warm.ipynb"), check_validity=False)
    cache.merge_match_into_notebook(notebook)
    with pytest.raises(KeyError):
        cache.match_cache_notebook(_notebook("2"))


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


def test_the_quick_site_reads_the_cache_the_plugin_writes():
    execute = quick_site_config()["execute"]
    assert execute["execute_notebooks"] == "cache" and execute["cache"] == str(QUICK_CACHE)


def _run_nbval(pytester, notebooks: dict[str, nbformat.NotebookNode]):
    for name, notebook in notebooks.items():
        (pytester.path / f"{name}.ipynb").write_text(json.dumps(notebook))
    return pytester.runpytest_inprocess("-p", "tests.notebook_cache", "--nbval-lax", "--nbval-current-env")


PRINTS_MODE = "import os\nprint('quick =', os.environ['GAN_BOOK_QUICK'])"


def test_a_chapter_that_passes_nbval_is_served_from_the_cache_and_a_failing_one_is_not(
    pytester, monkeypatch, tmp_path
):
    cache_path = tmp_path / "cache"
    monkeypatch.setattr(tests.site, "QUICK_CACHE", cache_path)
    monkeypatch.setenv("GAN_BOOK_QUICK", "1")
    passing = _notebook(PRINTS_MODE, "6 * 7")
    failing = _notebook("x = 1", "assert x == 2")
    cache = get_cache(str(cache_path))
    result = _run_nbval(pytester, {"passing": passing, "failing": failing})
    result.assert_outcomes(passed=3, failed=1)

    _, merged = cache.merge_match_into_notebook(passing)
    printed, answer = (cell.outputs for cell in merged.cells if cell.cell_type == "code")
    assert printed[0].text == "quick = 1\n"
    assert answer[0].data["text/plain"] == "42"
    with pytest.raises(KeyError):
        cache.match_cache_notebook(failing)
    edited = _notebook(PRINTS_MODE, "6 * 8")
    with pytest.raises(KeyError):  # an edit after nbval ran means the quick build executes it again
        cache.match_cache_notebook(edited)


@pytest.mark.parametrize(("variable", "value"), [("GAN_BOOK_QUICK", "0"), ("GAN_BOOK_SEED_OFFSET", "1")])
def test_a_full_mode_or_shifted_seed_run_is_not_cached_for_the_quick_site(
    pytester, monkeypatch, tmp_path, variable, value
):
    cache_path = tmp_path / "cache"
    monkeypatch.setattr(tests.site, "QUICK_CACHE", cache_path)
    monkeypatch.setenv(variable, value)
    notebook = _notebook(PRINTS_MODE)
    cache = get_cache(str(cache_path))
    _run_nbval(pytester, {"other": notebook}).assert_outcomes(passed=1)
    with pytest.raises(KeyError):
        cache.match_cache_notebook(notebook)
