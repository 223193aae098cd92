"""Projections back to the input: deconvnet, guided backprop and inverse-activation (seed methods 1, 3).

All three are backward passes through the *same* model with the ReLUs' backward rule swapped; the
forward values are unchanged and each costs one forward and one backward pass:

- ``gradient``: the ordinary derivative (a ReLU passes the signal where its input was positive).
- ``deconvnet`` (Zeiler & Fergus 2014, "Visualizing and understanding convolutional networks",
  ECCV): a ReLU passes back ``relu(signal)``, the positive part of what comes back, whatever its
  forward input was. Max-pools route through their forward switches (the position of each
  window's maximum; the first one on ties, as PyTorch's MaxPool). Convolutions, BatchNorm and
  dense layers are passed by their transposes, i.e. their VJPs.
- ``guided_backprop`` (Springenberg et al. 2015, "Striving for simplicity"): both conditions, the
  forward input positive *and* the signal coming back positive.

The rules are ``jax.custom_vjp`` functions handed to the model's forward pass as
``ops=Ops(relu=rule)`` (``model.apply(params, seq, dnase, ops=...)``), so they stay
jit/vmap-able and the model is not duplicated.

:func:`project` takes a hidden map of the sequence branch as the starting point (method 1's point:
what in the input drives one filter), :func:`inverse_activation` a value of one output (method 3).
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxmotif.batching import map_batches
from jaxmotif.gradients import by_target_groups, gradient_chunks, resolve_targets, saliency_kernel
from jaxmotif.graph import LayerShape, needed_nodes
from jaxmotif.nonlinear import Ops
from jaxmotif.precision import with_precision

RELU_RULES = ("gradient", "deconvnet", "guided_backprop")
PROJECTION_SIGNALS = ("ones", "activation")
HEAD_LAYER = "head.dense"


# ---------------------------------------------------------------------------------------------
# ReLU backward rules
# ---------------------------------------------------------------------------------------------


@jax.custom_vjp
def deconvnet_relu(x):
    """ReLU whose backward pass is ``relu(signal)`` (Zeiler & Fergus's deconvnet rule)."""
    return jax.nn.relu(x)


def _deconvnet_fwd(x):
    return jax.nn.relu(x), None  # the rule ignores the forward input: nothing to keep


def _deconvnet_bwd(_, g):
    return (jax.nn.relu(g),)


deconvnet_relu.defvjp(_deconvnet_fwd, _deconvnet_bwd)


@jax.custom_vjp
def guided_relu(x):
    """ReLU whose backward pass keeps the signal where it is positive and the forward input was too."""
    return jax.nn.relu(x)


def _guided_fwd(x):
    return jax.nn.relu(x), x > 0  # a boolean mask is all the backward pass needs


def _guided_bwd(positive, g):
    return (jnp.where(positive & (g > 0), g, jnp.zeros_like(g)),)


guided_relu.defvjp(_guided_fwd, _guided_bwd)


def relu_rule(method: str) -> Callable:
    """The ReLU to run the forward pass with for ``method`` (one of ``RELU_RULES``)."""
    rules = {"gradient": jax.nn.relu, "deconvnet": deconvnet_relu, "guided_backprop": guided_relu}
    if method not in rules:
        raise ValueError(f"method={method!r} must be one of {RELU_RULES}")
    return rules[method]


def _check_graph_model(model):
    if not hasattr(model, "layer_output"):
        raise TypeError(
            f"{type(model).__name__} does not expose its layers: projections need a graph model "
            "(model.apply(..., ops=...), model.layers(), model.layer_output(...))"
        )


def rule_apply(model, method: str, *, logits: bool = False) -> Callable:
    """Pure ``f(params, seq, dnase) -> (N, T)`` whose backward pass follows ``method``'s ReLU rule.

    The forward values equal ``model.apply`` (or ``model.apply_logits``); only gradients differ.
    The rule replaces ``ops.relu`` of the model's forward pass.
    """
    ops = Ops(relu=relu_rule(method))
    fn = model.apply_logits if logits else model.apply

    def apply(params, seq, dnase=None):
        return fn(params, seq, dnase, ops=ops)

    return apply


def rule_saliency(
    model,
    seq,
    dnase=None,
    target=None,
    *,
    method: str = "deconvnet",
    logits: bool = False,
    batch_size: int | None = None,
    max_memory: int | None = None,
    precision: str | None = None,
) -> np.ndarray:
    """``saliency`` under a ReLU rule: ``(N, L, 4)`` for one target, ``(N, K, L, 4)`` for several.

    The backward signal reaching the input from each output, as ``jaxmotif.saliency(method=
    "gradient")`` but with ``method``'s ReLU rule. Call it through ``jaxmotif.saliency(...,
    method="deconvnet" | "guided_backprop")``.
    """
    relu_rule(method)
    seq, dnase = model.check_inputs(seq, dnase)
    targets, squeeze = resolve_targets(model, target)
    rows, per_call = gradient_chunks(model, seq.shape[0], len(targets), max_memory, batch_size)
    params = model.params

    def run(group):
        def make():
            apply_fn = with_precision(rule_apply(model, method, logits=logits), precision)
            return jax.jit(lambda p, s, d: saliency_kernel(apply_fn, p, s, d, group, "gradient"))

        kernel = model.compiled_fn(("rule_saliency", group, method, logits, precision), make)
        return map_batches(lambda s, d: kernel(params, s, d), [seq, dnase], batch_size=rows)

    result = by_target_groups(targets, per_call, run)
    return result[:, 0] if squeeze else result


# ---------------------------------------------------------------------------------------------
# Hidden units as targets (method 1)
# ---------------------------------------------------------------------------------------------


def layers(model) -> tuple[str, ...]:
    """Names of the maps :func:`project` can start from, input to output.

    The graph's named layers that depend on the sequence (a DNase branch never sees it, so its
    units would project to zero). DeepHistone: ``conv1`` (no ReLU after it), ``block1.0``..
    ``block1.2`` (each dense layer's own growth channels, before concatenation), ``trans1`` (after
    its max-pool, L/4 positions), ``block2.0``..``block2.2`` (L/4), ``trans2`` (L/16); then
    ``head.dense``, the hidden units of the first dense layer (before its BatchNorm and ReLU; no
    positions, and it needs the DNase input of two-branch models). BPNet: ``iconv``,
    ``rconvs.0``.. (the residual sums).
    """
    _check_graph_model(model)
    return model.layers()


def layer_shape(config, layer: str) -> LayerShape:
    """Shape and receptive-field geometry of ``layer`` (a :class:`jaxmotif.graph.LayerShape`).

    Derived from the graph (``config.graph()``): a convolution widens the field by its half-width
    times its dilation at its own resolution, a max-pool multiplies the stride and covers its
    width, residual adds and concatenations take the widest field of their inputs, crops shift
    it; past a Flatten / mean / Linear a unit sees the whole input (``stride == 0``).
    """
    from jaxmotif.graph import geometry

    shapes = geometry(config.graph(), config.seq_len, "seq")[1]
    if layer not in shapes:
        raise ValueError(f"layer={layer!r} is not a layer of this model; layers: {list(shapes)}")
    return shapes[layer]


def receptive_field(config, layer: str, position: int) -> tuple[int, int]:
    """Input positions ``[start, stop)`` that unit ``position`` of ``layer`` sees (clipped to 0..L)."""
    shape = layer_shape(config, layer)
    _check_position(layer, shape, position)
    if shape.stride == 0:
        return 0, config.seq_len
    start = shape.stride * position + shape.lo
    stop = shape.stride * position + shape.hi + 1
    return max(start, 0), min(stop, config.seq_len)


def _check_position(layer, shape: LayerShape, position):
    if position is None:
        return
    if shape.stride == 0 and position not in (0,):
        raise ValueError(f"position={position} given for layer={layer!r}, which has no positions (use None)")
    if not 0 <= position < shape.positions:
        raise ValueError(f"position={position} out of range for {layer=} with {shape.positions} positions")


def projection_kernel(layer_fn: Callable, params, seq, dnase, channel: int, position: int | None, signal):
    """Pure kernel: the backward pass from one channel of a hidden map down to the input.

    Parameters
    ----------
    layer_fn: ``f(params, seq (N, L, 4), dnase) -> (N, W, C)``, run with the projection's ReLU rule.
    seq: shape=(N, L, 4).
    dnase: shape=(N, L) or None.
    channel, position: the unit, traced integers (sweeping them does not recompile);
        ``position=None`` (static) takes the whole map of ``channel``.
    signal: ``ones`` seeds the backward pass with 1 at every chosen unit (the gradient of their
        sum); ``activation`` with the units' own rectified activations, as Zeiler & Fergus (all
        other activations of the layer set to zero).

    Returns shape=(N, L, 4).
    """

    def forward(x):
        fmap = jnp.take(layer_fn(params, x, dnase), channel, axis=-1)  # (N, W)
        if position is not None:
            fmap = jax.lax.dynamic_slice_in_dim(fmap, position, 1, axis=1)
        return fmap

    fmap, vjp = jax.vjp(forward, seq)
    if signal == "ones":
        cotangent = jnp.ones_like(fmap)
    else:
        cotangent = jax.nn.relu(fmap)
    (grads,) = vjp(cotangent)
    return grads.astype(jnp.float32)


def project(
    model,
    seq,
    layer: str,
    channel: int,
    position: int | None = None,
    *,
    method: str = "deconvnet",
    signal: str = "ones",
    dnase=None,
    batch_size: int | None = None,
    max_memory: int | None = None,
    precision: str | None = None,
) -> np.ndarray:
    """Projects one hidden unit or feature map back to the input (Zeiler & Fergus 2014, method 1).

    Parameters
    ----------
    model: a :class:`jaxmotif.Model`.
    seq: shape=(N, L, 4) channels-last one-hot in the model's alphabet order.
    layer: a name from :func:`layers` (``conv1``, ``block1.2``, ``trans2``, ``head.dense`` ...).
    channel: the channel (filter) of that map.
    position: a position of that map (its own resolution: L, L/4 or L/16 positions), or None for
        the whole feature map (every position, summed). A unit at a position projects to zero
        outside its receptive field (:func:`receptive_field`).
    method: the ReLU backward rule, ``deconvnet`` | ``guided_backprop`` | ``gradient``.
    signal: ``ones`` (default; the derivative of the unit, or of the map's sum) or ``activation``
        (Zeiler & Fergus's seed: the units' own rectified activations).
    dnase: shape=(N, L); only ``head.dense`` of two-branch models needs it (the sequence branch
        never reads it).
    batch_size, max_memory, precision: as :func:`jaxmotif.saliency`.

    Returns shape=(N, L, 4), the signal reaching each base and letter.
    """
    relu = relu_rule(method)
    if signal not in PROJECTION_SIGNALS:
        raise ValueError(f"signal={signal!r} must be one of {PROJECTION_SIGNALS}")
    all_layers = layers(model)
    if layer not in all_layers:
        raise ValueError(f"layer={layer!r} is not a layer of this model; layers: {list(all_layers)}")
    shape = layer_shape(model.config, layer)
    channel = int(channel)
    if not 0 <= channel < shape.channels:
        raise ValueError(f"channel={channel} out of range for layer={layer!r} with {shape.channels} channels")
    position = None if position is None else int(position)
    _check_position(layer, shape, position)
    ops = Ops(relu=relu)
    side = model.config.side_input
    node = model._tap_node(layer)
    if side is not None and any(side in n.inputs for n in needed_nodes(model.graph, (node,))):
        seq, dnase = model.check_inputs(seq, dnase)
    else:
        # The layer never reads the side input (a sequence branch): check the sequence alone.
        side_shape = model.config.side_shape
        dummy = None if side_shape is None else np.zeros((np.shape(seq)[0], *side_shape), np.float32)
        if np.ndim(seq) == 2 and dummy is not None:
            dummy = dummy[:1]
        seq, _ = model.check_inputs(seq, dummy)
        dnase = None
    vector = shape.stride == 0

    def layer_fn(params, s, d):
        out = model.layer_output(params, s, d, layer, ops=ops)
        return out[:, None, :] if vector else out

    whole_map = position is None

    def make():
        fn = with_precision(layer_fn, precision)

        def kernel(p, s, d, c, pos):
            return projection_kernel(fn, p, s, d, c, None if whole_map else pos, signal)

        return jax.jit(kernel)

    kernel = model.compiled_fn(("project", layer, whole_map, method, signal, precision), make)
    params = model.params
    unit = (np.int32(channel), np.int32(0 if whole_map else position))
    batch_size, _ = gradient_chunks(model, seq.shape[0], 1, max_memory, batch_size)  # one backward pass
    return map_batches(lambda s, d: kernel(params, s, d, *unit), [seq, dnase], batch_size=batch_size)


# ---------------------------------------------------------------------------------------------
# Inverse-activation projection (method 3)
# ---------------------------------------------------------------------------------------------


def inverse_output_activation(values, kind: str, num_outputs: int, target: int):
    """The output-layer signal, shape=(N, T), that starts an inverse-activation projection.

    sigmoid: ``logit(value)`` at the target, 0 elsewhere. none: ``value`` itself. softmax: the
    centred log-probabilities of the distribution with ``value`` at the target and the rest spread
    evenly over the other outputs (softmax is invertible only up to a constant; centring fixes it).
    """
    values = jnp.asarray(values, jnp.float32)  # (N,)
    onehot = jax.nn.one_hot(jnp.full(values.shape, target), num_outputs, dtype=jnp.float32)  # (N, T)
    if kind == "sigmoid":
        return jnp.log(values / (1.0 - values))[:, None] * onehot
    if kind == "none":
        return values[:, None] * onehot
    rest = ((1.0 - values) / max(num_outputs - 1, 1))[:, None]
    logp = jnp.log(jnp.where(onehot > 0, values[:, None], rest))
    return logp - jnp.mean(logp, axis=-1, keepdims=True)


def inverse_activation_kernel(apply_logits_fn: Callable, params, seq, dnase, signal):
    """Pure kernel: ``signal (N, T)`` at the logits passed down by the VJP of ``apply_logits_fn``.

    ``apply_logits_fn`` must run with the deconvnet ReLU rule. Returns shape=(N, L, 4).
    """
    _, vjp = jax.vjp(lambda x: apply_logits_fn(params, x, dnase), seq)
    (grads,) = vjp(signal.astype(jnp.float32))
    return grads.astype(jnp.float32)


def inverse_activation(
    model,
    seq,
    dnase=None,
    target=0,
    *,
    value=None,
    batch_size: int | None = None,
    max_memory: int | None = None,
    precision: str | None = None,
) -> np.ndarray:
    """Inverse-activation projection of one output (Denas & Taylor 2013, seed method 3).

    What it is: start from a value of output ``target``, undo the output activation (the logit
    for a sigmoid output), then send that logit down the network layer by layer by each layer's
    transpose: the dense, BatchNorm and convolution layers by their transposed linear maps (the
    VJP; biases and BatchNorm shifts are dropped, as a transpose does), the ReLUs by the deconvnet
    rule (only the positive part passes: a ReLU has no inverse below zero) and the max-pools by
    their forward switches. The result is an input-space pattern, shape (N, L, 4), scaled by how
    strongly the value asks for the output.

    Where it differs from the paper: Denas & Taylor inverted fully connected *sigmoid* networks,
    where every layer's activation can be inverted with the logit before its weights are
    transposed. DeepHistone's only sigmoid is the output one; its hidden nonlinearities are ReLUs,
    so below the output the deconvnet rule stands in for an inverse, and convolution, pooling and
    BatchNorm, which their networks did not have, are passed by transposes and switches. With this
    rule the pass is positively homogeneous: for value > 0.5 the map is ``logit(value)`` times the
    deconvnet saliency of the target's logit; values below 0.5 (negative logits) project the
    opposite evidence.

    Parameters
    ----------
    model: a :class:`jaxmotif.Model`.
    seq: shape=(N, L, 4) one-hot; dnase: shape=(N, L) for two-branch models.
    target: an output index or name.
    value: the output value to project, a float, shape=(N,), or None (default) for the model's own
        prediction on each sequence. Must lie strictly inside (0, 1) for sigmoid and softmax outputs.
    batch_size, max_memory, precision: as :func:`jaxmotif.saliency`.

    Returns shape=(N, L, 4).
    """
    seq, dnase = model.check_inputs(seq, dnase)
    t = model.target_index(target)
    kind = model.config.final_activation
    n = seq.shape[0]
    # One backward pass per row: the rows of a one-target gradient call (also bounds the forward pass).
    batch_size, _ = gradient_chunks(model, n, 1, max_memory, batch_size)
    if value is None:
        values = np.asarray(model(seq, dnase, batch_size=batch_size, precision=precision))[:, t]
        if kind != "none":
            # A saturated prediction would start from an infinite logit; stay just inside (0, 1).
            values = np.clip(values, 1e-6, 1 - 1e-6)
    else:
        values = np.broadcast_to(np.asarray(value, dtype=np.float32), (n,)).copy()
        if not np.isfinite(values).all():
            raise ValueError(f"value={value!r} must be finite")
        if kind != "none" and not ((values > 0) & (values < 1)).all():
            bad = values[~((values > 0) & (values < 1))][0]
            raise ValueError(f"value={bad} must lie strictly between 0 and 1 for a {kind} output")
    num_outputs = model.config.num_outputs

    def make():
        fn = with_precision(rule_apply(model, "deconvnet", logits=True), precision)

        def kernel(p, s, d, v):
            return inverse_activation_kernel(fn, p, s, d, inverse_output_activation(v, kind, num_outputs, t))

        return jax.jit(kernel)

    kernel = model.compiled_fn(("inverse_activation", t, precision), make)
    params = model.params
    values = values.astype(np.float32)
    return map_batches(lambda s, d, v: kernel(params, s, d, v), [seq, dnase, values], batch_size=batch_size)
