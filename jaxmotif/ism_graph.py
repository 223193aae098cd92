"""Fast ISM for any graph model (BPNet, ChromBPNet, Basset, DeepSEA, Beluga): see
:mod:`jaxmotif.graph.affected` (the change of the 3 substitutions of each position, carried on its
affected windows; the reference goes through the convolutions once).

``mutation_map(..., method="fast")`` uses this for every architecture except DeepHistone, which
keeps its hand-derived :mod:`jaxmotif.ism_fast` (faster there: 7.3 vs 10.0 s of CPU time per
published-size window on the 2-core CPU, fp32, 2026-11-29; both carry changes, equal within 2e-7).
"""

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmotif.graph import abstract_module, depends_on
from jaxmotif.graph.affected import Counter, mutant_outputs
from jaxmotif.nonlinear import DEFAULT_OPS

FLOP_METHODS = ("full", "fast")


def mutant_predictions_graph(
    model,
    params,
    seq,
    dnase=None,
    *,
    logits: bool = False,
    ops=DEFAULT_OPS,
    position_chunk: int | None = None,
    positions=None,
):
    """Target-view outputs for every base at every position of one window, computed exactly but locally.

    A pure function of ``(params, seq, dnase)`` (``model`` supplies the graph and config): jit it,
    vmap it over windows, wrap it with :func:`jaxmotif.precision.with_precision`.

    Parameters
    ----------
    model: a :class:`jaxmotif.Model`.
    params: its params pytree (possibly cast to bf16).
    seq: shape=(L, 4) one-hot, L = ``config.seq_len``; an N is an all-zero row.
    dnase: the side track of one window (DNase (L,), control (L, C)) or None.
    logits: outputs before the final activation.
    position_chunk: positions evaluated together per step (static); default 32 on CPU, 256 else.
    positions: shape=(P,) int, only these positions (then preds is (P, 4, T)); default all. A
        Python ``range`` (step 1) computes like the default (consecutive positions per step).

    Returns (preds, ref): preds shape=(L, 4, T), entry [p, b] the outputs with base b at p (the
    reference base's entry, and base 0's at an N row, is ``ref``); ref shape=(T,) the reference
    outputs from the same target-view computation as the mutants (a zero change in their batch).
    """
    cfg = model.config
    if seq.shape != (cfg.seq_len, 4):
        raise ValueError(f"seq shape {seq.shape} must be ({cfg.seq_len}, 4) (one window, channels-last)")
    side = {}
    if cfg.side_input is not None:
        if dnase is None or dnase.shape != cfg.side_shape:
            got = None if dnase is None else dnase.shape
            raise ValueError(f"{cfg.side_name} shape {got} must be {cfg.side_shape} for this model")
        side[cfg.side_input] = dnase.reshape(cfg.seq_len, -1)
    elif dnase is not None:
        raise ValueError(f"this model takes no {cfg.side_name} input")
    if position_chunk is None:
        position_chunk = 32 if jax.default_backend() == "cpu" else 256
    if position_chunk < 1:
        raise ValueError(f"position_chunk={position_chunk} must be positive")

    def targets(outputs):
        return model._targets(outputs, cfg, ops, logits=logits)

    return mutant_outputs(
        model.module(params),
        model.graph,
        targets,
        seq,
        side,
        ops=ops,
        position_chunk=position_chunk,
        positions=positions,
    )


def flops_per_window(config, method: str, *, all_bases: bool = False) -> float:
    """Counted FLOPs of a mutation map of one window (2 per multiply-accumulate of every
    convolution and Linear; BatchNorm, activations and pooling are not counted).

    ``full``: the reference and 3 L mutants (4 L with ``all_bases``) through every layer that
    reads the sequence; the layers that do not (a DNase branch) once. ``fast``: what the fast
    path computes: DeepHistone's :mod:`jaxmotif.ism_fast`; for other graphs one reference pass
    plus, per position, the changes of its 3 substitutions on their affected windows
    (:mod:`jaxmotif.graph.affected`).
    """
    if method not in FLOP_METHODS:
        raise ValueError(f"method={method!r} must be one of {FLOP_METHODS}")
    if config.arch == "deephistone":
        from jaxmotif.ism_fast import flops_per_window as deephistone_flops

        return deephistone_flops(config, method, all_bases=all_bases)
    from jaxmotif.models.model import arch_module

    graph = config.graph()
    length = config.seq_len
    module = abstract_module(graph, length, config)
    counter = Counter()
    side = {config.side_input: jnp.zeros((length, config.side_shape[1]))} if config.side_input else {}
    targets = arch_module(config).targets
    graphdef, state = nnx.split(module)
    jax.eval_shape(
        lambda st, s: mutant_outputs(
            nnx.merge(graphdef, st),
            graph,
            lambda o: targets(o, config),
            s,
            side,
            ops=DEFAULT_OPS,
            position_chunk=1,
            counter=counter,
        ),
        state,
        jax.ShapeDtypeStruct((length, 4), jnp.float32),
    )
    if method == "fast":
        return 2.0 * (counter.forward + length * counter.position)
    mutants = (4 if all_bases else 3) * length
    seq_macs = counter.forward - counter.side_forward
    return 2.0 * ((mutants + 1) * seq_macs + counter.side_forward)


__all__ = ["flops_per_window", "mutant_predictions_graph", "depends_on"]
