"""DeepLIFT / DeepSHAP throughput: jaxmotif beside tangermeme's ``deep_lift_shap``, same weights, same
references, same device, same run.

    python -m benchmarks.deeplift [--quick] [--device cpu|gpu] [--precision fp32,bf16] [--json out.json]

Model: DeepHistone as published (widths 128/256/512, hidden 925, L = 1000, both branches), random
weights in ``convert.torch_reference.NetDeepHistone`` converted to jaxmotif; the DNase input is
held fixed (tangermeme's ``args=``). References: 20 dinucleotide shuffles per sequence, drawn once
and given to both as the same tensor. Rows (sequences per second):

- tangermeme ``deep_lift_shap`` for one target (its ``batch_size`` pairs per pass, default 32);
  for every target it needs one call per target, so its all-target row is the one-target time
  times 7 (said in the note);
- jaxmotif ``deep_lift_shap`` for one target and for all 7 in one pass, per precision, with the
  largest convergence delta and the distance to tangermeme's contributions in the notes.

BPNet rows (``--models bpnet``): bpnet-lite's default ``BPNet`` (64 filters, 8 dilated layers,
2 strands, no control tracks) at 2114 bp, random weights converted through ``convert.bpnet``;
tangermeme through bpnet-lite's own ``attribute.deep_lift_shap`` on ``ProfileWrapper`` /
``CountWrapper``, jaxmotif with targets ``profile`` and ``counts`` (both in one pass).

``--quick``: 1 sequence (2 on a GPU) and 1 timed repeat.
"""

import argparse
import json
import sys
import warnings

import jax
import numpy as np

from benchmarks.common import (
    PUBLISHED,
    Result,
    environment,
    forward_flops,
    jax_sync,
    print_table,
    published_pair,
    random_inputs,
    time_call,
    torch_device,
    torch_sync_result,
)
from jaxmotif.deeplift import DEEPLIFT_OPS, deep_lift_shap_kernel
from jaxmotif.integrated import dinucleotide_shuffle
from jaxmotif.precision import with_precision

N_SHUFFLES = 20
TANGERMEME_BATCH = 32  # tangermeme's default: (sequence, reference) pairs per pass


def _rows(task, impl, precision, n, timing, flops, note="") -> Result:
    return Result(
        task,
        impl,
        precision,
        n / timing.median_s,
        "seq/s",
        n,
        timing.compile_s,
        None if flops is None else flops / timing.median_s / 1e12,
        note,
    )


def bench_deeplift(net, model, *, precision: str, device: str, quick: bool, n: int | None = None):
    """Rows for ``model`` (jaxmotif) and ``net`` (its PyTorch twin) on ``n`` random sequences."""
    import torch
    from tangermeme.deep_lift_shap import deep_lift_shap as tangermeme_dls

    n = n or ((2 if device == "gpu" else 1) if quick else (16 if device == "gpu" else 4))
    repeats = 1 if quick else 3
    seq, dnase = random_inputs(n, model.config)
    refs = dinucleotide_shuffle(seq, key=jax.random.key(0), num_shuffles=N_SHUFFLES)
    outputs = model.config.num_outputs
    # Per pair: forward of 2 rows, a backward per target over 2 rows (~2 forwards each).
    pair_flops = forward_flops(model.config) * n * N_SHUFFLES * 2

    results = []
    dev = torch_device(device)
    net = net.to(dev)
    x = torch.tensor(np.ascontiguousarray(seq.transpose(0, 2, 1)), device=dev)
    r = torch.tensor(np.ascontiguousarray(refs.transpose(0, 1, 3, 2)), device=dev)
    args = None if dnase is None else (torch.tensor(dnase[:, None], device=dev),)
    theirs = {}

    def run_tangermeme():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = tangermeme_dls(
                net, x, args=args, target=0, references=r, device=dev, batch_size=TANGERMEME_BATCH
            )
        theirs["contrib"] = out
        return out

    if precision == "fp32":
        t_tm = time_call(run_tangermeme, repeats=repeats, sync=torch_sync_result)
        theirs_np = theirs["contrib"].cpu().numpy().transpose(0, 2, 1)
    s, d = jax.device_put(seq), None if dnase is None else jax.device_put(dnase)
    rj = jax.device_put(refs)
    apply_fn = with_precision(lambda p, a, b: model.apply(p, a, b, ops=DEEPLIFT_OPS), precision)
    for targets in ((0,), tuple(range(outputs))):
        label = f"deep_lift_shap, {len(targets)} target{'s' if len(targets) > 1 else ''}, {N_SHUFFLES} refs"
        flops = pair_flops * (1 + 2 * len(targets))
        kernel = jax.jit(
            lambda p, a, b, c, targets=targets: deep_lift_shap_kernel(apply_fn, p, a, b, c, targets, False)
        )
        t = time_call(lambda kernel=kernel: kernel(model.params, s, d, rj), repeats=repeats, sync=jax_sync)
        contrib, deltas = (np.asarray(v) for v in kernel(model.params, s, d, rj))
        note = f"max delta {deltas.max():.1e}"
        if precision == "fp32":
            base = t_tm if len(targets) == 1 else type(t_tm)(t_tm.compile_s, t_tm.median_s * len(targets), 1)
            extrapolated = (
                "" if len(targets) == 1 else f" ({len(targets)} calls: 1-target time x {len(targets)})"
            )
            results.append(_rows(label, "tangermeme", precision, n, base, flops, "hooks" + extrapolated))
            gap = np.abs(contrib[:, 0] - theirs_np).max() / np.abs(theirs_np).max()
            note += f"; |jaxmotif - tangermeme| / max = {gap:.1e}"
        results.append(_rows(label, "jaxmotif", precision, n, t, flops, note))
    return results


def bpnet_pair(seq_len: int = 2114, seed: int = 0):
    """(bpnet-lite BPNet in eval mode, jaxmotif Model) with the same random weights."""
    import torch
    from bpnetlite.bpnet import BPNet

    from convert.bpnet import bpnet_config_from_state_dict, bpnet_params
    from jaxmotif.models import Model

    torch.manual_seed(seed)
    net = BPNet(n_control_tracks=0, verbose=False).eval()
    sd = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    config = bpnet_config_from_state_dict(sd, seq_len=seq_len, trimming=net.trimming)
    return net, Model.from_params(config, bpnet_params(sd, config))


def bench_deeplift_bpnet(*, precision: str, device: str, quick: bool, n: int | None = None):
    """BPNet rows: profile and counts, tangermeme via bpnet-lite's wrapper vs jaxmotif."""
    import torch
    from bpnetlite.attribute import deep_lift_shap as bpnetlite_dls
    from bpnetlite.bpnet import CountWrapper, ProfileWrapper

    net, model = bpnet_pair()
    n = n or ((2 if device == "gpu" else 1) if quick else (16 if device == "gpu" else 4))
    repeats = 1 if quick else 3
    rng = np.random.default_rng(0)
    seq = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (n, model.config.seq_len))]
    refs = dinucleotide_shuffle(seq, key=jax.random.key(0), num_shuffles=N_SHUFFLES)
    dev = torch_device(device)
    net = net.to(dev)
    x = torch.tensor(np.ascontiguousarray(seq.transpose(0, 2, 1)), device=dev)
    r = torch.tensor(np.ascontiguousarray(refs.transpose(0, 1, 3, 2)), device=dev)
    results, times = [], {}
    if precision == "fp32":
        for name, wrapper in (("profile", ProfileWrapper), ("counts", CountWrapper)):
            wrapped = wrapper(net)

            def run(wrapped=wrapped):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    return bpnetlite_dls(wrapped, x, references=r, device=dev, batch_size=TANGERMEME_BATCH)

            times[name] = time_call(run, repeats=repeats, sync=torch_sync_result)
    s, rj = jax.device_put(seq), jax.device_put(refs)
    apply_fn = with_precision(lambda p, a, b: model.apply(p, a, b, ops=DEEPLIFT_OPS), precision)
    kernel = jax.jit(lambda p, a, c: deep_lift_shap_kernel(apply_fn, p, a, None, c, (0, 1), False))
    t = time_call(lambda: kernel(model.params, s, rj), repeats=repeats, sync=jax_sync)
    _, deltas = (np.asarray(v) for v in kernel(model.params, s, rj))
    label = f"BPNet 2114 bp deep_lift_shap, profile + counts, {N_SHUFFLES} refs"
    if times:
        both = type(t)(times["profile"].compile_s, times["profile"].median_s + times["counts"].median_s, 1)
        results.append(_rows(label, "tangermeme (bpnet-lite)", precision, n, both, None, "2 calls"))
    results.append(_rows(label, "jaxmotif", precision, n, t, None, f"one pass; max delta {deltas.max():.1e}"))
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.deeplift",
        description=__doc__.split("\n\n")[0],
        epilog="example: python -m benchmarks.deeplift --device gpu --precision fp32,bf16 --json dl.json",
    )
    p.add_argument("--quick", action="store_true", help="1 sequence, 1 repeat (2-core CPU: about a minute)")
    p.add_argument("--device", choices=("cpu", "gpu"), default=None, help="default: gpu if JAX sees one")
    p.add_argument("--precision", default="fp32", help="comma-separated: fp32, tf32, bf16 (default: fp32)")
    p.add_argument("--n", type=int, default=None, help="sequences (default: 1 quick CPU, 4 CPU, 16 GPU)")
    p.add_argument("--models", default="deephistone,bpnet", help="comma-separated: deephistone, bpnet")
    p.add_argument("--json", metavar="OUT", help="write the results as JSON")
    args = p.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    device = args.device or ("gpu" if jax.default_backend() == "gpu" else "cpu")
    if device == "cpu":
        jax.config.update("jax_platforms", "cpu")
    precisions = [x.strip() for x in args.precision.split(",") if x.strip()]
    if "fp32" in precisions:  # the tangermeme rows and the agreement note come with fp32
        precisions = ["fp32"] + [x for x in precisions if x != "fp32"]
    env = environment(device)
    print("environment:", env)
    results = []
    if "deephistone" in models:
        net, model = published_pair(PUBLISHED)
        for precision in precisions:
            results += bench_deeplift(
                net, model, precision=precision, device=device, quick=args.quick, n=args.n
            )
    if "bpnet" in models:
        for precision in precisions:
            results += bench_deeplift_bpnet(precision=precision, device=device, quick=args.quick, n=args.n)
    print_table(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env, "results": [r.__dict__ for r in results]}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
