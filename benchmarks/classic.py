"""Basset and Beluga: jaxmotif forward and ISM beside PyTorch, same weights, same device.

    python -m benchmarks.classic [--quick] [--device cpu|gpu] [--out results.json]
    python -m benchmarks --tasks classic --quick

Models at their published sizes, defined by ``convert.torch_reference`` (``basset()``: kipoi's
Basset, 600 bp, 164 outputs; ``Beluga()``: ExPecto's Beluga, 2000 bp, 2002 outputs, A/G/C/T rows),
random weights with randomised BatchNorm statistics, converted with ``convert.classic`` (the
alphabet folded into conv1: jaxmotif reads ACGT). Rows, per model:

- forward (all outputs, after the sigmoid) vs PyTorch eager;
- ISM of one window, all outputs: jaxmotif ``full`` and ``fast`` (graph-derived, exact) vs
  PyTorch batched ISM (every mutant through the PyTorch model).

Every row records its agreement with PyTorch (``max_rel``: max |ours - theirs| / max |theirs| over
the outputs, or over the mutants' outputs for ISM). ``--quick`` (2-core CPU): small batches, ISM on a
contiguous span of positions, extrapolated to the window (:mod:`benchmarks.graph_ism`).
"""

import argparse
import sys

import jax
import numpy as np

from benchmarks.common import Result, jax_sync, time_call
from benchmarks.graph_ism import (
    fit_window,
    max_rel,
    mutants,
    span,
    substitutions,
    time_fast_span,
    time_listed_full,
    time_torch,
    torch_batched,
)

# per model: torch batch for ISM, quick forward batch, quick ISM positions (full; fast fit P, 2P)
SETTINGS = {
    "basset": {"torch_batch": 256, "quick_batch": 8, "quick_full": 32, "quick_fast": 32},
    "beluga": {"torch_batch": 32, "quick_batch": 2, "quick_full": 8, "quick_fast": 32},
}


def classic_pair(arch: str, seed: int = 0):
    """(PyTorch reference in eval mode, converted jaxmotif Model), published sizes, same weights."""
    import torch

    from convert.classic import convert_classic, model_config
    from convert.torch_reference import Beluga, basset, randomize_batchnorm
    from jaxmotif.models.model import Model

    torch.manual_seed(seed)
    net, seq_len = (basset(), 600) if arch == "basset" else (Beluga(), 2000)
    randomize_batchnorm(net, seed=seed).eval()
    sd = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    sizes, params = convert_classic(sd, arch, seq_len=seq_len)
    return net, Model.from_params(model_config(sizes), params)


def torch_layout(seq_acgt: np.ndarray, arch: str, alphabet: str, device) -> "object":
    """ACGT one-hot (N, L, 4) -> the checkpoint's input: rows in ``alphabet`` order, 2-D maps."""
    import torch

    rows = seq_acgt[:, :, ["ACGT".index(base) for base in alphabet]].transpose(0, 2, 1)
    x = torch.tensor(np.ascontiguousarray(rows), device=device)
    return x[:, :, :, None] if arch == "basset" else x[:, :, None, :]  # (N,4,L,1) | (N,4,1,L)


def bench_classic(*, precision: str, device: str, quick: bool, archs=("basset", "beluga")) -> list[Result]:
    if precision != "fp32":
        print(f"classic: only fp32 is benchmarked (got {precision}); skipped", file=sys.stderr)
        return []
    results = []
    for arch in archs:
        results += _bench_one(arch, device=device, quick=quick)
    return results


def _bench_one(arch: str, *, device: str, quick: bool) -> list[Result]:
    import torch

    precision = "fp32"
    dev = "cuda" if device == "gpu" else "cpu"
    settings = SETTINGS[arch]
    net, model = classic_pair(arch)
    net = net.to(dev)
    alphabet = model.config.source_alphabet
    length = model.config.seq_len
    repeats = 2 if quick else 5
    n = settings["quick_batch"] if quick else (256 if device == "gpu" else 16)
    rng = np.random.default_rng(0)
    seq = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (n, length))]
    label = f"{arch.capitalize()} {length} bp"
    results = []

    # ---- forward -------------------------------------------------------------------------------
    fwd = jax.jit(model.apply)
    s = jax.device_put(seq)
    t_j = time_call(lambda: fwd(model.params, s, None), repeats=repeats, sync=jax_sync)
    x = torch_layout(seq, arch, alphabet, dev)

    def torch_forward():
        with torch.inference_mode():
            return net(x)

    t_t = time_torch(torch_forward, repeats=repeats)
    agree = max_rel(fwd(model.params, s, None), torch_forward().float().cpu().numpy())
    results.append(
        Result(
            f"{label}: forward",
            "jaxmotif",
            precision,
            n / t_j.median_s,
            "seq/s",
            n,
            t_j.compile_s,
            None,
            f"max rel diff vs PyTorch {agree:.1e}",
            {"max_rel_vs_pytorch": agree},
        )
    )
    results.append(
        Result(f"{label}: forward", "pytorch eager", precision, n / t_t.median_s, "seq/s", n, t_t.compile_s)
    )

    # ---- ISM, one window, all outputs ----------------------------------------------------------
    one = seq[0]
    where = span(length, settings["quick_full"] if quick else length)
    pos, bases = substitutions(one, where)
    scale = length / len(where)
    sub = f"{len(where)} of {length} positions timed, x{scale:.0f}" if scale > 1 else ""
    task = f"{label}: ISM, 1 window, all outputs"
    muts = torch_layout(mutants(one, pos, bases), arch, alphabet, dev)
    batch = settings["torch_batch"]

    def torch_ism():
        with torch.inference_mode():
            net(torch_layout(one[None], arch, alphabet, dev))  # the reference
        return torch_batched(net, muts, batch)

    t_torch = time_torch(torch_ism, repeats=1 if quick else repeats)
    theirs = torch_ism()  # (K, T)
    t_full, ours_full = time_listed_full(
        model, one, None, pos, bases, precision=precision, repeats=repeats, targets=None
    )

    fast_where = span(length, settings["quick_fast"] if quick else length)
    t_fast, preds = time_fast_span(model, one, None, fast_where, precision=precision, repeats=repeats)
    inside = np.isin(pos, fast_where)
    ours_fast = preds[np.searchsorted(fast_where, pos[inside]), bases[inside]]  # (K', T)
    fast_scale = length / len(fast_where)
    if fast_scale > 1:
        where2 = span(length, 2 * len(fast_where))
        t_fast2, _ = time_fast_span(model, one, None, where2, precision=precision, repeats=repeats)
        fast_window = fit_window(t_fast.median_s, len(fast_where), t_fast2.median_s, len(where2), length)
        fast_note = f"fit t = a + bP from {len(fast_where)} and {len(where2)} positions -> L = {length}"
    else:
        fast_window, fast_note = t_fast.median_s, ""

    def row(impl, seconds, timing, agree, note, rows_batch=1):
        notes = ["the reference" if agree is None else f"max rel diff vs PyTorch {agree:.1e}"] + [
            x for x in note if x
        ]
        results.append(
            Result(
                task,
                impl,
                precision,
                seconds,
                "s",
                rows_batch,
                timing.compile_s,
                None,
                "; ".join(notes),
                {"max_rel_vs_pytorch": agree},
            )
        )

    row("jaxmotif full", t_full.median_s * scale, t_full, max_rel(ours_full, theirs), [sub])
    row("jaxmotif fast", fast_window, t_fast, max_rel(ours_fast, theirs[inside]), [fast_note])
    row("pytorch batched ISM (eager)", t_torch.median_s * scale, t_torch, None, [sub], batch)
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.classic", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2-core CPU: small batches, ISM on a span")
    p.add_argument("--device", choices=("cpu", "gpu"), default=None)
    p.add_argument("--archs", default="basset,beluga")
    p.add_argument("--out", default=None, help="write the rows as JSON here")
    args = p.parse_args(argv)
    from benchmarks import common

    device = args.device or ("gpu" if jax.default_backend() == "gpu" else "cpu")
    archs = tuple(a.strip() for a in args.archs.split(",") if a.strip())
    results = bench_classic(precision="fp32", device=device, quick=args.quick, archs=archs)
    common.print_table(results)
    if args.out:
        common.write_json(args.out, common.environment(device), results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
