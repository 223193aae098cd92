"""Where the time goes, read from the compiled program: FLOPs, bytes moved, fusions, floors.

For each task (forward, saliency, fast ISM, DeepLIFT/SHAP) the jitted kernel is lowered and
compiled for the current backend (no execution), and XLA's own cost analysis of the *optimized*
program gives the FLOPs it performs and the bytes its instructions read and write. From those:

- the FLOP floor: FLOPs / the device's peak rate at the task's precision;
- the memory-traffic floor: bytes accessed / the device's memory bandwidth (each fusion reads its
  operands and writes its result once: what the program as compiled must move, not what an ideal
  program would);
- with a measured time (``--measured task=seconds``, or the last GPU run's JSON), the achieved
  fraction of each floor.

The compiled program is backend-specific: on the CPU build XLA fuses differently from the GPU
build, so the byte count is the CPU program's. The fusion listing says what is materialised.

example:
  python -m benchmarks.hlo                              # published DeepHistone, CPU compile, all tasks
  python -m benchmarks.hlo --tasks forward --batch 256 --precision bf16 --dump hlo_out/
"""

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

import jax
import numpy as np

# Device ceilings. H100: measured in shared/ANCHORS.md (copy 3.0 TB/s; matmul fp32 52, tf32 414,
# bf16 794 TFLOP/s). H200: same tensor cores, 4.3 TB/s HBM3e (vendor figure).
DEVICES = {
    "h100": {"bandwidth": 3.0e12, "fp32": 52e12, "tf32": 414e12, "bf16": 794e12},
    "h200": {"bandwidth": 4.3e12, "fp32": 52e12, "tf32": 414e12, "bf16": 794e12},
}
TASKS = ("forward", "saliency", "ism_fast", "deeplift")

_DTYPE_BYTES = {
    "f32": 4,
    "bf16": 2,
    "f16": 2,
    "f64": 8,
    "s32": 4,
    "u8": 1,
    "s8": 1,
    "pred": 1,
    "u32": 4,
    "s64": 8,
}
_SHAPE = re.compile(r"\b(f32|bf16|f16|f64|s32|u8|s8|pred|u32|s64)\[([0-9,]*)\]")


def shape_bytes(text: str) -> int:
    """Bytes of the first array shape in an HLO type string such as ``f32[256,1000,128]{2,1,0}``."""
    match = _SHAPE.search(text)
    if not match:
        return 0
    dims = [int(d) for d in match.group(2).split(",") if d]
    return _DTYPE_BYTES[match.group(1)] * int(np.prod(dims, dtype=np.int64))


def entry_instructions(hlo_text: str) -> list[tuple[str, str, int]]:
    """(name, opcode, output bytes) of every instruction of the ENTRY computation."""
    out = []
    in_entry = False
    for line in hlo_text.splitlines():
        if line.startswith("ENTRY"):
            in_entry = True
            continue
        if in_entry and line.startswith("}"):
            break
        if not in_entry or "=" not in line:
            continue
        lhs, rhs = line.split("=", 1)
        name = lhs.strip().removeprefix("ROOT ").strip()
        rhs = rhs.strip()
        opcode = re.search(r"\s([a-z][a-z0-9\-]*)\(", " " + rhs.split(")", 1)[0] + ")")
        op = opcode.group(1) if opcode else "?"
        if op == "fusion":
            kind = re.search(r"kind=(k\w+)", rhs)
            op = f"fusion:{kind.group(1) if kind else '?'}"
        out.append((name, op, shape_bytes(rhs)))
    return out


def cost(compiled) -> dict:
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list | tuple):
        analysis = analysis[0] if analysis else {}
    return {"flops": float(analysis.get("flops", 0.0)), "bytes": float(analysis.get("bytes accessed", 0.0))}


def analyse(name: str, fn, args, *, units: float, unit: str, precision: str, dump: Path | None) -> dict:
    """Compile ``fn(*args)`` and summarise its optimized HLO; ``units`` = sequences or windows per call."""
    compiled = jax.jit(fn).lower(*args).compile()
    text = compiled.as_text()
    if dump is not None:
        dump.mkdir(parents=True, exist_ok=True)
        (dump / f"{name}_{precision}.hlo.txt").write_text(text)
    instructions = entry_instructions(text)
    ops = Counter(op for _, op, _ in instructions)
    materialised = [i for i in instructions if i[1] not in ("parameter", "bitcast", "constant")]
    largest = sorted(materialised, key=lambda x: -x[2])[:6]
    c = cost(compiled)
    loops = text.count(" while(")
    if loops:
        print(f"{name}: {loops} while loop(s): cost analysis counts each body once", file=sys.stderr)
    return {
        "while_loops": loops,
        "task": name,
        "precision": precision,
        "units": units,
        "unit": unit,
        "flops_per_unit": c["flops"] / units,
        "bytes_per_unit": c["bytes"] / units,
        "intensity": c["flops"] / max(c["bytes"], 1.0),
        "instructions": len(instructions),
        "ops": dict(ops.most_common()),
        "largest": [(n, op, b / units) for n, op, b in largest],
    }


def floors(row: dict, device: str) -> dict:
    ceiling = DEVICES[device]
    flop_s = row["flops_per_unit"] / ceiling[row["precision"]]
    byte_s = row["bytes_per_unit"] / ceiling["bandwidth"]
    return {
        "flop_floor_s": flop_s,
        "memory_floor_s": byte_s,
        "bound": "memory" if byte_s > flop_s else "compute",
    }


def _tasks(model, tasks, batch: int, precision: str, dump, deeplift_batch: int = 16):
    from jaxmotif.attribution import saliency_kernel
    from jaxmotif.precision import with_precision

    cfg = model.config
    rng = np.random.default_rng(0)
    seq = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (batch, cfg.seq_len))]
    dnase = rng.gamma(1.0, 1.0, (batch, cfg.seq_len)).astype(np.float32) if cfg.has_dnase else None
    apply_fn = with_precision(model.apply, precision)
    rows = []
    if "forward" in tasks:
        rows.append(analyse("forward", apply_fn, (model.params, seq, dnase), units=batch, unit="seq",
                            precision=precision, dump=dump))  # fmt: skip
    if "saliency" in tasks:

        def sal(p, s, d):
            return saliency_kernel(apply_fn, p, s, d, (0,), "gradient")

        rows.append(analyse("saliency", sal, (model.params, seq, dnase), units=batch, unit="seq",
                            precision=precision, dump=dump))  # fmt: skip
    if "ism_fast" in tasks:
        from jaxmotif.ism import with_precision_fp32_head
        from jaxmotif.ism_fast import mutant_predictions_fast

        # One position chunk for the whole window: XLA's cost analysis counts a while-loop body
        # once, whatever its trip count, so the chunked program (32 positions per step on CPU,
        # 256 on GPU) would report one step's work. Unrolled, the window's FLOPs are all counted;
        # the bytes are the same intermediates written once each (weights read once, not per step).
        def ism(p, s, d):
            return mutant_predictions_fast(model, p, s, d, position_chunk=cfg.seq_len)

        # as mutation_map runs it: in bf16 the head's params stay float32 (the delta's precision)
        window = (model.params, seq[0], None if dnase is None else dnase[0])
        wrapped = with_precision_fp32_head(ism, precision)
        rows.append(analyse("ism_fast", wrapped, window, units=1, unit="window", precision=precision,
                            dump=dump))  # fmt: skip
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
        row = analyse(f"deeplift ({n_refs} refs)", dls, args, units=n, unit="seq", precision=precision,
                      dump=dump)  # fmt: skip
        rows.append({**row, "kernel": "fast path: 1 + R rows forward, R rows transposed"})
    return rows


def print_rows(rows, device: str, measured: dict[str, float]) -> None:
    print(f"floors on {device}: " + ", ".join(f"{k} {v:.3g}" for k, v in DEVICES[device].items()))
    header = (
        "| task | precision | GFLOP/unit | MB moved/unit | FLOP/byte | FLOP floor | memory floor | bound |"
    )
    header += " measured | of FLOP floor | of memory floor |"
    print(header)
    print("|" + "---|" * 11)
    for row in rows:
        f = floors(row, device)
        t = measured.get(f"{row['task']}:{row['precision']}")
        cells = [
            row["task"],
            row["precision"],
            f"{row['flops_per_unit'] / 1e9:.2f}",
            f"{row['bytes_per_unit'] / 1e6:.1f}",
            f"{row['intensity']:.0f}",
            f"{f['flop_floor_s'] * 1e6:.1f} µs/{row['unit']}",
            f"{f['memory_floor_s'] * 1e6:.1f} µs/{row['unit']}",
            f["bound"],
            "" if t is None else f"{t * 1e6:.1f} µs",
            "" if t is None else f"{f['flop_floor_s'] / t:.0%}",
            "" if t is None else f"{f['memory_floor_s'] / t:.0%}",
        ]
        print("| " + " | ".join(cells) + " |")
    for row in rows:
        ops = ", ".join(f"{op} {n}" for op, n in row["ops"].items())
        print(f"\n{row['task']} ({row['precision']}): {row['instructions']} top-level instructions: {ops}")
        for name, op, b in row["largest"]:
            print(f"  largest outputs: {name} ({op}) {b / 1e6:.2f} MB/{row['unit']}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.hlo",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1].split("example:", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated subset of {TASKS}")
    p.add_argument("--batch", type=int, default=256, help="sequences per compiled call (forward, saliency)")
    p.add_argument("--precision", default="bf16", help="comma-separated: fp32,tf32,bf16")
    p.add_argument("--device-floors", choices=sorted(DEVICES), default="h200", help="ceilings for the floors")
    p.add_argument(
        "--measured", nargs="*", default=[], help="TASK:PRECISION=SECONDS per unit, e.g. forward:bf16=2.03e-5"
    )
    p.add_argument("--dump", type=Path, default=None, help="write each optimized HLO text here")
    p.add_argument("--deeplift-batch", type=int, default=16, help="sequences per DeepSHAP call (x 20 refs)")
    p.add_argument("--json", type=Path, default=None, help="write the rows (and floors) as JSON here")
    args = p.parse_args(argv)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        print(f"error: unknown task(s) {unknown}; choose from {TASKS}", file=sys.stderr)
        return 1
    measured = {}
    for item in args.measured:
        key, _, value = item.partition("=")
        measured[key] = float(value)
    from benchmarks.common import published_pair

    _, model = published_pair()
    print("backend:", jax.default_backend(), jax.devices()[0].device_kind)
    rows = []
    for precision in [x.strip() for x in args.precision.split(",") if x.strip()]:
        rows += _tasks(model, tasks, args.batch, precision, args.dump, args.deeplift_batch)
        print(f"compiled {precision}", file=sys.stderr, flush=True)
    print_rows(rows, args.device_floors, measured)
    if args.json is not None:
        import json

        out = {
            "backend": jax.default_backend(),
            "device_kind": jax.devices()[0].device_kind,
            "batch": args.batch,
            "floors_device": args.device_floors,
            "rows": [{**row, **floors(row, args.device_floors)} for row in rows],
        }
        args.json.write_text(json.dumps(out, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
