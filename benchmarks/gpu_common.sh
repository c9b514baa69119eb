# Shared start of the prepared GPU-lease scripts (benchmarks/gpu_continue.sh, benchmarks/gpu_hits.sh), sourced
# after each has set OUT and WORK: the output folders, protoseg from this checkout, a clock for the log, and
# what the machine is (the numbers brought back are only meaningful with the device named).
mkdir -p "$OUT" "$WORK"
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - start )) s] $*"; }

stamp "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
python3 -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__, 'cuda', torch.cuda.is_available())"
