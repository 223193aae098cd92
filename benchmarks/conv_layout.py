"""Why is jaxmotif's fp32 forward slower than PyTorch's? One dense-block convolution, both layouts.

    python -m benchmarks.conv_layout      # on a GPU; prints TFLOP/s per framework, layout, precision

Times the 9-wide convolutions that hold 85% of DeepHistone's FLOPs (block1 layer 3: 384 -> 128
channels at L = 1000; block2 layer 3: 768 -> 256 at L = 250; batch 256) in JAX channels-last (NWC,
what jaxmotif uses), JAX channels-first (NCW) and PyTorch (Conv2d (1, 9) on NCHW, as DeepHistone),
in fp32 (no TF32) and bf16. Same device, same run.
"""

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

SHAPES = {"block1 layer 3": (256, 1000, 384, 128), "block2 layer 3": (256, 250, 768, 256)}


def _median(fn, sync, repeats=10):
    sync(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sync(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"{'layer':<16} {'impl':<26} {'prec':<5} {'ms':>8} {'TFLOP/s':>8}")
    for name, (n, length, cin, cout) in SHAPES.items():
        flops = 2 * n * length * 9 * cin * cout
        rng = np.random.default_rng(0)
        x = rng.standard_normal((n, length, cin), dtype=np.float32)
        w = rng.standard_normal((9, cin, cout), dtype=np.float32) * 0.05
        for prec, dtype, tdtype, matmul in (
            ("fp32", jnp.float32, torch.float32, "highest"),
            ("bf16", jnp.bfloat16, torch.bfloat16, "default"),
        ):
            for layout, dims, xa, wa in (
                ("jax NWC (jaxmotif)", ("NWC", "WIO", "NWC"), x, w),
                ("jax NCW", ("NCW", "OIW", "NCW"), x.transpose(0, 2, 1), w.transpose(2, 1, 0)),
            ):
                xd, wd = jnp.asarray(xa, dtype), jnp.asarray(wa, dtype)

                @jax.jit
                def conv(a, b, dims=dims, matmul=matmul):
                    with jax.default_matmul_precision(matmul):
                        return jax.lax.conv_general_dilated(a, b, (1,), ((4, 4),), dimension_numbers=dims)

                t = _median(lambda conv=conv, xd=xd, wd=wd: conv(xd, wd), jax.block_until_ready)
                print(
                    f"{name:<16} {layout:<26} {prec:<5} {t * 1e3:>8.2f} {flops / t / 1e12:>8.1f}", flush=True
                )
            layer = torch.nn.Conv2d(cin, cout, (1, 9), 1, (0, 4)).to(dev, tdtype)
            xt = torch.tensor(x.transpose(0, 2, 1)[:, :, None], device=dev, dtype=tdtype)

            def sync(_):
                if dev == "cuda":
                    torch.cuda.synchronize()

            with torch.no_grad():
                t = _median(lambda layer=layer, xt=xt: layer(xt), sync)
            print(
                f"{name:<16} {'torch NCHW Conv2d (1,9)':<26} {prec:<5} "
                f"{t * 1e3:>8.2f} {flops / t / 1e12:>8.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
