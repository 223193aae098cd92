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
from jaxmotif.precision import check_precision, with_precision

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
    """Mutants per chunk: at most ``bound``, spread evenly so the padded tail is small."""
    if bound < 1:
        raise ValueError(f"mutant_chunk={bound} must be positive")
    total = 3 * seq_len
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
    chunk: mutants evaluated per step (static); 3·L is padded up to a multiple of it.

    Returns shape=(L, 4, T): entry ``[i, b]`` is p(window with base b at i); the reference base's
    entry is p(s). At N positions base 0 stands in for the reference (callers mask those to NaN).
    Vmappable over windows.
    """
    seq_len = seq.shape[0]
    run = _forward_fn(apply_fn, params, dnase, seq_len)
    ref_pred = run(seq[None])[0]  # (T,)
    ref_idx = jnp.argmax(seq, axis=-1)  # (L,); 0 at N rows
    total = 3 * seq_len
    n_chunks = -(-total // chunk)
    # Mutant m changes position m // 3 to the (m % 3 + 1)-th base after the reference, cyclically;
    # the padded tail repeats the last mutant and is dropped below.
    m = jnp.minimum(jnp.arange(n_chunks * chunk), total - 1)
    pos = m // 3
    alt = (ref_idx[pos] + 1 + m % 3) % 4
    positions = jnp.arange(seq_len)

    def evaluate(args):
        p, a = args  # (C,), (C,)
        hit = (positions[None, :] == p[:, None])[:, :, None]  # (C, L, 1)
        base = jax.nn.one_hot(a, 4, dtype=seq.dtype)[:, None, :]  # (C, 1, 4)
        return run(jnp.where(hit, base, seq[None]))  # (C, T)

    preds = jax.lax.map(evaluate, (pos.reshape(n_chunks, chunk), alt.reshape(n_chunks, chunk)))
    preds = preds.reshape(n_chunks * chunk, -1)[:total].reshape(seq_len, 3, -1)  # (L, 3, T)
    # Column k of [alt1, alt2, alt3, ref] holds base (ref + 1 + k) % 4; gather it back by base.
    by_offset = jnp.concatenate(
        [preds, jnp.broadcast_to(ref_pred[None, None], (seq_len, 1, preds.shape[-1]))], 1
    )
    offset = (jnp.arange(4)[None, :] - ref_idx[:, None] - 1) % 4  # (L, 4)
    return jnp.take_along_axis(by_offset, offset[:, :, None], axis=1)


def score_mutations(preds, ref_pred, seq, score: str):
    """Scores from mutant predictions.

    Parameters
    ----------
    preds: shape=(L, 4, T), p(ŝ) per position and base.
    ref_pred: shape=(T,), p(s).
    seq: shape=(L, 4) one-hot reference (N rows all zero).
    score: ``raw`` | ``delta`` | ``deepbind``.

    Returns shape=(L, 4, T) float32; reference entries are p(s) (raw) or 0; NaN at N positions.
    """
    if score not in SCORES:
        raise ValueError(f"score={score!r} must be one of {SCORES}")
    preds = preds.astype(jnp.float32)
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


def mutation_map_kernel(apply_fn, params, seq, dnase, *, score: str, targets: Sequence[int], chunk: int):
    """Pure, batched kernel: seq (N, L, 4), dnase (N, L) | None -> scores (N, L, 4, len(targets))."""
    plain = apply_fn.apply if isinstance(apply_fn, SplitApply) else None

    def one(s, d):
        preds = mutant_predictions_full(apply_fn, params, s, d, chunk)
        if plain is None:
            ref = apply_fn(params, s[None], None if d is None else d[None])[0]
        else:
            ref = plain(params, s[None], apply_fn.context(params, None if d is None else d[None]))[0]
        return score_mutations(preds, ref, s, score)[..., jnp.asarray(targets)]

    return jax.vmap(one)(seq, dnase) if dnase is not None else jax.vmap(lambda s: one(s, None))(seq)


def _fast_kernel(model, params, seq, dnase, *, score: str, targets: Sequence[int]):
    from jaxmotif.ism_fast import mutant_predictions_fast
    from jaxmotif.ism_graph import mutant_predictions_graph

    def one(s, d):
        if model.config.arch == "deephistone":  # the hand-derived kernel: faster there
            preds = mutant_predictions_fast(model, params, s, d)
            ref = model.apply(params, s[None], None if d is None else d[None])[0]
        else:  # derived from the graph; ref from the same sliced computation as the mutants
            preds, ref = mutant_predictions_graph(model, params, s, d)
        return score_mutations(preds, ref, s, score)[..., jnp.asarray(targets)]

    return jax.vmap(one)(seq, dnase) if dnase is not None else jax.vmap(lambda s: one(s, None))(seq)


def default_method(model) -> str:
    """``fast`` for the known graphs (DeepHistone: ism_fast; BPNet family: ism_graph), else ``full``."""
    return "fast" if getattr(model.config, "arch", None) in ("deephistone", "bpnet", "chrombpnet") else "full"


def resolve_target_list(model, targets) -> tuple[int, ...]:
    """Output indices for ``targets`` (see :meth:`jaxmotif.Model.target_indices`)."""
    return model.target_indices(targets)


def compiled_mutation_map(
    model, *, score="delta", targets=None, precision=None, method="full", mutant_chunk=None
):
    """The jitted ``kernel(params, seq (N, L, 4), dnase (N, L) | None) -> (N, L, 4, T')``.

    Made once per (method, score, targets, precision, chunk) and cached on ``model``.
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

        def make():
            def fn(p, s, d):
                return _fast_kernel(model, p, s, d, score=score, targets=idx)

            return jax.jit(with_precision(fn, precision))

        return model.compiled_fn(("mutation_map", "fast", score, idx, precision), make)

    def make():
        split = split_apply(model)

        def fn(p, s, d):
            return mutation_map_kernel(split, p, s, d, score=score, targets=idx, chunk=chunk)

        return jax.jit(with_precision(fn, precision))

    return model.compiled_fn(("mutation_map", "full", score, idx, precision, chunk), make)


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
    mutant_chunk: bound on the mutants evaluated at once per window (default 512); memory grows
        with ``batch_size * mutant_chunk``.
    progress: called with the number of windows finished after each step.

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
