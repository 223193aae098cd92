"""Shared pieces of the graph-model benchmarks (``benchmarks.bpnet``, ``benchmarks.classic``).

ISM of one window on a subset of positions (``--quick``): a contiguous span of ``P`` positions in
the middle of the window, all 3 substitutions at each. Brute-force methods (every mutant through
the network: jaxmotif ``full``, PyTorch batched ISM, tangermeme without its fast path) cost the
same per mutant wherever it is, so their window time is the span's time x L / P. The fast kernels
have a fixed part (the reference pass), so their window time comes from two spans (P and 2P):
``t(P) = a + b P`` -> ``a + b L``. Rows say which numbers were extrapolated and from what.

Agreement with PyTorch: ``max_rel`` = max |ours - theirs| / max |theirs| over the compared values.
"""

import time

import jax
import numpy as np

from benchmarks.common import Timing, jax_sync, time_call


def max_rel(ours, theirs) -> float:
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    return float(np.max(np.abs(ours - theirs)) / max(np.max(np.abs(theirs)), 1e-30))


def span(length: int, count: int) -> np.ndarray:
    """``count`` contiguous positions centred in a window of ``length`` (all of them if count >= L)."""
    count = min(count, length)
    start = (length - count) // 2
    return np.arange(start, start + count)


def substitutions(seq: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positions (3P,), bases (3P,)): the 3 non-reference bases at each position, position-major."""
    ref = seq[positions].argmax(-1)
    pos = np.repeat(positions, 3)
    bases = (np.repeat(ref, 3) + np.tile([1, 2, 3], len(positions))) % 4
    return pos.astype(np.int32), bases.astype(np.int32)


def mutants(seq: np.ndarray, pos: np.ndarray, bases: np.ndarray) -> np.ndarray:
    """(K, L, 4) one-hot mutants of ``seq (L, 4)``, one per (position, base)."""
    out = np.repeat(seq[None], len(pos), axis=0)
    out[np.arange(len(pos)), pos] = np.eye(4, dtype=seq.dtype)[bases]
    return out


def time_listed_full(model, seq, side, pos, bases, *, precision, repeats, targets):
    """jaxmotif ``full`` on the listed substitutions: (Timing, mutant outputs (K, T'))."""
    from jaxmotif.ism import compiled_listed_mutations

    fn = compiled_listed_mutations(model, targets=targets, precision=precision, method="full")
    s = jax.device_put(seq[None])
    d = None if side is None else jax.device_put(side[None])
    p, b = jax.device_put(pos[None]), jax.device_put(bases[None])
    t = time_call(lambda: fn(model.params, s, d, p, b), repeats=repeats, sync=jax_sync)
    out = np.asarray(fn(model.params, s, d, p, b))[0, :, 1]  # (K, T'): p(ŝ)
    return t, out


def time_fast_span(model, seq, side, positions, *, precision, repeats):
    """jaxmotif graph fast ISM at ``positions``: (Timing, preds (P, 4, T) of the target view)."""
    from jaxmotif.ism_graph import mutant_predictions_graph
    from jaxmotif.precision import with_precision

    # A contiguous span goes in as a range: the kernel then computes as on a whole window (a step
    # of consecutive positions shares the kernel rows of a Flatten -> Linear head).
    contiguous = len(positions) > 0 and np.array_equal(
        positions, np.arange(positions[0], positions[0] + len(positions))
    )
    where = range(int(positions[0]), int(positions[0]) + len(positions)) if contiguous else None

    def fn(p, s, d, w):
        return mutant_predictions_graph(model, p, s, d, positions=where if contiguous else w)

    kernel = jax.jit(with_precision(fn, precision))
    s = jax.device_put(seq)
    d = None if side is None else jax.device_put(side)
    w = jax.device_put(positions.astype(np.int32))
    t = time_call(lambda: kernel(model.params, s, d, w), repeats=repeats, sync=jax_sync)
    preds, _ = kernel(model.params, s, d, w)
    return t, np.asarray(preds, np.float32)


def fit_window(t1: float, p1: int, t2: float, p2: int, length: int) -> float:
    """Window time from two span timings: ``t = a + b P`` -> ``a + b L`` (a, b clipped at >= 0)."""
    b = max((t2 - t1) / (p2 - p1), 0.0)
    a = max(t1 - b * p1, 0.0)
    return a + b * length


def time_torch(fn, *, repeats: int) -> Timing:
    """Warm-up call timed apart, then the median of ``repeats`` calls (CPU or synchronised CUDA)."""
    import torch

    def sync(_):
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    return time_call(fn, repeats=repeats, sync=sync)


def torch_batched(forward, x, batch: int):
    """``forward`` over ``x`` (K, ...) in batches of ``batch``, outputs concatenated (NumPy float32)."""
    import torch

    outs = []
    with torch.inference_mode():
        for i in range(0, x.shape[0], batch):
            outs.append(forward(x[i : i + batch]).float())
    return torch.cat(outs).cpu().numpy()


def wall(fn):
    """(seconds, result) of one call."""
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out
