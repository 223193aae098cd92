"""Integrated gradients and SmoothGrad: gradients averaged over many inputs per sequence.

- Integrated gradients (Sundararajan, Taly & Yan 2017, "Axiomatic attribution for deep networks",
  ICML): ``(x - x') ⊙ ∫₀¹ ∇f(x' + α (x - x')) dα`` from a reference ``x'``, the integral by a
  quadrature rule of ``steps`` points. Completeness: the attributions sum to ``f(x) - f(x')``
  up to the quadrature error. References: all-zero (every base an N), uniform 0.25, or
  dinucleotide-shuffled copies of the sequence (the attributions are then averaged over the
  references, and sum to ``f(x)`` minus the mean of ``f`` over them).
- SmoothGrad (Smilkov et al. 2017, "SmoothGrad: removing noise by adding noise"): the gradient
  averaged over ``samples`` copies of the input with Gaussian noise of standard deviation ``sigma``
  added (a one-hot input spans 0..1, so ``sigma`` is also the fraction of the input range).

Every (reference, path point) pair / noisy copy of a chunk of sequences is one value of a
``lax.scan`` that carries only the accumulated attributions, evaluated ``step_batch`` values at a
time; the sequences per call, values per scan step and targets per call come from a memory budget
(:mod:`jaxmotif.memory`), so memory stays bounded whatever N, targets, ``steps``, ``num_baselines``
or ``samples`` is. The
DNase input of two-branch models is held at its value; only the sequence is attributed.
"""

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxmotif.batching import map_batches
from jaxmotif.gradients import by_target_groups, resolve_targets, saliency_kernel
from jaxmotif.memory import activation_elements, param_bytes, path_plan, resolve_budget
from jaxmotif.precision import with_precision

BASELINES = ("zeros", "uniform", "shuffle")
INTEGRATION_RULES = ("gausslegendre", "riemann_middle", "riemann_trapezoid")


# ---------------------------------------------------------------------------------------------
# Dinucleotide shuffle (Altschul & Erikson 1985), NumPy
# ---------------------------------------------------------------------------------------------


def _symbols(seq: np.ndarray) -> np.ndarray:
    """(N, L, 4) one-hot -> (N, L) symbols 0..3, 4 for an N (all-zero row)."""
    seq = np.asarray(seq)
    sums = seq.sum(axis=-1)
    valid = ((seq == 0) | (seq == 1)).all(axis=-1) & (sums <= 1)
    if not valid.all():
        row, pos = np.argwhere(~valid)[0]
        raise ValueError(
            f"sequence {row} position {pos}: {seq[row, pos].tolist()} is not a one-hot row "
            "(the dinucleotide shuffle needs one-hot sequences, N as an all-zero row)"
        )
    return np.where(sums > 0, seq.argmax(axis=-1), 4)


def _dinucleotide_shuffle_symbols(s: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random sequence with the doublet counts, first and last symbol of ``s`` (1-D).

    Altschul & Erikson's Eulerian-path construction (as in Kandel et al. 1996 and uShuffle): the
    doublets are the edges of a multigraph on the symbols, and every sequence with the same
    doublets is an Eulerian path from ``s[0]`` to ``s[-1]``. Pick for each symbol but the last its
    last exit edge so that these edges form a tree pointing at the last symbol (a uniform random
    arborescence, by Wilson's loop-erased random walks); order each symbol's other exit edges at
    random and put the last exit last; then walk. The tree condition guarantees the walk uses
    every edge, and each distinct sequence comes out equally often.
    """
    length = len(s)
    if length <= 2:
        return s.copy()
    exits: dict[int, list[int]] = {}
    for a, b in zip(s[:-1].tolist(), s[1:].tolist(), strict=True):
        exits.setdefault(a, []).append(b)
    last = int(s[-1])
    in_tree = {last}
    successor: dict[int, int] = {}  # symbol -> index of its last exit edge in exits[symbol]
    for start in sorted(exits):
        u = start
        while u not in in_tree:  # random walk; overwriting successors erases its loops
            successor[u] = int(rng.integers(len(exits[u])))
            u = exits[u][successor[u]]
        u = start
        while u not in in_tree:
            in_tree.add(u)
            u = exits[u][successor[u]]
    order: dict[int, list[int]] = {}
    for v, targets in exits.items():
        if v in successor:
            kept = targets[successor[v]]
            others = targets[: successor[v]] + targets[successor[v] + 1 :]
            order[v] = [others[i] for i in rng.permutation(len(others))] + [kept]
        else:
            order[v] = [targets[i] for i in rng.permutation(len(targets))]
    out = np.empty(length, dtype=s.dtype)
    out[0] = u = int(s[0])
    used = dict.fromkeys(order, 0)
    for i in range(1, length):
        nxt = order[u][used[u]]
        used[u] += 1
        out[i] = u = nxt
    return out


def sequence_rows(rows, n: int) -> np.ndarray:
    """Each sequence's index in the whole input, shape=(n,) int32; ``None`` means ``0 .. n-1``.

    The random methods draw sequence ``i``'s numbers from ``fold_in(key, rows[i])``: a caller that
    attributes a large input a slice at a time passes the slice's rows, and every sequence gets the
    numbers it would get in one call on the whole input (as :func:`jaxmotif.scan.scan_attributions`
    does per store row).
    """
    if rows is None:
        return np.arange(n, dtype=np.int32)
    arr = np.asarray(rows)
    if arr.shape != (n,):
        raise ValueError(f"rows shape {arr.shape} must be ({n},), one index per sequence")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"rows dtype {arr.dtype} must be integer")
    if n and (arr.min() < 0 or arr.max() >= 2**31):
        raise ValueError(f"rows must lie in [0, 2**31); got {int(arr.min())} .. {int(arr.max())}")
    return arr.astype(np.int32)


def dinucleotide_shuffle(seq, *, key: jax.Array, num_shuffles: int = 1, rows=None) -> np.ndarray:
    """Dinucleotide-preserving shuffles of one-hot sequences (Altschul & Erikson 1985).

    Each shuffle has exactly the doublet counts of its sequence (N counted as a fifth letter) and
    the same first and last base, and is uniform among all such sequences.

    Parameters
    ----------
    seq: shape=(N, L, 4) or (L, 4), one-hot (an N is an all-zero row).
    key: a ``jax.random`` key. Sequence ``i`` of the batch draws from ``fold_in(key, rows[i])``, so
        its shuffles do not depend on the other sequences.
    num_shuffles: shuffles per sequence.
    rows: shape=(N,) each sequence's index in the whole input (default ``0 .. N-1``; see
        :func:`sequence_rows`): ``seq[a:b]`` with ``rows=range(a, b)`` gives rows ``a:b`` of the
        shuffles of ``seq``.

    Returns shape=(N, num_shuffles, L, 4) (or (num_shuffles, L, 4) for a single sequence), float32.
    """
    seq = np.asarray(seq)
    single = seq.ndim == 2
    if single:
        seq = seq[None]
    if seq.ndim != 3 or seq.shape[-1] != 4:
        raise ValueError(f"seq shape {seq.shape} must be (N, L, 4) or (L, 4)")
    if num_shuffles < 1:
        raise ValueError(f"num_shuffles={num_shuffles} must be positive")
    symbols = _symbols(seq)
    n = symbols.shape[0]
    rows = sequence_rows(rows, n)
    seeds = np.asarray(
        jax.vmap(lambda i: jax.random.bits(jax.random.fold_in(key, i), (4,), jnp.uint32))(jnp.asarray(rows))
    )
    table = np.concatenate([np.eye(4, dtype=np.float32), np.zeros((1, 4), np.float32)])
    out = np.empty((n, num_shuffles, *seq.shape[1:]), np.float32)
    for i in range(n):
        rng = np.random.default_rng(seeds[i].tolist())
        for j in range(num_shuffles):
            out[i, j] = table[_dinucleotide_shuffle_symbols(symbols[i], rng)]
    return out[0] if single else out


def make_baselines(seq, baseline="zeros", *, key: jax.Array | None = None, num_baselines: int = 1, rows=None):
    """References for integrated gradients, shape=(N, B, L, 4).

    baseline: ``zeros`` (every base an N), ``uniform`` (0.25 per letter), ``shuffle``
        (``num_baselines`` dinucleotide shuffles of each sequence; needs ``key``; sequence ``i``
        from ``fold_in(key, rows[i])``, see :func:`dinucleotide_shuffle`), or an array of shape
        (L, 4), (N, L, 4) or (N, B, L, 4).

    Returns shape=(N, B, L, 4), float32.
    """
    seq = np.asarray(seq, np.float32)
    n = seq.shape[0]
    if isinstance(baseline, str):
        if baseline not in BASELINES:
            raise ValueError(f"baseline={baseline!r} must be one of {BASELINES} or an array")
        if baseline == "shuffle":
            if key is None:
                raise ValueError("baseline='shuffle' needs an explicit key=jax.random.key(...)")
            return dinucleotide_shuffle(seq, key=key, num_shuffles=num_baselines, rows=rows)
        fill = 0.0 if baseline == "zeros" else 0.25
        return np.full((n, 1, *seq.shape[1:]), fill, np.float32)
    ref = np.asarray(baseline, np.float32)
    if ref.shape == seq.shape[1:]:
        ref = np.broadcast_to(ref, seq.shape)
    if ref.shape == seq.shape:
        ref = ref[:, None]
    if ref.ndim != 4 or ref.shape[0] != n or ref.shape[2:] != seq.shape[1:]:
        raise ValueError(f"baseline shape {np.shape(baseline)} must be (L, 4), (N, L, 4) or (N, B, L, 4)")
    return np.ascontiguousarray(ref)


def integration_points(steps: int, rule: str = "gausslegendre") -> tuple[np.ndarray, np.ndarray]:
    """Quadrature nodes ``alphas`` in [0, 1] and weights (summing to 1), each shape=(steps,)."""
    if steps < 1:
        raise ValueError(f"steps={steps} must be positive")
    if rule == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return (nodes + 1) / 2, weights / 2
    if rule == "riemann_middle":
        return (np.arange(steps) + 0.5) / steps, np.full(steps, 1.0 / steps)
    if rule == "riemann_trapezoid":
        if steps < 2:
            raise ValueError("the trapezoid rule needs steps >= 2")
        weights = np.full(steps, 1.0 / (steps - 1))
        weights[[0, -1]] /= 2
        return np.linspace(0.0, 1.0, steps), weights
    raise ValueError(f"rule={rule!r} must be one of {INTEGRATION_RULES}")


def path_points(steps: int, rule: str, references: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (reference index, alpha) pair, shape=(B * steps, 2), and its weight / B, shape=(B * steps,).

    The scan values of :func:`integrated_gradients_kernel` (chunk them with ``_padded_chunks``).
    """
    alphas, weights = integration_points(steps, rule)
    pairs = np.stack([np.repeat(np.arange(references), steps), np.tile(alphas, references)], axis=-1)
    return pairs.astype(np.float32), (np.tile(weights, references) / references).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------


def _padded_chunks(values: np.ndarray, weights: np.ndarray, chunk: int):
    """(values, weights) reshaped to (C, chunk, ...), padded with weight-0 entries."""
    chunk = max(1, min(chunk, len(values)))
    pad = -len(values) % chunk
    values = np.concatenate([values, np.zeros((pad, *values.shape[1:]), values.dtype)])
    weights = np.concatenate([weights, np.zeros(pad, weights.dtype)])
    return values.reshape(-1, chunk, *values.shape[1:]), weights.reshape(-1, chunk)


SMOOTHGRAD_SAMPLES, SMOOTHGRAD_SIGMA = 50, 0.15  # smoothgrad's defaults (the CLIs' too)


def smoothgrad_plan(
    model,
    budget: int,
    *,
    sequences: int,
    samples: int,
    targets: int,
    length: int,
    max_sequences: int | None = None,
    max_points: int | None = None,
) -> tuple[int, int, int]:
    """(sequences per call, noisy copies per scan step, targets per call) of SmoothGrad under
    ``budget`` bytes (:func:`jaxmotif.memory.path_plan`: the copies are its path points)."""
    return path_plan(
        budget,
        sequences=sequences,
        points=samples,
        targets=targets,
        references=0,
        activations=activation_elements(model),
        length=length,
        fixed_bytes=param_bytes(model),
        max_sequences=max_sequences,
        max_points=max_points,
    )


def smoothgrad_samples(samples: int, per_step: int):
    """The scan values of :func:`smoothgrad_kernel`: sample indices ``j`` (C, per_step) int32 and their
    weights ``1 / samples`` (C, per_step), padded with weight-0 entries, as device arrays."""
    js, weights = _padded_chunks(
        np.arange(samples, dtype=np.int32), np.full(samples, 1.0 / samples, np.float32), per_step
    )
    return jnp.asarray(js), jnp.asarray(weights)


def _weighted_gradient_sum(apply_fn, params, points_fn: Callable, dnase, targets, xs, weights, scale_fn=None):
    """Σ_j w_j s_j ⊙ ∇f(points_fn(x_j)) with the points of one scan step vmapped.

    points_fn(chunk) -> inputs of shape (N, S, L, 4) for a chunk of S scan values; scale_fn(chunk)
    -> the multipliers s_j, shape (N, S, L, 4), or None for 1. Only the accumulator (N, K, L, 4)
    is carried between scan steps, so memory does not grow with the number of scan values.
    Returns shape=(N, K, L, 4).
    """

    def body(acc, chunk):
        x_values, w = chunk
        x = points_fn(x_values)  # (N, S, L, 4): the sharded batch axis stays leading
        n, s, length, alphabet = x.shape
        # the side input (DNase (N, L), control tracks (N, L, C)) is held fixed for every point
        d = None if dnase is None else jnp.broadcast_to(dnase[:, None], (n, s, *dnase.shape[1:]))
        flat = saliency_kernel(
            apply_fn,
            params,
            x.reshape(n * s, length, alphabet),
            None if d is None else d.reshape(n * s, *d.shape[2:]),
            targets,
            "gradient",
        )
        grads = flat.reshape(n, s, len(targets), length, alphabet)
        w = w.reshape(1, s, 1, 1, 1)
        if scale_fn is not None:
            w = w * scale_fn(x_values)[:, :, None]
        return acc + jnp.sum(w * grads, axis=1), None

    first = jax.eval_shape(points_fn, xs[0])
    n, _, length, alphabet = first.shape
    init = jnp.zeros((n, len(targets), length, alphabet), jnp.float32)
    acc, _ = jax.lax.scan(body, init, (xs, weights))
    return acc


def integrated_gradients_kernel(
    apply_fn: Callable, params, seq, dnase, baselines, targets: Sequence[int], points, weights
):
    """Pure kernel: integrated gradients of ``targets`` from each reference, averaged over them.

    Parameters
    ----------
    apply_fn: ``f(params, seq (N, L, 4), dnase (N, L) | None) -> (N, T)``.
    seq: shape=(N, L, 4); dnase: shape=(N, L) or None (held fixed).
    baselines: shape=(N, B, L, 4) references.
    targets: output indices, static.
    points: shape=(C, S, 2) (reference index, alpha) pairs, scanned C times S at a time: every
        path point of every reference is one scan value, so memory per step does not grow with B.
    weights: shape=(C, S) quadrature weight / B (0 for padding).

    Returns shape=(N, K, L, 4): Σ_b Σ_j w_j (x - x'_b) ⊙ ∇f(x'_b + α_j (x - x'_b)) / B.
    """
    diff = seq[:, None] - baselines  # (N, B, L, 4)

    def refs(p):
        return p[:, 0].astype(jnp.int32)

    def path(p):
        alpha = p[:, 1].reshape(1, -1, 1, 1)
        return baselines[:, refs(p)] + alpha * diff[:, refs(p)]  # (N, S, L, 4)

    return _weighted_gradient_sum(
        apply_fn, params, path, dnase, targets, points, weights, scale_fn=lambda p: diff[:, refs(p)]
    )


def smoothgrad_kernel(
    apply_fn: Callable, params, seq, dnase, rows, key, targets: Sequence[int], sigma: float, samples, weights
):
    """Pure kernel: SmoothGrad, the gradient averaged over noisy copies of ``seq``.

    Parameters
    ----------
    seq: shape=(N, L, 4); dnase: shape=(N, L) or None (held fixed, no noise).
    rows: shape=(N,) int32, each sequence's index in the whole input: the noise of sample j of
        row i comes from ``fold_in(fold_in(key, i), j)``, so it does not depend on chunking.
    samples, weights: shape=(C, S) sample indices and weights (1/samples; 0 for padding).

    Returns shape=(N, K, L, 4).
    """

    def noise(i, j):
        sample_key = jax.random.fold_in(jax.random.fold_in(key, i), j)
        return jax.random.normal(sample_key, seq.shape[1:], jnp.float32)

    def points(js):
        eps = jax.vmap(lambda i: jax.vmap(lambda j: noise(i, j))(js))(rows)  # (N, S, L, 4)
        return seq[:, None] + sigma * eps

    return _weighted_gradient_sum(apply_fn, params, points, dnase, targets, samples, weights)


# ---------------------------------------------------------------------------------------------
# Model-level functions
# ---------------------------------------------------------------------------------------------


def integrated_gradients(
    model,
    seq,
    dnase=None,
    target=None,
    *,
    steps: int = 64,
    baseline="zeros",
    num_baselines: int = 1,
    rule: str = "gausslegendre",
    key: jax.Array | None = None,
    rows=None,
    logits: bool = False,
    batch_size: int | None = None,
    step_batch: int | None = None,
    max_memory: int | None = None,
    precision: str | None = None,
    return_deltas: bool = False,
) -> np.ndarray:
    """Integrated gradients (Sundararajan et al. 2017) of ``model``'s outputs for one-hot sequences.

    Parameters
    ----------
    model: a :class:`jaxmotif.Model` (anything with ``apply``, ``params``, ``config``).
    seq: shape=(N, L, 4) one-hot; dnase: shape=(N, L) for two-branch models (held fixed).
    target: an output index or name (result (N, L, 4)), a list of them or None for all (N, T, L, 4).
    steps: quadrature points along the straight path from the reference to the sequence.
    baseline: ``zeros`` | ``uniform`` | ``shuffle`` (``num_baselines`` dinucleotide shuffles per
        sequence, averaged; needs ``key``) | an array (see :func:`make_baselines`).
    rule: ``gausslegendre`` (default, as Captum) | ``riemann_middle`` | ``riemann_trapezoid``.
    key, rows: the shuffled references of sequence ``i`` come from ``fold_in(key, rows[i])``
        (``rows`` default ``0 .. N-1``, see :func:`sequence_rows`), whatever the chunking.
    logits: attribute the output before the final activation.
    max_memory: bytes one compiled call may hold (default
        :func:`jaxmotif.memory.default_memory_budget`): the sequences per call, the (path point,
        reference) pairs per scan step and the targets per call are chosen from it
        (:func:`jaxmotif.memory.path_plan`).
    batch_size, step_batch: optional upper bounds on sequences per call and points per scan step.
    precision: ``fp32`` (default) | ``tf32`` | ``bf16``.
    return_deltas: also return the completeness gap ``|Σ attributions - (f(x) - mean f(x'))|``
        per sequence, shape=(N,) for one target or (N, K); it shrinks as ``steps`` grows.

    Returns the attributions; they sum (over positions and letters) to ``f(x) - mean f(x')``
    up to the quadrature error; ``(attributions, deltas)`` with ``return_deltas``.
    """
    seq, dnase = model.check_inputs(seq, dnase)
    targets, squeeze = resolve_targets(model, target)
    rows = sequence_rows(rows, seq.shape[0])  # checked even when the references draw nothing
    refs = make_baselines(seq, baseline, key=key, num_baselines=num_baselines, rows=rows)
    n_refs = refs.shape[1]
    pairs, pair_weights = path_points(steps, rule, n_refs)
    n_seq, per_step, per_call = path_plan(
        resolve_budget(max_memory),
        sequences=seq.shape[0],
        points=len(pairs),
        targets=len(targets),
        references=n_refs,
        activations=activation_elements(model),
        length=seq.shape[1],
        fixed_bytes=param_bytes(model),
        max_sequences=batch_size,
        max_points=step_batch,
    )
    points, weights = (jnp.asarray(a) for a in _padded_chunks(pairs, pair_weights, per_step))
    params = model.params

    def run(group):
        def make():
            apply_fn = with_precision(model.apply_logits if logits else model.apply, precision)
            return jax.jit(
                lambda p, s, d, b, pts, w: integrated_gradients_kernel(apply_fn, p, s, d, b, group, pts, w)
            )

        kernel = model.compiled_fn(("integrated_gradients", group, logits, precision), make)
        return map_batches(
            lambda s, d, b: kernel(params, s, d, b, points, weights), [seq, dnase, refs], batch_size=n_seq
        )

    result = by_target_groups(targets, per_call, run)
    if return_deltas:
        fwd = model.compiled(precision, logits)

        def predict(x):
            return map_batches(lambda s, d: fwd(params, s, d), [x, dnase], batch_size=n_seq)[:, list(targets)]

        gap = predict(seq) - np.mean([predict(refs[:, b]) for b in range(refs.shape[1])], axis=0)
        deltas = np.abs(result.sum(axis=(-2, -1)) - gap)  # (N, K)
        return (result[:, 0], deltas[:, 0]) if squeeze else (result, deltas)
    return result[:, 0] if squeeze else result


def smoothgrad(
    model,
    seq,
    dnase=None,
    target=None,
    *,
    key: jax.Array,
    rows=None,
    samples: int = SMOOTHGRAD_SAMPLES,
    sigma: float = SMOOTHGRAD_SIGMA,
    logits: bool = False,
    batch_size: int | None = None,
    sample_batch: int | None = None,
    max_memory: int | None = None,
    precision: str | None = None,
) -> np.ndarray:
    """SmoothGrad (Smilkov et al. 2017): the gradient averaged over noisy copies of each sequence.

    Parameters
    ----------
    model, seq, dnase, target, logits, max_memory, precision: as :func:`integrated_gradients`.
    key: a ``jax.random`` key (required); results do not depend on the chunk sizes.
    rows: shape=(N,) each sequence's index in the whole input (default ``0 .. N-1``, see
        :func:`sequence_rows`): sample ``j`` of sequence ``i`` adds the noise of
        ``fold_in(fold_in(key, rows[i]), j)``.
    samples: noisy copies per sequence; sigma: the noise's standard deviation (one-hot inputs span
        0..1; Smilkov et al. suggest 10-20 % of the range).
    batch_size, sample_batch: optional upper bounds on sequences per call and noisy copies per scan step.

    Returns shape=(N, L, 4) for one target, (N, K, L, 4) for several.
    """
    if key is None:
        raise ValueError("smoothgrad needs an explicit key=jax.random.key(...)")
    if samples < 1:
        raise ValueError(f"samples={samples} must be positive")
    if not sigma >= 0:
        raise ValueError(f"sigma={sigma} must be non-negative")
    seq, dnase = model.check_inputs(seq, dnase)
    targets, squeeze = resolve_targets(model, target)
    n_seq, per_step, per_call = smoothgrad_plan(
        model,
        resolve_budget(max_memory),
        sequences=seq.shape[0],
        samples=samples,
        targets=len(targets),
        length=seq.shape[1],
        max_sequences=batch_size,
        max_points=sample_batch,
    )
    js, weights = smoothgrad_samples(samples, per_step)
    sigma = float(sigma)
    params = model.params
    rows = sequence_rows(rows, seq.shape[0])

    def run(group):
        def make():
            apply_fn = with_precision(model.apply_logits if logits else model.apply, precision)
            return jax.jit(
                lambda p, s, d, r, k, j, w: smoothgrad_kernel(apply_fn, p, s, d, r, k, group, sigma, j, w)
            )

        kernel = model.compiled_fn(("smoothgrad", group, sigma, logits, precision), make)
        return map_batches(
            lambda s, d, r: kernel(params, s, d, r, key, js, weights), [seq, dnase, rows], batch_size=n_seq
        )

    result = by_target_groups(targets, per_call, run)
    return result[:, 0] if squeeze else result
