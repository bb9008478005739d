"""Time every chapter end to end in quick and in full mode, as the book build runs it, and check
that its checks hold with other seeds and other CPU kernels.

Usage (from the repository root, after `make venv`):
    .venv/bin/python benchmarks/chapter_times.py [--mode quick|full|both] [--seed-offset K]
        [--cpu-kernels native|avx2] [--json benchmarks/results/chapter_times_DATE.json]
        [chapters/01_objective.ipynb ...]

Prints one Markdown table row per chapter and mode, for the performance appendix; ``--json`` also
writes the rows, the command, the date and the machine to a results file, rewritten after every
chapter, so that a run stopped halfway keeps what it measured. Each run starts a
fresh kernel, so the time includes kernel start-up and imports, as in `make book` and nbval. A
chapter that fails is reported (the cell and the error) and the next one runs.

``--seed-offset K`` sets ``GAN_BOOK_SEED_OFFSET``: every seed `gan_utils.set_seed` sets is shifted by
K, so every training run of the book starts from another draw. ``--cpu-kernels avx2`` restricts
PyTorch (``ATEN_CPU_CAPABILITY``), oneDNN (``ONEDNN_MAX_CPU_ISA``) and MKL
(``MKL_ENABLE_INSTRUCTIONS``) to the AVX2 kernels of a CPU without AVX-512: floating-point sums
round differently, so each training run follows another trajectory, as on another machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

REPO = Path(__file__).resolve().parents[1]
AVX2_KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                "MKL_ENABLE_INSTRUCTIONS": "AVX2"}  # fmt: skip
BUDGET_SECONDS = {  # the design's full-mode budgets; quick mode is 45 s for every chapter
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


def time_notebook(path: Path, quick: bool, keep: Path | None = None) -> tuple[float, str]:
    """Seconds to run the notebook in a fresh kernel, and "passed" or the failing cell and error; with
    ``keep``, the executed notebook is written there (its outputs hold what each check printed)."""
    notebook = nbformat.read(path, as_version=4)
    os.environ["GAN_BOOK_QUICK"] = "1" if quick else "0"
    client = NotebookClient(
        notebook, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    start = time.perf_counter()
    try:
        client.execute()
        result = "passed"
    except CellExecutionError as error:
        failed = [cell.get("id") for cell in notebook.cells
                  if any(out.get("output_type") == "error" for out in cell.get("outputs", []))]  # fmt: skip
        result = f"FAILED in cell {failed[0] if failed else '?'}: {error.ename}: {error.evalue}"[:300]
    except (CellTimeoutError, DeadKernelError) as error:  # a cell ran past the timeout, or the kernel died
        result = f"FAILED: {type(error).__name__}: {str(error).splitlines()[0]}"[:300]
    seconds = time.perf_counter() - start
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, keep / f"{path.stem}_{'quick' if quick else 'full'}.ipynb")
    return seconds, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["quick", "full", "both"], default="both")
    parser.add_argument("--seed-offset", type=int, default=0, help="GAN_BOOK_SEED_OFFSET for the chapters")
    parser.add_argument("--cpu-kernels", choices=["native", "avx2"], default="native",
                        help="avx2: the kernels of a CPU without AVX-512")  # fmt: skip
    parser.add_argument("--keep-executed", type=Path, help="a folder for the executed notebooks")
    parser.add_argument("--json", type=Path, help="also write the rows to this results file")
    parser.add_argument("notebooks", nargs="*", type=Path)
    args = parser.parse_args()
    if args.seed_offset < 0:
        parser.error(f"--seed-offset must be 0 or more, got {args.seed_offset}")
    os.environ["GAN_BOOK_SEED_OFFSET"] = str(args.seed_offset)  # the kernels inherit the environment
    if args.cpu_kernels == "avx2":
        os.environ.update(AVX2_KERNELS)
    notebooks = args.notebooks or sorted((REPO / "chapters").glob("[0-9][0-9]_*.ipynb"))
    modes = {"quick": [True], "full": [False], "both": [True, False]}[args.mode]
    machine = f"{platform.machine()}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}"
    print(f"machine: {machine}; seed offset {args.seed_offset}, CPU kernels {args.cpu_kernels}")
    print("| chapter | mode | seconds | budget | result |")
    print("|---|---|---|---|---|")
    record = {"date": datetime.date.today().isoformat(),
              "command": shlex.join(["python", "benchmarks/chapter_times.py", *sys.argv[1:]]),
              "machine": machine,
              "seed_offset": args.seed_offset, "cpu_kernels": args.cpu_kernels, "rows": []}  # fmt: skip
    failures = 0
    for path in notebooks:
        for quick in modes:
            seconds, result = time_notebook(path, quick, args.keep_executed)
            failures += result != "passed"
            budget = 45 if quick else BUDGET_SECONDS.get(path.stem, "n/a")
            mode = "quick" if quick else "full"
            print(f"| {path.stem} | {mode} | {seconds:.1f} | {budget} | {result} |", flush=True)
            if args.json:
                record["rows"].append({"chapter": path.stem, "mode": mode, "seconds": round(seconds, 1),
                                       "budget_seconds": budget, "result": result})  # fmt: skip
                args.json.write_text(json.dumps(record, indent=1) + "\n")
    if failures:
        sys.exit(f"{failures} chapter run(s) failed")


if __name__ == "__main__":
    main()
