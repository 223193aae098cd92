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

The rules are ``jax.custom_vjp`` functions handed to the model's forward pass as ``relu=``
(``DeepHistone.logits(seq, dnase, relu=...)``), so they stay jit/vmap-able and the model is not
duplicated.

:func:`project` takes a hidden map of the sequence branch as the starting point (method 1's point:
what in the input drives one filter), :func:`inverse_activation` a value of one output (method 3).
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxmotif.batching import map_batches
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


def _module(model, params):
    if not hasattr(model, "module"):
        raise TypeError(
            f"{type(model).__name__} does not expose its layers: projections need "
            "model.module(params) with logits(seq, dnase, relu=...) and seq_map.layer_outputs"
        )
    return model.module(params)


def _final_activation(model, logits):
    from jaxmotif.models.deephistone import final_activation

    return final_activation(logits, model.config.final_activation)


def rule_apply(model, method: str, *, logits: bool = False) -> Callable:
    """Pure ``f(params, seq, dnase) -> (N, T)`` whose backward pass follows ``method``'s ReLU rule.

    The forward values equal ``model.apply`` (or ``model.apply_logits``); only gradients differ.
    """
    relu = relu_rule(method)

    def apply(params, seq, dnase=None):
        out = _module(model, params).logits(seq, dnase, relu=relu)
        return out if logits else _final_activation(model, out)

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
    from jaxmotif.attribution import by_target_groups, gradient_chunks, resolve_targets, saliency_kernel

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

    The sequence branch's maps (``seq_map`` in the model; the DNase branch never sees the sequence,
    so its units project to zero), named after the modules: ``conv1`` (no ReLU after it),
    ``block1.0``..``block1.2`` (each dense layer's own growth channels, before concatenation),
    ``trans1`` (after its max-pool, L/4 positions), ``block2.0``..``block2.2`` (L/4), ``trans2``
    (L/16); then ``head.dense``, the hidden units of the first dense layer (before its BatchNorm
    and ReLU; no positions, and it needs the DNase input of two-branch models).
    """
    from jaxmotif.models.deephistone import BRANCH_LAYERS

    _module(model, model.params)
    return (*BRANCH_LAYERS, HEAD_LAYER)


class LayerShape(NamedTuple):
    """A map's positions and channels, and how its positions sit on the input.

    Position ``p`` of the map sees input positions ``[stride * p + lo, stride * p + hi]`` (inclusive,
    before clipping to the sequence), i.e. its receptive field.
    """

    positions: int
    channels: int
    stride: int
    lo: int
    hi: int


def layer_shape(config, layer: str) -> LayerShape:
    """Shape and receptive-field geometry of ``layer`` for a DeepHistone ``config``.

    Derived from the architecture: every k = 9 convolution widens the field by 4 positions of its
    own resolution on each side; a dense layer reads all earlier maps of its block, so the i-th
    sees i + 1 stacked convolutions past its block's input; the 1x1 transition convolutions add
    nothing and each max-pool by 4 multiplies the stride by 4 and covers 4 positions.
    """
    from jaxmotif.models.deephistone import BRANCH_LAYERS, DENSE_LAYERS, KERNEL_WIDTH, POOL

    w1, w2, w3 = config.widths
    half = KERNEL_WIDTH // 2
    length = config.seq_len
    if layer == HEAD_LAYER:
        return LayerShape(1, config.hidden, 0, 0, length - 1)
    if layer not in BRANCH_LAYERS:
        names = [*BRANCH_LAYERS, HEAD_LAYER]
        raise ValueError(f"layer={layer!r} is not a layer of this model; layers: {names}")
    # Field of trans1 position q: the block1 concatenation at 4q..4q+3, each seeing the deepest
    # dense layer's field (1 + DENSE_LAYERS convolutions of half-width 4 at stride 1).
    b1_reach = half * (1 + DENSE_LAYERS)
    t1 = (POOL, -b1_reach, POOL - 1 + b1_reach)
    if layer == "conv1":
        return LayerShape(length, w1, 1, -half, half)
    if layer.startswith("block1."):
        i = int(layer.split(".")[1])
        return LayerShape(length, w1, 1, -half * (i + 2), half * (i + 2))
    if layer == "trans1":
        return LayerShape(length // POOL, w2, *t1)
    if layer.startswith("block2."):
        i = int(layer.split(".")[1])
        reach = half * (i + 1) * t1[0]  # i + 1 convolutions over trans1 positions
        return LayerShape(length // POOL, w2, t1[0], t1[1] - reach, t1[2] + reach)
    # trans2 position r: block2's concatenation at 4r..4r+3 = trans1 positions 4r - 12 .. 4r + 15.
    b2_reach = half * DENSE_LAYERS
    lo = t1[0] * (-b2_reach) + t1[1]
    hi = t1[0] * (POOL - 1 + b2_reach) + t1[2]
    return LayerShape(length // POOL // POOL, w3, POOL * t1[0], lo, hi)


def receptive_field(config, layer: str, position: int) -> tuple[int, int]:
    """Input positions ``[start, stop)`` that unit ``position`` of ``layer`` sees (clipped to 0..L)."""
    shape = layer_shape(config, layer)
    _check_position(layer, shape, position)
    if layer == HEAD_LAYER:
        return 0, config.seq_len
    start = shape.stride * position + shape.lo
    stop = shape.stride * position + shape.hi + 1
    return max(start, 0), min(stop, config.seq_len)


def _check_position(layer, shape: LayerShape, position):
    if position is None:
        return
    if layer == HEAD_LAYER and position not in (0,):
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
    from jaxmotif.attribution import gradient_chunks

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
    if layer == HEAD_LAYER:
        seq, dnase = model.check_inputs(seq, dnase)

        def layer_fn(params, s, d):
            module = _module(model, params)
            return module.head.hidden_pre(module.features(s, d, relu=relu))[:, None, :]

    else:
        # The sequence branch never reads the DNase input: check the sequence alone.
        dummy = np.zeros(np.shape(seq)[:-1], np.float32) if model.config.has_dnase else None
        seq, _ = model.check_inputs(seq, dummy)
        dnase = None

        def layer_fn(params, s, d):
            return _module(model, params).seq_map.layer_outputs(s, relu=relu)[layer]

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
    from jaxmotif.attribution import gradient_chunks

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
