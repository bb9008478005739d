#!/usr/bin/env bash
# The GPU checks of one lent-device session (see the book's performance appendix): the CUDA tests,
# the GPU mode of dcgan_speed.py (with larger batches), then two candidate recipes for the shipped
# dcgan-mnist trained side by side for TRAIN_SECONDS, exported and scored into $OUT/w.
# Run from the repository root on a machine with a CUDA GPU; results land in ${OUT:-gpu_out}.
# DEVICE=cpu GRAPH= SPEED=0 TRAIN_SECONDS=20 runs the training half on a CPU, to try the script.
set -u
OUT=${OUT:-gpu_out}
TRAIN_SECONDS=${TRAIN_SECONDS:-270}
DEVICE=${DEVICE:-cuda}
GRAPH=${GRAPH---cuda-graph}
SPEED=${SPEED:-1}
RUNS=${RUNS:-/tmp/gpu_runs}
PY=${PY:-python3}
mkdir -p "$OUT/w" "$RUNS"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
LOG="$OUT/gpu_log.txt"
"$PY" -c "import torch; print('torch', torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())" | tee "$LOG"
if [ "$SPEED" = 1 ]; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee -a "$LOG"
  timeout 80 "$PY" -m pytest -o addopts="" -p no:cacheprovider -q tests/test_gpu_path.py 2>&1 | tail -15 | tee -a "$LOG"
  timeout 170 "$PY" benchmarks/dcgan_speed.py --device cuda --throughput-steps 200 --limit-ours 30 \
      --limit-reference 45 --eval-every 3 --large-batches 256 512 1024 2>&1 | tee -a "$LOG"
  cp benchmarks/results/dcgan_speed_cuda.json "$OUT/" 2>/dev/null
fi
# Two candidates for dcgan-mnist: chapter 6's recipe with G 128 and D 64 channels wide, without and with
# DiffAugment's translation; no learning-rate decay, so a run stopped by the clock is a complete recipe
# (its manifest entry records the steps it reached). Ctrl-C (SIGINT) ends each with a checkpoint. The
# augmented run takes the eager step: random augmentation inside a recorded CUDA graph is not tested here.
# The shipped dcgan-mnist (D 128, decay over 45,000 steps) was a later run alone; its manifest entry has
# the command and a reproduce line.
train=("$PY" -m gan_utils train --preset dcgan-mnist-stable --device "$DEVICE" --no-progress --steps 500000
       --no-lr-decay --generator-width 128 --discriminator-width 64 --checkpoint-every 5000
       --sample-every 500000)
OMP_NUM_THREADS=4 timeout -s INT "$TRAIN_SECONDS" "${train[@]}" $GRAPH --out "$RUNS/wide" \
    > "$OUT/wide.log" 2>&1 &
OMP_NUM_THREADS=4 timeout -s INT "$TRAIN_SECONDS" "${train[@]}" --augment translation --out "$RUNS/wide-aug" \
    > "$OUT/wide-aug.log" 2>&1 &
wait
for run in wide wide-aug; do
  "$PY" -m gan_utils.release export --run "$RUNS/$run" --name "dcgan-mnist-$run" --weights-dir "$OUT/w" \
      --force 2>&1 | tee -a "$LOG"
done
for run in wide wide-aug; do  # one at a time: each rewrites MANIFEST.json
  timeout 120 "$PY" -m gan_utils.release record "dcgan-mnist-$run" --weights-dir "$OUT/w" --force 2>&1 \
      | tee -a "$LOG"
done
ls -la "$OUT" "$OUT/w" | tee -a "$LOG"
