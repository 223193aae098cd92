"""Mutation-map throughput: jaxmotif against PyTorch ISM and the seed's loop, same weights, same device.

    python -m benchmarks.mutmap [--quick] [--device cpu|gpu] [--precision fp32,bf16] [--json out.json]
    python -m benchmarks.mutmap --accuracy [--precision bf16] [--windows 3]   # delta agreement only
    python -m benchmarks.mutmap --position-chunks 64,128,256 [--precision fp32,bf16]  # fast ISM sweep only

Model: DeepHistone as published (widths 128/256/512, hidden 925, L = 1000, both branches), random
weights in ``convert.torch_reference.NetDeepHistone`` converted to jaxmotif. One 1000-bp window,
all 3,000 single-base mutants. Timed, in one run on one device:

- jaxmotif ``full`` (every mutant through the network, DNase branch once per window) and
  ``fast`` (jaxmotif.ism_fast, if present), per precision;
- PyTorch batched ISM: the 3,000 mutants in batches of 1,000, eager, and ``torch.compile`` where it
  works ("n/a" with the reason otherwise);
- the seed's loop, one mutant per forward pass, timed on a sample and extrapolated to 3,000.

Compile time (first call minus a steady call) is reported apart from the steady state, the
median of repeats after ``block_until_ready``. ``--quick`` uses fewer repeats and samples, skips
torch.compile, and on CPU a narrower model (widths 16/16/16, hidden 32, as the demo model), so it
times one of PyTorch's three batches (x3), so it finishes in about a minute on a 2-core CPU; the
table says which model was timed and what was extrapolated.

Every tf32/bf16 row carries its accuracy against fp32 on the same window: the correlation of the
delta maps (p(ŝ) − p(s), not raw outputs) and the relative error over the 1 % of substitutions with
the largest fp32 |delta|. ``--accuracy`` prints only that agreement, for the fast kernel on the
published widths at L = 208 (random and trained-like weights) and on the bundled demo model.

``--position-chunks C1,C2,..`` times only the fast kernel (``jaxmotif.mutation_map(method="fast")``'s
compiled kernel, positions per step = C) on the same window and weights, once per value and
precision, each in steady state after its own compile, and checks every value's outputs against the
first value's (the chunking must not change them beyond rounding).
"""

import argparse
import json
import platform
import statistics
import sys
import time

import numpy as np

PUBLISHED = {"widths": (128, 256, 512), "hidden": 925, "seq_len": 1000}
QUICK_CPU = {"widths": (16, 16, 16), "hidden": 32, "seq_len": 1000}
TORCH_BATCH = 1000


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.mutmap",
        description=__doc__.split("\n\n")[0],
        epilog="example: python -m benchmarks.mutmap --device gpu --precision fp32,bf16 --json mutmap.json",
    )
    p.add_argument("--quick", action="store_true", help="fewer repeats; narrower model on CPU")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--precision", default="fp32", help="comma-separated: fp32, tf32, bf16 (default: fp32)")
    p.add_argument("--json", metavar="OUT", help="write the results as JSON")
    p.add_argument(
        "--accuracy",
        action="store_true",
        help="only the delta-accuracy table: --precision (default bf16) against fp32, fast kernel, on the "
        "published widths at L=208 (random and trained-like weights) and the demo model",
    )
    p.add_argument("--windows", type=int, default=3, help="windows per model for --accuracy (default 3)")
    p.add_argument(
        "--position-chunks",
        metavar="C1,C2,...",
        help="only the fast kernel, timed once per position_chunk value (positions per step), e.g. 16,32,64",
    )
    p.add_argument("--repeats", type=int, help="timed repeats (default 5, --quick 2)")
    p.add_argument(
        "--loop-sample", type=int, help="mutants timed for the seed's loop (default 100, --quick 20)"
    )
    return p.parse_args(argv)


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def build(dims, device: str, seed: int = 0):
    import torch

    from convert import convert_state_dict
    from convert.torch_reference import NetDeepHistone, randomize_batchnorm
    from jaxmotif.models.model import Model

    torch.manual_seed(seed)
    net = NetDeepHistone(dims["seq_len"], dims["widths"], dims["hidden"], 7, "sigmoid")
    randomize_batchnorm(net, seed=seed)
    net.eval()
    sd = {k: v.numpy() for k, v in net.state_dict().items()}
    config, params = convert_state_dict(sd, seq_len=dims["seq_len"], final_activation="sigmoid")
    net = net.to("cuda" if device == "gpu" else "cpu")
    return net, Model.from_params(config, params)


# ---- accuracy: every tf32/bf16 row is compared with fp32 on the same inputs, on delta ---------------


def delta_agreement(want, got, substituted) -> dict:
    """How ``got`` (tf32/bf16 delta) agrees with ``want`` (fp32 delta) over substituted entries.

    Returns correlation (Pearson), rel_err_top1 (||got - want|| / ||want|| over the 1 % of entries
    with the largest fp32 |delta|), mode_frac (share of the entries holding ``got``'s most frequent
    non-zero value: a rounding offset shows up as a large share; ``mode_frac_fp32`` the same for
    fp32, where saturated outputs legitimately repeat one ulp-sized value) and the fp32 median |delta|.
    """
    a, b = want[substituted].astype(np.float64), got[substituted].astype(np.float64)
    top = np.abs(a) >= np.quantile(np.abs(a), 0.99)

    def mode(x):
        nz = x[x != 0]
        return float(np.unique(nz, return_counts=True)[1].max() / x.size) if nz.size else 0.0

    constant = np.std(b) == 0 or np.std(a) == 0  # e.g. every bf16 delta rounded to one value
    return {
        "correlation": float("nan") if constant else float(np.corrcoef(a, b)[0, 1]),
        "rel_err_top1": float(np.linalg.norm(b[top] - a[top]) / np.linalg.norm(a[top])),
        "mode_frac": mode(b),
        "mode_frac_fp32": mode(a),
        "median_abs_delta_fp32": float(np.median(np.abs(a))),
    }


def accuracy_text(row) -> str:
    acc = row.get("accuracy")
    if acc is None:
        return "(reference)" if row.get("precision") == "fp32" else ""
    if np.isnan(acc["correlation"]):
        return f"constant Δ (no information), rel err {acc['rel_err_top1']:.3f}"
    return f"corr {acc['correlation']:.4f}, rel err {acc['rel_err_top1']:.3f}"


def jaxmotif_delta(model, seq, dnase, method, precision):
    """Delta maps (N, L, 4, T) of windows ``seq (N, L, 4)`` by one kernel."""
    import jax

    from jaxmotif.ism import compiled_mutation_map

    kernel = compiled_mutation_map(model, score="delta", precision=precision, method=method)
    return np.asarray(kernel(model.params, jax.device_put(seq), jax.device_put(dnase)))


def substituted_mask(seq, n_outputs):
    """(N, L, 4, T) bool: entries that are substitutions (not the reference base, not an N)."""
    return np.broadcast_to(((seq == 0) & seq.any(-1, keepdims=True))[..., None], (*seq.shape, n_outputs))


def jaxmotif_accuracy(model, seq, dnase, method, precision, want=None) -> dict:
    """Agreement of ``precision``'s delta with fp32's, same kernel, same inputs (one window ok)."""
    want = jaxmotif_delta(model, seq, dnase, method, "fp32") if want is None else want
    got = jaxmotif_delta(model, seq, dnase, method, precision)
    return delta_agreement(want, got, substituted_mask(seq, want.shape[-1]))


def torch_delta(net, seq, dnase, precision, device):
    """PyTorch ISM delta (3L, T) of one window: mutants in batches of 1,000, reference run on its own."""
    import torch

    dev = "cuda" if device == "gpu" else "cpu"
    mutants = torch.tensor(torch_mutants(seq), device=dev)
    dns = torch.tensor(dnase[None, None], device=dev)
    outs = []
    with torch.no_grad(), torch_context(precision, device):
        ref = net(torch.tensor(seq.T[None].copy(), device=dev), dns).float()
        for i in range(0, mutants.shape[0], TORCH_BATCH):
            chunk = mutants[i : i + TORCH_BATCH]
            outs.append(net(chunk, dns.expand(chunk.shape[0], 1, -1)).float())
    return (torch.cat(outs) - ref).cpu().numpy()


def torch_accuracy(net, seq, dnase, precision, device) -> dict:
    want = torch_delta(net, seq, dnase, "fp32", device)
    got = torch_delta(net, seq, dnase, precision, device)
    return delta_agreement(want, got, np.ones(want.shape, bool))


def trained_like(model, scale_out: float = 40.0, scale_hidden: float = 3.0):
    """A copy of ``model`` whose head is scaled up, so logits spread like a trained model's
    (outputs near 0 and 1, substitutions moving p by 1e-3 to 1e-1 instead of ~1e-5)."""
    import jax

    from jaxmotif.models.model import Model

    def scale(path, x):
        keys = [getattr(k, "key", None) for k in path]
        if keys[:3] == ["head", "out", "kernel"]:
            return x * scale_out
        if keys[:3] == ["head", "dense", "kernel"]:
            return x * scale_hidden
        return x

    module = model.module(jax.tree_util.tree_map_with_path(scale, model.params))
    return Model(module)


def accuracy_report(windows: int = 3, seq_len: int = 208, precisions=("bf16",), methods=("fast",)) -> list:
    """bf16/tf32 delta vs fp32 on the published-width DeepHistone (random and trained-like weights)
    and on the bundled demo model (trained, narrow); one dict per (model, method, precision)."""
    from jaxmotif.demo import demo_model

    dims = {**PUBLISHED, "seq_len": seq_len}
    _, random_model = build(dims, "cpu")
    rng = np.random.default_rng(1)
    models = [
        (f"published widths, random, L={seq_len}", random_model),
        (f"published widths, trained-like (head x3, x40), L={seq_len}", trained_like(random_model)),
        ("demo model (trained, widths 16/16/16), L=1000", demo_model()),
    ]
    rows = []
    for name, model in models:
        length = model.config.seq_len
        seq = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (windows, length))]
        dnase = rng.gamma(1.0, 1.0, (windows, length)).astype(np.float32)
        for method in methods:
            t0 = time.perf_counter()
            want = jaxmotif_delta(model, seq, dnase, method, "fp32")
            for precision in precisions:
                agree = jaxmotif_accuracy(model, seq, dnase, method, precision, want=want)
                row = {"model": name, "method": method, "precision": precision, "windows": windows, **agree}
                rows.append(row)
                print(
                    f"  {name} {method} {precision}: corr {agree['correlation']:.4f}, rel err top 1% "
                    f"{agree['rel_err_top1']:.3g}, mode share {agree['mode_frac']:.2%} "
                    f"(fp32 {agree['mode_frac_fp32']:.2%}) "
                    f"({time.perf_counter() - t0:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
    return rows


def time_jaxmotif(model, seq, dnase, method, precision, repeats):
    import jax

    from jaxmotif.ism import compiled_mutation_map

    kernel = compiled_mutation_map(model, score="raw", precision=precision, method=method)
    s, d = jax.device_put(seq[None]), jax.device_put(dnase[None])
    t0 = time.perf_counter()
    kernel(model.params, s, d).block_until_ready()
    first = time.perf_counter() - t0
    steady = median_time(lambda: kernel(model.params, s, d).block_until_ready(), repeats)
    return {"seconds_per_window": steady, "compile_seconds": max(first - steady, 0.0)}


def position_chunk_sweep(model, seq, dnase, chunks, precisions, repeats, on_row=None) -> list[dict]:
    """Steady-state seconds per window of the fast kernel for each position chunk and precision.

    The kernel is :func:`jaxmotif.ism.compiled_mutation_map`'s (``mutant_chunk = 3 * chunk`` gives
    ``chunk`` positions per step), so the timed program is the one users run. Each row also holds
    ``max_abs_diff_vs_first``: its outputs against those of the first chunk value, same precision.
    ``on_row(rows)`` is called after each row (to save what is measured before a timeout).
    """
    import jax

    from jaxmotif.ism import compiled_mutation_map

    s, d = jax.device_put(seq[None]), jax.device_put(dnase[None])
    rows = []
    for precision in precisions:
        first = None
        for chunk in chunks:
            kernel = compiled_mutation_map(
                model, score="raw", precision=precision, method="fast", mutant_chunk=3 * chunk
            )
            t0 = time.perf_counter()
            out = np.asarray(kernel(model.params, s, d).block_until_ready())
            first_call = time.perf_counter() - t0
            steady = median_time(lambda k=kernel: k(model.params, s, d).block_until_ready(), repeats)
            first = out if first is None else first
            row = {
                "implementation": "jaxmotif fast",
                "precision": precision,
                "position_chunk": chunk,
                "seconds_per_window": steady,
                "compile_seconds": max(first_call - steady, 0.0),
                "mutants_per_second": 3 * seq.shape[0] / steady,
                "max_abs_diff_vs_first": float(np.max(np.abs(out - first))),
            }
            rows.append(row)
            if on_row is not None:
                on_row(rows)
            print(f"  position_chunk {chunk:<5} {precision:<5} {steady:.4g} s", file=sys.stderr, flush=True)
    return rows


def print_sweep(rows, model_name, dims, default_chunk) -> None:
    import jax

    print(f"\nFast ISM, one {dims['seq_len']}-bp window, {model_name} DeepHistone {dims}")
    print(f"device: {jax.devices()[0].device_kind}; default position_chunk here: {default_chunk}")
    columns = ("precision", "position_chunk", "s / window", "mutants / s", "compile s", "vs default")
    print("| " + " | ".join(columns) + " | max abs Δ vs first |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        same = [b for b in rows if b["precision"] == r["precision"] and b["position_chunk"] == default_chunk]
        base = same[0] if same else None
        ratio = "" if base is None else f"{base['seconds_per_window'] / r['seconds_per_window']:.2f}x"
        print(
            f"| {r['precision']} | {r['position_chunk']} | {r['seconds_per_window']:.4g} | "
            f"{r['mutants_per_second']:,.0f} | {r['compile_seconds']:.1f} | {ratio} | "
            f"{r['max_abs_diff_vs_first']:.1e} |"
        )


def torch_mutants(seq):
    """All 3·L single-base mutants of one window, (3L, 4, L) channels-first as PyTorch takes them."""
    length = seq.shape[0]
    ref = seq.argmax(-1)
    mutants = np.repeat(seq[None], 3 * length, axis=0)
    for k in range(3):
        rows = np.arange(length) * 3 + k
        alt = (ref + 1 + k) % 4
        mutants[rows, np.arange(length)] = np.eye(4, dtype=np.float32)[alt]
    return np.ascontiguousarray(mutants.transpose(0, 2, 1))


def torch_context(precision, device):
    import contextlib

    import torch

    if device == "gpu":
        torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
        torch.backends.cudnn.allow_tf32 = precision == "tf32"
        torch.backends.cudnn.benchmark = True
    if precision == "bf16":
        return torch.autocast("cuda" if device == "gpu" else "cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def time_torch_batched(net, seq, dnase, precision, device, repeats, compiled=False, quick=False):
    """PyTorch ISM of one window, mutants in batches of 1,000 (--quick: one batch timed, x3)."""
    import torch

    dev = "cuda" if device == "gpu" else "cpu"
    mutants = torch.tensor(torch_mutants(seq), device=dev)
    if quick:
        mutants = mutants[:TORCH_BATCH]
    scale = 3 * seq.shape[0] / mutants.shape[0]
    dns = torch.tensor(dnase[None, None], device=dev)
    fn = torch.compile(net) if compiled else net

    def run(batch=TORCH_BATCH):
        with torch.no_grad(), torch_context(precision, device):
            for i in range(0, mutants.shape[0], batch):
                chunk = mutants[i : i + batch]
                fn(chunk, dns.expand(chunk.shape[0], 1, -1))
        if device == "gpu":
            torch.cuda.synchronize()

    t0 = time.perf_counter()
    if quick:
        with torch.no_grad():
            fn(mutants[:8], dns.expand(8, 1, -1))  # warm-up on a small batch
        first = time.perf_counter() - t0
        return {"seconds_per_window": median_time(run, 1) * scale, "compile_seconds": first}
    run()
    first = time.perf_counter() - t0
    steady = median_time(run, repeats)
    return {"seconds_per_window": steady, "compile_seconds": max(first - steady, 0.0)}


def time_seed_loop(net, seq, dnase, device, sample):
    import torch

    dev = "cuda" if device == "gpu" else "cpu"
    mutants = torch.tensor(torch_mutants(seq)[:sample], device=dev)
    dns = torch.tensor(dnase[None, None], device=dev)
    with torch.no_grad():
        net(mutants[:1], dns)  # warm-up
        t0 = time.perf_counter()
        for i in range(sample):
            out = net(mutants[i : i + 1], dns)
            out.cpu()  # the seed reads every prediction back
        elapsed = time.perf_counter() - t0
    return {"seconds_per_window": elapsed / sample * 3 * seq.shape[0], "extrapolated_from": sample}


def agreement(model, net, seq, dnase, device) -> float:
    """max |jaxmotif fp32 - PyTorch fp32| over the first 1,000 mutants' outputs (same weights)."""
    import jax
    import torch

    from jaxmotif.ism import compiled_mutation_map

    kernel = compiled_mutation_map(model, score="raw", precision="fp32")
    ours = np.asarray(kernel(model.params, jax.device_put(seq[None]), jax.device_put(dnase[None])))[0]
    dev = "cuda" if device == "gpu" else "cpu"
    mutants = torch_mutants(seq)[:TORCH_BATCH]
    if device == "gpu":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    with torch.no_grad():
        x = torch.tensor(mutants, device=dev)
        theirs = net(x, torch.tensor(dnase[None, None], device=dev).expand(x.shape[0], 1, -1)).cpu().numpy()
    ref = seq.argmax(-1)
    m = np.arange(mutants.shape[0])
    pos, alt = m // 3, (ref[m // 3] + 1 + m % 3) % 4
    return float(np.max(np.abs(ours[pos, alt] - theirs)))


def main(argv=None) -> int:
    args = parse_args(argv)
    import jax
    import torch

    backend = jax.default_backend()
    if args.device == "gpu" and backend != "gpu":
        print(f"error: --device gpu but JAX's backend is {backend!r}", file=sys.stderr)
        return 1
    if args.device == "gpu" and not torch.cuda.is_available():
        print("error: --device gpu but PyTorch sees no CUDA device", file=sys.stderr)
        return 1
    precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
    for p in precisions:
        if p not in ("fp32", "tf32", "bf16"):
            print(f"error: --precision {p!r} must be fp32, tf32 or bf16", file=sys.stderr)
            return 1
    if args.accuracy:
        chosen = tuple(p for p in precisions if p != "fp32") or ("bf16",)
        rows = accuracy_report(windows=args.windows, precisions=chosen)
        print("| model | method | precision | windows | corr Δ vs fp32 | rel err, top 1 % |Δ| | mode share |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            print(
                f"| {r['model']} | {r['method']} | {r['precision']} | {r['windows']} | "
                f"{r['correlation']:.4f} | {r['rel_err_top1']:.3f} | "
                f"{r['mode_frac']:.2%} (fp32 {r['mode_frac_fp32']:.2%}) |"
            )
        if args.json:
            with open(args.json, "w") as f:
                json.dump(
                    {"benchmark": "mutmap-accuracy", "device": jax.devices()[0].device_kind, "rows": rows}, f
                )
        return 0
    chunks = None
    if args.position_chunks is not None:
        try:
            chunks = [int(c) for c in args.position_chunks.split(",") if c.strip()]
        except ValueError:
            chunks = []
        if not chunks or min(chunks) < 1:
            print(f"error: --position-chunks {args.position_chunks!r}: positive integers", file=sys.stderr)
            return 1
    repeats = args.repeats or (2 if args.quick else 5)
    sample = args.loop_sample or (10 if args.quick else 100)
    dims = QUICK_CPU if args.quick and args.device == "cpu" else PUBLISHED
    model_name = "published" if dims is PUBLISHED else "narrow (quick, CPU)"
    net, model = build(dims, args.device)
    rng = np.random.default_rng(0)
    length = dims["seq_len"]
    seq = np.eye(4, dtype=np.float32)[rng.integers(0, 4, length)]
    dnase = rng.random(length).astype(np.float32)
    mutants = 3 * length
    if chunks is not None:
        default_chunk = 32 if jax.default_backend() == "cpu" else 256  # jaxmotif.ism_fast's defaults
        print(f"model: {model_name} {dims}, device: {jax.devices()[0].device_kind}", file=sys.stderr)

        def save(rows):
            if not args.json:
                return
            report = _report("mutmap-position-chunk", model_name, dims, args.device, repeats)
            report.update(default_position_chunk=default_chunk, rows=rows)
            with open(args.json, "w") as f:
                json.dump(report, f, indent=2)

        rows = position_chunk_sweep(model, seq, dnase, chunks, precisions, repeats, on_row=save)
        print_sweep(rows, model_name, dims, default_chunk)
        if args.json:
            print(f"\nwrote {args.json}")
        return 0
    try:
        import jaxmotif.ism_fast  # noqa: F401

        methods = ["full", "fast"]
    except ImportError:
        methods = ["full"]

    rows = []

    def add(impl, precision, result, note=""):
        row = {"implementation": impl, "precision": precision, "note": note, **result}
        if "seconds_per_window" in result:
            row["mutants_per_second"] = mutants / result["seconds_per_window"]
        rows.append(row)
        shown = (
            f"{result['seconds_per_window']:.3f} s" if "seconds_per_window" in result else result.get("error")
        )
        print(f"  {impl:<28} {precision:<5} {shown}", file=sys.stderr, flush=True)

    print(f"model: {model_name} {dims}, device: {jax.devices()[0].device_kind}", file=sys.stderr)
    for precision in precisions:
        for method in methods:
            result = time_jaxmotif(model, seq, dnase, method, precision, repeats)
            if precision != "fp32":  # no speed without its accuracy: delta against fp32, same input
                result["accuracy"] = jaxmotif_accuracy(model, seq[None], dnase[None], method, precision)
            add(f"jaxmotif {method}", precision, result)
        result = time_torch_batched(net, seq, dnase, precision, args.device, repeats, quick=args.quick)
        if precision != "fp32":
            result["accuracy"] = torch_accuracy(net, seq, dnase, precision, args.device)
        add("pytorch batched (eager)", precision, result, "1 of 3 batches timed, x3" if args.quick else "")
        if args.quick:
            add("pytorch batched (compile)", precision, {"error": "n/a (skipped with --quick)"})
        else:
            try:
                result = time_torch_batched(net, seq, dnase, precision, args.device, repeats, compiled=True)
                add("pytorch batched (compile)", precision, result)
            except Exception as e:  # torch.compile fails in many environments (no compiler, old GPU)
                add("pytorch batched (compile)", precision, {"error": f"n/a ({type(e).__name__})"})
    add(
        "seed loop (1 mutant/forward)",
        "fp32",
        time_seed_loop(net, seq, dnase, args.device, sample),
        "extrapolated",
    )

    diff = agreement(model, net, seq, dnase, args.device)
    print(f"  max |jaxmotif - pytorch| fp32 outputs: {diff:.2e}", file=sys.stderr)
    base = next(
        r
        for r in rows
        if r["implementation"] == "pytorch batched (eager)" and r["precision"] == precisions[0]
    )
    print()
    print(f"Mutation map of one {length}-bp window ({mutants:,} mutants), {model_name} DeepHistone {dims}")
    versions = f"jax {jax.__version__}, torch {torch.__version__}"
    print(f"device: {jax.devices()[0].device_kind} ({args.device}); {versions}")
    print(f"max |jaxmotif - PyTorch| over 1,000 mutants' fp32 outputs: {diff:.1e}")
    print(f"ratio = PyTorch batched eager {precisions[0]} time / this time; compile time not included\n")
    print("accuracy: delta (not raw p) against fp32 of the same implementation on the same window")
    print("| implementation | precision | s / window | mutants / s | compile s | ratio | Δ vs fp32 | note |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "seconds_per_window" not in r:
            print(f"| {r['implementation']} | {r['precision']} | {r['error']} | | | | | |")
            continue
        compile_s = f"{r['compile_seconds']:.1f}" if "compile_seconds" in r else ""
        ratio = base["seconds_per_window"] / r["seconds_per_window"]
        print(
            f"| {r['implementation']} | {r['precision']} | {r['seconds_per_window']:.4g} | "
            f"{r['mutants_per_second']:,.0f} | {compile_s} | {ratio:.2f}x | {accuracy_text(r)} | "
            f"{r['note']} |"
        )
    if args.json:
        report = _report("mutmap", model_name, dims, args.device, repeats)
        report.update(max_abs_diff_vs_pytorch_fp32=diff, rows=rows)
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
        print(f"\nwrote {args.json}")
    return 0


def _report(benchmark: str, model_name: str, dims: dict, device: str, repeats: int) -> dict:
    """The JSON header every mutmap report starts with: what ran, on what, with which versions."""
    import jax
    import torch

    return {
        "benchmark": benchmark,
        "model": {"name": model_name, **{k: list(v) if isinstance(v, tuple) else v for k, v in dims.items()}},
        "device": {"kind": device, "name": jax.devices()[0].device_kind, "host": platform.processor()},
        "versions": {"jax": jax.__version__, "torch": torch.__version__},
        "repeats": repeats,
    }


if __name__ == "__main__":
    sys.exit(main())


def bench_mutmap(net, model, *, precision, device, quick, torch_compile=True):
    """Rows for ``python -m benchmarks``: the same timings as this script's table, as Result rows.

    ``net``/``model`` are the published pair; on CPU with ``quick`` a narrow pair is built instead
    (a full-size window takes minutes there), and the rows say so.
    """
    from benchmarks.common import Result
    from jaxmotif.ism_fast import flops_per_window

    if quick and device == "cpu":
        net, model = build(QUICK_CPU, device)
        label = "mutation map (narrow model), 1 window"
    else:
        net = net.to("cuda" if device == "gpu" else "cpu")
        label = "mutation map, 1 window"
    rng = np.random.default_rng(0)
    length = model.config.seq_len
    seq = np.eye(4, dtype=np.float32)[rng.integers(0, 4, length)]
    dnase = rng.random(length).astype(np.float32)
    repeats = 2 if quick else 5
    results = []
    for method in ("full", "fast"):
        r = time_jaxmotif(model, seq, dnase, method, precision, repeats)
        tflops = flops_per_window(model.config, method) / r["seconds_per_window"] / 1e12
        extra, note = {}, ""
        if precision != "fp32":  # every tf32/bf16 row carries its accuracy against fp32, on delta
            extra["accuracy"] = jaxmotif_accuracy(model, seq[None], dnase[None], method, precision)
            note = "Δ vs fp32: " + accuracy_text({"accuracy": extra["accuracy"]})
        results.append(
            Result(
                label,
                f"jaxmotif {method}",
                precision,
                r["seconds_per_window"],
                "s",
                1,
                r["compile_seconds"],
                tflops,
                note,
                extra,
            )
        )
    full_flops = flops_per_window(model.config, "full")
    r = time_torch_batched(net, seq, dnase, precision, device, repeats, quick=quick)
    extra, notes = {}, ["1 of 3 batches timed, x3"] if quick else []
    if precision != "fp32":
        extra["accuracy"] = torch_accuracy(net, seq, dnase, precision, device)
        notes.append("Δ vs fp32: " + accuracy_text({"accuracy": extra["accuracy"]}))
    results.append(
        Result(
            label,
            "pytorch batched ISM (eager)",
            precision,
            r["seconds_per_window"],
            "s",
            TORCH_BATCH,
            r["compile_seconds"],
            full_flops / r["seconds_per_window"] / 1e12,
            "; ".join(notes),
            extra,
        )
    )
    if not quick and torch_compile:
        try:
            r = time_torch_batched(net, seq, dnase, precision, device, repeats, compiled=True)
            results.append(
                Result(
                    label,
                    "pytorch batched ISM (compile)",
                    precision,
                    r["seconds_per_window"],
                    "s",
                    TORCH_BATCH,
                    r["compile_seconds"],
                    full_flops / r["seconds_per_window"] / 1e12,
                )
            )
        except Exception as e:  # torch.compile fails in many environments (no compiler, old GPU)
            results.append(
                Result(
                    label,
                    "pytorch batched ISM (compile)",
                    precision,
                    0.0,
                    "s",
                    TORCH_BATCH,
                    0.0,
                    note=f"n/a ({type(e).__name__})",
                )
            )
    if precision == "fp32":
        sample = 10 if quick else 100
        r = time_seed_loop(net, seq, dnase, device, sample)
        results.append(
            Result(
                label,
                "seed loop (1 mutant/forward)",
                "fp32",
                r["seconds_per_window"],
                "s",
                1,
                0.0,
                note=f"extrapolated from {sample} mutants",
            )
        )
    return results
