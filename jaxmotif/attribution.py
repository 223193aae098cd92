"""Gradient saliency (seed methods 2 and 4).

- ``gradient``: dS_c/dX (Simonyan et al. 2013), shape (L, 4) per sequence and target.
- ``grad_x_input``: dS_c/dX ⊙ X, the derivative at the bases actually present.
- ``abs_grad_x_input``: |dS_c/dX ⊙ X|, Lanchantin et al. 2016's nucleotide importance. (The seed's
  Saliency.py kept |dS/dX| although its text describes |dS/dX ⊙ X|; both are offered, named.)

All targets come from one forward pass and one batched backward pass (``jax.vjp`` with the
cotangents of every requested output vmapped), not a Python loop over outputs.
"""

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxmotif.batching import map_batches
from jaxmotif.precision import with_precision

GRADIENT_METHODS = ("gradient", "grad_x_input", "abs_grad_x_input")
SALIENCY_METHODS = GRADIENT_METHODS  # the plain-gradient methods of saliency_kernel
# Methods implemented in jaxmotif.projections / jaxmotif.integrated, dispatched by saliency().
RULE_METHODS = ("deconvnet", "guided_backprop", "inverse_activation")
AVERAGED_METHODS = ("integrated_gradients", "smoothgrad", "deep_lift_shap")  # draw random numbers
ATTRIBUTION_METHODS = GRADIENT_METHODS + RULE_METHODS + AVERAGED_METHODS  # every method of saliency()


def saliency_kernel(apply_fn: Callable, params, seq, dnase, targets: Sequence[int], method: str):
    """Pure kernel: saliency of the outputs ``targets`` with respect to ``seq``.

    Parameters
    ----------
    apply_fn: ``f(params, seq (N, L, 4), dnase (N, L) | None) -> (N, T)``.
    seq: shape=(N, L, 4) one-hot (or any real-valued input).
    dnase: shape=(N, L) or None; held fixed (no gradient is taken with respect to it).
    targets: output indices, static.
    method: one of GRADIENT_METHODS.

    Returns shape=(N, len(targets), L, 4).
    """
    if method not in GRADIENT_METHODS:
        raise ValueError(f"method={method!r} must be one of {GRADIENT_METHODS}")
    out, vjp = jax.vjp(lambda x: apply_fn(params, x, dnase), seq)
    # Samples are independent in eval mode, so the VJP of a one-hot cotangent column is the
    # per-sample gradient of that output; vmapping the VJP shares the forward pass.
    basis = jnp.eye(out.shape[-1], dtype=out.dtype)[jnp.asarray(targets)]  # (K, T)
    cotangents = jnp.broadcast_to(basis[:, None, :], (len(targets), *out.shape))  # (K, N, T)
    (grads,) = jax.vmap(vjp)(cotangents)  # (K, N, L, 4)
    grads = jnp.moveaxis(grads, 0, 1).astype(jnp.float32)
    if method == "gradient":
        return grads
    gx = grads * seq[:, None].astype(jnp.float32)
    return jnp.abs(gx) if method == "abs_grad_x_input" else gx


def resolve_targets(model, target) -> tuple[tuple[int, ...], bool]:
    """(indices, squeeze): None -> every output; an int or name -> one (squeezed); a list -> those."""
    return model.target_indices(target), isinstance(target, str | int | np.integer)


def by_target_groups(targets: tuple[int, ...], per_call: int, run: Callable) -> np.ndarray:
    """``run(group) -> (N, len(group), L, 4)`` over groups of at most ``per_call`` targets, joined on axis 1.

    One group (one compiled call per chunk) unless the memory budget cannot hold every target at once.
    """
    from jaxmotif.memory import target_groups

    parts = [run(group) for group in target_groups(tuple(targets), per_call)]
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def gradient_chunks(model, n: int, targets: int, max_memory: int | None, batch_size: int | None):
    """(sequences per call, targets per call) of a gradient-type kernel under the memory budget."""
    from jaxmotif.memory import activation_elements, gradient_plan, param_bytes, resolve_budget

    return gradient_plan(
        resolve_budget(max_memory),
        rows=n,
        targets=targets,
        activations=activation_elements(model),
        length=model.config.seq_len,
        fixed_bytes=param_bytes(model),
        max_rows=batch_size,
    )


def saliency(
    model,
    seq,
    dnase=None,
    target=None,
    method: str = "grad_x_input",
    *,
    logits: bool = False,
    batch_size: int | None = None,
    max_memory: int | None = None,
    precision: str | None = None,
    key: jax.Array | None = None,
    **options,
) -> np.ndarray:
    """Saliency maps of ``model`` for one-hot sequences.

    Parameters
    ----------
    model: a :class:`jaxmotif.Model` (anything with ``apply``, ``params``, ``config``).
    seq: shape=(N, L, 4) channels-last one-hot in the model's alphabet order.
    dnase: shape=(N, L), required by two-branch models.
    target: an output index or name (result (N, L, 4)); a list of them, or None for every output
        (result (N, T, L, 4)), all computed in one compiled call per chunk.
    method: ``gradient`` | ``grad_x_input`` | ``abs_grad_x_input``; ``deconvnet`` |
        ``guided_backprop`` (ReLU backward rules, :mod:`jaxmotif.projections`);
        ``inverse_activation`` (Denas & Taylor; option ``value``); ``integrated_gradients``
        (options ``steps``, ``baseline``, ``num_baselines``, ``rule``, ``step_batch``; ``key`` for
        shuffled baselines) | ``smoothgrad`` (options ``samples``, ``sigma``, ``sample_batch``;
        ``key`` required), :mod:`jaxmotif.integrated`; ``deep_lift_shap`` (options
        ``references``, ``n_shuffles``, ``hypothetical``; ``key`` for shuffled references),
        :mod:`jaxmotif.deeplift`.
    logits: differentiate the output before the final activation instead of after it.
    batch_size: optional upper bound on the sequences per compiled call.
    max_memory: bytes one compiled call may hold (default
        :func:`jaxmotif.memory.default_memory_budget`); the sequences (and, if one sequence with
        every target does not fit, the targets) per call are chosen from it (:mod:`jaxmotif.memory`).
    precision: ``fp32`` (default, exact) | ``tf32`` | ``bf16``.
    key: a ``jax.random`` key, for the methods that draw random numbers.
    options: keyword options of the method (see ``method``).
    """
    if method not in ATTRIBUTION_METHODS:
        raise ValueError(f"method={method!r} must be one of {ATTRIBUTION_METHODS}")
    if method not in GRADIENT_METHODS:
        common = {"batch_size": batch_size, "max_memory": max_memory, "precision": precision}
        return _other_method(model, seq, dnase, target, method, logits, common, key, options)
    if options or key is not None:
        given = sorted(options) + (["key"] if key is not None else [])
        raise ValueError(f"method={method!r} takes no options {given}")
    seq, dnase = model.check_inputs(seq, dnase)
    targets, squeeze = resolve_targets(model, target)

    rows, per_call = gradient_chunks(model, seq.shape[0], len(targets), max_memory, batch_size)
    params = model.params

    def run(group):
        def make():
            apply_fn = with_precision(model.apply_logits if logits else model.apply, precision)
            return jax.jit(lambda p, s, d: saliency_kernel(apply_fn, p, s, d, group, method))

        kernel = model.compiled_fn(("saliency", group, method, logits, precision), make)
        return map_batches(lambda s, d: kernel(params, s, d), [seq, dnase], batch_size=rows)

    result = by_target_groups(targets, per_call, run)
    return result[:, 0] if squeeze else result


def _other_method(model, seq, dnase, target, method, logits, common, key, options):
    """saliency() for the methods of jaxmotif.projections and jaxmotif.integrated (imported here:
    they import this module)."""
    from jaxmotif import deeplift, integrated, projections

    allowed = {
        "deconvnet": (),
        "guided_backprop": (),
        "inverse_activation": ("value",),
        "integrated_gradients": ("steps", "baseline", "num_baselines", "rule", "step_batch"),
        "smoothgrad": ("samples", "sigma", "sample_batch"),
        "deep_lift_shap": ("references", "n_shuffles", "hypothetical"),
    }[method]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"method={method!r} takes no options {unknown}; its options: {list(allowed)}")
    if key is not None and method not in AVERAGED_METHODS:
        raise ValueError(f"method={method!r} draws no random numbers; drop key")
    if method in ("deconvnet", "guided_backprop"):
        return projections.rule_saliency(model, seq, dnase, target, method=method, logits=logits, **common)
    if method == "inverse_activation":
        if logits:
            raise ValueError("inverse_activation starts below the output activation already; drop logits")
        targets, squeeze = resolve_targets(model, target)
        maps = [projections.inverse_activation(model, seq, dnase, t, **common, **options) for t in targets]
        return maps[0] if squeeze else np.stack(maps, axis=1)
    if method == "deep_lift_shap":
        return deeplift.deep_lift_shap(model, seq, dnase, target, key=key, logits=logits, **common, **options)
    fn = integrated.integrated_gradients if method == "integrated_gradients" else integrated.smoothgrad
    return fn(model, seq, dnase, target, key=key, logits=logits, **common, **options)
