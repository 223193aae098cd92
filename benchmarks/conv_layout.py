"""Why is jaxmotif's fp32 forward slower than PyTorch's? DeepHistone's convolutions, both layouts.

    python -m benchmarks.conv_layout        # on a GPU: TFLOP/s per framework, layout, precision
    python -m benchmarks.conv_layout --all-layers --batch 16 --precision fp32 --alternate  # a CPU

By default times the 9-wide convolutions that hold 85% of DeepHistone's FLOPs (block1 layer 3: 384
-> 128 channels at L = 1000; block2 layer 3: 768 -> 256 at L = 250; batch 256) in JAX
channels-last (NWC, what jaxmotif uses), JAX channels-first (NCW) and PyTorch (Conv2d (1, 9) on
NCHW, as DeepHistone), in fp32 (no TF32) and bf16. Same device, same run. ``--all-layers``: every
convolution of one branch of the published model (conv1 4 -> 128, the dense blocks' layers, the
1x1 transitions), with per-framework totals, to set against the whole forward's time; ``--alternate``
takes each layer's JAX NWC and PyTorch calls in turns (one shared-load round each) instead of one
median after the other.
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

# name -> (batch, length, in channels, out channels, width)
SHAPES = {"block1 layer 3": (256, 1000, 384, 128, 9), "block2 layer 3": (256, 250, 768, 256, 9)}


def branch_layers(batch: int) -> dict:
    """Every convolution of one published DeepHistone branch (widths 128/256/512, L = 1000).

    conv1 is timed as a 4 -> 128 (1, 9) convolution in both frameworks (PyTorch's model runs it as
    a (4, 9) kernel over one input plane: the same multiply-adds).
    """
    layers = {"conv1": (batch, 1000, 4, 128, 9)}
    for i in range(3):
        layers[f"block1 layer {i + 1}"] = (batch, 1000, 128 * (i + 1), 128, 9)
    layers["trans1 1x1"] = (batch, 1000, 512, 256, 1)
    for i in range(3):
        layers[f"block2 layer {i + 1}"] = (batch, 250, 256 * (i + 1), 256, 9)
    layers["trans2 1x1"] = (batch, 250, 1024, 512, 1)
    return layers


def _median(fn, sync, repeats=10):
    sync(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sync(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _jax_conv(x, w, dims, matmul, dtype):
    """A jitted 'same' convolution of ``x`` (N, L, Cin) by ``w`` (K, Cin, Cout) in layout ``dims``."""
    pad = (w.shape[0] - 1) // 2
    if dims[0] == "NCW":
        x, w = x.transpose(0, 2, 1), w.transpose(2, 1, 0)
    xd, wd = jnp.asarray(x, dtype), jnp.asarray(w, dtype)

    @jax.jit
    def conv(a, b):
        with jax.default_matmul_precision(matmul):
            return jax.lax.conv_general_dilated(a, b, (1,), ((pad, pad),), dimension_numbers=dims)

    return lambda: conv(xd, wd)


def _torch_conv(x, w_shape, dev, tdtype):
    import torch

    width, cin, cout = w_shape
    layer = torch.nn.Conv2d(cin, cout, (1, width), 1, (0, (width - 1) // 2)).to(dev, tdtype)
    xt = torch.tensor(x.transpose(0, 2, 1)[:, :, None], device=dev, dtype=tdtype)

    def call():
        with torch.no_grad():
            return layer(xt)

    return call


def main(argv=None):
    import torch

    p = argparse.ArgumentParser(prog="python -m benchmarks.conv_layout", description=__doc__.split("\n\n")[0])
    p.add_argument("--all-layers", action="store_true", help="every convolution of one published branch")
    p.add_argument("--batch", type=int, default=256, help="sequences per call")
    p.add_argument("--precision", default="fp32,bf16", help="comma-separated: fp32,bf16")
    p.add_argument("--repeats", type=int, default=10, help="timed calls per median")
    p.add_argument("--alternate", action="store_true", help="JAX NWC and PyTorch calls in turns, per layer")
    args = p.parse_args(argv)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    dev = "cuda" if torch.cuda.is_available() else "cpu"

    def sync_torch(_):
        if dev == "cuda":
            torch.cuda.synchronize()

    shapes = (
        branch_layers(args.batch) if args.all_layers else {k: (args.batch, *v[1:]) for k, v in SHAPES.items()}
    )
    precisions = [x.strip() for x in args.precision.split(",") if x.strip()]
    print(f"{'layer':<16} {'impl':<26} {'prec':<5} {'ms':>8} {'TFLOP/s':>8}")
    totals = {}
    for name, (n, length, cin, cout, width) in shapes.items():
        flops = 2 * n * length * width * cin * cout
        rng = np.random.default_rng(0)
        x = rng.standard_normal((n, length, cin), dtype=np.float32)
        w = rng.standard_normal((width, cin, cout), dtype=np.float32) * 0.05
        for prec in precisions:
            dtype, tdtype, matmul = {
                "fp32": (jnp.float32, torch.float32, "highest"),
                "bf16": (jnp.bfloat16, torch.bfloat16, "default"),
            }[prec]
            calls = {
                "jax NWC (jaxmotif)": (
                    _jax_conv(x, w, ("NWC", "WIO", "NWC"), matmul, dtype),
                    jax.block_until_ready,
                )
            }
            if not args.all_layers:
                calls["jax NCW"] = (
                    _jax_conv(x, w, ("NCW", "OIW", "NCW"), matmul, dtype),
                    jax.block_until_ready,
                )
            calls["torch NCHW Conv2d (1,k)"] = (_torch_conv(x, w.shape, dev, tdtype), sync_torch)
            if args.alternate:
                for fn, sync in calls.values():
                    sync(fn())  # warm-up / compile
                times = {impl: [] for impl in calls}
                for _ in range(args.repeats):
                    for impl, (fn, sync) in calls.items():
                        t0 = time.perf_counter()
                        sync(fn())
                        times[impl].append(time.perf_counter() - t0)
                medians = {impl: statistics.median(v) for impl, v in times.items()}
            else:
                medians = {impl: _median(fn, sync, args.repeats) for impl, (fn, sync) in calls.items()}
            for impl, t in medians.items():
                totals[(impl, prec)] = totals.get((impl, prec), 0.0) + t
                print(f"{name:<16} {impl:<26} {prec:<5} {t * 1e3:>8.2f} {flops / t / 1e12:>8.3f}", flush=True)
    if args.all_layers:
        for (impl, prec), t in totals.items():
            print(f"{'all layers':<16} {impl:<26} {prec:<5} {t * 1e3:>8.2f}")


if __name__ == "__main__":
    main()
