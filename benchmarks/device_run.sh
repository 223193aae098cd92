#!/usr/bin/env bash
# The whole accelerator run as one script (the device tool lends a GPU for a few minutes a session).
# Its image's python3 has jax, flax, optax, orbax and torch; the repo goes on PYTHONPATH.
# usage (repo root): bash benchmarks/device_run.sh OUTDIR
set -uo pipefail
out=${1:-bench_out}
mkdir -p "$out"
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
nvidia-smi -L
python3 -c "import jax, flax, torch; print('jax', jax.__version__, 'flax', flax.__version__, 'torch', torch.__version__, jax.devices())"
python3 -m benchmarks --device gpu --precision fp32,tf32,bf16 --tasks forward,saliency --batch 256 --out "$out/forward_saliency.json"
python3 -m benchmarks --device gpu --precision fp32,bf16 --tasks mutmap --skip-torch-compile --out "$out/mutmap.json"
python3 -m benchmarks --device gpu --precision bf16 --tasks classopt,pwms --out "$out/classopt_pwms.json"
python3 -m benchmarks --device gpu --precision fp32 --tasks classic --out "$out/classic.json"
# BPNet needs bpnet-lite and tangermeme (the image may lack them: then this row set is skipped)
python3 -c "import bpnetlite, tangermeme" 2>/dev/null \
  && python3 -m benchmarks --device gpu --precision fp32 --tasks bpnet --out "$out/bpnet.json" \
  || echo "bpnet: bpnet-lite/tangermeme not installed; skipped"
# the compiled GPU program's FLOPs and bytes (compiles only)
python3 -m benchmarks.hlo --precision fp32,bf16 --json "$out/hlo_gpu.json" > "$out/hlo_gpu.txt" 2>&1
