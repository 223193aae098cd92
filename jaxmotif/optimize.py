"""Class optimization (the seed's method 6; Simonyan et al. 2013, DeepMotif by Lanchantin et al. 2016).

For each output c the input the model likes best is found by gradient ascent on

    S_c(X) - l2 * ||X||^2

where S_c is the unnormalized class score: the logit (before the final activation, as Simonyan
and DeepMotif) by default, or the model's output after its activation (``logits=False``). DeepMotif's
defaults: rmsprop, learning rate 0.05, 1000 steps, l2 = 0.009.

Parameterizations:

- ``"direct"``: X itself is optimized (DeepMotif); X is real-valued, not a one-hot.
- ``"softmax"``: X = softmax(Z) over the 4 bases, Z optimized; X is a distribution at every step.

Every target x every restart is one row of a single batched input, optimized together in one
compiled ``lax.scan`` over the steps: one forward and backward pass per step for all rows, each row's
objective taking its own target. Rows are independent (the model is in eval mode and rmsprop acts
elementwise), so a row's result does not depend on which other rows share the call. Each row starts
from a small random normal drawn with its own key ``fold_in(key, target * 100003 + restart)``
(``target`` the model's output index), so results for a (target, restart) pair are the same
whether it is optimized alone or with others. The rows are sharded over all local devices.

The PWM of a target is DeepMotif's: the best restart's input clamped at 0, normalized per position,
plus 0.01 and renormalized.
"""

import sys
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec

from jaxmotif.batching import BATCH_AXIS, batch_mesh
from jaxmotif.precision import with_precision

PARAMETERIZATIONS = ("direct", "softmax")
OPTIMIZERS = ("rmsprop", "adam", "sgd")
PWM_PSEUDOCOUNT = 0.01
# Spreads (target, restart) pairs apart in the key space; a prime larger than any restart count.
_KEY_STRIDE = 100003


class ClassInputs(NamedTuple):
    """Optimized inputs per target and restart.

    Attributes
    ----------
    inputs: shape=(T', R, L, 4) the optimized X (for ``softmax``, the distributions), columns in
        ``alphabet`` order.
    scores: shape=(T', R) the class score S_c reached (logit or output, as optimized), penalty excluded.
    initial_scores: shape=(T', R) S_c at the random start.
    score_trace: shape=(T', R, steps) S_c before each step.
    pwms: shape=(T', L, 4) DeepMotif's PWM of the best restart of each target.
    best_restart: shape=(T',) index of the restart with the highest final score.
    targets: shape=(T',) model output indices.
    alphabet: column order (the model's alphabet).
    """

    inputs: np.ndarray
    scores: np.ndarray
    initial_scores: np.ndarray
    score_trace: np.ndarray
    pwms: np.ndarray
    best_restart: np.ndarray
    targets: np.ndarray
    alphabet: str


def make_optimizer(name: str, learning_rate: float) -> optax.GradientTransformation:
    if name == "rmsprop":
        return optax.rmsprop(learning_rate)
    if name == "adam":
        return optax.adam(learning_rate)
    if name == "sgd":
        return optax.sgd(learning_rate)
    raise ValueError(f"optimizer={name!r} must be one of {OPTIMIZERS}")


def class_optimization_kernel(
    apply_fn: Callable,
    params,
    init,
    target_rows,
    dnase,
    *,
    steps: int,
    optimizer: optax.GradientTransformation,
    l2: float,
    parameterization: str,
):
    """Pure kernel: gradient ascent on ``S_c(X) - l2 ||X||^2`` for every row at once.

    Parameters
    ----------
    apply_fn: ``f(params, seq (N, L, 4), dnase (N, L) | None) -> (N, T)``, the class scores.
    init: shape=(N, L, 4) starting point of the optimized variable (X, or Z for softmax).
    target_rows: shape=(N,) int32, the output each row maximizes.
    dnase: shape=(N, L) or None, held fixed.
    steps, optimizer, l2, parameterization: static.

    Returns (inputs (N, L, 4), final scores (N,), score trace (N, steps)).
    """
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(f"parameterization={parameterization!r} must be one of {PARAMETERIZATIONS}")

    def to_input(z):
        return jax.nn.softmax(z, axis=-1) if parameterization == "softmax" else z

    def class_scores(x):
        out = apply_fn(params, x, dnase)  # (N, T)
        return jnp.take_along_axis(out, target_rows.reshape(-1, 1), axis=1)[:, 0].astype(jnp.float32)

    def loss(z):
        x = to_input(z)
        scores = class_scores(x)
        penalty = l2 * jnp.sum(jnp.square(x.astype(jnp.float32)), axis=(1, 2))
        # Rows are independent, so the gradient of the sum is each row's own gradient.
        return -jnp.sum(scores - penalty), scores

    def step(carry, _):
        z, opt_state = carry
        (_, scores), grad = jax.value_and_grad(loss, has_aux=True)(z)
        updates, opt_state = optimizer.update(grad, opt_state, z)
        return (optax.apply_updates(z, updates), opt_state), scores

    (z, _), trace = jax.lax.scan(step, (init, optimizer.init(init)), None, length=steps)
    x = to_input(z)
    return x, class_scores(x), jnp.moveaxis(trace, 0, 1)


def deepmotif_pwm(x, pseudocount: float = PWM_PSEUDOCOUNT) -> np.ndarray:
    """DeepMotif's PWM of an optimized input: clamp at 0, normalize per position, add ``pseudocount``.

    x: shape=(..., L, 4). Returns the same shape, rows summing to 1 (renormalized after the
    pseudocount). A position with no positive entry becomes uniform.
    """
    p = np.clip(np.asarray(x, np.float64), 0.0, None)
    totals = p.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(totals > 0, p / totals, 0.25)
    p = p + pseudocount
    return p / p.sum(axis=-1, keepdims=True)


def motif_window(
    x, min_width: int = 9, max_width: int = 20, *, floor: float = 0.1, column_penalty: float = 0.1
) -> tuple[int, int]:
    """The highest-information window ``[start, end)`` of an optimized input, width in [min, max].

    DeepMotif's PWM normalizes every position on its own, so a position the model ignores (its
    optimized values hover near 0, kicked about by rmsprop's normalized steps) looks as conserved as
    the motif itself, and its information content cannot tell them apart. The window is therefore
    chosen on a magnitude-weighted PWM, ``(clamp(x, 0) + floor * max clamp(x)) / row sum``: positions
    with large optimized values keep their information, near-zero ones become nearly uniform. Each
    position then costs ``column_penalty`` bits (:func:`jaxmotif.io.meme.trim_by_information`), so
    uninformative flanks are trimmed down to ``min_width``.

    x: shape=(L, 4), columns in A, C, G, T order (or any fixed order). Returns (start, end).
    """
    from jaxmotif.io.meme import trim_by_information

    p = np.clip(np.asarray(x, np.float64), 0.0, None)
    top = p.max()
    if top <= 0:
        p = np.full_like(p, 0.25)
    else:
        p = p + floor * top
        p = p / p.sum(axis=-1, keepdims=True)
    start, end = trim_by_information(p, min_width, max_width, column_penalty=column_penalty)
    return int(start), int(end)


def row_keys(key: jax.Array, targets: Sequence[int], restarts: int) -> jax.Array:
    """One key per (target, restart) row, target-major: ``fold_in(key, target * 100003 + restart)``."""
    ids = np.array([t * _KEY_STRIDE + r for t in targets for r in range(restarts)], dtype=np.uint32)
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.asarray(ids))


def _resolve_targets(model, targets) -> tuple[int, ...]:
    resolved = model.target_indices(targets)
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"targets={list(targets)} repeats an output")
    return resolved


def _dnase_profile(model, dnase) -> np.ndarray | None:
    """The fixed side input as float32: DNase shape=(L,), BPNet control tracks (L, C); None if none."""
    shape = model.config.side_shape
    if shape is None:
        if dnase is None or (isinstance(dnase, str) and dnase == "zeros"):
            return None
        raise ValueError("this DNA-only model takes no dnase input (leave dnase='zeros')")
    if dnase is None or (isinstance(dnase, str) and dnase == "zeros"):
        return np.zeros(shape, np.float32)
    if isinstance(dnase, str):
        raise ValueError(f"dnase={dnase!r} must be 'zeros', a number or an array of shape {shape}")
    if np.ndim(dnase) == 0:
        value = float(dnase)
        if not np.isfinite(value):
            raise ValueError(f"dnase={dnase} must be finite")
        return np.full(shape, value, np.float32)
    profile = np.asarray(dnase, np.float32)
    if profile.shape != shape:
        raise ValueError(f"dnase profile shape {profile.shape} must be {shape}")
    if not np.isfinite(profile).all():
        raise ValueError(f"dnase profile has NaN or inf at position {int(np.argmax(~np.isfinite(profile)))}")
    return profile


def class_inputs(
    model,
    targets=None,
    restarts: int = 32,
    steps: int = 1000,
    *,
    key: jax.Array,
    learning_rate: float = 0.05,
    l2: float = 0.009,
    optimizer: str = "rmsprop",
    parameterization: str = "direct",
    dnase="zeros",
    logits: bool = True,
    init_scale: float = 0.01,
    precision: str | None = None,
) -> ClassInputs:
    """The inputs that maximize each target's class score (DeepMotif / Simonyan class optimization).

    Parameters
    ----------
    model: a :class:`jaxmotif.Model`.
    targets: output indices or names; None for every output.
    restarts: random starts per target (R).
    steps: optimizer steps.
    key: PRNG key (keyword-only, required) for the starting points.
    learning_rate, l2, optimizer: ``"rmsprop"`` (DeepMotif) | ``"adam"`` | ``"sgd"``.
    parameterization: ``"direct"`` | ``"softmax"``.
    dnase: for two-branch models, the fixed DNase input: ``"zeros"``, a number (constant profile)
        or an array of shape (L,). DNA-only models take none.
    logits: maximize the logit (default, Simonyan's unnormalized score) or the activated output.
    init_scale: standard deviation of the random start.
    precision: ``fp32`` (default) | ``tf32`` | ``bf16``.

    Returns a :class:`ClassInputs`.
    """
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(f"parameterization={parameterization!r} must be one of {PARAMETERIZATIONS}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer={optimizer!r} must be one of {OPTIMIZERS}")
    if int(restarts) != restarts or restarts < 1:
        raise ValueError(f"restarts={restarts} must be a positive integer")
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps={steps} must be a positive integer")
    for name, value in (("learning_rate", learning_rate), ("l2", l2), ("init_scale", init_scale)):
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"{name}={value} must be a finite non-negative number")
    restarts, steps = int(restarts), int(steps)
    target_ids = _resolve_targets(model, targets)
    profile = _dnase_profile(model, dnase)
    length = model.config.seq_len

    rows = len(target_ids) * restarts
    mesh = batch_mesh()
    padded = -(-rows // mesh.size) * mesh.size  # rows padded to a multiple of the devices, then dropped
    keys = row_keys(key, target_ids, restarts)
    init = jax.vmap(lambda k: jax.random.normal(k, (length, 4), jnp.float32))(keys) * init_scale
    target_rows = np.repeat(np.asarray(target_ids, np.int32), restarts)
    init = np.asarray(init)
    if padded > rows:
        init = np.concatenate([init, np.repeat(init[-1:], padded - rows, axis=0)])
        target_rows = np.concatenate([target_rows, np.repeat(target_rows[-1:], padded - rows)])
    sharding = NamedSharding(mesh, PartitionSpec(BATCH_AXIS))
    dnase_rows = None if profile is None else np.broadcast_to(profile, (padded, *profile.shape)).copy()

    def make():
        apply_fn = with_precision(model.apply_logits if logits else model.apply, precision)
        opt = make_optimizer(optimizer, learning_rate)

        def run(params, z0, trows, d):
            return class_optimization_kernel(
                apply_fn,
                params,
                z0,
                trows,
                d,
                steps=steps,
                optimizer=opt,
                l2=l2,
                parameterization=parameterization,
            )

        return jax.jit(run)

    run = model.compiled_fn(
        ("class_inputs", steps, learning_rate, l2, optimizer, parameterization, logits, precision), make
    )
    scores_fn = model.compiled(precision, logits=logits)

    def put(a):
        return None if a is None else jax.device_put(a, sharding)

    z0, trows, d = put(init), put(target_rows), put(dnase_rows)
    x0 = jax.nn.softmax(z0, axis=-1) if parameterization == "softmax" else z0
    initial = np.take_along_axis(np.asarray(scores_fn(model.params, x0, d)), target_rows[:, None], axis=1)[
        :, 0
    ]
    x, scores, trace = (np.asarray(a)[:rows] for a in run(model.params, z0, trows, d))

    n_t = len(target_ids)
    inputs = x.reshape(n_t, restarts, length, 4)
    scores = scores.reshape(n_t, restarts)
    best = np.argmax(scores, axis=1)
    return ClassInputs(
        inputs=inputs,
        scores=scores,
        initial_scores=initial[:rows].reshape(n_t, restarts).astype(np.float32),
        score_trace=trace.reshape(n_t, restarts, steps),
        pwms=deepmotif_pwm(inputs[np.arange(n_t), best]),
        best_restart=best,
        targets=np.asarray(target_ids, np.int64),
        alphabet=model.config.alphabet,
    )


if __name__ == "__main__":
    from jaxmotif.cli.optimize import main

    sys.exit(main())
