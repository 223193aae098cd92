"""Where the time goes, read from the compiled program: FLOPs, bytes moved, fusions, floors.

For each task (forward, saliency, fast ISM, DeepLIFT/SHAP) the jitted kernel is lowered and
compiled for the current backend, and XLA's own cost analysis of the *optimized* program gives the
FLOPs it performs and the bytes its instructions read and write. From those:

- the FLOP floor: FLOPs / the device's peak rate at the task's precision;
- the memory-traffic floor: bytes accessed / the device's memory bandwidth (what the program as
  compiled must move, not what an ideal program would). Two counts: XLA's ("bytes accessed", which
  counts inside fusions), and :func:`benchmarks.deviceless.program_traffic`'s from the HLO text
  (each kernel reads its operands and writes its result once; ``traffic_bytes_per_unit``), the
  only one for a GPU compiled without the device (``--compile-for``);
- the sequential floor: the FLOPs at the peak plus the elementwise fusions' bytes at the bandwidth
  (convolutions and the elementwise kernels between them run one after the other);
- with a time, the achieved fraction of each floor (floor / time). ``--time`` runs the very
  executable that was analysed (a warm-up call, then the median of ``--repeats`` calls after
  ``block_until_ready``); ``--measured task:precision=seconds`` takes a time from elsewhere.

Ceilings (``--ceilings``, alias ``--device-floors``): ``h100`` / ``h200`` are named figures;
``measured`` measures this device in the same run: the sustained rate of a large square GEMM
through ``jnp.dot`` under :func:`jaxmotif.precision.with_precision` at each precision, and the
bandwidth of ``x + 1`` in place (donated) over an array far larger than any cache, bytes = read +
write. Each precision's floor is taken against that precision's GEMM, whatever the backend does with
it (on a CPU, bf16 may be converted to float32 around the arithmetic: then so is the ceiling).

The compiled program is backend-specific: on the CPU build XLA fuses differently from the GPU
build, so the byte count is the CPU program's unless ``--compile-for h100|h200`` compiles the GPU's
(deviceless: see :mod:`benchmarks.deviceless`). The listing names the kernels that move the most.

example:
  python -m benchmarks.hlo                              # published DeepHistone, CPU compile, all tasks
  python -m benchmarks.hlo --tasks forward --batch 256 --precision bf16 --dump hlo_out/
  python -m benchmarks.hlo --time --ceilings measured --batch 16 --deeplift-batch 2 --json out.json
  python -m benchmarks.hlo --compile-for h200 --precision fp32,bf16   # the GPU program, no GPU needed
"""

import argparse
import os
import sys
from collections import Counter
from pathlib import Path

import jax
import numpy as np

from benchmarks.common import Timing, jax_sync, time_call
from benchmarks.deviceless import GPU_TARGETS, abstract_args, parse_computations, program_traffic
from jaxmotif.precision import PRECISIONS

# Device ceilings. H100: measured in shared/ANCHORS.md (copy 3.0 TB/s; matmul fp32 52, tf32 414,
# bf16 794 TFLOP/s). H200: same tensor cores, 4.3 TB/s HBM3e (vendor figure).
DEVICES = {
    "h100": {"bandwidth": 3.0e12, "fp32": 52e12, "tf32": 414e12, "bf16": 794e12},
    "h200": {"bandwidth": 4.3e12, "fp32": 52e12, "tf32": 414e12, "bf16": 794e12},
}
CEILINGS = (*DEVICES, "measured")
TASKS = ("forward", "saliency", "ism_fast", "deeplift")
ISM_TIMED = ("unrolled", "chunked")


def cost(compiled) -> dict:
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list | tuple):
        analysis = analysis[0] if analysis else {}
    return {"flops": float(analysis.get("flops", 0.0)), "bytes": float(analysis.get("bytes accessed", 0.0))}


def temp_bytes(compiled) -> float | None:
    """Scratch memory the executable allocates (XLA's memory analysis), if the backend reports it."""
    try:
        return float(compiled.memory_analysis().temp_size_in_bytes)
    except Exception:  # not every backend / version implements it; the analysis does not need it
        return None


def timing_fields(t: Timing, units: float) -> dict:
    """Per-unit seconds of a timing: median wall (``time_s``), its spread, and median process CPU."""
    return {
        "time_s": t.median_s / units,
        "time_min_s": min(t.times) / units,
        "time_max_s": max(t.times) / units,
        "cpu_time_s": t.cpu_median_s / units,
        "repeats": t.repeats,
        "first_call_s": t.compile_s,
    }


def analyse(
    name: str,
    fn,
    args,
    *,
    units: float,
    unit: str,
    precision: str,
    dump: Path | None,
    repeats: int = 0,
    timed=None,
    target=None,
) -> dict:
    """Compile ``fn(*args)`` and summarise its optimized HLO; ``units`` = sequences or windows per call.

    With ``repeats``, the compiled executable itself is then timed on ``args`` (``time_call``; the
    arrays put on the device first, so no host transfer is timed), or ``timed = (fn, note)``'s
    ``fn(*args)`` is, where the analysed program is not the one worth running.

    ``target``: a sharding onto a compile-only GPU (:mod:`benchmarks.deviceless`): the program is
    compiled for it instead, its bytes are counted from the HLO text (XLA reports no cost for
    compile-only devices) and its FLOPs are XLA's count of the program before optimization.
    """
    if target is None:
        compiled = jax.jit(fn).lower(*args).compile()
    else:
        compiled = jax.jit(fn).lower(*abstract_args(args, target)).compile()
    text = compiled.as_text()
    traffic = program_traffic(text)
    if dump is not None:
        dump.mkdir(parents=True, exist_ok=True)
        (dump / f"{name}_{precision}.hlo.txt").write_text(text)
    computations, _, entry = parse_computations(text)
    ops = Counter(i.op for i in computations[entry])  # the top-level instructions, by kind
    if target is None:
        c = cost(compiled)
    else:  # no cost analysis on a compile-only device: FLOPs before optimization, bytes from the text
        c = {"flops": float(jax.jit(fn).lower(*args).cost_analysis()["flops"]), "bytes": float(traffic.bytes)}
    loops = text.count(" while(")
    if loops:
        print(f"{name}: {loops} while loop(s): cost analysis counts each body once", file=sys.stderr)
    elementwise = sum(b for op, b in traffic.by_op.items() if op in ("fusion:kLoop", "fusion:kInput"))
    row = {
        "while_loops": loops,
        "task": name,
        "precision": precision,
        "units": units,
        "unit": unit,
        "flops_per_unit": c["flops"] / units,
        "bytes_per_unit": c["bytes"] / units,
        "intensity": c["flops"] / max(c["bytes"], 1.0),
        "bytes_counted_by": "XLA cost analysis"
        if target is None
        else "benchmarks.deviceless.program_traffic",
        # the same counter for every program (CPU or GPU): operands + result of each kernel, once
        "traffic_bytes_per_unit": traffic.bytes / units,
        "elementwise_bytes_per_unit": elementwise / units,
        "kernels_per_call": traffic.kernels,
        "temp_bytes": None if target is not None else temp_bytes(compiled),
        "instructions": len(computations[entry]),
        "ops": dict(ops.most_common()),
        "largest": [(n, op, b / units) for b, n, op in traffic.largest[:6]],  # kernels moving the most
    }
    if repeats:
        fn, note = timed or (compiled, "the analysed executable")
        on_device = jax.device_put(args)
        load = os.getloadavg()[0]  # the host's 1-minute load before and after: other jobs' share
        t = time_call(lambda: fn(*on_device), repeats=repeats, sync=jax_sync)
        row.update(timing_fields(t, units), timed=note)
        row["load_1min"] = (load, os.getloadavg()[0])
        print(f"timed {name} ({precision}): {row['time_s']:.4g} s/{unit}", file=sys.stderr, flush=True)
    return row


def measure_ceilings(precisions, *, repeats: int, gemm_n: int | None = None, mib: int | None = None) -> dict:
    """This device's sustained GEMM rate (FLOP/s) per precision and memory bandwidth (bytes/s).

    GEMM: ``jnp.dot`` of two (n, n) matrices under :func:`jaxmotif.precision.with_precision` (fp32 =
    matmul precision highest, tf32, bf16), inputs already in the compute dtype and the bf16 product
    accumulated into a float32 result, so the timed program is the matmul alone; 2 n^3 FLOPs.
    Bandwidth: ``x + 1`` on a donated float32 array (updated in place, no allocation per call),
    read + write bytes. Sizes default by backend: n = 2048 and 512 MiB on a CPU, 8192 and 4 GiB on
    an accelerator.

    A ceiling is the best rate seen (the fastest of at least 10 calls): on a shared machine other
    jobs' load only ever slows a call down. ``per_cpu_second``: the same work per second of process
    CPU time (all threads), what a CPU-time fraction is taken against (far less sensitive to load,
    but blind to threads left idle).
    """
    import jax.numpy as jnp

    from jaxmotif.precision import with_precision

    cpu = jax.default_backend() == "cpu"
    n = gemm_n or (2048 if cpu else 8192)
    size = (mib or (512 if cpu else 4096)) * 2**20
    repeats = max(repeats, 10)
    rng = np.random.default_rng(0)
    a32, b32 = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    out = {
        "gemm_n": n,
        "copy_bytes": size,
        "timings": {},
        "per_cpu_second": {},
        "load_1min": os.getloadavg()[0],
    }
    for precision in precisions:
        dtype = jnp.bfloat16 if precision == "bf16" else jnp.float32
        a, b = jax.device_put(a32.astype(dtype)), jax.device_put(b32.astype(dtype))
        gemm = jax.jit(with_precision(lambda _, x, y: jnp.dot(x, y, preferred_element_type=jnp.float32),
                                      precision))  # fmt: skip
        t = time_call(lambda gemm=gemm, a=a, b=b: gemm(None, a, b), repeats=repeats, sync=jax_sync)
        out[precision] = 2.0 * n**3 / min(t.times)
        out["per_cpu_second"][precision] = 2.0 * n**3 / min(t.cpu_times)
        out["timings"][precision] = timing_fields(t, 1)
    step = jax.jit(lambda x: x + 1.0, donate_argnums=0)
    state = [jnp.zeros(size // 4, jnp.float32)]

    def add_one():
        state[0] = step(state[0])
        return state[0]

    t = time_call(add_one, repeats=repeats, sync=jax_sync)
    out["bandwidth"] = 2.0 * size / min(t.times)
    out["per_cpu_second"]["bandwidth"] = 2.0 * size / min(t.cpu_times)
    out["timings"]["bandwidth"] = timing_fields(t, 1)
    del state[0]
    out["load_1min"] = (out["load_1min"], os.getloadavg()[0])
    return out


def floors(row: dict, ceiling: dict, per_cpu_second: dict | None = None) -> dict:
    """FLOP and memory-traffic floors of a row under ``ceiling``; with a time, the achieved fractions.

    With ``per_cpu_second`` (measured CPU ceilings) and the row's process CPU time, also the
    fractions in CPU time: work / (ceiling per CPU-second x CPU seconds).
    """
    flop_s = row["flops_per_unit"] / ceiling[row["precision"]]
    byte_s = row["bytes_per_unit"] / ceiling["bandwidth"]
    # Convolutions/GEMMs and the elementwise fusions between them are separate kernels that run one
    # after the other: the FLOPs at the peak plus the elementwise bytes at full bandwidth.
    sequential_s = flop_s + row.get("elementwise_bytes_per_unit", 0.0) / ceiling["bandwidth"]
    out = {
        "flop_floor_s": flop_s,
        "memory_floor_s": byte_s,
        "sequential_floor_s": sequential_s,
        "bound": "memory" if byte_s > flop_s else "compute",
    }
    if row.get("time_s"):
        out["of_flop_floor"] = flop_s / row["time_s"]
        out["of_memory_floor"] = byte_s / row["time_s"]
        out["of_sequential_floor"] = sequential_s / row["time_s"]
    if row.get("time_min_s"):  # the fastest call: the least disturbed by other jobs on a shared host
        out["of_flop_floor_best"] = flop_s / row["time_min_s"]
        out["of_memory_floor_best"] = byte_s / row["time_min_s"]
    if per_cpu_second and row.get("cpu_time_s"):
        out["of_flop_floor_cpu"] = (
            row["flops_per_unit"] / per_cpu_second[row["precision"]] / row["cpu_time_s"]
        )
        out["of_memory_floor_cpu"] = row["bytes_per_unit"] / per_cpu_second["bandwidth"] / row["cpu_time_s"]
    return out


def _tasks(model, tasks, batch: int, precision: str, dump, deeplift_batch: int = 16, *, repeats: int = 0,
           ism_timed: str = "unrolled", target=None):  # fmt: skip
    from jaxmotif.attribution import saliency_kernel
    from jaxmotif.precision import with_precision

    cfg = model.config
    rng = np.random.default_rng(0)
    seq = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (batch, cfg.seq_len))]
    dnase = rng.gamma(1.0, 1.0, (batch, cfg.seq_len)).astype(np.float32) if cfg.has_dnase else None
    apply_fn = with_precision(model.apply, precision)
    common = {"precision": precision, "dump": dump, "repeats": repeats, "target": target}
    rows = []
    if "forward" in tasks:
        rows.append(
            analyse("forward", apply_fn, (model.params, seq, dnase), units=batch, unit="seq", **common)
        )
    if "saliency" in tasks:

        def sal(p, s, d):
            return saliency_kernel(apply_fn, p, s, d, (0,), "gradient")

        rows.append(analyse("saliency", sal, (model.params, seq, dnase), units=batch, unit="seq", **common))
    if "ism_fast" in tasks:
        from jaxmotif.ism import with_precision_fp32_head
        from jaxmotif.ism_fast import mutant_predictions_fast

        # One position chunk for the whole window: XLA's cost analysis counts a while-loop body
        # once, whatever its trip count, so the chunked program (32 positions per step on CPU,
        # 256 on GPU) would report one step's work. Unrolled, the window's FLOPs are all counted;
        # the bytes are the same intermediates written once each (weights read once, not per step).
        def ism(p, s, d, chunk=cfg.seq_len):
            return mutant_predictions_fast(model, p, s, d, position_chunk=chunk)

        # as mutation_map runs it: in bf16 the head's params stay float32 (the delta's precision)
        window = (model.params, seq[0], None if dnase is None else dnase[0])
        wrapped = with_precision_fp32_head(ism, precision)
        timed = None
        if repeats and ism_timed == "chunked":
            # the kernel users run (default position_chunk): the same work per window in a
            # while loop, so the unrolled program's FLOPs and bytes stand for it
            chunked = jax.jit(with_precision_fp32_head(lambda p, s, d: ism(p, s, d, None), precision))
            timed = (chunked, "mutant_predictions_fast, default position_chunk")
        rows.append(analyse("ism_fast", wrapped, window, units=1, unit="window", timed=timed, **common))
    if "deeplift" in tasks:
        from jaxmotif.deeplift import DEEPLIFT_OPS, deep_lift_shap_kernel, takes_fast_path

        # as benchmarks.deeplift times it: 20 references per sequence, target 0, DeepLIFT rules
        n_refs, n = 20, deeplift_batch
        refs = np.stack([rng.permuted(seq[:n], axis=1) for _ in range(n_refs)], axis=1)  # (n, R, L, 4)
        # the apply function jaxmotif.deep_lift_shap compiles (DeepLIFT rules, with_precision)
        dl_apply = with_precision(lambda p, a, b: model.apply(p, a, b, ops=DEEPLIFT_OPS), precision)
        # the kernel users run: 1 + R rows forward (rules recording), R rows transposed; never the
        # stacked 2R-row fallback, which would count twice the work
        d_shape = None if dnase is None else dnase.shape[1:]
        if not takes_fast_path(dl_apply, model.params, seq.shape[1:], d_shape):
            raise RuntimeError("deep_lift_shap_kernel would take its stacked fallback on this model")

        def dls(p, s, d, r):
            return deep_lift_shap_kernel(dl_apply, p, s, d, r, (0,), False)

        args = (model.params, seq[:n], None if dnase is None else dnase[:n], refs)
        row = analyse(f"deeplift ({n_refs} refs)", dls, args, units=n, unit="seq", **common)
        rows.append({**row, "kernel": "fast path: 1 + R rows forward, R rows transposed"})
    return rows


def _us(seconds: float, unit: str) -> str:
    return f"{seconds * 1e6:.1f} µs/{unit}" if seconds < 1e-2 else f"{seconds * 1e3:.1f} ms/{unit}"


def print_rows(rows, ceiling: dict, name: str, per_cpu: dict | None = None) -> None:
    """The table; fractions as median (fastest call), and in CPU time where ``per_cpu`` is given."""
    names = ("bandwidth", *(k for k in PRECISIONS if k in ceiling))
    print(f"ceilings ({name}): " + ", ".join(f"{k} {ceiling[k]:.3g}" for k in names))
    if per_cpu:
        print("per CPU-second: " + ", ".join(f"{k} {per_cpu[k]:.3g}" for k in names))
    header = (
        "| task | precision | GFLOP/unit | MB moved/unit | FLOP/byte | FLOP floor | memory floor | bound |"
    )
    header += " kernels | sequential floor | time (min–max) | CPU time | of FLOP floor | of memory floor |"
    header += " of sequential floor | in CPU time: FLOP, memory |"
    print(header)
    print("|" + "---|" * 16)
    for row in rows:
        f = floors(row, ceiling, per_cpu)
        t, unit = row.get("time_s"), row["unit"]
        timed = "" if t is None else _us(t, unit)
        if "time_min_s" in row:
            timed += f" ({_us(row['time_min_s'], unit)}–{_us(row['time_max_s'], unit)})"

        def frac(key, f=f):
            if key not in f:
                return ""
            return f"{f[key]:.1%}" + (f" ({f[key + '_best']:.1%})" if key + "_best" in f else "")

        cpu_fractions = ""
        if "of_flop_floor_cpu" in f:
            cpu_fractions = f"{f['of_flop_floor_cpu']:.1%}, {f['of_memory_floor_cpu']:.1%}"
        cells = [
            row["task"],
            row["precision"],
            f"{row['flops_per_unit'] / 1e9:.2f}",
            f"{row['bytes_per_unit'] / 1e6:.1f}",
            f"{row['intensity']:.0f}",
            _us(f["flop_floor_s"], unit),
            _us(f["memory_floor_s"], unit),
            f["bound"],
            str(row["kernels_per_call"]),
            _us(f["sequential_floor_s"], unit),
            timed,
            _us(row["cpu_time_s"], unit) if "cpu_time_s" in row else "",
            frac("of_flop_floor"),
            frac("of_memory_floor"),
            frac("of_sequential_floor"),
            cpu_fractions,
        ]
        print("| " + " | ".join(cells) + " |")
    for row in rows:
        ops = ", ".join(f"{op} {n}" for op, n in row["ops"].items())
        print(f"\n{row['task']} ({row['precision']}): {row['instructions']} top-level instructions: {ops}")
        if row.get("timed"):
            print(f"  timed: {row['timed']}")
        for name_, op, b in row["largest"]:
            print(f"  moves the most: {name_} ({op}) {b / 1e6:.2f} MB/{row['unit']}")


def main(argv=None, model=None) -> int:
    """The CLI; ``model`` replaces the published DeepHistone (tests pass a narrow one)."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.hlo",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1].split("example:", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated subset of {TASKS}")
    p.add_argument("--batch", type=int, default=256, help="sequences per compiled call (forward, saliency)")
    p.add_argument("--precision", default="bf16", help="comma-separated: fp32,tf32,bf16")
    p.add_argument(
        "--ceilings",
        "--device-floors",
        dest="ceilings",
        choices=CEILINGS,
        default="h200",
        help="the floors' ceilings: named figures, or measured on this device in this run",
    )
    p.add_argument(
        "--measured", nargs="*", default=[], help="TASK:PRECISION=SECONDS per unit, e.g. forward:bf16=2.03e-5"
    )
    p.add_argument("--time", action="store_true", help="run each analysed executable and time it")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per task (after a warm-up call)")
    p.add_argument(
        "--ism-timed",
        choices=ISM_TIMED,
        default="unrolled",
        help="fast ISM: time the analysed unrolled program, or the chunked kernel users run",
    )
    p.add_argument(
        "--gemm-n", type=int, default=None, help="measured ceilings: GEMM size (CPU 2048, else 8192)"
    )
    p.add_argument(
        "--copy-mib", type=int, default=None, help="measured ceilings: array MiB (CPU 512, else 4096)"
    )
    p.add_argument(
        "--compile-for",
        choices=("host", *GPU_TARGETS),
        default="host",
        help="compile for this machine's backend (default), or for a GPU that is not here "
        '(deviceless; needs pip install "jax[cuda12]", no GPU): bytes from the HLO text, no timing',
    )
    p.add_argument("--dump", type=Path, default=None, help="write each optimized HLO text here")
    p.add_argument("--deeplift-batch", type=int, default=16, help="sequences per DeepSHAP call (x 20 refs)")
    p.add_argument("--json", type=Path, default=None, help="write the rows (and floors) as JSON here")
    args = p.parse_args(argv)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    precisions = [x.strip() for x in args.precision.split(",") if x.strip()]
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        print(f"error: unknown task(s) {unknown}; choose from {TASKS}", file=sys.stderr)
        return 1
    if not precisions or set(precisions) - set(PRECISIONS):
        print(f"error: --precision {args.precision!r}: choose from {PRECISIONS}", file=sys.stderr)
        return 1
    if args.repeats < 1:
        print(f"error: --repeats {args.repeats} must be at least 1", file=sys.stderr)
        return 1
    target = None
    if args.compile_for != "host":
        if args.time or args.ceilings == "measured":
            print(f"error: --compile-for {args.compile_for} compiles without the device: nothing to time or "
                  "measure (drop --time / --ceilings measured)", file=sys.stderr)  # fmt: skip
            return 1
        from benchmarks.deviceless import gpu_sharding, prepare

        prepare()  # before the first array: JAX sets its backends up once
        try:
            target = gpu_sharding(args.compile_for)
        except RuntimeError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    measured = {}
    for item in args.measured:
        key, _, value = item.partition("=")
        measured[key] = float(value)
    if model is None:
        from benchmarks.common import published_pair

        _, model = published_pair()
    print("backend:", jax.default_backend(), jax.devices()[0].device_kind)
    if args.ceilings == "measured":
        measurement = measure_ceilings(
            precisions, repeats=args.repeats, gemm_n=args.gemm_n, mib=args.copy_mib
        )
        ceiling = {k: measurement[k] for k in ("bandwidth", *precisions)}
        # CPU-time fractions only mean something where the kernels run on this process's threads
        per_cpu = measurement["per_cpu_second"] if jax.default_backend() == "cpu" else None
    else:
        measurement, ceiling, per_cpu = None, DEVICES[args.ceilings], None

    def write_json(rows) -> None:
        if args.json is None:
            return
        import json

        out = {
            "backend": jax.default_backend(),
            "device_kind": jax.devices()[0].device_kind,
            "batch": args.batch,
            "deeplift_batch": args.deeplift_batch,
            "compiled_for": args.compile_for,
            "floors_device": args.ceilings,
            "ceilings": ceiling,
            "ceilings_measurement": measurement,
            "rows": [{**row, **floors(row, ceiling, per_cpu)} for row in rows],
        }
        args.json.write_text(json.dumps(out, indent=2, default=float))

    rows = []
    for precision in precisions:
        rows += _tasks(model, tasks, args.batch, precision, args.dump, args.deeplift_batch,
                       repeats=args.repeats if args.time else 0, ism_timed=args.ism_timed,
                       target=target)  # fmt: skip
        for row in rows:  # times from elsewhere, for rows not timed here
            key = f"{row['task']}:{row['precision']}"
            if not row.get("time_s") and key in measured:
                row.update(time_s=measured[key], timed="--measured")
        write_json(rows)  # after each precision: a run cut short by a timeout keeps what it measured
        print(f"compiled {precision}", file=sys.stderr, flush=True)
    print_rows(rows, ceiling, args.ceilings, per_cpu)
    return 0


if __name__ == "__main__":
    sys.exit(main())
