"""A pytest plugin: each chapter runs once per `make test`, not twice.

nbval runs every chapter cell by cell in quick mode. The browser tests need the same chapters built
into a quick site, and jupyter-book would execute them all again (about three minutes on 2 cores).
So when every cell of a chapter passes nbval in quick mode, this plugin writes the executed notebook
into the jupyter-cache that the quick build reads (`tests.site.QUICK_CACHE`), replacing any older
entry. jupyter-book's "cache" mode finds a notebook there by a hash of its code cells (sources and
metadata) and renders those outputs instead of executing it. The published book (`make book`)
never reads this cache. What that means for the quick site, which only the browser tests see:

- A partial, failing or full-mode nbval run writes nothing, nor does one with shifted seeds
  (``GAN_BOOK_SEED_OFFSET``). The quick build then uses the entry of the last passing run of the
  same code, if there is one, as it did before this plugin: edits to `gan_utils` or to benchmark
  results do not change the hash. An edited chapter has a new hash, so the build executes it.
- nbval keeps less than a notebook client does: it merges each cell's printed text into the cell's
  first stream output (so text printed after a figure shows above it), and it drops
  `clear_output`, display updates and widget state. No chapter relies on those on the site today.

The plugin also sets what nbval's kernels inherit: quick mode unless the caller chose, and no
MPLBACKEND, so that figures are drawn inline as in the book build.
"""

from __future__ import annotations

import copy
import os
import warnings

import nbformat
import pytest

os.environ.setdefault("GAN_BOOK_QUICK", "1")
os.environ.pop("MPLBACKEND", None)  # `make book` unsets it too: Agg would make plt.show() draw nothing


class _ChapterRun:
    """What nbval has seen of one notebook so far."""

    def __init__(self, notebook: nbformat.NotebookNode) -> None:
        self.notebook = notebook
        self.code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
        self.outputs: dict[int, list] = {}
        self.seconds = 0.0


_runs: dict[str, _ChapterRun] = {}


def _is_nbval_cell(item: pytest.Item) -> bool:
    return type(item).__name__ == "IPyNbCell" and hasattr(item, "cell_num")


def executed_notebook(notebook: nbformat.NotebookNode, outputs: dict[int, list]) -> nbformat.NotebookNode:
    """A copy of ``notebook`` whose i-th code cell holds ``outputs[i]`` and execution count i + 1."""
    executed = copy.deepcopy(notebook)
    code_cells = [cell for cell in executed.cells if cell.cell_type == "code"]
    if sorted(outputs) != list(range(len(code_cells))):
        raise ValueError(f"outputs for code cells {sorted(outputs)}, but the notebook has {len(code_cells)}")
    for index, cell in enumerate(code_cells):
        cell.outputs = [nbformat.from_dict(output) for output in outputs[index]]
        cell.execution_count = index + 1
        for output in cell.outputs:
            if output.output_type == "execute_result":
                output.execution_count = index + 1
    nbformat.validate(executed)
    return executed


def _cache_chapter(path: str, run: _ChapterRun) -> None:
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    from tests.site import QUICK_CACHE

    try:
        executed = executed_notebook(run.notebook, run.outputs)
        cache = get_cache(str(QUICK_CACHE))
        bundle = CacheBundleIn(executed, path, data={"execution_seconds": run.seconds})
        cache.cache_notebook_bundle(bundle, check_validity=False, overwrite=True)
    except Exception as error:  # the quick build then executes this chapter itself
        warnings.warn(f"nbval's run of {path} was not cached for the quick site: {error}", stacklevel=1)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    if not _is_nbval_cell(item):
        return
    report = outcome.get_result()
    if call.when != "call" or not report.passed:  # a failed or skipped cell leaves its chapter unfinished
        return
    notebook_file = item.parent
    run = _runs.setdefault(notebook_file.nodeid, _ChapterRun(notebook_file.nb))
    run.outputs[item.cell_num] = list(item.test_outputs or [])
    run.seconds += call.duration
    finished = len(run.outputs) == len(run.code_cells)
    # a run with shifted seeds (GAN_BOOK_SEED_OFFSET) is a robustness check, not the book's own outputs
    own_seeds = os.environ.get("GAN_BOOK_SEED_OFFSET", "").strip() in ("", "0")
    if finished and os.environ.get("GAN_BOOK_QUICK") == "1" and own_seeds:
        _cache_chapter(str(notebook_file.path), run)
