#!/usr/bin/env bash
# The whole accelerator run as one script (the device tool lends a GPU for a few minutes a session).
# Its image's python3 has jax, flax, optax, orbax and torch; the repo goes on PYTHONPATH.
#
# usage (repo root): bash benchmarks/device_run.sh OUTDIR [TOTAL_SECONDS]
#   with the device tool: command "bash benchmarks/device_run.sh $OUT", timeout_s 570
#
# Everything runs within TOTAL_SECONDS (default 530: 9 minutes with the kill grace) from the start.
# Steps run in order of priority, each in its own process under `timeout` min(its cap, the time
# left), each writing its own OUTDIR/NAME.json and OUTDIR/NAME.log; a step that fails or times out
# does not stop the ones after it, and one with under 20 s left is skipped. OUTDIR/steps.tsv lists
# every step's exit status (124 = timed out: its JSON holds what finished, or is missing) and
# seconds. The caps add up to more than the budget: the last steps (classic, bpnet, deeplift, hlo)
# run only when the first ones finish early. `python -m benchmarks` and the sweep rewrite their JSON after each precision / row,
# so a step cut short keeps what it measured.
#
# Rehearsal on a CPU (same steps and options, --quick sizes and batches, chunks 16,32, hlo of the
# forward only at batch 2 with small ceiling measurements, caps times BENCH_CAP_SCALE):
#   BENCH_DEVICE=cpu BENCH_CAP_SCALE=4 bash benchmarks/device_run.sh /tmp/rehearsal 2400
set -uo pipefail
out=${1:-bench_out}
total=${2:-530}
scale=${BENCH_CAP_SCALE:-1}
dev=${BENCH_DEVICE:-gpu}
mkdir -p "$out"
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
if [[ $dev == cpu ]]; then
    export JAX_PLATFORMS=cpu
    quick=(--quick)
    chunks=16,32
    hlo_args=(--tasks forward --batch 2 --repeats 2 --gemm-n 1024 --copy-mib 256)
    batch=()
    scan_args=(--windows 2,4 --repeats 1 --shuffles 4)
else
    quick=()
    chunks=64,128,256,512,1000
    hlo_args=()
    batch=(--batch 256)
    scan_args=(--model published --precision bf16 --windows 8,24 --repeats 2)
fi
start=$SECONDS
printf 'step\trc\tseconds\n' > "$out/steps.tsv"

# step NAME CAP COMMAND...: COMMAND under `timeout min(CAP, time left)`, its output in OUT/NAME.log
step() {
    local name=$1 cap=$(($2 * scale))
    shift 2
    local left=$((total - (SECONDS - start)))
    local limit=$((cap < left ? cap : left))
    if ((limit < 20)); then
        echo "== $name: skipped (${left}s left of ${total}s)" | tee -a "$out/run.log"
        printf '%s\tskipped\t0\n' "$name" >> "$out/steps.tsv"
        return 0
    fi
    echo "== $name (timeout ${limit}s): $*" | tee -a "$out/run.log"
    local t0=$SECONDS rc
    timeout --kill-after=5 "$limit" "$@" > "$out/$name.log" 2>&1
    rc=$?
    tail -n 25 "$out/$name.log"
    echo "== $name: exit $rc after $((SECONDS - t0))s" | tee -a "$out/run.log"
    printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - t0))" >> "$out/steps.tsv"
    return 0
}

step environment 30 bash -c "(nvidia-smi -L || echo 'no nvidia-smi'); $py -c \"import jax, flax, torch; \
print('jax', jax.__version__, 'flax', flax.__version__, 'torch', torch.__version__, jax.devices())\""
# 1. fast ISM position_chunk sweep, published model (narrow on a CPU rehearsal), bf16 then fp32
step position_chunk 150 "$py" -m benchmarks.mutmap --device "$dev" "${quick[@]}" --precision bf16,fp32 \
    --position-chunks "$chunks" --json "$out/position_chunk.json"
# 2. the table of the last H200 run, one JSON per step; bf16 (the goals) first, so that a step
#    cut short by its timeout still has those rows (the JSON is rewritten after each precision)
step forward_saliency 170 "$py" -m benchmarks --device "$dev" "${quick[@]}" --precision bf16,fp32,tf32 \
    --tasks forward,saliency "${batch[@]}" --out "$out/forward_saliency.json"
step mutmap 100 "$py" -m benchmarks --device "$dev" "${quick[@]}" --precision bf16,fp32 --tasks mutmap \
    --skip-torch-compile --out "$out/mutmap.json"
# the scan pipeline against its kernel alone (issue 14 item 4), published model, bf16 (demo on a CPU)
step scan 120 "$py" -m benchmarks.scan --device "$dev" "${scan_args[@]}" --json "$out/scan.json"
# conv1 PWMs: float32, uint8 one-hot and int8 base-index input in one run
step pwms 45 "$py" -m benchmarks --device "$dev" "${quick[@]}" --precision bf16 --tasks pwms \
    --out "$out/pwms.json"
step classopt 60 "$py" -m benchmarks --device "$dev" "${quick[@]}" --precision bf16 --tasks classopt \
    --out "$out/classopt.json"
step classic 60 "$py" -m benchmarks --device "$dev" "${quick[@]}" --precision fp32 --tasks classic \
    --out "$out/classic.json"
# BPNet needs bpnet-lite and tangermeme (the image may lack them: then the step exits 1 at once)
step bpnet 60 bash -c "$py -c 'import bpnetlite, tangermeme' || exit 1; $py -m benchmarks --device $dev \
${quick[*]} --precision fp32 --tasks bpnet --out $out/bpnet.json"
# DeepSHAP beside tangermeme (no GPU row yet), only when time is left and tangermeme is installed
step deeplift 90 bash -c "$py -c 'import tangermeme' || exit 1; $py -m benchmarks --device $dev ${quick[*]} \
--precision fp32,bf16 --tasks deeplift --out $out/deeplift.json"
# which cuDNN algorithms XLA's autotuner gave the fp32 program's bias-fused convolutions (the fp32
# gap to PyTorch lies in their rate: benchmarks/README.md, "The GPU program ..."); GPU only
if [[ $dev != cpu ]]; then
    step autotune_fp32 60 env XLA_FLAGS="--xla_gpu_dump_autotune_results_to=$out/autotune_fp32.textproto" \
        "$py" -m benchmarks --device "$dev" --precision fp32 --tasks forward "${batch[@]}" \
        --out "$out/autotune_fp32.json"
fi
# the compiled GPU program's FLOPs and bytes, each executable timed, this device's ceilings measured
# (GEMM per precision, copy bandwidth): the achieved fractions of both floors; whatever time is left
step hlo 600 "$py" -m benchmarks.hlo "${hlo_args[@]}" --time --ceilings measured --precision bf16,fp32 \
    --json "$out/hlo.json"
echo "== done in $((SECONDS - start))s of ${total}s"
cat "$out/steps.tsv"
