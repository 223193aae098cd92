"""bpnet-lite's BPNet and ChromBPNet as model graphs (github.com/jmschrei/bpnet-lite, v1.x).

BPNet, channels-last (bpnet-lite's ``(N, C, L)`` exists only in ``convert/`` and tests)::

    seq (N, L, 4)
    iconv     Conv(4 -> F, k=21, same) -> ReLU
    rconvs.i  x + ReLU(Conv(F -> F, k=3, dilation 2^(i+1), same))      i = 0 .. n_layers-1
    profile   Conv([x, control] -> strands, k=75, same), cropped by `trimming` at each end
    counts    mean of x over the profile span widened by 37 (the fconv's half-width) -> Linear
              ([mean, log(1 + Σ control over that span)] -> 1 when there are control tracks)

ChromBPNet = a frozen bias BPNet + an accessibility BPNet on the same sequence: profile logits
added (the bias profile cropped to the accessibility's span), counts ``log(exp(a) + exp(b))``.

Parameter names are bpnet-lite's module names (``iconv``, ``rconvs.3``, ``fconv``, ``linear``;
``bias.*`` / ``accessibility.*`` in ChromBPNet): :mod:`convert.bpnet` maps state_dict keys.
"""

import dataclasses
import json

import jax.numpy as jnp

from jaxmotif.graph import (
    Act,
    Add,
    Concat,
    Conv,
    Crop,
    Graph,
    Input,
    Linear,
    LogSumExp,
    MeanPositions,
    Node,
    Residual,
    Seq,
    SumAll,
    Tap,
)
from jaxmotif.nonlinear import DEFAULT_OPS

ICONV_WIDTH = 21
RCONV_WIDTH = 3
FCONV_WIDTH = 75
FCONV_HALF = FCONV_WIDTH // 2  # 37: the counts head averages this much beyond the profile span
BPNET_OUTPUTS = ("profile", "counts")


def default_trimming(n_layers: int) -> int:
    """bpnet-lite's default: 47 + Σ 2^i (i = 1..n_layers); 557 for 8 layers (2114 -> 1000)."""
    return 47 + sum(2**i for i in range(1, n_layers + 1))


@dataclasses.dataclass(frozen=True)
class BPNetConfig:
    """bpnet-lite ``BPNet(n_filters, n_layers, n_outputs, n_control_tracks, ..., trimming)``.

    seq_len: input length L (2114 for the published models); profiles have ``out_len = L - 2 trimming``.
    n_outputs: profile strands. n_control_tracks: control channels, the model's second input
        ``(N, L, n_control_tracks)`` (the ``dnase`` argument of every kernel; held fixed).
    """

    seq_len: int = 2114
    n_filters: int = 64
    n_layers: int = 8
    n_outputs: int = 2
    n_control_tracks: int = 2
    trimming: int | None = None
    profile_output_bias: bool = True
    count_output_bias: bool = True
    alphabet: str = "ACGT"

    def __post_init__(self):
        if self.trimming is None:
            object.__setattr__(self, "trimming", default_trimming(self.n_layers))
        for name in ("seq_len", "n_filters", "n_outputs"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be positive")
        # n_layers = 0 is a legal bpnet-lite BPNet (iconv straight into the heads)
        if self.n_layers < 0 or self.n_control_tracks < 0 or self.trimming < 0:
            raise ValueError(
                f"n_layers={self.n_layers}, n_control_tracks={self.n_control_tracks}, "
                f"trimming={self.trimming} must be >= 0"
            )
        if self.out_len < 1:
            raise ValueError(
                f"seq_len={self.seq_len} leaves no output after trimming={self.trimming} at each end"
            )
        if sorted(self.alphabet.upper()) != sorted("ACGT") or len(self.alphabet) != 4:
            raise ValueError(f"alphabet={self.alphabet!r} must be a permutation of ACGT")
        object.__setattr__(self, "alphabet", self.alphabet.upper())

    arch = "bpnet"
    output_names = BPNET_OUTPUTS
    final_activation = "none"
    side_name = "control"

    @property
    def out_len(self) -> int:
        return self.seq_len - 2 * self.trimming

    @property
    def num_outputs(self) -> int:
        return len(BPNET_OUTPUTS)

    @property
    def has_dnase(self) -> bool:
        """Whether the second input (here: control tracks) is required."""
        return self.n_control_tracks > 0

    @property
    def side_input(self) -> str | None:
        return "control" if self.n_control_tracks else None

    @property
    def side_shape(self) -> tuple[int, ...] | None:
        return (self.seq_len, self.n_control_tracks) if self.n_control_tracks else None

    def graph(self) -> Graph:
        nodes = bpnet_nodes(self)
        inputs = [Input("seq", 4)] + (
            [Input("control", self.n_control_tracks)] if self.n_control_tracks else []
        )
        return Graph(tuple(inputs), tuple(nodes), ("profile", "counts"))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_dict(cls, d: dict) -> "BPNetConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}")
        return cls(**d)


def bpnet_nodes(c: BPNetConfig, scope: str = "") -> list[Node]:
    """The BPNet graph's nodes; ``scope`` prefixes parameter paths and value names (ChromBPNet)."""
    p = f"{scope}." if scope else ""
    f = c.n_filters
    body = (Conv(p + "iconv", f, ICONV_WIDTH), Act("relu"), Tap(p + "iconv"))
    for i in range(c.n_layers):
        rconv = Conv(f"{p}rconvs.{i}", f, RCONV_WIDTH, dilation=2 ** (i + 1))
        body += (Residual((rconv, Act("relu"))), Tap(f"{p}rconvs.{i}"))
    span = max(c.trimming - FCONV_HALF, 0)  # bpnet-lite: X[:, :, max(start - 37, 0) : end + 37]
    fconv = Conv(p + "fconv", c.n_outputs, FCONV_WIDTH, bias=c.profile_output_bias)
    nodes = [Node(p + "body", Seq(None, body), ("seq",))]
    profile_in, count_in = p + "body", p + "pooled"
    if c.n_control_tracks:
        nodes.append(Node(p + "body_control", Concat(), (p + "body", "control")))
        profile_in = p + "body_control"
    nodes += [
        Node(p + "profile", Seq(None, (fconv, Crop(c.trimming))), (profile_in,)),
        Node(p + "pooled", Seq(None, (Crop(span), MeanPositions())), (p + "body",)),
    ]
    if c.n_control_tracks:
        total = Seq(None, (Crop(span), SumAll(), Act("log", offset=1.0)))  # log(1 + Σ control)
        nodes += [
            Node(p + "control_total", total, ("control",)),
            Node(p + "count_features", Concat(), (p + "pooled", p + "control_total")),
        ]
        count_in = p + "count_features"
    nodes.append(Node(p + "counts", Linear(p + "linear", 1, bias=c.count_output_bias), (count_in,)))
    return nodes


@dataclasses.dataclass(frozen=True)
class ChromBPNetConfig:
    """bpnet-lite ``ChromBPNet(bias, accessibility)``: two BPNets without control tracks.

    ENCODE's models: bias 128 filters x 4 layers, accessibility 512 x 8, one strand, 2114 -> 1000.
    """

    bias: BPNetConfig = BPNetConfig(n_filters=128, n_layers=4, n_outputs=1, n_control_tracks=0)
    accessibility: BPNetConfig = BPNetConfig(n_filters=512, n_layers=8, n_outputs=1, n_control_tracks=0)

    def __post_init__(self):
        for name in ("bias", "accessibility"):
            sub = getattr(self, name)
            if isinstance(sub, dict):
                sub = BPNetConfig.from_dict(sub)
                object.__setattr__(self, name, sub)
            if sub.n_control_tracks:
                raise ValueError(
                    f"ChromBPNet's {name} model takes no control tracks (bpnet-lite calls it without)"
                )
        b, a = self.bias, self.accessibility
        if (b.seq_len, b.n_outputs, b.alphabet) != (a.seq_len, a.n_outputs, a.alphabet):
            raise ValueError(
                f"bias and accessibility models disagree on seq_len / n_outputs / alphabet: {b} vs {a}"
            )
        if b.out_len < a.out_len or (b.out_len - a.out_len) % 2:
            raise ValueError(
                f"bias out_len {b.out_len} must exceed accessibility out_len {a.out_len} by an even amount"
            )

    arch = "chrombpnet"
    output_names = BPNET_OUTPUTS
    final_activation = "none"
    side_name = "control"
    side_input = None
    side_shape = None
    has_dnase = False
    n_control_tracks = 0

    @property
    def seq_len(self) -> int:
        return self.accessibility.seq_len

    @property
    def alphabet(self) -> str:
        return self.accessibility.alphabet

    @property
    def n_outputs(self) -> int:
        return self.accessibility.n_outputs

    @property
    def out_len(self) -> int:
        return self.accessibility.out_len

    @property
    def n_filters(self) -> int:
        return self.accessibility.n_filters

    @property
    def n_layers(self) -> int:
        return self.accessibility.n_layers

    @property
    def trimming(self) -> int:
        return self.accessibility.trimming

    @property
    def num_outputs(self) -> int:
        return len(BPNET_OUTPUTS)

    def graph(self) -> Graph:
        crop = (self.bias.out_len - self.accessibility.out_len) // 2
        nodes = bpnet_nodes(self.accessibility, "accessibility") + bpnet_nodes(self.bias, "bias")
        nodes += [
            Node("bias.profile_cropped", Crop(crop), ("bias.profile",)),
            Node("profile", Add(), ("accessibility.profile", "bias.profile_cropped")),
            Node("counts", LogSumExp(), ("accessibility.counts", "bias.counts")),
        ]
        return Graph((Input("seq", 4),), tuple(nodes), ("profile", "counts"))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_dict(cls, d: dict) -> "ChromBPNetConfig":
        unknown = set(d) - {"bias", "accessibility"}
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}")
        return cls(**d)


def targets(outputs: dict, config, ops=DEFAULT_OPS, logits: bool = False):
    """The attribution-target view ``(N, 2)``: [profile, counts].

    profile: bpnet-lite's ``ProfileWrapper``: the logits flattened over strands and positions,
    mean-subtracted, then ``Σ ops.profile_scale(y)`` (softmax-weighted, the weight detached).
    counts: the log-count. There is no final activation, so ``logits`` changes nothing.
    """
    profile, counts = outputs["profile"], outputs["counts"]
    y = profile.reshape(profile.shape[0], -1)  # order is irrelevant: mean, softmax and sum are symmetric
    y = y - jnp.mean(y, axis=-1, keepdims=True)
    scalar = jnp.sum(ops.profile_scale(y), axis=-1, keepdims=True)
    return jnp.concatenate([scalar, counts.astype(scalar.dtype)], axis=-1)
