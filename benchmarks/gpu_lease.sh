#!/usr/bin/env bash
# The whole of one short GPU lease (about 8 minutes of one GPU), run from the repository root:
#   1. unpack the image files that travelled packed (benchmarks/device_images.py: hit pixels only);
#   2. train, at the same time on the one GPU (each alone leaves it idle between its small kernels):
#      A. configs/default-gpu.yaml: protoseg's CPU recipe on a 4x wider network, from scratch;
#      B. configs/seed2018.yaml: the 2018 study's FC-DenseNet103 recipe (batch 2, Adam, CE, max
#         normalisation, plateau schedule) on images made as in 2018, with Keras' default Adam
#         learning rate 1e-3 so that a few minutes get somewhere;
#      both stopped by a wall-clock budget (trainer.wall_time_budget_s);
#   3. evaluate B on three 2018-style test sets and A on one, on the GPU;
#   4. leave in $OUT: A's weights and card, B's weights in float16 (two files: 16 MB a file comes
#      back), and every log, card, metrics CSV and evaluation in results.tar.gz;
#   5. fine-tune A alone (A2: from A's best weights, learning rate 3e-4): the shipped `tiramisu-gpu` (shipped
#      as `default` until model 2.0.0).
# Budgets: BUDGET_S (steps 2, each model; 410 s) and BUDGET2_S (step 5; 180 s). Steps 1-4 took 526 s and
# step 5 210 s on an H200 (2026-11-30; README "Trained on a GPU"). The image files travel packed:
#   train4: tiramisu-gpu's training images (configs/default-gpu.yaml's commands: seed 5551, 2300 / 100 split)
#   train18: protoseg images train2-events.h5 train4-events.h5 train5-events.h5 -o gpu18-images.h5
#            --beam-label-rule 2018 --split 0.92 0.08 0 --seed 18   (seeds 8808, 5551, 7707: 1220 of 6000 events)
#   unseen18 / final18 / xcom18 / final: the test images of seeds 8086 / 60606 / 31337 / 60606 (README)
#   python benchmarks/device_images.py pack train4-images.h5 .device/train4   (likewise for each; 56 MB in all)
set -u
OUT=${OUT:-/tmp/gpu-out}
WORK=${WORK:-/tmp/gpu-work}
BUDGET_S=${BUDGET_S:-410}
BUDGET2_S=${BUDGET2_S:-180}
ACCELERATOR=${ACCELERATOR:-gpu}     # cpu and PRECISION=32 for a smoke test of this script without a GPU
PRECISION=${PRECISION:-bf16-mixed}
EVAL_DEVICE=${EVAL_DEVICE:-cuda}
LIMIT=${LIMIT:-1.0}                 # a smoke test: LIMIT=2 (batches per epoch and per validation)
mkdir -p "$OUT" "$WORK"
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - start )) s] $*"; }

collect() {  # called after training and again after evaluation: what is in $OUT comes back even if the lease ends
  [ -f "$WORK/default-gpu/model.safetensors" ] && cp "$WORK/default-gpu/model.safetensors" "$OUT/default-gpu.safetensors" && cp "$WORK/default-gpu/model.json" "$OUT/default-gpu.json"
  [ -f "$WORK/default-gpu/model-from-checkpoint.safetensors" ] && cp "$WORK/default-gpu/model-from-checkpoint.safetensors" "$OUT/default-gpu-from-checkpoint.safetensors"
  (cd "$WORK" && tar czf "$OUT/results.tar.gz" --exclude='*.ckpt' --exclude='*.safetensors' --exclude='*.h5' --exclude='tensorboard' \
    train-a.log train-b.log nvidia-smi-60s.txt default-gpu seed2018-gpu eval-* 2>/dev/null)
}

stamp "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
nproc
python3 -c "import torch, lightning, torchmetrics, h5py, safetensors; print('torch', torch.__version__, 'lightning', lightning.__version__, 'torchmetrics', torchmetrics.__version__, torch.cuda.get_device_name(0))"

stamp "unpack"
for stem in train4 train18 unseen18 final18 xcom18 final; do
  python3 benchmarks/device_images.py unpack ".device/$stem" "$WORK/$stem.h5" &
done
wait
ls -la "$WORK"

stamp "train A (default-gpu) and B (seed2018, FC-DenseNet103) at once, $BUDGET_S s each"
timeout $(( BUDGET_S + 90 )) python3 -m protoseg train --config configs/default-gpu.yaml --data "$WORK/train4.h5" \
  --out "$WORK/default-gpu" --accelerator $ACCELERATOR --precision $PRECISION --set trainer.wall_time_budget_s=$BUDGET_S \
  --set trainer.limit_train_batches=$LIMIT --set trainer.limit_val_batches=$LIMIT > "$WORK/train-a.log" 2>&1 &
pid_a=$!
timeout $(( BUDGET_S + 90 )) python3 -m protoseg train --config configs/seed2018.yaml --data "$WORK/train18.h5" \
  --out "$WORK/seed2018-gpu" --accelerator $ACCELERATOR --precision $PRECISION --set trainer.channels_last=true \
  --set trainer.benchmark=true --set trainer.deterministic=false --set optim.lr=1.0e-3 --set data.num_workers=3 \
  --set trainer.progress_bar=false --set trainer.wall_time_budget_s=$BUDGET_S \
  --set trainer.limit_train_batches=$LIMIT --set trainer.limit_val_batches=$LIMIT > "$WORK/train-b.log" 2>&1 &
pid_b=$!
( sleep 60; nvidia-smi --query-gpu=utilization.gpu,memory.used,clocks.sm --format=csv ) > "$WORK/nvidia-smi-60s.txt" 2>&1 &
wait $pid_a; echo "A exit $?"; wait $pid_b; echo "B exit $?"
tail -n 4 "$WORK/train-a.log" "$WORK/train-b.log"

stamp "weights out of the best checkpoint where a run was cut short"
python3 - "$WORK" <<'EOF'
import sys, pathlib, torch
from safetensors.torch import save_file
for run in ("default-gpu", "seed2018-gpu"):
    folder = pathlib.Path(sys.argv[1]) / run
    if (folder / "model.safetensors").is_file():
        continue
    ckpts = [p for p in (folder / "checkpoints" / "best.ckpt", folder / "checkpoints" / "last.ckpt") if p.is_file()]
    if not ckpts:
        print(run, "has no checkpoint"); continue
    state = torch.load(ckpts[0], map_location="cpu", weights_only=True)["state_dict"]
    save_file({k.removeprefix("model."): v.contiguous() for k, v in state.items() if k.startswith("model.")},
              str(folder / "model-from-checkpoint.safetensors"))
    print(run, "weights taken from", ckpts[0].name)
EOF

stamp "results of training"
collect
python3 - "$WORK" "$OUT" <<'EOF'
import sys, pathlib
from safetensors.torch import load_file, save_file
folder = pathlib.Path(sys.argv[1]) / "seed2018-gpu"
source = next((p for p in (folder / "model.safetensors", folder / "model-from-checkpoint.safetensors") if p.is_file()), None)
if source is not None:
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in load_file(str(source)).items()}
    keys = sorted(state)
    half = len(keys) // 2
    for part, names in (("1", keys[:half]), ("2", keys[half:])):
        save_file({k: state[k].contiguous() for k in names}, str(pathlib.Path(sys.argv[2]) / f"seed2018-gpu-fp16-part{part}.safetensors"))
    print("seed2018-gpu weights from", source.name, "in float16,", len(keys), "tensors")
EOF

stamp "evaluate"
for set in unseen18 final18 xcom18; do
  timeout 60 python3 -m protoseg evaluate "$WORK/seed2018-gpu" "$WORK/$set.h5" --device $EVAL_DEVICE --no-displays -o "$WORK/eval-b-$set" > "$WORK/eval-b-$set.log" 2>&1 &
done
timeout 60 python3 -m protoseg evaluate "$WORK/default-gpu" "$WORK/final.h5" --device $EVAL_DEVICE --no-displays -o "$WORK/eval-a-final" > "$WORK/eval-a-final.log" 2>&1 &
wait
for f in "$WORK"/eval-*/metrics.json; do echo "$f"; python3 -c "import json,sys; m=json.load(open(sys.argv[1])); print({k: v for k, v in m.items() if 'iou' in k.lower()})" "$f"; done

stamp "results"
collect

# 5. A again, alone on the GPU: from A's best weights at a third of its learning rate (the shipped
#    tiramisu-gpu; on 2026-11-30 this ran as a second command on the same warm machine).
stamp "train A2 (default-gpu fine-tune), $BUDGET2_S s"
timeout $(( BUDGET2_S + 70 )) python3 -m protoseg train --config configs/default-gpu.yaml --data "$WORK/train4.h5" \
  --out "$WORK/default-gpu-2" --accelerator $ACCELERATOR --precision $PRECISION --set init_from="$WORK/default-gpu" \
  --set optim.lr=3.0e-4 --set trainer.wall_time_budget_s=$BUDGET2_S \
  --set trainer.limit_train_batches=$LIMIT --set trainer.limit_val_batches=$LIMIT > "$WORK/train-a2.log" 2>&1
tail -n 3 "$WORK/train-a2.log"
[ -f "$WORK/default-gpu-2/model.safetensors" ] && cp "$WORK/default-gpu-2/model.safetensors" "$OUT/default-gpu-2.safetensors" \
  && cp "$WORK/default-gpu-2/model.json" "$OUT/default-gpu-2.json" && cp "$WORK/default-gpu-2/csv/version_0/metrics.csv" "$OUT/default-gpu-2-metrics.csv"
ls -la "$OUT"
stamp "done"
