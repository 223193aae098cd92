"""The gradient kernel every attribution method builds on, and the target/chunk resolution they share.

- ``gradient``: dS_c/dX (Simonyan et al. 2013), shape (L, 4) per sequence and target.
- ``grad_x_input``: dS_c/dX ⊙ X, the derivative at the bases actually present.
- ``abs_grad_x_input``: |dS_c/dX ⊙ X|, Lanchantin et al. 2016's nucleotide importance. (The seed's
  Saliency.py kept |dS/dX| although its text describes |dS/dX ⊙ X|; both are offered, named.)

All targets come from one forward pass and one batched backward pass (``jax.vjp`` with the
cotangents of every requested output vmapped), not a Python loop over outputs.

Layering: this module imports no method module; :mod:`jaxmotif.integrated`,
:mod:`jaxmotif.projections` and :mod:`jaxmotif.deeplift` build on it, and
:mod:`jaxmotif.attribution` (``saliency``, the method dispatcher) sits on top of all of them.
"""

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxmotif import memory

GRADIENT_METHODS = ("gradient", "grad_x_input", "abs_grad_x_input")


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
    parts = [run(group) for group in memory.target_groups(tuple(targets), per_call)]
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def gradient_chunks(model, n: int, targets: int, max_memory: int | None, batch_size: int | None):
    """(sequences per call, targets per call) of a gradient-type kernel under the memory budget."""
    return memory.gradient_plan(
        memory.resolve_budget(max_memory),
        rows=n,
        targets=targets,
        activations=memory.activation_elements(model),
        length=model.config.seq_len,
        fixed_bytes=memory.param_bytes(model),
        max_rows=batch_size,
    )
