#!/usr/bin/env bash
# The GPU checks of one lent-device session (see the book's performance appendix): the CUDA tests,
# the GPU mode of dcgan_speed.py, then chapter 6's recipe trained for longer than a CPU allows.
# Run from the repository root on a machine with a CUDA GPU; results land in ${OUT:-gpu_out}.
set -u
OUT=${OUT:-gpu_out}
TRAIN_SECONDS=${TRAIN_SECONDS:-170}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
LOG="$OUT/gpu_log.txt"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$LOG"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" | tee -a "$LOG"
timeout 120 python3 -m pytest -o addopts="" -p no:cacheprovider -q tests/test_gpu_path.py 2>&1 | tail -30 | tee -a "$LOG"
timeout 280 python3 benchmarks/dcgan_speed.py --device cuda --throughput-steps 200 --limit-ours 60 \
    --limit-reference 150 --eval-every 3 2>&1 | tee -a "$LOG"
cp benchmarks/results/dcgan_speed_cuda.json "$OUT/" 2>/dev/null
train=(python3 -m gan_utils train --preset dcgan-mnist-stable --steps 40000 --device cuda --no-progress
       --checkpoint-every 2000 --sample-every 40000)
timeout -s INT "$TRAIN_SECONDS" "${train[@]}" --cuda-graph --out "$OUT/run" 2>&1 | tail -20 | tee -a "$LOG"
if [ ! -f "$OUT/run/checkpoint.pt" ]; then  # the recorded step failed: train eagerly instead
  timeout -s INT "$TRAIN_SECONDS" "${train[@]}" --out "$OUT/run_eager" 2>&1 | tail -20 | tee -a "$LOG"
fi
ls -la "$OUT" "$OUT"/run* | tee -a "$LOG"
