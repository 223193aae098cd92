"""The layer vocabulary of a sequence CNN, and the pure functions behind each layer.

A model is described by plain frozen dataclasses (no parameters, no JAX): the builder in
:mod:`jaxmotif.graph.build` turns a description into a Flax NNX module and runs it. Maps are
channels-last ``(N, W, C)`` throughout; dense-layer inputs are ``(N, F)``.

Layers with parameters carry a ``name``: its dotted path under the enclosing named
:class:`Seq` / :class:`DenseBlock` is the parameter path (``"rconvs.3"`` -> ``rconvs[3]``), so
checkpoints and converters see stable, PyTorch-like names.

Every nonlinearity runs through an :class:`jaxmotif.nonlinear.Ops` (``Act``, ``MaxPool``);
everything else here is linear and never swapped.
"""

import dataclasses

import jax
import jax.numpy as jnp

BN_EPS = 1e-5
ACTIVATIONS = ("relu", "threshold", "sigmoid", "softplus", "exp", "log")
PADDINGS = ("same", "valid")


# ---------------------------------------------------------------------------------------------
# Leaf layers
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Conv:
    """1-D convolution over positions, kernel ``(width, Cin, out)``.

    padding ``same``: PyTorch's ``padding=dilation * (width // 2)`` (odd widths), W -> W;
    ``valid``: no padding, W -> W - dilation * (width - 1).
    """

    name: str
    out: int
    width: int
    dilation: int = 1
    padding: str = "same"
    bias: bool = True

    def __post_init__(self):
        if self.padding not in PADDINGS:
            raise ValueError(f"Conv {self.name!r}: padding={self.padding!r} must be one of {PADDINGS}")
        if self.padding == "same" and self.width % 2 == 0:
            raise ValueError(f"Conv {self.name!r}: 'same' padding needs an odd width, got {self.width}")

    @property
    def half(self) -> int:
        """Positions read on each side of the centre."""
        return self.dilation * (self.width // 2)


@dataclasses.dataclass(frozen=True)
class BatchNorm:
    """Eval-mode BatchNorm over channels with running statistics (eps 1e-5, as PyTorch)."""

    name: str


@dataclasses.dataclass(frozen=True)
class Linear:
    """Dense layer ``(N, F) -> (N, out)``, kernel ``(F, out)``."""

    name: str
    out: int
    bias: bool = True


@dataclasses.dataclass(frozen=True)
class Act:
    """``ops.<fn>(x + offset)``, fn one of ``ACTIVATIONS`` (``offset`` gives bpnet-lite's log(x + 1))."""

    fn: str
    offset: float = 0.0

    def __post_init__(self):
        if self.fn not in ACTIVATIONS:
            raise ValueError(f"Act: fn={self.fn!r} must be one of {ACTIVATIONS}")


@dataclasses.dataclass(frozen=True)
class MaxPool:
    """``ops.maxpool(x, width)``: stride ``width``, floor mode (a ragged tail is dropped)."""

    width: int


@dataclasses.dataclass(frozen=True)
class Crop:
    """Drops ``trim`` positions at each end: W -> W - 2 trim."""

    trim: int


@dataclasses.dataclass(frozen=True)
class MeanPositions:
    """Mean over positions: ``(N, W, C) -> (N, C)``."""


@dataclasses.dataclass(frozen=True)
class SumAll:
    """Sum over positions and channels: ``(N, W, C) -> (N, 1)`` (bpnet-lite's control total)."""


@dataclasses.dataclass(frozen=True)
class Flatten:
    """``(N, W, C) -> (N, W * C)``, position-major.

    PyTorch flattens channel-major ``(C, W)``; the converter permutes the rows of the next
    Linear's kernel instead of the activations.
    """


@dataclasses.dataclass(frozen=True)
class Dropout:
    """The identity (eval mode); kept so a description reads like the trained network."""


@dataclasses.dataclass(frozen=True)
class Tap:
    """Names the current map as a layer (projection targets, ``layer_outputs``); the identity."""

    name: str


# ---------------------------------------------------------------------------------------------
# Containers
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Seq:
    """Layers applied in order.

    name: a named Seq is one level of the parameter tree (and one NNX sub-module, callable on its
        own); ``None`` inlines the layers into the enclosing level.
    parts: named slices ``(name, start, stop)`` of ``body`` callable as methods of the built
        sub-module (``head.hidden_pre(x)``), where a caller needs part of a Seq alone.
    """

    name: str | None
    body: tuple
    parts: tuple[tuple[str, int, int | None], ...] = ()


@dataclasses.dataclass(frozen=True)
class Residual:
    """``x + body(x)``; ``body`` must keep the positions and channels of ``x``."""

    body: tuple


@dataclasses.dataclass(frozen=True)
class DenseBlock:
    """DenseNet block: for each layer, ``x <- concat([x, layer(x)], channels)``.

    Parameters live under ``name.layers.i``; each layer is a :class:`Seq` (its own name unused).
    """

    name: str
    layers: tuple


# ---------------------------------------------------------------------------------------------
# Multi-input operations (graph nodes only)
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Concat:
    """Concatenates the inputs along their last axis (channels, or features)."""


@dataclasses.dataclass(frozen=True)
class Add:
    """Sums the inputs (same shapes)."""


@dataclasses.dataclass(frozen=True)
class LogSumExp:
    """``ops.log(Σ ops.exp(x_i))``, written with the swappable exp and log (ChromBPNet's counts)."""


# ---------------------------------------------------------------------------------------------
# Pure functions
# ---------------------------------------------------------------------------------------------


def along_channels(v, ndim: int):
    """A per-channel vector (C,) shaped to broadcast over (..., C) without rank promotion."""
    return v.reshape((1,) * (ndim - 1) + (-1,))


def conv1d(x, kernel, bias, padding, dilation: int = 1):
    """x (N, W, Cin), kernel (K, Cin, Cout), bias (Cout,) or None -> (N, W', Cout).

    padding: as ``lax.conv_general_dilated`` expects (``"VALID"`` or ``((lo, hi),)``).
    """
    y = jax.lax.conv_general_dilated(
        x,
        kernel.astype(x.dtype),
        window_strides=(1,),
        padding=padding,
        rhs_dilation=(dilation,),
        dimension_numbers=("NWC", "WIO", "NWC"),
    )
    if bias is None:
        return y
    return y + along_channels(bias.astype(x.dtype), y.ndim)


def batchnorm(x, mean, var, scale, bias):
    """Eval-mode BatchNorm over the last axis with running statistics (eps 1e-5, as PyTorch)."""
    dtype = jnp.promote_types(var.dtype, jnp.float32)  # float64 when the model runs in it (tests)
    inv = jax.lax.rsqrt(var.astype(dtype) + BN_EPS) * scale.astype(dtype)
    shift = bias.astype(dtype) - mean.astype(dtype) * inv
    return x * along_channels(inv.astype(x.dtype), x.ndim) + along_channels(shift.astype(x.dtype), x.ndim)


def linear(x, kernel, bias):
    """x (N, F), kernel (F, out), bias (out,) or None -> (N, out)."""
    y = x @ kernel.astype(x.dtype)
    if bias is None:
        return y
    return y + along_channels(bias.astype(x.dtype), y.ndim)


def activation(x, act: Act, ops):
    if act.offset:
        x = x + jnp.asarray(act.offset, x.dtype)
    return getattr(ops, act.fn)(x)


def crop(x, trim: int):
    """x (N, W, C) -> (N, W - 2 trim, C)."""
    if trim == 0:
        return x
    return x[:, trim : x.shape[1] - trim]
