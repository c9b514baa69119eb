#!/usr/bin/env bash
# The next short GPU lease for the shipped `tiramisu-gpu` (issue 9; shipped as `default` until model 2.0.0),
# run from the repository root: continue it on
# 3500 images it has never seen, at two learning rates at once on the one GPU (two runs of this small
# network fill an H200 better than one: README "Trained on a GPU"), and bring both back. Which one (if
# either) replaces `tiramisu-gpu` is decided afterwards on the CPU, on the decision seed 7117, and reported on a
# seed never used for a decision: the decision set does not travel (the lease carries 64 MiB in all).
#
#   protoseg images train2-events.h5 train5-events.h5 -o next-images.h5 --min-beam-hits 0 \
#       --min-notbeam-hits 0 --split 3500 100 0 --seed 1          (seeds 8808 and 7707; tiramisu-gpu saw neither)
#   python benchmarks/device_images.py pack next-images.h5 .device/next      (51.7 MB)
#   run: bash benchmarks/gpu_continue.sh   carry: .device/next.h5 .device/next.xz
#
# Budget: BUDGET_S of training for each run (default 480 s) plus about 90 s of start, unpack and copy out.
# Smoke test without a GPU (about 3 minutes on 2 cores):
#   ACCELERATOR=cpu PRECISION=32 LIMIT=2 BUDGET_S=60 EXTRA="--set data.batch_size=1 --set data.num_workers=0" \
#   bash benchmarks/gpu_continue.sh
set -u
OUT=${OUT:-/tmp/gpu-out}
WORK=${WORK:-/tmp/gpu-work}
BUDGET_S=${BUDGET_S:-480}
LEARNING_RATES=${LEARNING_RATES:-"3.0e-4 1.0e-3"}
ACCELERATOR=${ACCELERATOR:-gpu}
PRECISION=${PRECISION:-bf16-mixed}
LIMIT=${LIMIT:-1.0}
EXTRA=${EXTRA:-}                    # more `--set key=value` for both runs (the smoke test: a smaller batch)
source "$(dirname "$0")/gpu_common.sh"

stamp "unpack"
python3 benchmarks/device_images.py unpack .device/next "$WORK/next.h5" || exit 2

stamp "continue tiramisu-gpu at learning rates $LEARNING_RATES, $BUDGET_S s each, at once"
pids=()
for lr in $LEARNING_RATES; do
  timeout $(( BUDGET_S + 90 )) python3 -m protoseg train --config configs/default-gpu.yaml --data "$WORK/next.h5" \
    --out "$WORK/lr$lr" --accelerator "$ACCELERATOR" --precision "$PRECISION" --set init_from=tiramisu-gpu \
    --set optim.lr="$lr" --set trainer.wall_time_budget_s="$BUDGET_S" \
    --set trainer.limit_train_batches="$LIMIT" --set trainer.limit_val_batches="$LIMIT" $EXTRA > "$WORK/train-lr$lr.log" 2>&1 &
  pids+=($!)
done
( sleep 60; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv ) > "$WORK/nvidia-smi-60s.txt" 2>&1 &
for pid in "${pids[@]}"; do wait "$pid"; echo "run exit $?"; done

stamp "results"
for lr in $LEARNING_RATES; do
  tail -n 3 "$WORK/train-lr$lr.log"
  # a run cut short by the timeout has no weights file: it is left out rather than taken from a checkpoint
  [ -f "$WORK/lr$lr/model.safetensors" ] && cp "$WORK/lr$lr/model.safetensors" "$OUT/continue-lr$lr.safetensors"
done
# at most 8 files come back from a lease: the weights, and one archive of the cards, logs and metrics
(cd "$WORK" && tar czf "$OUT/results.tar.gz" --exclude='*.ckpt' --exclude='*.safetensors' --exclude='*.h5' \
  --exclude='tensorboard' train-lr*.log nvidia-smi-60s.txt lr*)
ls -la "$OUT"
stamp "done"
