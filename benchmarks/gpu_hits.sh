#!/usr/bin/env bash
# The hit-level network on a leased GPU (issue 23; run after benchmarks/gpu_continue.sh when a lease allows),
# from the repository root, as one command of at most 10 minutes:
#
#   1. simulate its training events on the lease's 16 cores (no events file travels: 3000 events are
#      2.3 GB, the lease carries 64 MiB);
#   2. training throughput of the 7- and 8-level networks at 1, 4 and 8 events per step
#      (benchmarks/bench_hits_train.py, GPU-synchronised step times and peak memory);
#   3. the 8-level recipe (configs/hits-cpu-8level.yaml) trained from scratch for TRAIN_S seconds of wall
#      time at BATCH events per step, its one-cycle schedule over that time;
#   4. bring back its weights and card, the throughput JSON and the logs. The CPU then evaluates the weights
#      as every release is decided: benchmarks/hit_variants.py (working point on seed 7117, scores on
#      reporting seeds).
#
#   run: bash benchmarks/gpu_hits.sh        (no carry; about 3 min simulation + 1 min throughput + TRAIN_S + 1 min)
#
# Smoke test without a GPU (about 3 minutes on 2 cores):
#   ACCELERATOR=cpu EVENTS=30 WORKERS=2 BATCHES="1 2" PROBE_STEPS=3 TRAIN_S=40 BATCH=1 VALIDATION=5 \
#   bash benchmarks/gpu_hits.sh
set -u
OUT=${OUT:-/tmp/gpu-out}
WORK=${WORK:-/tmp/gpu-work}
EVENTS=${EVENTS:-3000}
SEED=${SEED:-4646}                  # training events no shipped model saw
WORKERS=${WORKERS:-16}
BATCHES=${BATCHES:-"1 4 8"}
PROBE_STEPS=${PROBE_STEPS:-20}
TRAIN_S=${TRAIN_S:-240}
BATCH=${BATCH:-4}
VALIDATION=${VALIDATION:-100}
ACCELERATOR=${ACCELERATOR:-gpu}
DEVICE=$([ "$ACCELERATOR" = gpu ] && echo cuda || echo cpu)
source "$(dirname "$0")/gpu_common.sh"
nproc

stamp "simulate $EVENTS events, seed $SEED, $WORKERS workers"
python3 -m protoseg simulate -o "$WORK/train.h5" -n "$EVENTS" --seed "$SEED" --workers "$WORKERS" > "$WORK/simulate.log" 2>&1 \
  || { tail -n 5 "$WORK/simulate.log"; exit 2; }
tail -n 2 "$WORK/simulate.log"

stamp "training throughput, batches of $BATCHES events"
python3 benchmarks/bench_hits_train.py "$WORK/train.h5" --device "$DEVICE" --batch-sizes $BATCHES --steps "$PROBE_STEPS" \
  --results "$OUT/hits_train_throughput.json" 2>&1 | tail -n 8

stamp "train configs/hits-cpu-8level.yaml for $TRAIN_S s of wall time, $BATCH events per step"
timeout $(( TRAIN_S + 120 )) python3 -m protoseg train --config configs/hits-cpu-8level.yaml --data "$WORK/train.h5" \
  --out "$WORK/run" --accelerator "$ACCELERATOR" --set data.batch_size="$BATCH" --set data.num_workers=6 \
  --set data.validation_events="$VALIDATION" --set trainer.cpu_time_budget_s=0 --set trainer.wall_time_budget_s="$TRAIN_S" \
  --set trainer.limit_train_batches=250 --set trainer.keep_checkpoints=false --set seed="$SEED" > "$WORK/train.log" 2>&1
echo "train exit $?"
tail -n 3 "$WORK/train.log"

stamp "results"
# a run cut short by the timeout has no weights file: nothing is taken from a checkpoint
[ -f "$WORK/run/model.safetensors" ] && cp "$WORK/run/model.safetensors" "$WORK/run/model.json" "$OUT/"
(cd "$WORK" && tar czf "$OUT/logs.tar.gz" simulate.log train.log run/csv run/config.yaml 2>/dev/null)
ls -la "$OUT"
stamp "done"
