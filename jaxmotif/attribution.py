"""``saliency``: every attribution method of jaxmotif behind one call (the dispatcher on top).

The plain-gradient methods (seed methods 2 and 4) run :func:`jaxmotif.gradients.saliency_kernel`
here; the others live in the module named after them -- :mod:`jaxmotif.projections` (deconvnet,
guided backprop, inverse activation), :mod:`jaxmotif.integrated` (integrated gradients, SmoothGrad),
:mod:`jaxmotif.deeplift` (DeepLIFT / DeepSHAP) -- all built on :mod:`jaxmotif.gradients`.
"""

import jax
import numpy as np

from jaxmotif import deeplift, integrated, projections
from jaxmotif.batching import map_batches
from jaxmotif.gradients import (  # noqa: F401 (re-exported: the kernel's historical home)
    GRADIENT_METHODS,
    by_target_groups,
    gradient_chunks,
    resolve_targets,
    saliency_kernel,
)
from jaxmotif.precision import with_precision

SALIENCY_METHODS = GRADIENT_METHODS  # the plain-gradient methods of saliency_kernel
# Methods implemented in jaxmotif.projections / integrated / deeplift, dispatched by saliency().
RULE_METHODS = ("deconvnet", "guided_backprop", "inverse_activation")
AVERAGED_METHODS = ("integrated_gradients", "smoothgrad", "deep_lift_shap")  # draw random numbers
ATTRIBUTION_METHODS = GRADIENT_METHODS + RULE_METHODS + AVERAGED_METHODS  # every method of saliency()


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
    rows=None,
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
    key: a ``jax.random`` key, for the methods that draw random numbers (``AVERAGED_METHODS``).
    rows: shape=(N,), each sequence's index in the whole input, for those methods (default
        ``0 .. N-1``): sequence ``i`` draws its noise / shuffled references from
        ``fold_in(key, rows[i])``, so the numbers depend only on the key and that index, never on
        ``batch_size`` or ``max_memory``; attributing ``seq[a:b]`` with ``rows=range(a, b)`` gives
        rows ``a:b`` of the whole input's maps (``python -m jaxmotif.saliency`` does so per batch).
    options: keyword options of the method (see ``method``).
    """
    if method not in ATTRIBUTION_METHODS:
        raise ValueError(f"method={method!r} must be one of {ATTRIBUTION_METHODS}")
    if method not in GRADIENT_METHODS:
        common = {"batch_size": batch_size, "max_memory": max_memory, "precision": precision}
        return _other_method(model, seq, dnase, target, method, logits, common, key, rows, options)
    if options or key is not None or rows is not None:
        given = sorted(options) + [k for k, v in (("key", key), ("rows", rows)) if v is not None]
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


def _other_method(model, seq, dnase, target, method, logits, common, key, rows, options):
    """saliency() for the methods of jaxmotif.projections and jaxmotif.integrated (imported here:
    they import this module)."""
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
    if method not in AVERAGED_METHODS and (key is not None or rows is not None):
        given = " and ".join(k for k, v in (("key", key), ("rows", rows)) if v is not None)
        raise ValueError(f"method={method!r} draws no random numbers; drop {given}")
    if method in ("deconvnet", "guided_backprop"):
        return projections.rule_saliency(model, seq, dnase, target, method=method, logits=logits, **common)
    if method == "inverse_activation":
        if logits:
            raise ValueError("inverse_activation starts below the output activation already; drop logits")
        targets, squeeze = resolve_targets(model, target)
        maps = [projections.inverse_activation(model, seq, dnase, t, **common, **options) for t in targets]
        return maps[0] if squeeze else np.stack(maps, axis=1)
    if method == "deep_lift_shap":
        return deeplift.deep_lift_shap(
            model, seq, dnase, target, key=key, rows=rows, logits=logits, **common, **options
        )
    fn = integrated.integrated_gradients if method == "integrated_gradients" else integrated.smoothgrad
    return fn(model, seq, dnase, target, key=key, rows=rows, logits=logits, **common, **options)
