"""A model graph, the Flax NNX module built from it, and its geometry.

A :class:`Graph` is a few named inputs (``(N, L, C)`` maps: the one-hot sequence and any
side tracks), a list of :class:`Node` s, each one operation of :mod:`jaxmotif.graph.layers`
applied to earlier values, and the names of its outputs. :func:`build` makes the
:class:`GraphModule` holding the parameters (named after the layers, see ``layers.py``), and
:func:`run` evaluates it: only the nodes a requested value needs are computed.

:func:`geometry` derives, from the description alone, each map's positions, channels and where
its positions sit on the input (stride, receptive field): projections and fast ISM use it.
"""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmotif.graph import layers as L
from jaxmotif.nonlinear import DEFAULT_OPS


@dataclasses.dataclass(frozen=True)
class Input:
    """A named input map ``(N, length, channels)``."""

    name: str
    channels: int


@dataclasses.dataclass(frozen=True)
class Node:
    """``out = op(*inputs)``: a layer or container applied to one value, or a multi-input op."""

    out: str
    op: object
    inputs: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Graph:
    """A sequence CNN: inputs, nodes in evaluation order, and the names of its outputs."""

    inputs: tuple[Input, ...]
    nodes: tuple[Node, ...]
    outputs: tuple[str, ...]

    def __post_init__(self):
        known = {i.name for i in self.inputs}
        for node in self.nodes:
            missing = [n for n in node.inputs if n not in known]
            if missing:
                raise ValueError(f"node {node.out!r} reads {missing}, not computed before it")
            if node.out in known:
                raise ValueError(f"value {node.out!r} is defined twice")
            known.add(node.out)
        missing = [n for n in self.outputs if n not in known]
        if missing:
            raise ValueError(f"outputs {missing} are not values of the graph")


MULTI_INPUT = (L.Concat, L.Add, L.LogSumExp)
PARAM_LAYERS = (L.Conv, L.BatchNorm, L.Linear)


# ---------------------------------------------------------------------------------------------
# Parameter holders
# ---------------------------------------------------------------------------------------------


class ConvParams(nnx.Module):
    """Kernel ``(width, Cin, out)`` and bias ``(out,)`` of a :class:`layers.Conv`."""

    def __init__(self, spec: L.Conv, cin: int, *, rngs: nnx.Rngs):
        fan_in = cin * spec.width
        shape = (spec.width, cin, spec.out)
        self.kernel = nnx.Param(jax.random.normal(rngs.params(), shape) * (1.0 / fan_in) ** 0.5)
        self.bias = nnx.Param(jnp.zeros((spec.out,))) if spec.bias else None
        self.spec = spec

    def bias_value(self):
        return None if self.bias is None else self.bias[...]

    def __call__(self, x, padding=None):
        """'same' or 'valid' as the spec says; ``padding`` (lax form) overrides it (fast ISM)."""
        if padding is None:
            padding = ((self.spec.half, self.spec.half),) if self.spec.padding == "same" else "VALID"
        return L.conv1d(x, self.kernel[...], self.bias_value(), padding, self.spec.dilation)


class BatchNormParams(nnx.Module):
    """Eval-mode BatchNorm: scale/bias are trained parameters, mean/var running statistics."""

    def __init__(self, channels: int):
        self.scale = nnx.Param(jnp.ones((channels,)))
        self.bias = nnx.Param(jnp.zeros((channels,)))
        self.mean = nnx.BatchStat(jnp.zeros((channels,)))
        self.var = nnx.BatchStat(jnp.ones((channels,)))

    def __call__(self, x):
        return L.batchnorm(x, self.mean[...], self.var[...], self.scale[...], self.bias[...])


class LinearParams(nnx.Module):
    """Kernel ``(F, out)`` and bias ``(out,)`` of a :class:`layers.Linear`."""

    def __init__(self, spec: L.Linear, cin: int, *, rngs: nnx.Rngs):
        self.kernel = nnx.Param(jax.random.normal(rngs.params(), (cin, spec.out)) * (1.0 / cin) ** 0.5)
        self.bias = nnx.Param(jnp.zeros((spec.out,))) if spec.bias else None

    def bias_value(self):
        return None if self.bias is None else self.bias[...]

    def __call__(self, x):
        return L.linear(x, self.kernel[...], self.bias_value())


class Block(nnx.Module):
    """The parameters of one named :class:`layers.Seq` or :class:`layers.DenseBlock`.

    Callable on its own, ``block(x, ops=...)``; a Seq's ``parts`` are methods too.
    """

    def __init__(self, spec):
        self.spec = spec

    def __call__(self, x, ops=DEFAULT_OPS, taps=None):
        return _run_contents(self, self.spec, x, ops, taps)

    def __getattr__(self, name):
        # Only reached when ordinary lookup fails: the Seq's named parts.
        spec = self.__dict__.get("spec")
        for part, start, stop in getattr(spec, "parts", ()):
            if part == name:
                body = spec.body[start:stop]
                return lambda x, ops=DEFAULT_OPS, taps=None: _run_body(self, body, x, ops, taps)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")


class GraphModule(nnx.Module):
    """The NNX module of a :class:`Graph`: the top level of the parameter tree.

    ``module(inputs: dict name -> (N, L, C)) -> dict output name -> array``; see :func:`run`.
    """

    def __init__(self, graph: Graph, length: int, *, rngs: nnx.Rngs, config=None):
        self.graph = graph
        self.config = config  # the architecture's config, when built from one (static)
        shapes = {i.name: (length, i.channels) for i in graph.inputs}
        for node in graph.nodes:
            shapes[node.out] = _build_op(self, node.op, [shapes[n] for n in node.inputs], rngs)

    def __call__(self, inputs: dict, ops=DEFAULT_OPS, *, want=None, taps=None):
        return run(self, inputs, ops=ops, want=want, taps=taps)


def _attach(block, path: str, module):
    """Puts ``module`` at the dotted ``path`` under ``block`` (numeric parts make an nnx.List)."""
    parts = path.split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        nxt = parts[i + 1] if not last else None
        if isinstance(block, nnx.List):
            index = int(part)
            if index != len(block):
                raise ValueError(f"layer {path!r}: list entries must be named in order 0, 1, ...")
            block.append(module if last else (nnx.List([]) if nxt.isdigit() else Block(None)))
            block = block[index]
            continue
        if last:
            if part in vars(block):
                raise ValueError(f"layer name {path!r} is used twice")
            setattr(block, part, module)
            return
        if part not in vars(block):
            setattr(block, part, nnx.List([]) if nxt.isdigit() else Block(None))
        block = getattr(block, part)


def lookup(block, path: str):
    """The sub-module at the dotted ``path`` under ``block``."""
    for part in path.split("."):
        block = block[int(part)] if isinstance(block, nnx.List) else getattr(block, part)
    return block


# ---------------------------------------------------------------------------------------------
# Building: walk the description with shapes (W, C) for maps, (F,) for vectors
# ---------------------------------------------------------------------------------------------


def _build_op(block, op, in_shapes, rngs):
    if isinstance(op, MULTI_INPUT):
        return _multi_shape(op, in_shapes)
    if len(in_shapes) != 1:
        raise ValueError(f"{type(op).__name__} takes one input, got {len(in_shapes)}")
    return _build_layer(block, op, in_shapes[0], rngs)


def _multi_shape(op, shapes):
    if isinstance(op, L.Concat):
        if len({s[:-1] for s in shapes}) != 1:
            raise ValueError(f"Concat of mismatched shapes {shapes}")
        return (*shapes[0][:-1], sum(s[-1] for s in shapes))
    if len(set(shapes)) != 1:
        raise ValueError(f"{type(op).__name__} of mismatched shapes {shapes}")
    return shapes[0]


def _build_layer(block, op, shape, rngs):
    if isinstance(op, L.Conv):
        if block is not None:
            _attach(block, op.name, ConvParams(op, shape[-1], rngs=rngs))
        width = shape[0] if op.padding == "same" else shape[0] - op.dilation * (op.width - 1)
        return (width, op.out)
    if isinstance(op, L.BatchNorm):
        if block is not None:
            _attach(block, op.name, BatchNormParams(shape[-1]))
        return shape
    if isinstance(op, L.Linear):
        if len(shape) != 1:
            raise ValueError(f"Linear {op.name!r} needs (N, F) input; Flatten or MeanPositions first")
        if block is not None:
            _attach(block, op.name, LinearParams(op, shape[0], rngs=rngs))
        return (op.out,)
    if isinstance(op, L.MaxPool):
        return (shape[0] // op.width, shape[1])
    if isinstance(op, L.Crop):
        return (shape[0] - 2 * op.trim, shape[1])
    if isinstance(op, L.MeanPositions):
        return (shape[1],)
    if isinstance(op, L.SumAll):
        return (1,)
    if isinstance(op, L.Flatten):
        return (shape[0] * shape[1],)
    if isinstance(op, L.Act | L.Dropout | L.Tap):
        return shape
    if isinstance(op, L.Seq):
        inner = block
        if op.name is not None and block is not None:
            inner = Block(op)
            _attach(block, op.name, inner)
        for layer in op.body:
            shape = _build_layer(inner, layer, shape, rngs)
        return shape
    if isinstance(op, L.Residual):
        out = shape
        for layer in op.body:
            out = _build_layer(block, layer, out, rngs)
        if out != shape:
            raise ValueError(f"Residual body changes the shape {shape} -> {out}")
        return shape
    if isinstance(op, L.DenseBlock):
        inner = None
        if block is not None:
            inner = Block(op)
            inner.layers = nnx.List([])
            _attach(block, op.name, inner)
        for layer in op.layers:
            sub = None
            if inner is not None:
                sub = Block(layer)
                inner.layers.append(sub)
            grown = shape
            for item in layer.body:
                grown = _build_layer(sub, item, grown, rngs)
            if grown[0] != shape[0]:
                raise ValueError(f"DenseBlock {op.name!r}: a layer changes the positions")
            shape = (shape[0], shape[1] + grown[1])
        return shape
    raise TypeError(f"unknown layer {op!r}")


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------


def _run_layer(block, op, x, ops, taps):
    if isinstance(op, L.Conv):
        return lookup(block, op.name)(x)
    if isinstance(op, L.BatchNorm | L.Linear):
        return lookup(block, op.name)(x)
    if isinstance(op, L.Act):
        return L.activation(x, op, ops)
    if isinstance(op, L.MaxPool):
        return ops.maxpool(x, op.width)
    if isinstance(op, L.Crop):
        return L.crop(x, op.trim)
    if isinstance(op, L.MeanPositions):
        return jnp.mean(x, axis=1)
    if isinstance(op, L.SumAll):
        return jnp.sum(x, axis=(1, 2))[:, None]
    if isinstance(op, L.Flatten):
        return x.reshape(x.shape[0], -1)
    if isinstance(op, L.Dropout):
        return x
    if isinstance(op, L.Tap):
        if taps is not None:
            taps[op.name] = x
        return x
    if isinstance(op, L.Seq):
        inner = block if op.name is None else getattr(block, op.name)
        return _run_body(inner, op.body, x, ops, taps)
    if isinstance(op, L.Residual):
        return x + _run_body(block, op.body, x, ops, taps)
    if isinstance(op, L.DenseBlock):
        return _run_contents(getattr(block, op.name), op, x, ops, taps)
    raise TypeError(f"unknown layer {op!r}")


def _run_body(block, body, x, ops, taps):
    for op in body:
        x = _run_layer(block, op, x, ops, taps)
    return x


def _run_contents(block, spec, x, ops, taps):
    """What a named Seq or DenseBlock computes, given its own parameter block."""
    if isinstance(spec, L.DenseBlock):
        return _run_dense_block(block, spec, x, ops, taps)
    return _run_body(block, spec.body, x, ops, taps)


def _growth(layer) -> int | None:
    """Channels a dense-block layer adds: its last convolution's ``out`` (None if it has none)."""
    convs = [op for op in layer.body if isinstance(op, L.Conv)]
    return convs[-1].out if convs else None


def _run_dense_block(block, spec, x, ops, taps):
    """``x <- concat([x, layer(x)])`` per layer, written into one preallocated buffer.

    Concatenating per layer re-materialises the growing map each time (C, C + g, C + 2g, ...
    channels written and read again); here the block's final ``(N, W, C + sum g)`` buffer is
    allocated once and each layer's ``g`` new channels are written into their slot with
    ``dynamic_update_slice`` (in place), each layer reading the prefix it needs. The values are
    the concatenation's, bit for bit.
    """
    growths = [_growth(layer) for layer in spec.layers]
    if any(g is None for g in growths):  # a layer without a convolution: plain concatenation
        for layer, sub in zip(spec.layers, block.layers, strict=True):
            x = jnp.concatenate([x, _run_body(sub, layer.body, x, ops, taps)], axis=-1)
        return x
    width = x.shape[-1]
    buf = jnp.zeros((*x.shape[:-1], width + sum(growths)), x.dtype)
    buf = jax.lax.dynamic_update_slice_in_dim(buf, x, 0, axis=x.ndim - 1)
    for layer, sub, growth in zip(spec.layers, block.layers, growths, strict=True):
        y = _run_body(sub, layer.body, buf[..., :width], ops, taps)
        if y.shape[-1] != growth or y.shape[:-1] != x.shape[:-1]:
            raise ValueError(f"DenseBlock {spec.name!r}: a layer gave {y.shape}, expected {growth} channels")
        if y.dtype != buf.dtype:  # as concatenate would: promote, never round
            buf = buf.astype(jnp.promote_types(buf.dtype, y.dtype))
        buf = jax.lax.dynamic_update_slice_in_dim(buf, y.astype(buf.dtype), width, axis=x.ndim - 1)
        width += growth
    return buf


def _run_multi(op, xs, ops):
    if isinstance(op, L.Concat):
        return jnp.concatenate([x.astype(xs[0].dtype) for x in xs], axis=-1)
    if isinstance(op, L.Add):
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out
    if isinstance(op, L.LogSumExp):
        total = ops.exp(xs[0])
        for x in xs[1:]:
            total = total + ops.exp(x)
        return ops.log(total)
    raise TypeError(f"unknown operation {op!r}")


def needed_nodes(graph: Graph, want, given=()) -> list[Node]:
    """The nodes that computing the values ``want`` runs, in graph order (``given`` values are known)."""
    need = set(want)
    keep = []
    for node in reversed(graph.nodes):
        if node.out in need and node.out not in given:
            keep.append(node)
            need.update(node.inputs)
    return keep[::-1]


def run(module: GraphModule, inputs: dict, *, ops=DEFAULT_OPS, want=None, taps=None) -> dict:
    """Evaluates ``module`` on ``inputs`` (name -> ``(N, L, C)``).

    want: the values to return (default: the graph's outputs); only the nodes they need run, so
        inputs they do not read may be missing or None.
    taps: a dict to fill with every :class:`layers.Tap` reached (the named layer maps).

    Returns a dict name -> array for ``want``.
    """
    graph = module.graph
    want = tuple(graph.outputs if want is None else want)
    values = dict(inputs)
    given = {k for k, v in inputs.items() if v is not None}
    for node in needed_nodes(graph, want, given):
        xs = [values[n] for n in node.inputs]
        if any(x is None for x in xs):
            missing = [n for n, x in zip(node.inputs, xs, strict=True) if x is None]
            raise ValueError(f"{node.out!r} needs the input(s) {missing}")
        if isinstance(node.op, MULTI_INPUT):
            values[node.out] = _run_multi(node.op, xs, ops)
        else:
            values[node.out] = _run_layer(module, node.op, xs[0], ops, taps)
    return {name: values[name] for name in want}


def build(graph: Graph, length: int, *, key: jax.Array | int = 0, config=None) -> GraphModule:
    """A :class:`GraphModule` for inputs of ``length`` positions, randomly initialised from ``key``."""
    rngs = nnx.Rngs(params=key) if not isinstance(key, int) else nnx.Rngs(key)
    return GraphModule(graph, length, rngs=rngs, config=config)


def abstract_module(graph: Graph, length: int, config=None) -> GraphModule:
    """The module's structure with ShapeDtypeStructs for arrays (no allocation)."""
    return nnx.eval_shape(lambda: GraphModule(graph, length, rngs=nnx.Rngs(0), config=config))


# ---------------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------------


class LayerShape(NamedTuple):
    """A map's positions and channels, and how its positions sit on the input.

    Position ``p`` of the map sees input positions ``[stride * p + lo, stride * p + hi]``
    (inclusive, before clipping to the sequence), i.e. its receptive field. Vectors (after a
    Flatten, a mean over positions, a Linear) have ``positions == 1, stride == 0`` and see the
    whole input (``lo = 0, hi = length - 1``).
    """

    positions: int
    channels: int
    stride: int
    lo: int
    hi: int


class _Geo(NamedTuple):
    shape: LayerShape
    deps: frozenset  # the graph inputs this value depends on


def _vector(channels, length):
    return LayerShape(1, channels, 0, 0, length - 1)


def _geo_layer(op, g: LayerShape, length, taps):
    """(output geometry) of ``op`` applied to a map/vector with geometry ``g``; fills ``taps``."""
    w, c, s, lo, hi = g
    if isinstance(op, L.Conv):
        if s == 0:
            raise ValueError(f"Conv {op.name!r} applied to a vector")
        if op.padding == "same":
            return LayerShape(w, op.out, s, lo - op.half * s, hi + op.half * s)
        return LayerShape(
            w - op.dilation * (op.width - 1), op.out, s, lo, hi + op.dilation * (op.width - 1) * s
        )
    if isinstance(op, L.Linear):
        return _vector(op.out, length)
    if isinstance(op, L.MaxPool):
        return LayerShape(w // op.width, c, s * op.width, lo, hi + s * (op.width - 1))
    if isinstance(op, L.Crop):
        return LayerShape(w - 2 * op.trim, c, s, lo + op.trim * s, hi + op.trim * s)
    if isinstance(op, L.MeanPositions):
        return _vector(c, length)
    if isinstance(op, L.SumAll):
        return _vector(1, length)
    if isinstance(op, L.Flatten):
        return _vector(w * c, length)
    if isinstance(op, L.BatchNorm | L.Act | L.Dropout):
        return g
    if isinstance(op, L.Tap):
        taps[op.name] = g
        return g
    if isinstance(op, L.Seq):
        for layer in op.body:
            g = _geo_layer(layer, g, length, taps)
        return g
    if isinstance(op, L.Residual):
        out = g
        for layer in op.body:
            out = _geo_layer(layer, out, length, taps)
        return _union([g, out])
    if isinstance(op, L.DenseBlock):
        for layer in op.layers:
            new = _geo_layer(layer, g, length, taps)
            g = _union([g, new])._replace(channels=g.channels + new.channels)
        return g
    raise TypeError(f"unknown layer {op!r}")


def _union(gs):
    """Geometry of values combined position-wise (residual add, concat): the widest field."""
    if any(g.stride == 0 for g in gs):
        return _vector(sum(g.channels for g in gs), 1 + max(g.hi for g in gs))
    if len({(g.positions, g.stride) for g in gs}) != 1:
        raise ValueError(f"combining maps of different resolutions {gs}")
    return gs[0]._replace(lo=min(g.lo for g in gs), hi=max(g.hi for g in gs))


def geometry(graph: Graph, length: int, source: str) -> tuple[dict, dict]:
    """(values, taps): the :class:`LayerShape` of every value and tapped layer, relative to ``source``.

    Only values that depend on input ``source`` are included; fields are measured on ``source``.
    """
    values, taps = {}, {}
    shapes = value_shapes(graph, length)
    for i in graph.inputs:
        if i.name == source:
            values[i.name] = LayerShape(length, i.channels, 1, 0, 0)
    for node in graph.nodes:
        ins = [values.get(n) for n in node.inputs]
        if all(g is None for g in ins):
            continue
        node_taps = {}
        if isinstance(node.op, MULTI_INPUT):
            present = [g for g in ins if g is not None]
            if isinstance(node.op, L.Concat):
                out = _union(present)
                widths = [shapes[n][-1] for n in node.inputs]
                out = out._replace(channels=sum(widths)) if out.stride else _vector(sum(widths), length)
            else:
                out = _union(present)
                out = out._replace(channels=present[0].channels)
        else:
            out = _geo_layer(node.op, ins[0], length, node_taps)
        if out.stride == 0:
            out = _vector(out.channels, length)
        values[node.out] = out
        taps.update(node_taps)
    return values, taps


def value_shapes(graph: Graph, length: int) -> dict:
    """The shape of every value without its batch axis: ``(W, C)`` for maps, ``(F,)`` for vectors."""
    shapes = {i.name: (length, i.channels) for i in graph.inputs}
    for node in graph.nodes:
        ins = [shapes[n] for n in node.inputs]
        shapes[node.out] = _build_op(None, node.op, ins, None)
    return shapes


def depends_on(graph: Graph, source: str) -> set:
    """Names of the values computed from input ``source``."""
    deps = {source}
    for node in graph.nodes:
        if any(n in deps for n in node.inputs):
            deps.add(node.out)
    return deps


def context_values(graph: Graph, source: str = "seq", want=None) -> tuple[str, ...]:
    """Values that do not depend on ``source`` but are read by values that do (for ``want``).

    Mutation maps compute them once per window (a DNase branch, a control track's total) and
    run only the ``source``-dependent rest per mutant.
    """
    deps = depends_on(graph, source)
    out = []
    for node in needed_nodes(graph, graph.outputs if want is None else want):
        if node.out in deps:
            out.extend(n for n in node.inputs if n not in deps and n not in out)
    return tuple(out)


def first_conv(graph: Graph, source: str = "seq") -> tuple[str, L.Conv]:
    """(parameter path, spec) of the first convolution on input ``source`` (DeepHistone's
    ``seq_map.conv1``, BPNet's ``iconv``): the first layer with parameters, if it is a Conv."""

    def walk(op, prefix):
        if isinstance(op, PARAM_LAYERS):
            return op, prefix
        if isinstance(op, L.Seq | L.Residual):
            inner = prefix + (f"{op.name}." if getattr(op, "name", None) else "")
            for child in op.body:
                found = walk(child, inner)
                if found is not None:
                    return found
        if isinstance(op, L.DenseBlock):
            return walk(op.layers[0], f"{prefix}{op.name}.layers.0.")
        return None

    for node in graph.nodes:
        if source in node.inputs:
            found = walk(node.op, "")
            if found is not None and isinstance(found[0], L.Conv):
                return found[1] + found[0].name, found[0]
    raise ValueError(f"the graph's first layer on its input {source!r} is not a convolution")


def tap_names(graph: Graph, length: int, source: str = "seq") -> tuple[str, ...]:
    """Tapped layers that depend on ``source``, in graph order."""
    return tuple(geometry(graph, length, source)[1])
