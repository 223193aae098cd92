"""DeepHistone (Yin et al. 2019, BMC Genomics) as a model graph, eval mode.

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

import jax

from jaxmotif.graph import (
    Act,
    BatchNorm,
    Concat,
    Conv,
    DenseBlock,
    Dropout,
    Flatten,
    Graph,
    GraphModule,
    Input,
    Linear,
    MaxPool,
    Node,
    Seq,
    Tap,
    build,
)
from jaxmotif.graph.layers import BN_EPS, along_channels, batchnorm, conv1d  # noqa: F401 (re-exported)
from jaxmotif.nonlinear import DEFAULT_OPS
from jaxmotif.nonlinear import maxpool as _maxpool

DEEPHISTONE_OUTPUTS = ("H3K4me1", "H3K4me3", "H3K27me3", "H3K36me3", "H3K9me3", "H3K9ac", "H3K27ac")
VARIANTS = ("full", "dna")
FINAL_ACTIVATIONS = ("sigmoid", "none", "softmax")
KERNEL_WIDTH = 9
DENSE_LAYERS = 3
POOL = 4
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

    @property
    def arch(self) -> str:
        return "deephistone"

    @property
    def side_input(self) -> str | None:
        """The graph input fed by the ``dnase`` argument: (N, L) DNase, one channel."""
        return "dnase" if self.has_dnase else None

    @property
    def side_shape(self) -> tuple[int, ...] | None:
        """Shape of one window's ``dnase`` argument (without N), None for DNA-only models."""
        return (self.seq_len,) if self.has_dnase else None

    side_name = "DNase"

    def graph(self) -> Graph:
        return deephistone_graph(self)

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
# The graph
# ---------------------------------------------------------------------------------------------


def _dense_block(name: str, growth: int, tap: str) -> DenseBlock:
    """3 x [BN -> ReLU -> Conv(k=9)], each layer's output concatenated to its input."""
    layers = tuple(
        Seq(
            None,
            (BatchNorm("norm"), Act("relu"), Conv("conv", growth, KERNEL_WIDTH), Tap(f"{tap}{name}.{i}")),
        )
        for i in range(DENSE_LAYERS)
    )
    return DenseBlock(name, layers)


def _transition(name: str, out: int, tap: str) -> Seq:
    return Seq(name, (BatchNorm("norm"), Act("relu"), Conv("conv", out, 1), MaxPool(POOL), Tap(tap + name)))


def branch(name: str, widths, tap: str = "") -> Seq:
    """One ``ModuleDense``: (N, L, rows) -> (N, L // 16, w3); tapped layers named ``tap + layer``."""
    w1, w2, w3 = widths
    return Seq(
        name,
        (
            Conv("conv1", w1, KERNEL_WIDTH),
            Tap(tap + "conv1"),
            _dense_block("block1", w1, tap),
            _transition("trans1", w2, tap),
            _dense_block("block2", w2, tap),
            _transition("trans2", w3, tap),
        ),
    )


def deephistone_graph(config: "DeepHistoneConfig") -> Graph:
    """Inputs ``seq`` (N, L, 4) and, for the full model, ``dnase`` (N, L, 1); output ``logits`` (N, T)."""
    head = Seq(
        "head",
        (
            Linear("dense", config.hidden),
            Tap("head.dense"),
            BatchNorm("norm"),
            Act("relu"),
            Dropout(),
            Linear("out", config.num_outputs),
        ),
        parts=(("hidden_pre", 0, 1), ("from_hidden", 2, None)),  # fast ISM updates the first Linear
    )
    inputs = [Input("seq", 4)]
    nodes = [
        Node("seq_features", branch("seq_map", config.widths), ("seq",)),
        Node("seq_flat", Flatten(), ("seq_features",)),
    ]
    flat = ["seq_flat"]
    if config.has_dnase:
        inputs.append(Input("dnase", 1))
        nodes += [
            Node("dnase_features", branch("dns_map", config.widths, "dnase."), ("dnase",)),
            Node("dnase_flat", Flatten(), ("dnase_features",)),
        ]
        flat.append("dnase_flat")
    nodes += [Node("features", Concat(), tuple(flat)), Node("logits", head, ("features",))]
    return Graph(tuple(inputs), tuple(nodes), ("logits",))


# ---------------------------------------------------------------------------------------------
# Output view and functional pieces kept for the callers that use them (fast ISM, demo training)
# ---------------------------------------------------------------------------------------------


def maxpool(x):
    """Max-pool by 4 along positions, floor mode (see :func:`jaxmotif.nonlinear.maxpool`)."""
    return _maxpool(x, POOL)


def final_activation(logits, kind: str, ops=DEFAULT_OPS):
    if kind == "sigmoid":
        return ops.sigmoid(logits)
    if kind == "softmax":
        # Not swappable: no attribution rule here replaces a softmax output.
        return jax.nn.softmax(logits, axis=-1)
    return logits


def targets(outputs: dict, config: DeepHistoneConfig, ops=DEFAULT_OPS, logits: bool = False):
    """The attribution-target view ``(N, T)``: the logits, after the final activation unless ``logits``."""
    out = outputs["logits"]
    return out if logits else final_activation(out, config.final_activation, ops)


def DeepHistone(config: DeepHistoneConfig, *, rngs) -> GraphModule:  # noqa: N802 (was the module class)
    """The NNX module of ``config``'s graph (parameters under ``seq_map``, ``dns_map``, ``head``)."""
    return GraphModule(config.graph(), config.seq_len, rngs=rngs, config=config)


def init_deephistone(config: DeepHistoneConfig, *, key: jax.Array) -> GraphModule:
    """A randomly initialised model (for tests, the demo's training, benchmarks)."""
    return build(config.graph(), config.seq_len, key=key, config=config)
