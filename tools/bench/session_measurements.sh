#!/usr/bin/env bash
# The measurements quoted in closing notes, in one go (about 5 minutes on 2 cores).
# Usage: bash tools/bench/session_measurements.sh OUT_DIR
set -euo pipefail
out=${1:-bench-out}
mkdir -p "$out"
py=${PYTHON:-.venv/bin/python}
for size in 1280x720 1920x1080; do
  $py -m masquerade bench --frames 90 --size $size --json "$out/bench_default_$size.json" >/dev/null
  $py -m masquerade bench --frames 90 --size $size --config configs/live.yaml \
      --json "$out/bench_live_$size.json" >/dev/null
done
$py -m masquerade bench --models --json "$out/bench_models_default.json" >/dev/null
$py -m masquerade bench --models --config configs/live.yaml \
    --json "$out/bench_models_live.json" >/dev/null
for backend in pyav gstreamer; do
  $py tools/bench/live_latency.py --backend $backend --seconds 20 --config configs/live.yaml \
      --out "$out/latency_$backend.json"
done
$py tools/bench/live_latency.py --seconds 14 --restart-camera-at 6 --config configs/live.yaml \
    --out "$out/reconnect.json"
for n in 1 2 3; do
  $py tools/bench/live_latency.py --streams $n --seconds 15 --config configs/live.yaml \
      --out "$out/streams_$n.json"
done
