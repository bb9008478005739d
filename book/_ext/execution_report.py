"""Fail the book build when a chapter fails to execute, naming the chapter, the cell and the error.

myst-nb reports a notebook that raised (or whose cell ran past `execute.timeout`) as a warning, and
Sphinx then says "build succeeded". Its own `nb_execution_raise_on_error` stops at the first failure
with a long traceback through Sphinx's internals. This extension lets every chapter execute, then
lists each failure in a few readable lines and makes `jupyter-book build` exit non-zero.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from sphinx.util import logging

logger = logging.getLogger(__name__)

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
# nbclient quotes the failing cell between two lines of dashes (18 for an error, 19 for a timeout).
_QUOTED_CELL = re.compile(r"^-{18,}$\n(.*?)\n^-{18,}$", re.MULTILINE | re.DOTALL)


def failing_cell_index(notebook_path: Path, traceback: str) -> int | None:
    """The index of the code cell that nbclient quotes in ``traceback`` (None if not found).

    A timed-out cell of 11 lines or more is quoted as two Python lists (its first and last five
    lines); then the first list is matched against the start of each cell.
    """
    match = _QUOTED_CELL.search(_ANSI_ESCAPE.sub("", traceback))
    if match is None:
        return None
    quoted = match.group(1).strip()
    first_lines = None
    if quoted.startswith("["):
        try:
            first_lines = ast.literal_eval(quoted.splitlines()[0])
        except (ValueError, SyntaxError):
            first_lines = None
    cells = json.loads(notebook_path.read_text(encoding="utf-8"))["cells"]
    for index, cell in enumerate(cells):
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        if cell["cell_type"] != "code":
            continue
        lines = source.strip().split("\n")
        if source.strip() == quoted or (first_lines and lines[: len(first_lines)] == first_lines):
            return index
    return None


def error_summary(error: str | None, traceback: str | None) -> str:
    """One line saying what went wrong, e.g. ``AssertionError: modes >= 24``.

    For an exception that is the traceback's last informative line; for a timeout, nbclient's
    "A cell timed out ..." line.
    """
    lines = [line.strip() for line in _ANSI_ESCAPE.sub("", traceback or "").splitlines() if line.strip()]
    if error == "CellTimeoutError":
        marker = "A cell timed out"
        return next((line[line.index(marker) :] for line in lines if marker in line), error)
    for line in reversed(lines):
        if not line.startswith(("-", "File ", "Cell ", "^")):
            return line
    return error or "unknown error"


def _report_failed_executions(app, exception) -> None:
    if exception is not None:
        return
    executions = getattr(app.env, "nb_metadata", None) or {}
    failures = []
    for docname in sorted(executions):
        exec_data = executions[docname].get("exec_data")
        if not exec_data or exec_data.get("succeeded", True):
            continue
        notebook = Path(app.env.doc2path(docname))
        cell = failing_cell_index(notebook, exec_data.get("traceback") or "")
        where = f"cell {cell}" if cell is not None else "a cell"
        summary = error_summary(exec_data.get("error"), exec_data.get("traceback"))
        failures.append(f"  {docname}: {where} raised {exec_data.get('error')}: {summary}")
    if failures:
        report = Path(app.outdir) / "reports"
        logger.error(
            "%d chapter(s) failed to execute, so the book is not built:\n%s\n"
            "Full tracebacks: %s. Run the chapter in JupyterLab to debug it.",
            len(failures), "\n".join(failures), report,
        )  # fmt: skip
        app.statuscode = 1


def setup(app):
    app.connect("build-finished", _report_failed_executions)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
