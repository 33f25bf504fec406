#!/usr/bin/env bash
# One GPU burst of de-identification generator training, sized for a ~10-minute lease.
#
#   bash tools/train/gpu_burst.sh PACK OUT [--set key=value ...]
#
# PACK: folder from `tools/train/pack_faces.py pack` (carried to the GPU machine; keep it
# in a folder .git/info/exclude ignores). OUT: where the burst's results go ($OUT on the
# device tool: at most 8 files of 16 MiB come back, so the optimiser state stays behind).
# Starts from the committed weights (configs/train_deid_gpu.yaml's init_weights), trains
# for BURST_MINUTES (default 7), then exports the best validation checkpoint as deid_96.pt
# and the two ONNX graphs into OUT/weights, with the loss curves and the log. The next
# burst resumes from those weights once they are committed. Commit them with the harness numbers
# (tools/eval/deid_video.py, tools/eval/deid_metrics.py) measured here on the CPU.
set -euo pipefail
pack=${1:?usage: gpu_burst.sh PACK OUT [--set key=value ...]}
out=${2:?usage: gpu_burst.sh PACK OUT [--set key=value ...]}
shift 2
cd "$(dirname "$0")/../.."
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
cache=${TMPDIR:-/tmp}/deid-cache
python3 tools/train/pack_faces.py unpack "$pack" --cache "$cache"
run=${TMPDIR:-/tmp}/deid-run
mkdir -p "$out"
python3 tools/train/train_deid.py --config configs/train_deid_gpu.yaml --fresh \
  --set cache="$cache" --set out="$run" --set e_id_weights="$pack/e_id.pt" \
  --set max_minutes="${BURST_MINUTES:-7}" "$@" 2>&1 | tee "$out/train.log"
ckpt=$run/best.pt  # absent when no checkpoint beat the starting weights' validation score
[ -f "$ckpt" ] || { ckpt=$run/last.pt; echo "no better validation score: exporting last.pt"; }
python3 tools/train/export_deid.py --checkpoint "$ckpt" --out "$out/weights" \
  2>&1 | tee -a "$out/train.log"
cp "$run/loss_curves.png" "$out/" 2>/dev/null || true
