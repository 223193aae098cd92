"""Mutation maps (seed method 5; Alipanahi et al. 2015, DeepBind's Figure 4).

For every position i and base b of a window, the model's prediction with base b at position i
and the reference everywhere else: all 3·L single-base substitutions of a window, built on the
device from the reference window and evaluated in fixed-size chunks of mutants (``lax.map``), so
memory stays bounded while the whole pass is one compiled call. Scores:

- ``raw``: p(ŝ); the reference base's entry is p(s).
- ``delta``: p(ŝ) − p(s); the reference base's entry is 0.
- ``deepbind``: ΔS = (p(ŝ) − p(s)) · max(0, p(s), p(ŝ)), the seed's formula; reference entry 0.

Positions whose reference is N (an all-zero one-hot row) have no reference base and give NaN.

Kernels are pure functions of an apply function and its params. Two-branch models (DeepHistone)
have a DNase branch that does not see the sequence; a :class:`SplitApply` lets the kernel compute
it once per window instead of once per mutant.
"""

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxmotif.batching import map_batches
from jaxmotif.models.deephistone import final_activation
from jaxmotif.precision import _MATMUL, cast_floats, check_precision, with_precision

SCORES = ("raw", "delta", "deepbind")
METHODS = ("full", "fast")
DEFAULT_MUTANT_CHUNK = 512


class SplitApply(NamedTuple):
    """A forward pass split where the sequence enters, so sequence-independent work is shared.

    context: ``(params, dnase (N, L) | None) -> pytree of (N, ...) arrays`` (or None): everything
        that does not depend on the sequence, e.g. DNase-branch features.
    apply: ``(params, seq (N, L, 4), context) -> (N, T)``, equal to the model's apply.
    """

    context: Callable
    apply: Callable


def split_apply(model, logits: bool = False) -> SplitApply:
    """The :class:`SplitApply` of a :class:`jaxmotif.Model` (DNase branch computed once)."""
    return SplitApply(
        context=model.dnase_features,
        apply=lambda params, seq, feat: model.apply_with_dnase_features(params, seq, feat, logits=logits),
    )


def mutant_chunk_size(seq_len: int, bound: int = DEFAULT_MUTANT_CHUNK) -> int:
    """Mutants per chunk: at most ``bound``, spread evenly over 3·L + 1 so the padded tail is small."""
    if bound < 1:
        raise ValueError(f"mutant_chunk={bound} must be positive")
    total = 3 * seq_len + 1  # the mutants and the reference, evaluated in one chunked batch
    chunks = -(-total // bound)
    return -(-total // chunks)


def _forward_fn(apply_fn, params, dnase, seq_len: int):
    """``run(x (C, L, 4)) -> (C, T)`` for mutants of one window with DNase ``(L,)`` or None."""
    if isinstance(apply_fn, SplitApply):
        context = apply_fn.context(params, None if dnase is None else dnase[None])

        def run(x):
            n = x.shape[0]
            ctx = jax.tree.map(lambda a: jnp.broadcast_to(a, (n, *a.shape[1:])), context)
            return apply_fn.apply(params, x, ctx)

        return run

    def run(x):
        d = None if dnase is None else jnp.broadcast_to(dnase[None], (x.shape[0], seq_len))
        return apply_fn(params, x, d)

    return run


def mutant_predictions_full(apply_fn, params, seq, dnase, chunk: int):
    """Predictions for every single-base substitution of one window, all mutants built on the device.

    Parameters
    ----------
    apply_fn: ``f(params, seq (N, L, 4), dnase (N, L) | None) -> (N, T)``, or a :class:`SplitApply`
        (then sequence-independent work such as the DNase branch runs once, not per mutant).
    params: the model's params pytree.
    seq: shape=(L, 4) one-hot reference window (an N row is all zero).
    dnase: shape=(L,) or None.
    chunk: mutants evaluated per step (static); 3·L + 1 (the reference and the mutants) is padded
        up to a multiple of it.

    Returns shape=(L, 4, T): entry ``[i, b]`` is p(window with base b at i); the reference base's
    entry is p(s), evaluated as item 0 of the same chunked batch as the mutants (the same compiled
    computation, so an unchanged input gives the same number, not a differently rounded one). At N
    positions base 0 stands in for the reference (callers mask those to NaN). Vmappable over windows.
    """
    seq_len = seq.shape[0]
    run = _forward_fn(apply_fn, params, dnase, seq_len)
    ref_idx = jnp.argmax(seq, axis=-1)  # (L,); 0 at N rows
    total = 3 * seq_len + 1
    n_chunks = -(-total // chunk)
    # Item 0 is the reference window; item m >= 1 changes position (m - 1) // 3 to the
    # ((m - 1) % 3 + 1)-th base after the reference, cyclically. The padded tail repeats the last
    # mutant and is dropped below.
    m = jnp.minimum(jnp.arange(n_chunks * chunk), total - 1)
    is_mutant = m > 0
    pos = jnp.maximum(m - 1, 0) // 3
    alt = (ref_idx[pos] + 1 + jnp.maximum(m - 1, 0) % 3) % 4
    positions = jnp.arange(seq_len)

    def evaluate(args):
        p, a, mut = args  # (C,), (C,), (C,)
        hit = ((positions[None, :] == p[:, None]) & mut[:, None])[:, :, None]  # (C, L, 1)
        base = jax.nn.one_hot(a, 4, dtype=seq.dtype)[:, None, :]  # (C, 1, 4)
        return run(jnp.where(hit, base, seq[None]))  # (C, T)

    preds = jax.lax.map(
        evaluate,
        (pos.reshape(n_chunks, chunk), alt.reshape(n_chunks, chunk), is_mutant.reshape(n_chunks, chunk)),
    )
    preds = preds.reshape(n_chunks * chunk, -1)[:total]
    ref_pred = preds[0]  # (T,)
    preds = preds[1:].reshape(seq_len, 3, -1)  # (L, 3, T)
    # Column k of [alt1, alt2, alt3, ref] holds base (ref + 1 + k) % 4; gather it back by base.
    by_offset = jnp.concatenate(
        [preds, jnp.broadcast_to(ref_pred[None, None], (seq_len, 1, preds.shape[-1]))], 1
    )
    offset = (jnp.arange(4)[None, :] - ref_idx[:, None] - 1) % 4  # (L, 4)
    return jnp.take_along_axis(by_offset, offset[:, :, None], axis=1)


def _reference_entries(preds, seq):
    """p(s) per position, (L, 1, T): the entry of the reference base (0 at N rows)."""
    is_ref = (seq > 0)[:, :, None]
    return jnp.sum(jnp.where(is_ref, preds, 0.0), axis=1, keepdims=True)  # one non-zero term: exact


def score_mutations(preds, ref_pred, seq, score: str):
    """Scores from mutant predictions, in float32.

    Parameters
    ----------
    preds: shape=(L, 4, T), p(ŝ) per position and base.
    ref_pred: shape=(T,) p(s), or None: then p(s) is read per position from the reference base's
        entry of ``preds`` (the kernels put there the reference evaluated beside the mutants, so the
        difference of two identically rounded numbers is exactly 0 where a substitution has no
        effect at the working precision).
    seq: shape=(L, 4) one-hot reference (N rows all zero).
    score: ``raw`` | ``delta`` | ``deepbind``.

    Returns shape=(L, 4, T) float32; reference entries are p(s) (raw) or 0; NaN at N positions.
    """
    if score not in SCORES:
        raise ValueError(f"score={score!r} must be one of {SCORES}")
    preds = preds.astype(jnp.float32)
    if ref_pred is None:
        p_s = jnp.broadcast_to(_reference_entries(preds, seq), preds.shape)
    else:
        p_s = jnp.broadcast_to(ref_pred.astype(jnp.float32)[None, None, :], preds.shape)
    is_ref = jnp.broadcast_to((seq > 0)[:, :, None], preds.shape)
    if score == "raw":
        out = jnp.where(is_ref, p_s, preds)
    else:
        delta = preds - p_s
        if score == "deepbind":
            delta = delta * jnp.maximum(jnp.maximum(p_s, preds), 0.0)
        out = jnp.where(is_ref, 0.0, delta)
    is_n = jnp.broadcast_to(~jnp.any(seq > 0, axis=-1)[:, None, None], preds.shape)
    return jnp.where(is_n, jnp.nan, out)


def _activate(logits, kind: str):
    """The final activation in float32, whatever precision produced the logits."""
    return final_activation(logits.astype(jnp.float32), kind)


def mutation_map_kernel(
    apply_fn, params, seq, dnase, *, score: str, targets: Sequence[int], chunk: int, activation=None
):
    """Pure, batched kernel: seq (N, L, 4), dnase (N, L) | None -> scores (N, L, 4, len(targets)).

    ``activation``: if given (e.g. ``"sigmoid"``), ``apply_fn`` returns logits and the activation is
    applied here in float32, after the mutants and the reference went through the same batch.
    """

    def one(s, d):
        preds = mutant_predictions_full(apply_fn, params, s, d, chunk)
        if activation is not None:
            preds = _activate(preds, activation)
        return score_mutations(preds, None, s, score)[..., jnp.asarray(targets)]

    return jax.vmap(one)(seq, dnase) if dnase is not None else jax.vmap(lambda s: one(s, None))(seq)


def _fast_kernel(model, params, seq, dnase, *, score: str, targets: Sequence[int], position_chunk=None):
    from jaxmotif.ism_fast import mutant_predictions_fast
    from jaxmotif.ism_graph import mutant_predictions_graph

    def one(s, d):
        if model.config.arch == "deephistone":  # the hand-derived kernel: faster there
            # its reference entries: a zero change in the mutants' head batch (issue 15)
            preds = mutant_predictions_fast(model, params, s, d, position_chunk=position_chunk)
            return score_mutations(preds, None, s, score)[..., jnp.asarray(targets)]
        # derived from the graph; ref from the same target-view computation as the mutants
        preds, ref = mutant_predictions_graph(model, params, s, d, position_chunk=position_chunk)
        return score_mutations(preds, ref, s, score)[..., jnp.asarray(targets)]

    return jax.vmap(one)(seq, dnase) if dnase is not None else jax.vmap(lambda s: one(s, None))(seq)


def _listed_kernel(model, params, seq, dnase, positions, bases, *, method, targets, chunk):
    """(N, L, 4), (N, L) | None, (N, K), (N, K) -> (N, K, 2, T'): [p(s), p(ŝ)] of each listed substitution."""
    idx = jnp.asarray(targets)
    if method == "fast":
        from jaxmotif.ism_fast import listed_predictions_fast
        from jaxmotif.ism_graph import mutant_predictions_graph

        def one(s, d, pos, b):
            if model.config.arch == "deephistone":
                return listed_predictions_fast(model, params, s, d, pos, b)[..., idx]
            preds, ref = mutant_predictions_graph(model, params, s, d, positions=pos)  # (K, 4, T), (T,)
            chosen = preds[jnp.arange(pos.shape[0]), b][:, idx].astype(jnp.float32)
            return jnp.stack([jnp.broadcast_to(ref[idx].astype(jnp.float32), chosen.shape), chosen], axis=1)

    else:
        split = _head_fp32_split(model)  # logits, the head in float32 as in the map's full path
        kind = model.config.final_activation

        def one(s, d, pos, b):
            run = _forward_fn(split, params, d, s.shape[0])
            hit = (jnp.arange(s.shape[0])[None, :] == pos[:, None])[:, :, None]  # (K, L, 1)
            mutants = jnp.where(hit, jax.nn.one_hot(b, 4, dtype=s.dtype)[:, None, :], s[None])
            x = jnp.concatenate([s[None], mutants])  # the reference in the same batch
            k = x.shape[0]
            c = min(chunk, k)
            n = -(-k // c)
            x = jnp.concatenate([x, jnp.broadcast_to(x[-1:], (n * c - k, *x.shape[1:]))])
            out = jax.lax.map(run, x.reshape(n, c, *x.shape[1:])).reshape(n * c, -1)[:k]
            out = _activate(out, kind)[:, idx]
            return jnp.stack([jnp.broadcast_to(out[0], out[1:].shape), out[1:]], axis=1)

    if dnase is None:
        return jax.vmap(lambda s, p, b: one(s, None, p, b))(seq, positions, bases)
    return jax.vmap(one)(seq, dnase, positions, bases)


# Architectures whose graph fast ISM is tested exact against ``full`` (tests/test_ism_fast.py,
# test_bpnet.py, test_convert_models.py) and counted cheaper (``flops_per_window``: the classics'
# dense heads are updated per position, 6.5-15x fewer FLOPs than full at the published sizes).
FAST_ARCHS = ("deephistone", "bpnet", "chrombpnet", "basset", "deepsea", "beluga")


def default_method(model) -> str:
    """``fast`` for the known graphs (DeepHistone: ism_fast; the others: ism_graph), else ``full``."""
    return "fast" if getattr(model.config, "arch", None) in FAST_ARCHS else "full"


def resolve_target_list(model, targets) -> tuple[int, ...]:
    """Output indices for ``targets`` (see :meth:`jaxmotif.Model.target_indices`)."""
    return model.target_indices(targets)


def position_chunk_for(mutant_chunk: int | None) -> int | None:
    """The fast kernel's positions per step from a bound on mutants at once (3 per position, >= 16)."""
    if mutant_chunk is None:
        return None
    if mutant_chunk < 1:
        raise ValueError(f"mutant_chunk={mutant_chunk} must be positive")
    return max(16, mutant_chunk // 3)


def _head_fp32_split(model) -> SplitApply:
    """Logits with the branches at the working precision and the head in float32.

    DeepHistone's dense head reads every pooled position, so that is where bf16 would round a
    small delta away; other graphs run whole at the working precision (their reference is still
    evaluated in the same batch as the mutants, and activation and subtraction run in fp32).
    """
    if model.config.arch != "deephistone":
        return split_apply(model, logits=True)

    def apply(params, seq, dns_feat):
        module = model.module(params)
        parts = [module.seq_map(seq).reshape(seq.shape[0], -1).astype(jnp.float32)]
        if dns_feat is not None:
            parts += [v.astype(jnp.float32) for v in dns_feat.values()]  # {"dnase_flat": (N, F)}
        with jax.default_matmul_precision("highest"):
            return module.head(jnp.concatenate(parts, axis=-1))

    return SplitApply(context=model.dnase_features, apply=apply)


def with_precision_fp32_head(fn: Callable, precision: str | None) -> Callable:
    """:func:`jaxmotif.precision.with_precision`, except that in bf16 the head's params stay float32.

    The mutation-map kernels run the head (and everything after it) in float32 whatever the
    precision: a delta is a small difference of two outputs, and bf16 weights there would round it
    away. The branches (where the FLOPs are) run at the requested precision.
    """
    precision = check_precision(precision)
    if precision != "bf16":
        return with_precision(fn, precision)

    def cast(path, x):
        in_head = any(getattr(k, "key", None) == "head" for k in path[:1])
        if in_head or not jnp.issubdtype(x.dtype, jnp.floating):
            return x
        return x.astype(jnp.bfloat16)

    def wrapped(params, *arrays):
        with jax.default_matmul_precision(_MATMUL[precision]):
            params = jax.tree_util.tree_map_with_path(cast, params)
            arrays = tuple(None if a is None else cast_floats(a, jnp.bfloat16) for a in arrays)
            return cast_floats(fn(params, *arrays), jnp.float32)

    return wrapped


def compiled_mutation_map(
    model, *, score="delta", targets=None, precision=None, method="full", mutant_chunk=None
):
    """The jitted ``kernel(params, seq (N, L, 4), dnase (N, L) | None) -> (N, L, 4, T')``.

    Made once per (method, score, targets, precision, chunk) and cached on ``model``.
    ``mutant_chunk`` bounds the mutants evaluated at once per window for both methods (``fast``:
    ``mutant_chunk // 3`` positions per step, at least 16; default: its own per-backend choice).
    """
    if score not in SCORES:
        raise ValueError(f"score={score!r} must be one of {SCORES}")
    if method not in METHODS:
        raise ValueError(f"method={method!r} must be one of {METHODS}")
    precision = check_precision(precision)
    idx = resolve_target_list(model, targets)
    chunk = mutant_chunk_size(
        model.config.seq_len, DEFAULT_MUTANT_CHUNK if mutant_chunk is None else mutant_chunk
    )
    if method == "fast":
        pchunk = position_chunk_for(mutant_chunk)

        def make():
            def fn(p, s, d):
                return _fast_kernel(model, p, s, d, score=score, targets=idx, position_chunk=pchunk)

            return jax.jit(with_precision_fp32_head(fn, precision))

        return model.compiled_fn(("mutation_map", "fast", score, idx, precision, pchunk), make)

    def make():
        split = _head_fp32_split(model)
        kind = model.config.final_activation

        def fn(p, s, d):
            return mutation_map_kernel(split, p, s, d, score=score, targets=idx, chunk=chunk, activation=kind)

        return jax.jit(with_precision_fp32_head(fn, precision))

    return model.compiled_fn(("mutation_map", "full", score, idx, precision, chunk), make)


def compiled_listed_mutations(model, *, targets=None, precision=None, method="fast", mutant_chunk=None):
    """The jitted ``kernel(params, seq (N, L, 4), dnase | None, positions (N, K), bases (N, K))``
    ``-> (N, K, 2, T')``: p(s) and p(ŝ) of only the listed substitutions of each window.

    Each reference output comes from the same computation as its mutant (for ``fast``: a zero
    change in the mutants' head batch; for ``full`` the reference in the same batch), in float32
    after the head, so ``p(ŝ) - p(s)`` equals the mutation map's delta at those entries.
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r} must be one of {METHODS}")
    precision = check_precision(precision)
    idx = resolve_target_list(model, targets)
    chunk = DEFAULT_MUTANT_CHUNK if mutant_chunk is None else mutant_chunk
    if chunk < 1:
        raise ValueError(f"mutant_chunk={chunk} must be positive")

    def make():
        def fn(p, s, d, pos, b):
            return _listed_kernel(model, p, s, d, pos, b, method=method, targets=idx, chunk=chunk)

        return jax.jit(with_precision_fp32_head(fn, precision))  # integer leaves are not cast

    return model.compiled_fn(("listed_mutations", method, idx, precision, chunk), make)


def mutation_map(
    model,
    seq,
    dnase=None,
    score: str = "delta",
    targets=None,
    precision: str | None = None,
    method: str | None = None,
    *,
    batch_size: int | None = None,
    mutant_chunk: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Mutation maps: the model's response to every single-base substitution of each window.

    Parameters
    ----------
    model: a :class:`jaxmotif.Model`.
    seq: shape=(N, L, 4) or (L, 4), channels-last one-hot in the model's alphabet order; all-zero
        rows are N.
    dnase: shape=(N, L) or (L,), required by two-branch models; BPNet's control tracks
        (N, L, n_control_tracks), held fixed.
    score: ``raw`` p(ŝ) | ``delta`` p(ŝ) − p(s) | ``deepbind`` (p(ŝ) − p(s))·max(0, p(s), p(ŝ)).
    targets: None (every output), an output index or name, or a list of them.
    precision: ``fp32`` (default, exact) | ``tf32`` | ``bf16``.
    method: ``fast`` (recompute only what each substitution reaches; exact, the default:
        jaxmotif.ism_fast for DeepHistone, jaxmotif.ism_graph for BPNet / ChromBPNet) | ``full``
        (every mutant through the whole network).
    batch_size: windows per compiled step, sharded over all local devices (default: one window
        per device).
    mutant_chunk: bound on the mutants evaluated at once per window, for both methods (``full``:
        default 512; ``fast``: ``mutant_chunk // 3`` positions per step, default 32 on CPU and 256
        on accelerators); memory grows with ``batch_size * mutant_chunk``.
    progress: called with the number of windows finished after each step.

    Every window's p(s) is evaluated by the same computation as its mutants and the head, the
    final activation and the subtraction run in float32, so at any precision a substitution whose
    effect is below the working resolution scores exactly 0 (``delta``), never a constant offset.

    Returns shape=(N, L, 4, T') float32 in the model's alphabet order, T' = number of targets.
    The reference base's entry is p(s) for ``raw`` and 0 otherwise; positions whose reference is N
    are NaN.
    """
    seq, dnase = model.check_inputs(seq, dnase)
    if method is None:
        method = default_method(model)
    kernel = compiled_mutation_map(
        model, score=score, targets=targets, precision=precision, method=method, mutant_chunk=mutant_chunk
    )
    if batch_size is None:
        batch_size = jax.local_device_count()
    params = model.params
    return map_batches(
        lambda s, d: kernel(params, s, d), [seq, dnase], batch_size=batch_size, progress=progress
    )


def mutation_scores_at(
    model,
    seq,
    dnase,
    positions,
    bases,
    targets=None,
    precision: str | None = None,
    method: str | None = None,
    *,
    mutant_chunk: int | None = None,
) -> np.ndarray:
    """p(s) and p(ŝ) of only the listed substitutions: K (position, base) pairs per window.

    Parameters
    ----------
    seq: shape=(N, L, 4) one-hot windows; dnase: shape=(N, L) or None as for :func:`mutation_map`.
    positions, bases: shape=(N, K) int: substitute ``bases[n, k]`` (alphabet index) at
        ``positions[n, k]`` of window n. Pad a window with fewer pairs by repeating one.

    Returns shape=(N, K, 2, T') float32: ``[..., 0, :]`` p(s), ``[..., 1, :]`` p(ŝ), equal to
    :func:`mutation_map`'s ``raw`` entries (and their difference to its ``delta``) at those pairs.
    """
    seq, dnase = model.check_inputs(seq, dnase)
    positions = np.asarray(positions, dtype=np.int32)
    bases = np.asarray(bases, dtype=np.int32)
    if positions.shape != (seq.shape[0], positions.shape[-1]) or bases.shape != positions.shape:
        raise ValueError(f"positions {positions.shape} and bases {bases.shape} must both be (N, K)")
    if np.any((positions < 0) | (positions >= seq.shape[1])) or np.any((bases < 0) | (bases > 3)):
        raise ValueError("positions must lie in [0, L) and bases in [0, 4)")
    method = default_method(model) if method is None else method
    kernel = compiled_listed_mutations(
        model, targets=targets, precision=precision, method=method, mutant_chunk=mutant_chunk
    )
    return np.asarray(kernel(model.params, seq, dnase, positions, bases))
