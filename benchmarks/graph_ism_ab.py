"""Graph fast ISM, two implementations side by side: this tree's and an earlier ``affected.py``.

    git show REV:jaxmotif/graph/affected.py > /tmp/affected_before.py
    python -m benchmarks.graph_ism_ab --before /tmp/affected_before.py [--models bpnet,basset]
        [--rounds 3] [--out results.json]

For each model (bpnet-lite ``BPNet(64, 8)`` 2114 bp with 2 control tracks, Basset 600 bp, Beluga
2000 bp; random weights, fp32, the same converted models as ``benchmarks.bpnet`` /
``benchmarks.classic``) both implementations are compiled on two contiguous spans of positions in
the middle of one window (P and 2P), then called in turn, ``rounds`` times (a shared machine's
load hits both alike); each window time is the fit ``t = a + bP`` taken to P = L from the two
spans' medians (:func:`benchmarks.graph_ism.fit_window`). ``full`` (every mutant through the
network, :func:`benchmarks.graph_ism.time_listed_full`) on the P-span (or ``--full-positions``),
x L / P, is timed in the same rounds for the fast/full ratio. Also recorded: counted FLOPs per window
(:func:`jaxmotif.ism_graph.flops_per_window`, this tree's) and the largest difference between the
two implementations' outputs relative to the largest output.
"""

import argparse
import importlib.util
import json
import statistics
import sys
import time

import jax
import numpy as np

from benchmarks.graph_ism import fit_window, span, substitutions


def load_before(path: str):
    spec = importlib.util.spec_from_file_location("affected_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def models(names):
    from benchmarks.bpnet import bpnet_pair
    from benchmarks.classic import classic_pair

    rng = np.random.default_rng(0)
    for name in names:
        if name == "bpnet":
            _, model = bpnet_pair()
            length = model.config.seq_len
            side = rng.poisson(2.0, model.config.side_shape).astype(np.float32)
        else:
            _, model = classic_pair(name)
            length, side = model.config.seq_len, None
        seq = np.eye(4, dtype=np.float32)[rng.integers(0, 4, length)]
        yield name, model, seq, side


def fast_kernel(model, outputs_fn, where):
    """A compiled ``seq, side -> preds`` of graph fast ISM at ``where`` using ``outputs_fn``."""
    import jaxmotif.ism_graph as ig

    def fn(p, s, d):
        saved = ig.mutant_outputs
        ig.mutant_outputs = outputs_fn  # read while tracing only
        try:
            return ig.mutant_predictions_graph(model, p, s, d, positions=where)[0]
        finally:
            ig.mutant_outputs = saved

    return jax.jit(fn)


def timed(fn):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t0


def bench(name, model, seq, side, before, *, count, rounds, full_count=None):
    from jaxmotif.graph.affected import mutant_outputs as after
    from jaxmotif.ism import compiled_listed_mutations
    from jaxmotif.ism_graph import flops_per_window

    length = seq.shape[0]
    # contiguous spans as ranges: the delta form then shares a step's low-rank head rows, as it
    # does on a whole window (the earlier version reads a range like any list of positions)
    spans = {n: range(int(w[0]), int(w[-1]) + 1) for n in (count, 2 * count) for w in [span(length, n)]}
    impls = {"before": before.mutant_outputs, "after": after}
    calls, compile_s, outs = {}, {}, {}
    for impl, fn in impls.items():
        for p, where in spans.items():
            k = fast_kernel(model, fn, where)
            key = (impl, p)
            calls[key] = lambda k=k: k(model.params, seq, side)
            compile_s[key] = timed(calls[key])
            outs[key] = np.asarray(calls[key](), np.float64)
    full_count = count if full_count is None else full_count
    pos, bases = substitutions(seq, span(length, full_count))
    targets = ("counts",) if name == "bpnet" else None
    full = compiled_listed_mutations(model, targets=targets, method="full")
    s, d = seq[None], None if side is None else side[None]
    calls[("full", full_count)] = lambda: full(model.params, s, d, pos[None], bases[None])
    compile_s[("full", full_count)] = timed(calls[("full", full_count)])
    times = {key: [] for key in calls}
    for _ in range(rounds):
        for key, call in calls.items():
            times[key].append(timed(call))
    med = {key: statistics.median(v) for key, v in times.items()}
    window = {
        impl: fit_window(med[(impl, count)], count, med[(impl, 2 * count)], 2 * count, length)
        for impl in impls
    }
    window["full"] = med[("full", full_count)] * length / full_count
    scale = max(np.abs(outs[("before", count)]).max(), 1e-30)
    diff = float(np.abs(outs[("after", count)] - outs[("before", count)]).max() / scale)
    return {
        "model": name,
        "length": length,
        "positions": [count, 2 * count],
        "full_positions": full_count,
        "rounds": rounds,
        "window_s": window,
        "fast_over_full": {impl: window["full"] / window[impl] for impl in impls},
        "after_speedup": window["before"] / window["after"],
        "span_times_s": {f"{k[0]}@{k[1]}": v for k, v in times.items()},
        "compile_s": {f"{k[0]}@{k[1]}": v for k, v in compile_s.items()},
        "gflops_per_window": {m: flops_per_window(model.config, m) / 1e9 for m in ("full", "fast")},
        "max_rel_after_vs_before": diff,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.graph_ism_ab", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--before", required=True, help="path of the earlier jaxmotif/graph/affected.py")
    p.add_argument("--models", default="bpnet,basset,beluga")
    p.add_argument("--positions", type=int, default=32, help="P (the spans are P and 2P)")
    p.add_argument("--full-positions", type=int, default=None, help="positions for full (default P)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    before = load_before(args.before)
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    rows = []
    for name, model, seq, side in models(names):
        row = bench(
            name,
            model,
            seq,
            side,
            before,
            count=args.positions,
            rounds=args.rounds,
            full_count=args.full_positions,
        )
        rows.append(row)
        w, g = row["window_s"], row["gflops_per_window"]
        print(
            f"{name}: s/window before {w['before']:.2f}, after {w['after']:.2f}, full {w['full']:.2f}; "
            f"after/before speed-up {row['after_speedup']:.2f}x; "
            f"GFLOP fast {g['fast']:.1f}, full {g['full']:.1f}; "
            f"max rel diff {row['max_rel_after_vs_before']:.1e}",
            flush=True,
        )
    if args.out:
        env = {"jax": jax.__version__, "devices": [str(d) for d in jax.devices()], "argv": sys.argv[1:]}
        with open(args.out, "w") as f:
            json.dump({"environment": env, "results": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
