"""Serve MathJax from the built site itself, so equations render with no internet.

Sphinx loads MathJax from a CDN by default. The book promises to work offline (and its browser
tests block every request that leaves localhost), so this extension copies MathJax 3 from the
pinned ``django-static-mathjax`` wheel into ``_static/mathjax`` and points ``mathjax_path`` at it.
The SVG output is used because it needs no web fonts.
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

MATHJAX_ENTRY = "tex-svg.js"
# Components MathJax may load on demand next to the entry script (TeX extensions, menu, a11y).
MATHJAX_SUBFOLDERS = ("input/tex/extensions", "ui", "a11y", "sre", "adaptors")


def _mathjax_source() -> Path:
    return Path(str(resources.files("mathjax"))) / "static" / "mathjax" / "es5"


def _use_local_mathjax(app, config) -> None:
    config.mathjax_path = f"mathjax/{MATHJAX_ENTRY}"


def _copy_mathjax(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    source = _mathjax_source()
    target = Path(app.outdir) / "_static" / "mathjax"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source / MATHJAX_ENTRY, target / MATHJAX_ENTRY)
    for folder in MATHJAX_SUBFOLDERS:
        shutil.copytree(source / folder, target / folder, dirs_exist_ok=True)


def setup(app):
    if not _mathjax_source().joinpath(MATHJAX_ENTRY).is_file():
        raise RuntimeError(
            "MathJax is missing: install the pinned requirements (pip install -r requirements.txt), "
            "which include django-static-mathjax."
        )
    app.connect("config-inited", _use_local_mathjax)
    app.connect("build-finished", _copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
