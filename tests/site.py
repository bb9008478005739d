"""Build the book in quick mode for the browser tests, and serve it on 127.0.0.1."""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
QUICK_BUILD = REPO / "_build" / "quick"
QUICK_CACHE = QUICK_BUILD / "_build" / ".jupyter_cache"  # nbval fills it too: see tests/notebook_cache.py


def toc_pages() -> list[str]:
    """Every page of the table of contents as a path relative to the site root, e.g. 'book/intro.html'."""
    toc = yaml.safe_load((REPO / "book" / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [chapter["file"] for chapter in part["chapters"]]
    return [f"{name}.html" for name in files]


def book_config(execute_notebooks: str, timeout: int | None = None) -> dict:
    """The project's Jupyter Book config, ready to be written outside `book/`.

    Local extension and static paths become absolute, so the copy works from any folder.
    """
    config_path = REPO / "book" / "_config.yml"
    config = yaml.safe_load(config_path.read_text())
    config["execute"]["execute_notebooks"] = execute_notebooks
    if timeout is not None:
        config["execute"]["timeout"] = timeout
    extensions = config["sphinx"]["local_extensions"]
    config["sphinx"]["local_extensions"] = {
        name: str((config_path.parent / folder).resolve()) for name, folder in extensions.items()
    }
    sphinx_config = config["sphinx"]["config"]  # static paths are relative to the repository root
    sphinx_config["html_static_path"] = [
        str(REPO / path) for path in sphinx_config.get("html_static_path", [])
    ]
    return config


def run_jupyter_book(
    source: Path, config: dict, toc: Path, output: Path, quick: bool
) -> subprocess.CompletedProcess:
    """`jupyter-book build` of ``source`` with ``config`` into ``output``, as `make book` runs it."""
    output.mkdir(parents=True, exist_ok=True)
    config_path = output / "_config.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    command = [
        str(Path(sys.executable).with_name("jupyter-book")), "build", str(source),
        "--config", str(config_path), "--toc", str(toc), "--path-output", str(output), "--builder", "html",
    ]  # fmt: skip
    # A non-inline MPLBACKEND (Agg, say) would make plt.show() draw nothing into the pages.
    env = {key: value for key, value in os.environ.items() if key != "MPLBACKEND"}
    env["GAN_BOOK_QUICK"] = "1" if quick else "0"
    return subprocess.run(command, cwd=source, env=env, capture_output=True, text=True)


def quick_site_config() -> dict:
    """The config of the quick site: the book's, executing through the jupyter-cache in QUICK_CACHE."""
    config = book_config(execute_notebooks="cache")
    config["execute"]["cache"] = str(QUICK_CACHE)
    return config


def build_quick_site() -> Path:
    """Build the site with quick budgets into _build/quick and return its html folder.

    Execution results are cached in QUICK_CACHE (keyed on the code cells), kept apart from the full
    build, so quick outputs can never leak into the published book. A chapter that nbval has just run
    is found there (tests/notebook_cache.py) and is not executed again.
    """
    result = run_jupyter_book(REPO, quick_site_config(), REPO / "book" / "_toc.yml", QUICK_BUILD, quick=True)
    if result.returncode != 0:
        raise RuntimeError(f"quick book build failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return QUICK_BUILD / "_build" / "html"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (signature of the base class)
        pass


@contextmanager
def serve(folder: Path) -> Iterator[str]:
    """Serve ``folder`` on 127.0.0.1 at a free port; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
