"""DeepHistone (Yin et al. 2019, BMC Genomics) in Flax NNX, eval mode.

Layout is channels-last throughout: one-hot ``(N, L, 4)``, DNase ``(N, L)``, hidden maps
``(N, W, C)``. PyTorch's ``(N, C, 1, W)`` maps exist only inside ``convert/``; the converter
folds the layout change into the kernels and into the first dense layer.

Architecture of one branch (``ModuleDense`` in the published code), widths ``(w1, w2, w3)``:

    conv1   Conv(in_rows -> w1, k=9, pad 4)                       (no BN / ReLU after it)
    block1  3 x [BN -> ReLU -> Conv(c -> w1, k=9, pad 4)], concat  w1 -> 4 w1
    trans1  BN -> ReLU -> Conv(4 w1 -> w2, k=1) -> MaxPool(4)      L -> L // 4
    block2  3 x [BN -> ReLU -> Conv(c -> w2, k=9, pad 4)], concat  w2 -> 4 w2
    trans2  BN -> ReLU -> Conv(4 w2 -> w3, k=1) -> MaxPool(4)      L // 4 -> L // 16

Head: flatten each branch, concatenate [sequence, DNase], Linear -> BN -> ReLU -> Linear ->
final activation (sigmoid for the published model). Dropout is the identity in eval mode.
"""

import dataclasses
import json
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

DEEPHISTONE_OUTPUTS = ("H3K4me1", "H3K4me3", "H3K27me3", "H3K36me3", "H3K9me3", "H3K9ac", "H3K27ac")
VARIANTS = ("full", "dna")
FINAL_ACTIVATIONS = ("sigmoid", "none", "softmax")
KERNEL_WIDTH = 9
DENSE_LAYERS = 3
POOL = 4
BN_EPS = 1e-5
# Names of a branch's maps (projection targets), after the module names; see Branch.layer_outputs.
BRANCH_LAYERS = (
    ("conv1",)
    + tuple(f"block1.{i}" for i in range(DENSE_LAYERS))
    + ("trans1",)
    + tuple(f"block2.{i}" for i in range(DENSE_LAYERS))
    + ("trans2",)
)


@dataclasses.dataclass(frozen=True)
class DeepHistoneConfig:
    """Everything needed to rebuild a DeepHistone model; stored as ``config.json`` beside the weights.

    variant: ``"full"`` (sequence + DNase branches, the published model) or ``"dna"`` (sequence
        branch only, the seed scripts' ``model_dna``).
    seq_len: window length L; the head needs exactly ``L // 16`` pooled positions.
    widths: channels of conv1 / block1 growth, trans1 / block2 growth, trans2 (published 128/256/512).
    """

    variant: str = "full"
    seq_len: int = 1000
    num_outputs: int = 7
    widths: tuple[int, int, int] = (128, 256, 512)
    hidden: int = 925
    final_activation: str = "sigmoid"
    alphabet: str = "ACGT"
    output_names: tuple[str, ...] = DEEPHISTONE_OUTPUTS
    model_type: str = "deephistone"

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"variant={self.variant!r} must be one of {VARIANTS}")
        if self.final_activation not in FINAL_ACTIVATIONS:
            raise ValueError(f"final_activation={self.final_activation!r} must be one of {FINAL_ACTIVATIONS}")
        if self.seq_len < POOL * POOL:
            raise ValueError(f"seq_len={self.seq_len} must be at least {POOL * POOL}")
        if sorted(self.alphabet.upper()) != sorted("ACGT") or len(self.alphabet) != 4:
            raise ValueError(f"alphabet={self.alphabet!r} must be a permutation of ACGT")
        if len(self.output_names) != self.num_outputs:
            raise ValueError(f"{len(self.output_names)} output_names for num_outputs={self.num_outputs}")
        object.__setattr__(self, "alphabet", self.alphabet.upper())
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "output_names", tuple(self.output_names))

    @property
    def pooled_len(self) -> int:
        return self.seq_len // POOL // POOL

    @property
    def has_dnase(self) -> bool:
        return self.variant == "full"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_dict(cls, d: dict) -> "DeepHistoneConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}")
        d = dict(d)
        for k in ("widths", "output_names"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


def default_output_names(num_outputs: int) -> tuple[str, ...]:
    if num_outputs == len(DEEPHISTONE_OUTPUTS):
        return DEEPHISTONE_OUTPUTS
    return tuple(f"output{i}" for i in range(num_outputs))


# ---------------------------------------------------------------------------------------------
# Functional pieces. The NNX modules below call these; fast ISM calls them on slices with a halo.
# ---------------------------------------------------------------------------------------------


def along_channels(v, ndim: int):
    """A per-channel vector (C,) shaped to broadcast over (..., C) without rank promotion."""
    return v.reshape((1,) * (ndim - 1) + (-1,))


def conv1d(x, kernel, bias, padding):
    """x (N, W, Cin), kernel (K, Cin, Cout), bias (Cout,) -> (N, W', Cout); padding as lax expects."""
    y = jax.lax.conv_general_dilated(
        x,
        kernel.astype(x.dtype),
        window_strides=(1,),
        padding=padding,
        dimension_numbers=("NWC", "WIO", "NWC"),
    )
    return y + along_channels(bias.astype(x.dtype), y.ndim)


def batchnorm(x, mean, var, scale, bias):
    """Eval-mode BatchNorm over the last axis with running statistics (eps 1e-5, as PyTorch)."""
    dtype = jnp.promote_types(var.dtype, jnp.float32)  # float64 when the model runs in it (tests)
    inv = jax.lax.rsqrt(var.astype(dtype) + BN_EPS) * scale.astype(dtype)
    shift = bias.astype(dtype) - mean.astype(dtype) * inv
    return x * along_channels(inv.astype(x.dtype), x.ndim) + along_channels(shift.astype(x.dtype), x.ndim)


def maxpool(x):
    """Max-pool by 4 along positions, floor mode (PyTorch's default: a ragged tail is dropped).

    ``reduce_window`` rather than ``jnp.max`` over a reshape: its gradient routes the whole signal
    to one switch (the first maximum of a window, as PyTorch's MaxPool and Zeiler & Fergus's
    unpooling), where ``jnp.max`` would split it among tied maxima (runs of N give exact ties).
    """
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, POOL, 1), (1, POOL, 1), "VALID")


def final_activation(logits, kind: str):
    if kind == "sigmoid":
        return jax.nn.sigmoid(logits)
    if kind == "softmax":
        return jax.nn.softmax(logits, axis=-1)
    return logits


# ---------------------------------------------------------------------------------------------
# NNX modules. Parameter names follow PyTorch's module names so the converter's map stays legible.
# ---------------------------------------------------------------------------------------------


class Conv(nnx.Module):
    """1-D convolution over positions, 'same' padding; kernel (K, Cin, Cout)."""

    def __init__(self, cin: int, cout: int, width: int, *, rngs: nnx.Rngs):
        fan_in = cin * width
        self.kernel = nnx.Param(jax.random.normal(rngs.params(), (width, cin, cout)) * (1.0 / fan_in) ** 0.5)
        self.bias = nnx.Param(jnp.zeros((cout,)))
        self.width = width

    def __call__(self, x):
        half = self.width // 2
        return conv1d(x, self.kernel[...], self.bias[...], ((half, half),))


class BatchNorm(nnx.Module):
    """Eval-mode BatchNorm: scale/bias are trained parameters, mean/var running statistics."""

    def __init__(self, channels: int):
        self.scale = nnx.Param(jnp.ones((channels,)))
        self.bias = nnx.Param(jnp.zeros((channels,)))
        self.mean = nnx.BatchStat(jnp.zeros((channels,)))
        self.var = nnx.BatchStat(jnp.ones((channels,)))

    def __call__(self, x):
        return batchnorm(x, self.mean[...], self.var[...], self.scale[...], self.bias[...])


class DenseLayer(nnx.Module):
    """BN -> ReLU -> Conv(k=9); the caller concatenates input and output along channels."""

    def __init__(self, cin: int, growth: int, *, rngs: nnx.Rngs):
        self.norm = BatchNorm(cin)
        self.conv = Conv(cin, growth, KERNEL_WIDTH, rngs=rngs)

    def __call__(self, x, *, relu=jax.nn.relu):
        return self.conv(relu(self.norm(x)))


class DenseBlock(nnx.Module):
    def __init__(self, cin: int, growth: int, *, rngs: nnx.Rngs):
        self.layers = nnx.List([DenseLayer(cin + i * growth, growth, rngs=rngs) for i in range(DENSE_LAYERS)])

    def outputs(self, x, *, relu=jax.nn.relu):
        """(concatenated map, [each layer's new channels]): the layers' own maps are projection targets."""
        new = []
        for layer in self.layers:
            new.append(layer(x, relu=relu))
            x = jnp.concatenate([x, new[-1]], axis=-1)
        return x, new

    def __call__(self, x, *, relu=jax.nn.relu):
        return self.outputs(x, relu=relu)[0]


class Transition(nnx.Module):
    """BN -> ReLU -> Conv(k=1) -> MaxPool(4)."""

    def __init__(self, cin: int, cout: int, *, rngs: nnx.Rngs):
        self.norm = BatchNorm(cin)
        self.conv = Conv(cin, cout, 1, rngs=rngs)

    def __call__(self, x, *, relu=jax.nn.relu, pool=maxpool):
        return pool(self.conv(relu(self.norm(x))))


class Branch(nnx.Module):
    """One ``ModuleDense``: (N, L, in_rows) -> (N, L // 16, w3)."""

    def __init__(self, in_rows: int, widths: Sequence[int], *, rngs: nnx.Rngs):
        w1, w2, w3 = widths
        self.conv1 = Conv(in_rows, w1, KERNEL_WIDTH, rngs=rngs)
        self.block1 = DenseBlock(w1, w1, rngs=rngs)
        self.trans1 = Transition(w1 * (DENSE_LAYERS + 1), w2, rngs=rngs)
        self.block2 = DenseBlock(w2, w2, rngs=rngs)
        self.trans2 = Transition(w2 * (DENSE_LAYERS + 1), w3, rngs=rngs)

    def layer_outputs(self, x, *, relu=jax.nn.relu, pool=maxpool) -> dict:
        """Every named map of the branch (``BRANCH_LAYERS``), each (N, W, C) channels-last.

        ``block1.i`` is the i-th dense layer's own (growth) channels, before concatenation.
        """
        out = {"conv1": self.conv1(x)}
        x, new = self.block1.outputs(out["conv1"], relu=relu)
        out.update({f"block1.{i}": y for i, y in enumerate(new)})
        out["trans1"] = self.trans1(x, relu=relu, pool=pool)
        x, new = self.block2.outputs(out["trans1"], relu=relu)
        out.update({f"block2.{i}": y for i, y in enumerate(new)})
        out["trans2"] = self.trans2(x, relu=relu, pool=pool)
        return out

    def __call__(self, x, *, relu=jax.nn.relu, pool=maxpool):
        """``relu`` replaces every ReLU of the branch (projections pass custom-VJP rules here),
        ``pool`` both max-pools (DeepLIFT's rule)."""
        return self.layer_outputs(x, relu=relu, pool=pool)["trans2"]


class Linear(nnx.Module):
    def __init__(self, cin: int, cout: int, *, rngs: nnx.Rngs):
        self.kernel = nnx.Param(jax.random.normal(rngs.params(), (cin, cout)) * (1.0 / cin) ** 0.5)
        self.bias = nnx.Param(jnp.zeros((cout,)))

    def __call__(self, x):
        return x @ self.kernel[...].astype(x.dtype) + along_channels(self.bias[...].astype(x.dtype), x.ndim)


class Head(nnx.Module):
    """(N, features) -> (N, T) logits: Linear -> BN -> ReLU -> Linear (dropout is off in eval)."""

    def __init__(self, features: int, hidden: int, num_outputs: int, *, rngs: nnx.Rngs):
        self.dense = Linear(features, hidden, rngs=rngs)
        self.norm = BatchNorm(hidden)
        self.out = Linear(hidden, num_outputs, rngs=rngs)

    def hidden_pre(self, flat):
        """The first dense layer alone, (N, features) -> (N, hidden); fast ISM updates it low-rank."""
        return self.dense(flat)

    def from_hidden(self, h, *, relu=jax.nn.relu):
        return self.out(relu(self.norm(h)))

    def __call__(self, flat, *, relu=jax.nn.relu):
        return self.from_hidden(self.hidden_pre(flat), relu=relu)


class DeepHistone(nnx.Module):
    """The Flax DeepHistone. ``__call__(seq (N, L, 4), dnase (N, L) | None) -> (N, T)``."""

    def __init__(self, config: DeepHistoneConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.seq_map = Branch(4, config.widths, rngs=rngs)
        branches = 2 if config.has_dnase else 1
        self.dns_map = Branch(1, config.widths, rngs=rngs) if config.has_dnase else None
        features = branches * config.pooled_len * config.widths[2]
        self.head = Head(features, config.hidden, config.num_outputs, rngs=rngs)

    def features(self, seq, dnase=None, *, relu=jax.nn.relu, pool=maxpool):
        """Flattened branch outputs (N, branches * W * w3), sequence first, position-major."""
        n = seq.shape[0]
        parts = [self.seq_map(seq, relu=relu, pool=pool).reshape(n, -1)]
        if self.dns_map is not None:
            parts.append(self.dns_map(dnase[..., None], relu=relu, pool=pool).reshape(n, -1))
        return jnp.concatenate(parts, axis=-1)

    def logits(self, seq, dnase=None, *, relu=jax.nn.relu, pool=maxpool):
        """``relu`` replaces every ReLU (deconvnet / guided backprop pass custom-VJP rules here)."""
        return self.head(self.features(seq, dnase, relu=relu, pool=pool), relu=relu)

    # The forward pass split where the sequence enters: mutation maps evaluate thousands of
    # sequence variants of one window whose DNase branch is the same, so it is computed once.
    def seq_features(self, seq):
        """Flattened sequence-branch output, (N, L, 4) -> (N, W * w3)."""
        return self.seq_map(seq).reshape(seq.shape[0], -1)

    def dnase_features(self, dnase):
        """Flattened DNase-branch output, (N, L) -> (N, W * w3); None for DNA-only models."""
        if self.dns_map is None:
            return None
        return self.dns_map(dnase[..., None]).reshape(dnase.shape[0], -1)

    def head_from_features(self, seq_feat, dns_feat=None):
        """Logits (N, T) from :meth:`seq_features` and :meth:`dnase_features` outputs."""
        parts = [seq_feat] if dns_feat is None else [seq_feat, dns_feat.astype(seq_feat.dtype)]
        return self.head(jnp.concatenate(parts, axis=-1))

    def __call__(self, seq, dnase=None, *, relu=jax.nn.relu):
        return final_activation(self.logits(seq, dnase, relu=relu), self.config.final_activation)


def init_deephistone(config: DeepHistoneConfig, *, key: jax.Array) -> DeepHistone:
    """A randomly initialised model (for tests, the demo's training, benchmarks)."""
    return DeepHistone(config, rngs=nnx.Rngs(params=key))
