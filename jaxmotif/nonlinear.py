"""The nonlinear operations a model's forward pass routes through, swappable as one set.

Attribution methods that change only the backward pass of the nonlinearities (deconvnet and
guided backprop for ReLU, DeepLIFT's rescale rule for every nonlinearity, max-pool's switch rule)
replace entries of an :class:`Ops`; the forward values stay those of the defaults below. Linear
operations (convolution, eval-mode BatchNorm, Linear, concatenation, residual adds, crops, means
over positions) are never swapped: every rule passes them by their transposes.

Every model module takes ``ops: Ops = DEFAULT_OPS`` and calls ``ops.relu(x)``, ``ops.maxpool(x,
width)`` and so on, never ``jax.nn.relu`` directly.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

DEEPSEA_THRESHOLD_VALUE = 1e-6  # nn.Threshold(0, 1e-6): x where x > 0, else 1e-6


def maxpool(x, width: int):
    """Max-pool ``x (N, W, C)`` by ``width`` along positions, stride ``width``, floor mode.

    PyTorch's default: a ragged tail is dropped. ``reduce_window`` rather than ``jnp.max`` over a
    reshape: its gradient routes the whole signal to one switch (the first maximum of a window, as
    PyTorch's MaxPool and Zeiler & Fergus's unpooling), where ``jnp.max`` would split it among
    tied maxima (runs of N give exact ties).
    """
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, width, 1), (1, width, 1), "VALID")


def deepsea_threshold(x):
    """DeepSEA's ``nn.Threshold(0, 1e-6)``: ``x`` where ``x > 0``, else ``1e-6``."""
    return jnp.where(x > 0, x, jnp.asarray(DEEPSEA_THRESHOLD_VALUE, x.dtype))


def profile_scale(y):
    """bpnet-lite's ProfileWrapper weighting of mean-subtracted profile logits ``y (N, K)``.

    ``softmax(y) · y`` elementwise, summed over ``k`` by the caller. As bpnet-lite 1.x's
    ``_ProfileLogitScaling`` the softmax is *not* detached: gradients flow through it too
    (chrombpnet's TensorFlow code stops them; bpnet-lite, the reference here, does not).
    """
    return jax.nn.softmax(y, axis=-1) * y


class Ops(NamedTuple):
    """One implementation of each nonlinearity; ``Ops()`` is the ordinary forward pass."""

    relu: Callable = jax.nn.relu
    threshold: Callable = deepsea_threshold
    sigmoid: Callable = jax.nn.sigmoid
    softplus: Callable = jax.nn.softplus
    exp: Callable = jnp.exp
    log: Callable = jnp.log
    maxpool: Callable = maxpool  # maxpool(x (N, W, C), width) -> (N, W // width, C)
    profile_scale: Callable = profile_scale


DEFAULT_OPS = Ops()
