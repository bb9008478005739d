"""One process against two under torchrun on this machine's CPU: throughput and the trained result.

    python benchmarks/ddp_cpu.py --steps 1500        # what the appendix reports, about 4 minutes
    python benchmarks/ddp_cpu.py --steps 300         # a quick look

Three runs of the command line on the same recipe and the same global batch of 128:
- one process with ``--batch-size 128`` and 2 threads;
- ``torchrun --nproc_per_node=2`` with ``--batch-size 64`` per process and 1 thread each, with each
  rank's BatchNorm on its own slice;
- the same with ``--sync-batchnorm`` (BatchNorm statistics over both slices, one all-reduce per layer).
Each run's training time comes from its run.json (start-up excluded); each result is scored with
``python -m gan_utils evaluate`` (chapter 5's metrics). Results go to benchmarks/results/ddp_cpu.json
and the appendix "Training on more than one GPU or machine" quotes them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "ddp_cpu.json"
GLOBAL_BATCH = 128


def train(out: Path, preset: str, steps: int, processes: int, extra: list[str]) -> dict:
    """Train with ``processes`` processes and return the run's record, scores and command."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc_per_node={processes}"]  # fmt: skip
    command = [*(launcher if processes > 1 else [sys.executable]), "-m", "gan_utils", "train", "--preset",
               preset, "--steps", str(steps), "--batch-size", str(GLOBAL_BATCH // processes), "--device",
               "cpu", "--no-progress", "--checkpoint-every", str(steps), "--sample-every", str(steps),
               "--out", str(out), *extra]  # fmt: skip
    threads = str(max(1, (os.cpu_count() or 2) // processes))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "PYTHONPATH": str(ROOT)}
    subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    scores = subprocess.run([sys.executable, "-m", "gan_utils", "evaluate", str(out)], cwd=ROOT, env=env,
                            check=True, capture_output=True, text=True).stdout  # fmt: skip
    record = json.loads((out / "run.json").read_text())
    seconds = record["wall_seconds"]
    return {"processes": processes, "threads_each": int(threads),
            "batch_per_process": GLOBAL_BATCH // processes, "extra": extra, "training_seconds": seconds,
            "steps_per_s": round(steps / seconds, 1),
            "images_per_s": round(steps * GLOBAL_BATCH / seconds), "scores": json.loads(scores)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mlp-mnist")
    parser.add_argument("--steps", type=int, default=3000)
    args = parser.parse_args()
    runs = {"1 process": (1, []), "2 processes": (2, ["--no-sync-batchnorm"]),
            "2 processes, SyncBatchNorm": (2, ["--sync-batchnorm"])}  # fmt: skip
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "torch": torch.__version__,
              "preset": args.preset, "steps": args.steps, "global_batch": GLOBAL_BATCH,
              "command": " ".join(["python", "benchmarks/ddp_cpu.py", *sys.argv[1:]]),
              "runs": {}}  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        for name, (processes, extra) in runs.items():
            run = train(Path(folder) / name.replace(" ", "_").replace(",", ""), args.preset, args.steps,
                        processes, extra)  # fmt: skip
            result["runs"][name] = run
            scores = " ".join(f"{k} {v:.3f}" for k, v in run["scores"].items())
            print(f"{name:<28} {run['training_seconds']:7.1f} s  {run['images_per_s']:6d} images/s  {scores}",
                  flush=True)  # fmt: skip
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
