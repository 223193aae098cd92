"""Memory budgets -> chunk sizes: how much one compiled call takes at once.

Every kernel that runs over many inputs (sequences x path points x references x targets) picks its
inner chunk from a byte budget (``max_memory=``; default :func:`default_memory_budget`), so memory
stays bounded whatever the number of sequences, targets, steps or references is.

The estimate (pure arithmetic, documented here and tested against XLA's own memory analysis):

- ``A = activation_elements(model)``: the values one input row's forward pass materializes: the
  outputs of convolutions, matrix products, concatenations and pools, the operations XLA does not
  fuse away (elementwise ops fuse into them). Read from the model's jaxpr, not compiled.
- A gradient of ``K`` targets on ``R`` rows (one forward pass, ``K`` backward passes vmapped)
  holds about ``R * (1 + K) * (A + L*4)`` elements: every backward pass needs about as much as
  the forward one, and each target's input gradient is ``L*4``.
- DeepSHAP (:func:`deeplift_elements`) on its fast path: per sequence ``1 + R`` rows forward, the
  rules' records of ``R`` rows, and ``K`` transposed passes of ``R`` rows; on the stacked fallback,
  the gradient above on ``2R`` rows.
- The parameters are held once (:func:`param_bytes`), outside the chunk.

On DeepHistone (published widths, fp32, CPU) the estimate is about twice what XLA reports
(``compile().memory_analysis()``), so a budget is an upper bound, not a target. DeepSHAP's is
1.0-1.5x XLA's on the test and demo models, on either path
(``benchmarks/results/cpu_2026-11-29_deeplift_memory.txt``).
"""

from __future__ import annotations

import contextlib

import numpy as np

CPU_MEMORY_BUDGET = 4 * 2**30
DEVICE_MEMORY_FRACTION = 0.5  # of the accelerator's free memory: XLA needs the rest for workspace
ITEMSIZE = 4  # float32
# Primitives whose outputs XLA materializes; elementwise ops are fused into their consumers.
_MATERIALIZED = (
    "conv_general_dilated",
    "dot_general",
    "concatenate",
    "reduce_window",
    "reduce_window_max",
    "reduce_window_sum",
    "reduce_max",
    "reduce_sum",
    "gather",
    "scatter-add",
    "pad",
    "cumsum",
    "sort",
)


def default_memory_budget() -> int:
    """Bytes a compiled call may hold: half the first device's free memory on an accelerator, 4 GB on CPU."""
    import jax

    device = jax.local_devices()[0]
    if device.platform != "cpu":
        with contextlib.suppress(Exception):
            stats = device.memory_stats() or {}
            free = stats.get("bytes_limit", 0) - stats.get("bytes_in_use", 0)
            if free > 0:
                return int(free * DEVICE_MEMORY_FRACTION)
    return CPU_MEMORY_BUDGET


def resolve_budget(max_memory: int | None) -> int:
    """``max_memory`` in bytes (positive), or the default budget when None."""
    if max_memory is None:
        return default_memory_budget()
    if int(max_memory) != max_memory or max_memory <= 0:
        raise ValueError(f"max_memory={max_memory!r} must be a positive number of bytes")
    return int(max_memory)


def _count_materialized(jaxpr) -> tuple[int, int]:
    """(elements of materialized outputs, elements of all outputs) of a jaxpr, sub-jaxprs included."""
    import jax

    kept = total = 0
    for eqn in jaxpr.eqns:
        size = sum(int(np.prod(v.aval.shape)) for v in eqn.outvars if hasattr(v.aval, "shape"))
        total += size
        if eqn.primitive.name in _MATERIALIZED:
            kept += size
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            k, t = _count_materialized(sub)
            kept, total = kept + k, total + t
    return kept, total


def activation_elements(model) -> int:
    """``A``: elements one input row's forward pass materializes (see the module docstring).

    Traced once per model (no compilation) and kept in the model's compiled-function cache.
    """

    def count():
        import jax
        import jax.numpy as jnp

        length = model.config.seq_len
        # the side input as the model takes it: DNase (L,), BPNet control tracks (L, C), or none
        side = getattr(model.config, "side_shape", None) or ((length,) if model.config.has_dnase else None)
        dnase = None if side is None else jnp.zeros((1, *side), jnp.float32)
        closed = jax.make_jaxpr(lambda p, s, d: model.apply(p, s, d))(
            model.params, jnp.zeros((1, length, 4), jnp.float32), dnase
        )
        kept, total = _count_materialized(closed.jaxpr)
        return max(kept or total, 1)

    return model.compiled_fn(("memory.activation_elements",), count)


def param_bytes(model) -> int:
    """Bytes of the model's parameters (held once per compiled call)."""
    import jax

    return int(sum(np.asarray(leaf).nbytes for leaf in jax.tree.leaves(model.params)))


# ---- estimates (elements) -----------------------------------------------------------------------


def gradient_elements(rows: int, targets: int, activations: int, length: int) -> int:
    """Elements a gradient call holds: ``rows * (1 + targets) * (A + L*4)``."""
    return rows * (1 + targets) * (activations + length * 4)


def path_elements(
    sequences: int, points: int, targets: int, references: int, activations: int, length: int
) -> int:
    """Elements a path-averaged call (integrated gradients, SmoothGrad) holds.

    ``sequences`` sequences at once, each with ``points`` path points / noisy copies per scan step
    (gradients as :func:`gradient_elements` on ``sequences * points`` rows, plus each point's
    input), and per sequence its input, ``references`` baselines and their differences, the
    accumulator and the result (``2 * targets``).
    """
    per_sequence = (1 + 2 * references + 2 * targets) * length * 4
    rows = sequences * points
    gradients = gradient_elements(rows, targets, activations, length)
    return sequences * per_sequence + gradients + rows * length * 4


def filter_sites_elements(sequences: int, length: int, filters: int, width: int) -> int:
    """Elements a conv1 site-count call holds (:mod:`jaxmotif.filters`): per sequence the scores,
    site mask and counted mask ``(L, F)`` each, the ``width`` shifted views ``(L, width, 4)`` and
    their padded source, and the input."""
    return sequences * length * (3 * filters + 4 * width + 2 * 4)


def deeplift_elements(
    sequences: int, references: int, targets: int, activations: int, length: int, *, fast: bool = True
) -> int:
    """Elements a DeepSHAP call holds (:func:`jaxmotif.deeplift.deep_lift_shap_kernel`).

    ``fast`` (its fast path, every model whose nonlinearities are all rules): per sequence ``1 + R``
    rows forward (the input once, its ``R`` references), the rules' records (about one row of
    activations per reference: secants, pool switches), and ``K`` transposed passes of ``R`` rows:
    ``(1 + R * (2 + K)) * (A + L*4)``. Otherwise the stacked fallback, the gradient of ``K``
    targets on ``2R`` rows (:func:`gradient_elements`). Both plus the inputs, references, their
    differences and the contributions, ``(1 + 2R + K) * L*4`` per sequence.
    """
    per_row = activations + length * 4
    if fast:
        rows = (1 + references * (2 + targets)) * per_row
    else:
        rows = gradient_elements(2 * references, targets, activations, length)
    return sequences * (rows + (1 + 2 * references + targets) * length * 4)


def forward_elements(rows: int, activations: int, length: int) -> int:
    """Elements a forward-only call holds: ``rows * (A + L*4)``."""
    return rows * (activations + length * 4)


# ---- plans (budget -> chunk sizes) --------------------------------------------------------------


def _available(budget: int, fixed_bytes: int, itemsize: int) -> int:
    """Elements left for the chunk once the fixed bytes (parameters) are held."""
    return max(0, (budget - fixed_bytes) // itemsize)


def gradient_plan(
    budget: int,
    *,
    rows: int,
    targets: int,
    activations: int,
    length: int,
    fixed_bytes: int = 0,
    itemsize: int = ITEMSIZE,
    max_rows: int | None = None,
) -> tuple[int, int]:
    """(rows per call, targets per call) for a gradient of ``targets`` outputs on ``rows`` rows.

    Targets are split only when one row with every target does not fit; at least one row and one
    target per call (a budget below that is exceeded, not refused: the smallest call is made).
    """
    avail = _available(budget, fixed_bytes, itemsize)
    k = targets
    per_row_one = activations + length * 4
    if gradient_elements(1, k, activations, length) > avail:
        k = max(1, min(targets, avail // per_row_one - 1))
    fit = avail // gradient_elements(1, k, activations, length)
    r = max(1, min(rows, fit, max_rows or rows))
    return r, k


def path_plan(
    budget: int,
    *,
    sequences: int,
    points: int,
    targets: int,
    references: int,
    activations: int,
    length: int,
    fixed_bytes: int = 0,
    itemsize: int = ITEMSIZE,
    max_sequences: int | None = None,
    max_points: int | None = None,
) -> tuple[int, int, int]:
    """(sequences per call, path points per scan step, targets per call) for a path-averaged method.

    ``points`` is every (path point, reference) pair of one sequence; the scan runs over them
    ``points per step`` at a time. Points per step are filled first (fewer scan steps), then
    sequences; targets are split only when one sequence with one point and every target does not fit.
    """
    avail = _available(budget, fixed_bytes, itemsize)
    k = targets
    while k > 1 and path_elements(1, 1, k, references, activations, length) > avail:
        k -= 1
    s = 1
    per_point = path_elements(1, 2, k, references, activations, length) - path_elements(
        1, 1, k, references, activations, length
    )
    base = path_elements(1, 1, k, references, activations, length)
    if avail > base:
        s = 1 + (avail - base) // per_point
    s = max(1, min(s, points, max_points or points))
    n = avail // max(path_elements(1, s, k, references, activations, length), 1)
    n = max(1, min(sequences, n, max_sequences or sequences))
    return n, s, k


def deeplift_plan(
    budget: int,
    *,
    sequences: int,
    references: int,
    targets: int,
    activations: int,
    length: int,
    fast: bool = True,
    fixed_bytes: int = 0,
    itemsize: int = ITEMSIZE,
    max_sequences: int | None = None,
) -> tuple[int, int]:
    """(sequences per call, targets per call) for DeepSHAP with ``references`` per sequence.

    Targets are split only when one sequence with every target does not fit; at least one sequence
    and one target per call (a budget below that is exceeded, not refused).
    """
    avail = _available(budget, fixed_bytes, itemsize)

    def held(n, k):
        return deeplift_elements(n, references, k, activations, length, fast=fast)

    k = targets
    if held(1, k) > avail:  # linear in k: the most targets one sequence can take
        step = held(1, 1) - held(1, 0)
        k = max(1, min(targets, (avail - held(1, 0)) // step))
    fit = avail // held(1, k)
    n = max(1, min(sequences, fit, max_sequences or sequences))
    return n, k


def forward_plan(
    budget: int,
    *,
    rows: int,
    activations: int,
    length: int,
    fixed_bytes: int = 0,
    itemsize: int = ITEMSIZE,
    max_rows: int | None = None,
) -> int:
    """Rows per forward-only call."""
    avail = _available(budget, fixed_bytes, itemsize)
    fit = avail // forward_elements(1, activations, length)
    return max(1, min(rows, fit, max_rows or rows))


def target_groups(targets: tuple[int, ...], size: int) -> list[tuple[int, ...]]:
    """``targets`` in consecutive groups of at most ``size``."""
    size = max(1, size)
    return [tuple(targets[i : i + size]) for i in range(0, len(targets), size)]
