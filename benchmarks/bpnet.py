"""BPNet (bpnet-lite, 64 filters x 8 layers, 2114 bp): jaxmotif beside PyTorch and tangermeme, same weights.

    python -m benchmarks.bpnet [--quick] [--device cpu|gpu] [--precision fp32] [--out results.json]
    python -m benchmarks --tasks bpnet --quick

The model is built with bpnet-lite (``BPNet(64, 8)``, its defaults: 2 strands, 2 control tracks,
trimming 557: 1000-bp profiles), random weights, and converted with
``convert.bpnet`` (state_dict -> jaxmotif params). Rows, all in one run on one device:

- forward (profile logits + log-counts) vs bpnet-lite eager;
- counts saliency (gradient of the log-count) vs PyTorch autograd;
- ISM of the log-count, one window: jaxmotif ``full`` and ``fast`` (graph-derived, exact) vs
  PyTorch batched ISM (every mutant through bpnet-lite) and tangermeme's
  ``saturation_mutagenesis`` (its default ``fast=True``: it takes its fastISM path only when the
  job would run over 30 s, and the row says which path it took).

Every row records its agreement with PyTorch's output (``max_rel``). ``--quick`` (a 2-core CPU):
a batch of 4, 2 repeats, and ISM on a contiguous span of positions in the middle of the window,
extrapolated to the window (:mod:`benchmarks.graph_ism`); the rows say so.
"""

import argparse
import sys
import warnings

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

SEQ_LEN = 2114
TORCH_BATCH = 128  # mutants per PyTorch call (2114 x 64 fp32 activations: ~35 MB per sequence)
COUNTS = 1  # the target view is [profile, counts]


def bpnet_pair(seq_len: int = SEQ_LEN, n_filters: int = 64, n_layers: int = 8, seed: int = 0):
    """(bpnet-lite BPNet in eval mode, converted jaxmotif Model) with the same random weights."""
    import torch
    from bpnetlite import BPNet

    from convert.bpnet import bpnet_config_from_state_dict, bpnet_params
    from jaxmotif.models.model import Model

    torch.manual_seed(seed)
    net = BPNet(n_filters=n_filters, n_layers=n_layers, verbose=False).eval()
    sd = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    config = bpnet_config_from_state_dict(sd, seq_len=seq_len, trimming=net.trimming)
    return net, Model.from_params(config, bpnet_params(sd, config))


def _to_torch(x, device):
    import torch

    return torch.tensor(np.ascontiguousarray(np.asarray(x).transpose(0, 2, 1)), device=device)


def bench_bpnet(*, precision: str, device: str, quick: bool, batch: int | None = None) -> list[Result]:
    import torch

    if precision != "fp32":
        print(f"bpnet: only fp32 is benchmarked (got {precision}); skipped", file=sys.stderr)
        return []
    dev = "cuda" if device == "gpu" else "cpu"
    net, model = bpnet_pair()
    net = net.to(dev)
    cfg = model.config
    length = cfg.seq_len
    repeats = 2 if quick else 5
    n = batch or (4 if quick else (256 if device == "gpu" else 16))
    rng = np.random.default_rng(0)
    seq = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (n, length))]
    ctl = rng.random((n, length, cfg.n_control_tracks)).astype(np.float32)
    x, xc = _to_torch(seq, dev), _to_torch(ctl, dev)
    results = []
    label = f"BPNet 64x8 {length} bp"

    # ---- forward -------------------------------------------------------------------------------
    fwd = jax.jit(model.outputs)
    s, c = jax.device_put(seq), jax.device_put(ctl)
    t_j = time_call(lambda: fwd(model.params, s, c), repeats=repeats, sync=jax_sync)

    def torch_forward():
        with torch.inference_mode():
            return net(x, xc)

    t_t = time_torch(torch_forward, repeats=repeats)
    ours = fwd(model.params, s, c)
    profile, counts = (v.float().cpu().numpy() for v in torch_forward())
    agree = max(max_rel(ours["profile"], profile.transpose(0, 2, 1)), max_rel(ours["counts"], counts))
    extra = {"max_rel_vs_pytorch": agree}
    note = f"max rel diff vs PyTorch {agree:.1e} (profile, counts)"
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
            note,
            extra,
        )
    )
    results.append(
        Result(
            f"{label}: forward", "bpnet-lite eager", precision, n / t_t.median_s, "seq/s", n, t_t.compile_s
        )
    )

    # ---- counts saliency -----------------------------------------------------------------------
    from jaxmotif.attribution import saliency_kernel

    sal = jax.jit(lambda p, a, b: saliency_kernel(model.apply, p, a, b, (COUNTS,), "gradient"))
    t_j = time_call(lambda: sal(model.params, s, c), repeats=repeats, sync=jax_sync)

    def torch_saliency():
        xg = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(net(xg, xc)[1].sum(), xg)
        return g

    t_t = time_torch(torch_saliency, repeats=repeats)
    ours = np.asarray(sal(model.params, s, c))[:, 0]
    theirs = torch_saliency().cpu().numpy().transpose(0, 2, 1)
    agree = max_rel(ours, theirs)
    note = f"max rel diff vs PyTorch {agree:.1e}"
    results.append(
        Result(
            f"{label}: counts saliency",
            "jaxmotif",
            precision,
            n / t_j.median_s,
            "seq/s",
            n,
            t_j.compile_s,
            None,
            note,
            {"max_rel_vs_pytorch": agree},
        )
    )
    results.append(
        Result(
            f"{label}: counts saliency",
            "pytorch autograd",
            precision,
            n / t_t.median_s,
            "seq/s",
            n,
            t_t.compile_s,
        )
    )

    results += _bench_ism(
        net, model, seq[0], ctl[0], precision=precision, device=dev, quick=quick, repeats=repeats, label=label
    )
    return results


def _bench_ism(net, model, seq, ctl, *, precision, device, quick, repeats, label) -> list[Result]:
    import torch
    from bpnetlite.bpnet import CountWrapper

    length = seq.shape[0]
    count = 32 if quick else length  # a multiple of the CPU position_chunk (32) for the fast fit
    where = span(length, count)
    pos, bases = substitutions(seq, where)
    scale = length / len(where)
    sub = f"{len(where)} of {length} positions timed, x{scale:.0f}" if scale > 1 else ""
    task = f"{label}: ISM log-counts, 1 window"
    xc1 = _to_torch(ctl[None], device)

    # PyTorch batched ISM: the reference, then every mutant through bpnet-lite, batches of 128
    muts = torch.tensor(mutants(seq, pos, bases).transpose(0, 2, 1).copy(), device=device)

    def torch_ism():
        with torch.inference_mode():
            net(_to_torch(seq[None], device), xc1)
        return torch_batched(lambda b: net(b, xc1.expand(b.shape[0], -1, -1))[1], muts, TORCH_BATCH)

    t_torch = time_torch(torch_ism, repeats=1 if quick else repeats)
    theirs = torch_ism()[:, 0]  # (K,)

    # jaxmotif full (every mutant through the network, reference in the same batch)
    t_full, ours_full = time_listed_full(
        model, seq, ctl, pos, bases, precision=precision, repeats=repeats, targets=("counts",)
    )
    # jaxmotif fast: two spans for the fixed part (the reference pass)
    t_fast, preds = time_fast_span(model, seq, ctl, where, precision=precision, repeats=repeats)
    ours_fast = preds[np.searchsorted(where, pos), bases, COUNTS]
    if scale > 1:
        where2 = span(length, 2 * len(where))
        t_fast2, _ = time_fast_span(model, seq, ctl, where2, precision=precision, repeats=repeats)
        fast_window = fit_window(t_fast.median_s, len(where), t_fast2.median_s, len(where2), length)
        fast_note = f"fit t = a + bP from {len(where)} and {len(where2)} positions -> L = {length}"
    else:
        fast_window, fast_note = t_fast.median_s, ""

    # tangermeme saturation_mutagenesis on the same span (its default fast=True)
    from tangermeme import saturation_mutagenesis as tm_module
    from tangermeme.saturation_mutagenesis import saturation_mutagenesis

    took = {}
    original = tm_module._fast_path

    def spy(*args, **kwargs):  # observes which path tangermeme chose; changes nothing
        out = original(*args, **kwargs)
        took["fast"] = out[0] is not None
        return out

    wrapped = CountWrapper(net)
    x1 = torch.tensor(seq.T[None].copy())

    def tm_run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return saturation_mutagenesis(
                wrapped,
                x1,
                args=(xc1.cpu(),),
                start=int(where[0]),
                end=int(where[-1]) + 1,
                raw_outputs=True,
                device=device,
            )

    tm_module._fast_path = spy
    try:
        t_tm = time_torch(tm_run, repeats=1)
        y_hat = tm_run().y_hat  # (1, 4, P, 1)
    finally:
        tm_module._fast_path = original
    theirs_tm = y_hat[0, bases, pos - where[0], 0].float().numpy()

    rows = []

    def row(impl, seconds, timing, agree, note, batch=1):
        notes = ["the reference" if agree is None else f"max rel diff vs PyTorch {agree:.1e}"] + [
            n for n in (sub, note) if n
        ]
        rows.append(
            Result(
                task,
                impl,
                precision,
                seconds,
                "s",
                batch,
                timing.compile_s,
                None,
                "; ".join(notes),
                {"max_rel_vs_pytorch": agree, "positions_timed": len(where)},
            )
        )

    row("jaxmotif full", t_full.median_s * scale, t_full, max_rel(ours_full[:, 0], theirs), "")
    row("jaxmotif fast", fast_window, t_fast, max_rel(ours_fast, theirs), fast_note)
    row("pytorch batched ISM (eager)", t_torch.median_s * scale, t_torch, None, "", TORCH_BATCH)
    path = "its fastISM path" if took.get("fast") else "fast=False (projected < 30 s or fastISM refused)"
    row(
        "tangermeme saturation_mutagenesis",
        t_tm.median_s * scale,
        t_tm,
        max_rel(theirs_tm, theirs),
        f"tangermeme took {path}",
        32,
    )
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bpnet", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2-core CPU: batch 4, ISM on 32 (and 64) positions")
    p.add_argument("--device", choices=("cpu", "gpu"), default=None)
    p.add_argument("--precision", default="fp32")
    p.add_argument("--out", default=None, help="write the rows as JSON here")
    args = p.parse_args(argv)
    from benchmarks import common

    device = args.device or ("gpu" if jax.default_backend() == "gpu" else "cpu")
    results = bench_bpnet(precision=args.precision, device=device, quick=args.quick)
    common.print_table(results)
    if args.out:
        common.write_json(args.out, common.environment(device), results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
