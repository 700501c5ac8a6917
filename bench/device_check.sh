#!/usr/bin/env bash
# The GPU checks of issue 8 in one run (~5 minutes on an H200), for a machine with an
# NVIDIA driver, CUDA 13, python3 with PyTorch and no Caffe, no network: the device
# machine. Run from the repository root there:
#   bash bench/device_check.sh [runs/gpu-bundle/hybridnet-caffe-cuda.tar.xz]
# (make the archive here with `make gpu-bundle`; the device tool carries runs/gpu-bundle).
# Results: $OUT (default /tmp/device-check), a summary at the end of the output.
#   1. nvidia-smi, `caffe device_query -gpu 0`, ldd of the bundle's caffe there
#   2. `caffe time -gpu 0` on DeepLab-ASPP's training net, FP32 and CAFFE_TF32=1
#      (per-layer times; stock `caffe time` aborts on A2's Threshold layers, so A2 is
#      timed by step 3)
#   3. bench/train.py on the GPU: A2 and DeepLab-ASPP training iterations, Caffe vs the
#      PyTorch module, FP32 and TF32 (-> $OUT/train.json, $OUT/PERFORMANCE-gpu.md)
#   4. bench/tf32_parity.py: the loss at iterations 0 and 1, TF32 vs FP32 (tol 1e-3), of
#      DeepLab-ASPP (one SGD step at 1e-3) and A2 (lr 0: its random init explodes); also
#      the single-GPU `caffe train -gpu 0` check
# Each step has its own time limit; a failing step is reported and the others still run.
# Environment: NETS ("a2 deeplab_aspp"), ITERS (10), OUT.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUNDLE=${1:-$ROOT/runs/gpu-bundle/hybridnet-caffe-cuda.tar.xz}
OUT=${OUT:-/tmp/device-check}
NETS=${NETS:-a2 deeplab_aspp}
ITERS=${ITERS:-10}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
W=$(mktemp -d /tmp/hybridnet-gpu.XXXXXX)
declare -A RESULT
START=$(date +%s)

step() {  # step NAME TIMEOUT_S COMMAND...: run, log to $OUT/NAME.log, remember the outcome
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  echo "=== $name (limit ${limit}s): $*"
  timeout "$limit" "$@" > >(tee "$OUT/$name.log") 2>&1
  local rc=$?
  RESULT[$name]="rc=$rc $(( $(date +%s) - t0 ))s"
  echo "=== $name: ${RESULT[$name]}"
  return 0
}

[ -f "$BUNDLE" ] || { echo "no bundle at $BUNDLE (make gpu-bundle on a machine with the CUDA build)" >&2; exit 1; }
tar -C "$W" -xJf "$BUNDLE" || { echo "cannot unpack $BUNDLE" >&2; exit 1; }
B=$W/hybridnet-caffe-cuda
CAFFE=$B/bin/caffe
export PYTHONPATH="$B/pyshim:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
head -4 "$B/MANIFEST.txt"

step gpu 60 bash -c "nvidia-smi; $PY -c 'import torch; print(\"torch\", torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))'"
step ldd 30 "$CAFFE" --ldd
step device_query 60 "$CAFFE" device_query -gpu 0
step time_aspp_fp32 90 "$CAFFE" time -gpu 0 -iterations "$ITERS" -model "$B/nets/deeplab_aspp.train.prototxt"
step time_aspp_tf32 90 env CAFFE_TF32=1 "$CAFFE" time -gpu 0 -iterations "$ITERS" -model "$B/nets/deeplab_aspp.train.prototxt"
# shellcheck disable=SC2086
step train 240 "$PY" "$ROOT/bench/train.py" --nets-dir "$B/nets" --nets $NETS --no-cpu --gpu yes \
  --caffe-gpu "$CAFFE" --iters "$ITERS" --json "$OUT/train.json" --out "$OUT/PERFORMANCE-gpu.md"
step tf32_parity_aspp 90 "$PY" "$ROOT/bench/tf32_parity.py" --caffe "$CAFFE" --base-lr 1e-3 \
  --net "$B/nets/deeplab_aspp.parity.prototxt" --json "$OUT/tf32_parity_aspp.json"
step tf32_parity_a2 90 "$PY" "$ROOT/bench/tf32_parity.py" --caffe "$CAFFE" --base-lr 0 \
  --net "$B/nets/a2.parity.prototxt" --json "$OUT/tf32_parity_a2.json"

echo
echo "=== summary ($(( $(date +%s) - START )) s)"
for k in gpu ldd device_query time_aspp_fp32 time_aspp_tf32 train tf32_parity_aspp tf32_parity_a2; do
  printf '%-16s %s\n' "$k" "${RESULT[$k]:-not run}"
done
grep -h 'Average Forward-Backward' "$OUT"/time_aspp_*.log 2>/dev/null
grep -h 'TF32 parity' "$OUT"/tf32_parity_*.log 2>/dev/null
sed -n '/^| net /,/^$/p' "$OUT/PERFORMANCE-gpu.md" 2>/dev/null
rm -rf "$W"
