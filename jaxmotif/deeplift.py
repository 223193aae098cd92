"""DeepLIFT / DeepSHAP contribution scores (Shrikumar, Greenside & Kundaje 2017; Lundberg & Lee 2017).

DeepLIFT explains ``f(x) - f(x')`` for a reference ``x'``: every nonlinearity's gradient is
replaced by a multiplier, and the backward pass then gives multipliers ``m`` at the input with
``Σ (x - x') · m = f(x) - f(x')`` (summation-to-delta). DeepSHAP averages over references,
here dinucleotide shuffles of each sequence. The rules are those of tangermeme's
``deep_lift_shap`` (which bpnet-lite wraps), which this module matches number for number:

- Rescale rule, for every elementwise nonlinearity (ReLU, DeepSEA's threshold, sigmoid,
  softplus, exp, log) and for bpnet-lite's profile scaling ``y · softmax(y)`` (taken elementwise,
  as bpnet-lite registers ``_ProfileLogitScaling`` with tangermeme's ``_nonlinear``): the
  multiplier is ``Δout / Δin``, or the ordinary gradient where ``|Δin| < 1e-6``.
- Max-pooling: the change of each window's maximum, ``max(o, o') - o'`` for the input and
  ``o - max(o, o')`` for the reference, is routed (times the upstream gradient of each half) to
  that half's first maximum, the two routed arrays are added, and each position's sum is divided
  by its ``Δin``; where ``Δin == 0`` exactly the input half's ordinary gradient is used. Both
  halves get the same multiplier. Captum's rule differs only where ``|Δin| < 1e-10`` (it falls
  back to each half's own gradient there).
- Linear operations (convolutions, eval-mode BatchNorm, dense layers, concatenation, residual
  adds, crops, means) need no rule: their gradient is already the multiplier.

The rules are :class:`jaxmotif.nonlinear.Ops` entries written as ``jax.custom_vjp`` functions.
Each acts on a batch stacked as ``[inputs; references]`` along axis 0, the first half paired row
by row with the second, and the backward pass is seeded on both halves (as tangermeme seeds
``y.sum()`` over its stacked batch), so a max-pool sees the upstream gradients of both. The
forward values are the ordinary ones.

The kernel does not run that stacked batch (``2R`` rows forward and backward per sequence) unless
it must: it runs the model once on ``[x; x'_1 .. x'_R]`` (``1 + R`` rows) with each rule
recording its multipliers, then replays the model on ``R`` tangent rows with each rule a linear
map and takes ``jax.linear_transpose`` of that (``R`` rows backward, no primal recomputed, the
reference half's backward gone): about half the work, the same numbers (see :class:`_Tape` for the
one assumption). A nonlinearity that is not one of these rules (its transpose undefined) sends the
kernel back to the stacked pass. Sequences are vmapped, and every target comes out of the same
forward pass through a vmapped transpose.

Hypothetical contributions (Shrikumar et al.'s TF-MoDISco input): for every base ``b`` at every
position, ``Σ_c (onehot(b) - x'_c) · m_c``, averaged over references. The ordinary
contributions are the hypothetical ones times the one-hot input (tangermeme's definition); they
sum to ``f(x) - mean f(x')`` over positions and bases for sequences without N.
"""

import functools
import warnings
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxmotif.batching import map_batches
from jaxmotif.gradients import resolve_targets
from jaxmotif.integrated import dinucleotide_shuffle, sequence_rows
from jaxmotif.nonlinear import Ops, deepsea_threshold, maxpool, profile_scale
from jaxmotif.precision import with_precision

RESCALE_EPS = 1e-6  # |Δin| below this: the ordinary gradient instead of the secant (tangermeme's)
DELTA_WARNING = 1e-3  # tangermeme's warning_threshold for the convergence deltas
REFERENCES = ("shuffle", "zeros")


# ---------------------------------------------------------------------------------------------
# The rules: custom VJPs over a batch stacked as [inputs; references]
# ---------------------------------------------------------------------------------------------


def _halves(x):
    half = x.shape[0] // 2
    return x[:half], x[half:]


def _rule_dtype(dtype):
    """The rules divide small differences: never in less than float32 (bf16 runs, too)."""
    return jnp.promote_types(dtype, jnp.float32)


def rescale_rule(fn: Callable, name: str | None = None) -> Callable:
    """``fn`` (elementwise along the pairing, on a stacked ``[x; x']`` batch) with the rescale rule.

    The backward pass multiplies the upstream gradient of both halves by the secant
    ``(fn(x) - fn(x')) / (x - x')``, or by ``fn``'s own derivative at each half where
    ``|x - x'| < 1e-6``. ``fn`` need only be elementwise within a row pair (the profile scaling
    couples positions of one row; the secant is still taken elementwise, as tangermeme does).
    """

    @jax.custom_vjp
    def stacked(x):
        return fn(x)

    def fwd(x):
        return fn(x), x

    def bwd(x, g):
        dtype = _rule_dtype(x.dtype)
        xf = x.astype(dtype)
        y, plain_vjp = jax.vjp(fn, xf)
        (plain,) = plain_vjp(g.astype(dtype))  # the ordinary gradient of each half
        (xa, xr), (ya, yr) = _halves(xf), _halves(y)
        dx, dy = xa - xr, ya - yr
        small = jnp.abs(dx) < RESCALE_EPS
        secant = dy / jnp.where(small, jnp.ones_like(dx), dx)
        small2, secant2 = (jnp.concatenate([a, a]) for a in (small, secant))
        return (jnp.where(small2, plain, g.astype(dtype) * secant2).astype(x.dtype),)

    stacked.defvjp(fwd, bwd)

    def rule(x):
        return stacked(x) if _TAPE is None else _TAPE.rescale(fn, x)

    rule.__name__ = f"rescale_{name or getattr(fn, '__name__', 'fn')}"
    return rule


def maxpool_rule(x, width: int):
    """:func:`jaxmotif.nonlinear.maxpool` of a stacked ``[x; x']`` batch ``(2M, W, C)`` with
    tangermeme's (and Captum's) max-pooling rule; see the module docstring."""
    return _stacked_maxpool(x, width) if _TAPE is None else _TAPE.maxpool(x, width)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _stacked_maxpool(x, width: int):
    return maxpool(x, width)


def _maxpool_fwd(x, width):
    return maxpool(x, width), x


def _maxpool_bwd(width, x, g):
    dtype = _rule_dtype(x.dtype)
    rows, length, channels = x.shape
    pooled = length // width
    xf = x.astype(dtype)
    windows = xf[:, : pooled * width].reshape(rows, pooled, width, channels)
    # The first maximum of each window wins it, as torch's max_pool indices.
    switch = jax.nn.one_hot(jnp.argmax(windows, axis=2), width, axis=2, dtype=dtype)  # (2M, P, w, C)
    out = jnp.max(windows, axis=2)  # (2M, P, C)
    o, o_ref = _halves(out)
    top = jnp.maximum(o, o_ref)
    delta_out = jnp.concatenate([top - o_ref, o - top])
    gf = g.astype(dtype)

    def unpool(values):  # (2M, P, C) -> (2M, L, C), each value at its window's switch
        spread = (switch * values[:, :, None]).reshape(rows, pooled * width, channels)
        return jnp.pad(spread, ((0, 0), (0, length - pooled * width), (0, 0)))

    routed_a, routed_r = _halves(unpool(gf * delta_out))
    plain_a, _ = _halves(unpool(gf))
    xa, xr = _halves(xf)
    dx = xa - xr
    still = dx == 0
    half = jnp.where(still, plain_a, (routed_a + routed_r) / jnp.where(still, jnp.ones_like(dx), dx))
    return (jnp.concatenate([half, half]).astype(x.dtype),)


_stacked_maxpool.defvjp(_maxpool_fwd, _maxpool_bwd)


# ---------------------------------------------------------------------------------------------
# The rules as linear maps: one forward pass of [x; x'_1..x'_R], the transpose for R rows
# ---------------------------------------------------------------------------------------------

_TAPE = None  # the active _Tape while deep_lift_shap_kernel traces its fast path, else None


class _Tape:
    """The fast path's rules, in two rounds over the same model code (so in the same call order).

    Recording: the model runs once on ``[x; x'_1 .. x'_R]`` (``1 + R`` rows, ``x`` once rather
    than ``R`` times) and each rule stores what its backward pass needs. Replaying: the model
    runs on ``R`` tangent rows with each rule a linear map whose transpose is that rule's backward
    pass for the input half; ``jax.linear_transpose`` of the whole (biases are constants, which
    a transpose drops) is the DeepLIFT backward pass of ``R`` rows, without the reference half and
    without recomputing any primal. One assumption: a max-pool reads the reference half's upstream
    gradient, taken here equal to the input half's. The two differ only below a rescale fallback
    (``|Δin| < 1e-6``) whose derivative differs between the halves, a probability-zero event
    for ReLU (the inputs must straddle 0 within 1e-6) and a ~1e-6 relative effect otherwise;
    the stacked path keeps both.
    """

    def __init__(self):
        self.entries = []
        self.replaying = False
        self.pos = 0

    def _next(self):
        entry = self.entries[self.pos]
        self.pos += 1
        return entry

    def rescale(self, fn, x):
        if not self.replaying:
            xf = x.astype(_rule_dtype(x.dtype))
            y = fn(xf)
            dx, dy = xf[:1] - xf[1:], y[:1] - y[1:]
            small = jnp.abs(dx) < RESCALE_EPS
            secant = dy / jnp.where(small, jnp.ones_like(dx), dx)
            self.entries.append((xf[:1], small, secant))
            return fn(x)
        xa, small, secant = self._next()
        v = x.astype(secant.dtype)
        zero = jnp.zeros_like(v)
        # Transposed: where(small, J(x)ᵀ g, secant · g), the stacked rule's input half.
        _, plain = jax.jvp(fn, (jnp.broadcast_to(xa, v.shape),), (jnp.where(small, v, zero),))
        return (plain + jnp.where(small, zero, v * secant)).astype(x.dtype)

    def maxpool(self, x, width):
        rows, length, channels = x.shape
        pooled = length // width
        if not self.replaying:
            xf = x.astype(_rule_dtype(x.dtype))
            windows = xf[:, : pooled * width].reshape(rows, pooled, width, channels)
            switch = jax.nn.one_hot(jnp.argmax(windows, axis=2), width, axis=2, dtype=xf.dtype)
            out = jnp.max(windows, axis=2)
            o, o_ref = out[:1], out[1:]
            top = jnp.maximum(o, o_ref)
            dx = xf[:1] - xf[1:]
            still = dx == 0
            dx = jnp.where(still, jnp.ones_like(dx), dx)
            self.entries.append((switch[:1], switch[1:], top - o_ref, o - top, still, dx))
            return maxpool(x, width)
        switch_a, switch_r, delta_a, delta_r, still, dx = self._next()
        v = x.astype(dx.dtype)
        zero = jnp.zeros_like(v)

        def pool(z, switch):  # (R, L, C) -> (R, P, C): each window's value at its switch
            return jnp.sum(switch * z[:, : pooled * width].reshape(rows, pooled, width, channels), axis=2)

        # Transposed: where(still, unpool_a(g), (unpool_a(g Δa) + unpool_r(g Δr)) / Δin).
        u = jnp.where(still, zero, v / dx)
        out = (
            pool(jnp.where(still, v, zero), switch_a)
            + delta_a * pool(u, switch_a)
            + delta_r * pool(u, switch_r)
        )
        return out.astype(x.dtype)


DEEPLIFT_OPS = Ops(
    relu=rescale_rule(jax.nn.relu, "relu"),
    threshold=rescale_rule(deepsea_threshold, "threshold"),
    sigmoid=rescale_rule(jax.nn.sigmoid, "sigmoid"),
    softplus=rescale_rule(jax.nn.softplus, "softplus"),
    exp=rescale_rule(jnp.exp, "exp"),
    log=rescale_rule(jnp.log, "log"),
    maxpool=maxpool_rule,
    # The fallback (|Δlogit| < 1e-6) is the gradient of softmax(y)·y; tangermeme's is that with its
    # softmax rule inside _ProfileLogitScaling applied.
    profile_scale=rescale_rule(profile_scale, "profile_scale"),
)
"""The DeepLIFT rules as an :class:`Ops`: pass ``ops=DEEPLIFT_OPS`` to a model's apply, on a
stacked ``[inputs; references]`` batch."""


# ---------------------------------------------------------------------------------------------
# Kernel
# ---------------------------------------------------------------------------------------------


def _stacked_pass(apply_fn, params, targets, x, d, r):
    """The rules' own custom VJPs on ``[x repeated R; x']``: 2R rows forward and backward.

    x (L, 4), d (L,) | None, r (R, L, 4); returns (f(x) (R, T) (the input half's rows), f(x')
    (R, T), the inputs' multipliers (K, R, L, 4)).
    """
    n_refs = r.shape[0]
    xs = jnp.broadcast_to(x, r.shape)
    stacked = jnp.concatenate([xs, r.astype(x.dtype)])  # (2R, L, 4): [x; x'] paired row by row
    dd = None if d is None else jnp.broadcast_to(d, (2 * n_refs, *d.shape))
    out, vjp = jax.vjp(lambda s: apply_fn(params, s, dd), stacked)  # (2R, T)
    basis = jnp.eye(out.shape[-1], dtype=out.dtype)[targets]  # (K, T)
    # Seed every row of both halves, as tangermeme's y.sum(): the max-pool rule reads both.
    cotangents = jnp.broadcast_to(basis[:, None, :], (len(targets), *out.shape))
    (grads,) = jax.vmap(vjp)(cotangents)  # (K, 2R, L, 4)
    return out[:n_refs], out[n_refs:], grads[:, :n_refs]


def _fast_pass(apply_fn, params, targets, x, d, r):
    """Forward ``1 + R`` rows with the rules recording, their transposes for ``R`` rows (:class:`_Tape`).

    Same arguments and results as :func:`_stacked_pass` (f(x) as one row); raises
    ``NotImplementedError`` while tracing when the model has a nonlinearity that is no rule.
    """
    global _TAPE
    n_refs = r.shape[0]
    tape = _TAPE = _Tape()
    try:
        dd = None if d is None else jnp.broadcast_to(d, (1 + n_refs, *d.shape))
        out = apply_fn(params, jnp.concatenate([x[None], r.astype(x.dtype)]), dd)  # (1 + R, T)
        tape.replaying = True
        dr = None if d is None else jnp.broadcast_to(d, (n_refs, *d.shape))
        transpose = jax.linear_transpose(lambda v: apply_fn(params, v, dr), jnp.zeros(r.shape, x.dtype))
    finally:
        _TAPE = None
    if tape.pos != len(tape.entries):
        raise NotImplementedError("the replay called the rules other than the recording did")
    basis = jnp.eye(out.shape[-1], dtype=out.dtype)[targets]  # (K, T)
    cotangents = jnp.broadcast_to(basis[:, None, :], (len(targets), n_refs, out.shape[-1]))
    (grads,) = jax.vmap(transpose)(cotangents)  # (K, R, L, 4)
    return out[:1], out[1:], grads


def takes_fast_path(apply_fn: Callable, params, seq_shape: tuple, dnase_shape: tuple | None = None) -> bool:
    """Whether :func:`deep_lift_shap_kernel` runs ``apply_fn`` on its fast path (``1 + R`` rows
    forward, ``R`` backward) rather than the stacked ``2R``-row pass; traced, nothing computed.

    seq_shape: (L, 4) of one sequence; dnase_shape: (L,) or None.
    """
    x = jax.ShapeDtypeStruct(seq_shape, jnp.float32)
    d = None if dnase_shape is None else jax.ShapeDtypeStruct(dnase_shape, jnp.float32)
    r = jax.ShapeDtypeStruct((1, *seq_shape), jnp.float32)
    try:
        jax.eval_shape(lambda p, x, d, r: _fast_pass(apply_fn, p, jnp.asarray([0]), x, d, r), params, x, d, r)
    except NotImplementedError:
        return False
    return True


def deep_lift_shap_kernel(
    apply_fn: Callable, params, seq, dnase, refs, targets: Sequence[int], hypothetical: bool
):
    """Pure kernel: DeepSHAP contributions of ``targets`` and the convergence deltas.

    Parameters
    ----------
    apply_fn: ``f(params, seq (M, L, 4), dnase (M, L) | None) -> (M, T)`` running the DeepLIFT
        rules (``ops=DEEPLIFT_OPS``).
    seq: shape=(N, L, 4); dnase: shape=(N, L) or None (held fixed: each sequence's DNase is
        given to it and to all its references).
    refs: shape=(N, R, L, 4) references, paired with their sequence.
    targets: output indices, static.
    hypothetical: return the hypothetical contributions (else times the one-hot input).

    Returns (contributions shape=(N, K, L, 4) float32, deltas shape=(N, K, R) float32: per
    reference ``|Σ (x - x') · m - (f(x) - f(x'))|``).

    Runs the fast path (:func:`_fast_pass`) and, only for a model with a nonlinearity that is no
    rule, the stacked one (:func:`_stacked_pass`); :func:`takes_fast_path` says which.
    """
    targets = jnp.asarray(targets)

    def one(x, d, r):  # x (L, 4), d (L,) | None, r (R, L, 4)
        try:
            out_x, out_r, grads = _fast_pass(apply_fn, params, targets, x, d, r)
        except NotImplementedError:  # a nonlinearity that is no rule here (a plain jax.nn.relu)
            out_x, out_r, grads = _stacked_pass(apply_fn, params, targets, x, d, r)
        ftype = _rule_dtype(grads.dtype)  # float32, or float64 when the model runs in it
        mult = grads.astype(ftype)  # (K, R, L, 4): the inputs' multipliers
        rf = r.astype(ftype)
        diff = x.astype(ftype)[None] - rf  # (R, L, 4)
        delta_out = (out_x.astype(ftype) - out_r.astype(ftype))[:, targets].T  # (K, R)
        deltas = jnp.abs(jnp.sum(diff[None] * mult, axis=(2, 3)) - delta_out)
        # Σ_c (onehot(b) - x'_c) m_c = m_b - Σ_c x'_c m_c
        hyp = mult - jnp.sum(rf[None] * mult, axis=-1, keepdims=True)
        contrib = jnp.mean(hyp, axis=1)  # (K, L, 4)
        if not hypothetical:
            contrib = contrib * x.astype(ftype)[None]
        return contrib, deltas

    return jax.vmap(one, in_axes=(0, None if dnase is None else 0, 0))(seq, dnase, refs)


# ---------------------------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------------------------


def make_references(
    seq, references="shuffle", *, n_shuffles: int = 20, key: jax.Array | None = None, rows=None
):
    """References of each sequence, shape=(N, R, L, 4) float32.

    references: None or ``"shuffle"`` (``n_shuffles`` dinucleotide shuffles per sequence from
        ``key``; sequence ``i`` draws from ``fold_in(key, rows[i])``, ``rows`` default ``0 .. N-1``
        (:func:`jaxmotif.integrated.sequence_rows`), so the references do not depend on batching),
        ``"zeros"`` (one all-N reference), or an array (N, R, L, 4) used as given.
    """
    seq = np.asarray(seq, np.float32)
    if references is None or (isinstance(references, str) and references == "shuffle"):
        if key is None:
            raise ValueError("shuffled references need an explicit key=jax.random.key(...)")
        if n_shuffles < 1:
            raise ValueError(f"n_shuffles={n_shuffles} must be positive")
        return dinucleotide_shuffle(seq, key=key, num_shuffles=n_shuffles, rows=rows)
    if isinstance(references, str):
        if references != "zeros":
            raise ValueError(f"references={references!r} must be None, one of {REFERENCES} or an array")
        return np.zeros((seq.shape[0], 1, *seq.shape[1:]), np.float32)
    ref = np.asarray(references, np.float32)
    if ref.ndim != 4 or ref.shape[0] != seq.shape[0] or ref.shape[2:] != seq.shape[1:]:
        raise ValueError(
            f"references shape {ref.shape} must be (N, R, L, 4) = ({seq.shape[0]}, R, "
            f"{seq.shape[1]}, {seq.shape[2]})"
        )
    if not np.isfinite(ref).all():
        raise ValueError("references contain NaN or infinite values")
    return np.ascontiguousarray(ref)


# ---------------------------------------------------------------------------------------------
# Model-level function
# ---------------------------------------------------------------------------------------------

DEFAULT_PAIRS = 64  # pairs per call where jaxmotif.memory is absent and batch_size is not given


def _chunks(
    model, n: int, n_refs: int, n_targets: int, batch_size, max_memory, *, fast: bool = True
) -> tuple[int, int]:
    """(sequences per call, targets per call) for ``n`` sequences of ``n_refs`` references.

    The DeepSHAP plan of :mod:`jaxmotif.memory` for the kernel's path: ``fast`` (``1 + R`` rows
    forward, ``R`` rows per target transposed) or the stacked fallback (``2R`` rows both ways).
    The parameters count twice: without that, XLA's smallest calls on the test model held up to
    6 % more than the estimate (their temporaries hold more than the rows: weight copies for the
    transposed passes, presumably; ``benchmarks/results/cpu_2026-11-29_deeplift_memory.txt``).
    """
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be positive")
    try:
        from jaxmotif import memory
    except ImportError:  # a tree without the memory planner: batch_size pairs, every target at once
        if max_memory is not None:
            raise ValueError("max_memory needs jaxmotif.memory; pass batch_size instead") from None
        return max(1, (batch_size or DEFAULT_PAIRS) // n_refs), n_targets
    return memory.deeplift_plan(
        memory.resolve_budget(max_memory),
        sequences=n,
        references=n_refs,
        targets=n_targets,
        activations=memory.activation_elements(model),
        length=model.config.seq_len,
        fast=fast,
        fixed_bytes=2 * memory.param_bytes(model),
        max_sequences=None if batch_size is None else max(1, batch_size // n_refs),
    )


def deep_lift_shap(
    model,
    seq,
    dnase=None,
    target=None,
    *,
    references=None,
    n_shuffles: int = 20,
    hypothetical: bool = False,
    key: jax.Array | None = None,
    rows=None,
    batch_size: int | None = None,
    precision: str | None = None,
    return_deltas: bool = False,
    max_memory: int | None = None,
    logits: bool = False,
    warning_threshold: float = DELTA_WARNING,
):
    """DeepLIFT / DeepSHAP contributions of ``model``'s outputs for one-hot sequences.

    Parameters
    ----------
    model: a :class:`jaxmotif.Model` whose ``apply(params, seq, dnase, *, ops=...)`` routes its
        nonlinearities through ``ops``.
    seq: shape=(N, L, 4) one-hot (ACGT, channels-last); dnase: shape=(N, L) for two-branch
        models, held fixed (each reference gets its sequence's DNase).
    target: an output index or name (result (N, L, 4)), a list of them or None for every output
        (N, T, L, 4); all targets come from one compiled pass per chunk.
    references: None (``n_shuffles`` dinucleotide shuffles per sequence drawn from ``key``), an
        array shape=(N, R, L, 4), or ``"zeros"``.
    hypothetical: hypothetical contributions (every base at every position; TF-MoDISco's input)
        instead of the contributions of the bases present.
    key: a ``jax.random`` key for the shuffles; the same key gives the same references and
        contributions whatever ``batch_size``.
    rows: shape=(N,) each sequence's index in the whole input (default ``0 .. N-1``): sequence
        ``i``'s shuffles come from ``fold_in(key, rows[i])``, so a slice ``a:b`` of a larger input
        with ``rows=range(a, b)`` gets that input's references.
    batch_size: at most this many (sequence, reference) pairs per compiled chunk, as tangermeme's:
        a chunk holds ``max(1, batch_size // R)`` sequences with all their references (twice as
        many model rows as pairs) and the backward passes of its targets. None: as many as
        ``max_memory`` allows.
    max_memory: bytes one compiled call may hold (default: half the accelerator's free memory,
        4 GB on a CPU); targets are split into groups only when one sequence with every target
        does not fit. Needs :mod:`jaxmotif.memory`.
    precision: ``fp32`` (default) | ``tf32`` | ``bf16`` (the rules themselves run in float32).
    return_deltas: also return the convergence deltas shape=(N, R) (or (N, K, R) for several
        targets): ``|Σ (x - x') · m - (f(x) - f(x'))|`` per sequence and reference.
    logits: attribute the output before the final activation.
    warning_threshold: a ``RuntimeWarning`` names the worst sequence when a delta exceeds it.

    Returns the contributions, or ``(contributions, deltas)`` with ``return_deltas``.
    """
    seq, dnase = model.check_inputs(seq, dnase)
    targets, squeeze = resolve_targets(model, target)
    if getattr(model.config, "final_activation", None) == "softmax" and not logits:
        raise ValueError("DeepLIFT has no rule here for a softmax output; pass logits=True")
    rows = sequence_rows(rows, seq.shape[0])  # checked even when the references draw nothing
    refs = make_references(seq, references, n_shuffles=n_shuffles, key=key, rows=rows)
    n_refs = refs.shape[1]

    base = model.apply_logits if logits else model.apply
    apply_fn = with_precision(lambda p, s, d: base(p, s, d, ops=DEEPLIFT_OPS), precision)
    side = None if dnase is None else dnase.shape[1:]
    fast = model.compiled_fn(  # traced once per model: which path the kernel takes decides its budget
        ("deep_lift_shap.fast_path", logits, precision),
        lambda: takes_fast_path(apply_fn, model.params, seq.shape[1:], side),
    )
    per_call, group = _chunks(model, seq.shape[0], n_refs, len(targets), batch_size, max_memory, fast=fast)
    params = model.params
    parts = []
    for start in range(0, len(targets), group):
        some = targets[start : start + group]

        def make(some=some):
            return jax.jit(lambda p, s, d, r: deep_lift_shap_kernel(apply_fn, p, s, d, r, some, hypothetical))

        kernel = model.compiled_fn(("deep_lift_shap", some, n_refs, hypothetical, logits, precision), make)
        parts.append(
            map_batches(lambda s, d, r, k=kernel: k(params, s, d, r), [seq, dnase, refs], batch_size=per_call)
        )
    contrib = np.concatenate([c for c, _ in parts], axis=1)
    deltas = np.concatenate([d for _, d in parts], axis=1)
    worst = deltas.max(axis=(1, 2))
    if worst.max() > warning_threshold:
        i = int(np.argmax(worst))
        warnings.warn(
            f"DeepLIFT convergence delta {worst[i]:.3g} > {warning_threshold:g} at sequence {i} "
            f"({int((worst > warning_threshold).sum())} of {len(worst)} sequences above): a "
            "nonlinearity without a rule, or too low a precision",
            RuntimeWarning,
            stacklevel=2,
        )
    if squeeze:
        contrib, deltas = contrib[:, 0], deltas[:, 0]
    return (contrib, deltas) if return_deltas else contrib
