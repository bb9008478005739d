"""Time every chapter end to end in quick and in full mode, as the book build runs it.

Usage (from the repository root, after `make venv`):
    .venv/bin/python benchmarks/chapter_times.py [--mode quick|full|both] [chapters/01_objective.ipynb ...]

Prints one Markdown table row per chapter and mode, for the performance appendix. Each run starts a
fresh kernel, so the time includes kernel start-up and imports, as in `make book` and nbval.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
BUDGET_SECONDS = {  # DESIGN.md section 5, full mode; quick mode is 45 s for every chapter
    "00_getting_started": 60,
    "01_objective": 60,
    "02_toy_dynamics": 240,
    "03_mlp_gan": 180,
    "04_dcgan": 300,
    "05_evaluation": 180,
    "06_stable_training": 300,
    "07_latent_space": 60,
    "08_conditional": 300,
    "09_image_to_image": 300,
}


def time_notebook(path: Path, quick: bool) -> float:
    notebook = nbformat.read(path, as_version=4)
    os.environ["GAN_BOOK_QUICK"] = "1" if quick else "0"
    client = NotebookClient(
        notebook, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    start = time.perf_counter()
    client.execute()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["quick", "full", "both"], default="both")
    parser.add_argument("notebooks", nargs="*", type=Path)
    args = parser.parse_args()
    notebooks = args.notebooks or sorted((REPO / "chapters").glob("[0-9][0-9]_*.ipynb"))
    modes = {"quick": [True], "full": [False], "both": [True, False]}[args.mode]
    print(f"machine: {platform.machine()}, {os.cpu_count()} logical CPUs, {platform.python_version()}")
    print("| chapter | mode | seconds | budget |")
    print("|---|---|---|---|")
    for path in notebooks:
        for quick in modes:
            seconds = time_notebook(path, quick)
            budget = 45 if quick else BUDGET_SECONDS.get(path.stem, "n/a")
            print(f"| {path.stem} | {'quick' if quick else 'full'} | {seconds:.1f} | {budget} |", flush=True)


if __name__ == "__main__":
    main()
