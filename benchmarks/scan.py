"""The scan pipeline against its kernel alone: marginal cost per window, demo or published model.

    python -m benchmarks.scan [--windows 8,24] [--repeats 2] [--json out.json]
    python -m benchmarks.scan --device gpu --model published --precision bf16   # issue 14 item 4
    python -m benchmarks --tasks scan

For ``mutmap`` (fast ISM, all outputs, delta) and ``attribute`` (DeepSHAP hypothetical, all
outputs, 20 shuffled references): the same demo-genome windows are run (a) through the kernel alone
-- the very compiled function the scan runs (int8 bases in), inputs prepared and placed on the
device beforehand, every batch dispatched, one block at the end -- and (b) through the whole scan
(:func:`jaxmotif.scan.scan_windows` /
:func:`jaxmotif.scan.scan_attributions`: FASTA and bigWig reads, encoding, shuffles, transfers,
copy-back and compressed Zarr writes) into a fresh store. Each is timed at two window counts after a
warm-up; the marginal cost per window is the difference over the extra windows, so compile time
and start-up cancel. ``ratio`` = kernel marginal / scan marginal (1.0: the scan runs at the kernel's
speed; the goal is >= 0.95). Timings are the minimum over ``--repeats``, runs interleaved. On a CPU,
where the kernel and the host work share the cores, ``cpu_ratio`` compares CPU seconds (all threads
of this process) per window the same way: less sensitive to other jobs on a loaded machine.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _setup(model_name: str = "demo"):
    """(model, demo genome, demo DNase reader, scratch folder). ``published``: random weights at the
    published sizes (L = 1000 like the demo model, so the same demo windows and DNase serve)."""
    from jaxmotif.demo import demo_model, demo_paths, writable_genome
    from jaxmotif.io.bigwig import BigWigReader
    from jaxmotif.io.fasta import Genome

    if model_name == "published":
        import jax

        from jaxmotif.models import DeepHistoneConfig, Model

        model = Model.random(DeepHistoneConfig(), key=jax.random.key(0))
    else:
        model = demo_model()
    tmp = Path(tempfile.mkdtemp(prefix="jaxmotif-bench-scan-"))
    genome = Genome(str(writable_genome(tmp / "genome")))
    dnase = BigWigReader(str(demo_paths().dnase))
    return model, genome, dnase, tmp


def _tiles(genome, n: int, length: int):
    """``n`` consecutive windows (tiling.Window) over the demo genome's chromosomes."""
    from jaxmotif.tiling import tile_regions

    regions, left = [], n
    for chrom, size in genome.chrom_sizes.items():
        k = min(left, size // length)
        if k:
            regions.append((chrom, 0, k * length))
            left -= k
        if not left:
            break
    if left:
        raise SystemExit(f"the demo genome holds fewer than {n} windows of {length} bp")
    return tile_regions(regions, length)


def _mutmap_kernel(model, genome, dnase, windows, batch, precision):
    import jax

    from jaxmotif.ism import compiled_mutation_map
    from jaxmotif.scan import indices_kernel, read_windows

    # The very compiled function the scan runs (int8 bases, one-hot built on the device), so the
    # ratio measures the pipeline alone.
    inner = compiled_mutation_map(model, score="delta", method="fast", precision=precision)
    kernel = indices_kernel(model, ("mutation_map", id(inner)), inner)
    placed = []
    for i in range(0, len(windows), batch):
        x = read_windows(windows[i : i + batch], genome, model.config.alphabet, dnase, one_hot=False)
        placed.append((jax.device_put(x.ref), jax.device_put(x.dnase)))

    def run():
        out = [kernel(model.params, s, d) for s, d in placed]
        jax.block_until_ready(out)

    return run


def _mutmap_scan(model, genome, dnase, windows, batch, tmp, precision):
    from jaxmotif.io.zarr_store import MutmapStore
    from jaxmotif.scan import scan_windows

    def run():
        chroms = list(dict.fromkeys(w.chrom for w in windows))
        path = Path(tempfile.mkdtemp(dir=tmp)) / "s.zarr"
        store = MutmapStore.create(path, {c: genome.chrom_size(c) for c in chroms}, model.output_names, {})
        scan_windows(model, genome, windows, store, dnase_reader=dnase, batch_size=batch, precision=precision)

    return run


def _attr_kernel(model, genome, dnase, windows, batch, shuffles, precision):
    import jax

    from jaxmotif.scan import attribution_launcher, read_windows, shuffled_reference_indices

    targets = tuple(range(model.config.num_outputs))
    launch = attribution_launcher(model, "deep_lift_shap", targets, precision=precision)
    key = jax.random.key(0)
    placed = []
    for i in range(0, len(windows), batch):
        x = read_windows(windows[i : i + batch], genome, model.config.alphabet, dnase, one_hot=False)
        refs = shuffled_reference_indices(x.ref, np.arange(i, i + len(x.ref)), shuffles, key)
        placed.append((jax.device_put(x.ref), jax.device_put(x.dnase), jax.device_put(refs)))

    def run():
        out = [launch(model.params, idx, d, r) for idx, d, r in placed]
        jax.block_until_ready(out)

    return run


def _attr_scan(model, genome, dnase, windows, batch, shuffles, tmp, precision):
    from jaxmotif.io.attribution_writer import AttributionStoreWriter
    from jaxmotif.scan import scan_attributions

    targets = tuple(range(model.config.num_outputs))
    rows = [(w.chrom, w.start, w.end) for w in windows]

    def run():
        path = Path(tempfile.mkdtemp(dir=tmp)) / "a.zarr"
        store = AttributionStoreWriter.create(path, rows, model.config.seq_len, model.output_names, {})
        scan_attributions(
            model,
            genome,
            windows,
            store,
            method="deep_lift_shap",
            targets=targets,
            dnase_reader=dnase,
            batch_size=batch,
            n_shuffles=shuffles,
            precision=precision,
        )

    return run


def host_cost(model, genome, dnase, tmp, windows: int = 20) -> dict:
    """CPU milliseconds of the scan's host work per window, measured alone: reading and encoding a
    window (FASTA, bigWig, int8) and writing its bases' scores into a compressed Zarr chunk."""
    from jaxmotif.io.zarr_store import MutmapStore
    from jaxmotif.scan import read_windows

    length = model.config.seq_len
    ws = _tiles(genome, windows, length)
    t0 = time.process_time()
    for w in ws:
        read_windows([w], genome, model.config.alphabet, dnase, one_hot=False)
    read_ms = (time.process_time() - t0) / len(ws) * 1e3
    chrom = ws[0].chrom
    n = min(65536, genome.chrom_size(chrom))
    store = MutmapStore.create(
        Path(tempfile.mkdtemp(dir=tmp)) / "w.zarr", {chrom: genome.chrom_size(chrom)}, model.output_names, {}
    )
    rng = np.random.default_rng(0)
    scores = (rng.normal(size=(n, 4, len(model.output_names))) * 1e-3).astype(np.float32)
    t0 = time.process_time()
    store.write_chunk(chrom, 0, scores, np.zeros(n, np.int8))
    write_ms = (time.process_time() - t0) / n * length * 1e3
    return {"read_encode_ms_per_window": read_ms, "mutmap_write_ms_per_window": write_ms}


def _timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads)."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def bench_scan(
    *,
    counts=(8, 24),
    repeats: int = 2,
    shuffles: int = 20,
    tasks=("mutmap", "attribute"),
    model_name: str = "demo",
    precision: str | None = None,
):
    """Rows ``{task, n1, n2, kernel_s_per_window, scan_s_per_window, ratio, times}``."""
    import jax

    model, genome, dnase, tmp = _setup(model_name)
    length = model.config.seq_len
    n1, n2 = counts
    rows = []
    host = host_cost(model, genome, dnase, tmp)
    for task in tasks:
        batch = jax.local_device_count() if task == "mutmap" else max(1, 64 // (2 * shuffles))
        makers = {}
        for n in (n1, n2):
            ws = _tiles(genome, n, length)
            if task == "mutmap":
                makers[n] = (
                    _mutmap_kernel(model, genome, dnase, ws, batch, precision),
                    _mutmap_scan(model, genome, dnase, ws, batch, tmp, precision),
                )
            else:
                makers[n] = (
                    _attr_kernel(model, genome, dnase, ws, batch, shuffles, precision),
                    _attr_scan(model, genome, dnase, ws, batch, shuffles, tmp, precision),
                )
        for k, s in makers.values():  # warm-up: compile both paths
            k()
            s()
            break
        times = {("kernel", n): [] for n in (n1, n2)} | {("scan", n): [] for n in (n1, n2)}
        for _ in range(repeats):
            for n in (n1, n2):
                k, s = makers[n]
                times["kernel", n].append(_timed(k))
                times["scan", n].append(_timed(s))
        best = {key: min(w for w, _ in v) for key, v in times.items()}
        cpu = {key: min(c for _, c in v) for key, v in times.items()}
        kernel = (best["kernel", n2] - best["kernel", n1]) / (n2 - n1)
        scan = (best["scan", n2] - best["scan", n1]) / (n2 - n1)
        kernel_cpu = (cpu["kernel", n2] - cpu["kernel", n1]) / (n2 - n1)
        scan_cpu = (cpu["scan", n2] - cpu["scan", n1]) / (n2 - n1)
        rows.append(
            {
                "task": task,
                "model": model_name,
                "precision": precision or "fp32",
                "device": jax.devices()[0].device_kind,
                "windows": [n1, n2],
                "batch": batch,
                "kernel_s_per_window": kernel,
                "scan_s_per_window": scan,
                "ratio": kernel / scan,
                # On a CPU the kernel and the host work share the cores: CPU seconds per window
                # measure the host work's cost even while other jobs load the machine.
                "kernel_cpu_s_per_window": kernel_cpu,
                "scan_cpu_s_per_window": scan_cpu,
                "cpu_ratio": kernel_cpu / scan_cpu,
                **host,
                "times": {f"{a}@{n}": v for (a, n), v in times.items()},
                "median_ratio": statistics.median(
                    (tk2[0] - tk1[0]) / (ts2[0] - ts1[0])
                    for tk1, tk2, ts1, ts2 in zip(
                        times["kernel", n1],
                        times["kernel", n2],
                        times["scan", n1],
                        times["scan", n2],
                        strict=True,
                    )
                ),
            }
        )
    return rows


def bench_scan_results(*, quick: bool = False, device: str = "cpu"):
    """Rows for ``python -m benchmarks`` (common.Result)."""
    from benchmarks.common import Result

    counts = (4, 12) if quick else (8, 24)
    out = []
    for row in bench_scan(counts=counts, repeats=1 if quick else 2, shuffles=8 if quick else 20):
        out.append(
            Result(
                task=f"scan pipeline ({row['task']}, demo model)",
                impl="jaxmotif scan / kernel alone",
                precision="fp32",
                value=row["ratio"],
                unit="x kernel speed",
                batch=row["batch"],
                compile_s=0.0,
                note=f"marginal s/window: kernel {row['kernel_s_per_window']:.4f}, "
                f"scan {row['scan_s_per_window']:.4f}",
                extra=row,
            )
        )
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scan", description=__doc__.split("\n\n")[0])
    p.add_argument("--windows", default="8,24", help="the two window counts (default 8,24)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--shuffles", type=int, default=20, help="DeepSHAP references per window (default 20)")
    p.add_argument("--tasks", default="mutmap,attribute")
    p.add_argument("--model", choices=("demo", "published"), default="demo",
                   help="demo (trained, narrow) or published (random weights, published sizes)")  # fmt: skip
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--precision", choices=("fp32", "tf32", "bf16"), default="fp32")
    p.add_argument("--json", metavar="OUT")
    args = p.parse_args(argv)
    import jax

    jax.config.update("jax_platforms", "cpu" if args.device == "cpu" else "cuda,cpu")
    n1, n2 = (int(x) for x in args.windows.split(","))
    rows = bench_scan(
        counts=(n1, n2),
        repeats=args.repeats,
        shuffles=args.shuffles,
        tasks=args.tasks.split(","),
        model_name=args.model,
        precision=args.precision,
    )
    for r in rows:
        print(
            f"{r['task']:9s} batch {r['batch']:2d}  kernel {r['kernel_s_per_window'] * 1e3:8.1f} ms/window  "
            f"scan {r['scan_s_per_window'] * 1e3:8.1f} ms/window  ratio {r['ratio']:.3f} "
            f"(median over repeats {r['median_ratio']:.3f}); CPU s/window kernel "
            f"{r['kernel_cpu_s_per_window']:.3f} scan {r['scan_cpu_s_per_window']:.3f} "
            f"ratio {r['cpu_ratio']:.3f}"
        )
    host = {k: v for k, v in rows[0].items() if k.endswith("ms_per_window")}
    print("host work alone, CPU ms per window: " + ", ".join(f"{k} {v:.2f}" for k, v in host.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
