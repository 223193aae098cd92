"""The classic sequence CNNs (Basset, DeepSEA, Beluga) as model graphs: what the three share.

Each is a stack of 'valid' (unpadded) convolutions with optional BatchNorm, an activation and
max-pools, a position-major Flatten and a dense head ending in a sigmoid; one small file per
architecture (``basset.py``, ``deepsea.py``, ``beluga.py``) names its layers. Inputs are
channels-last ACGT one-hot ``(N, L, 4)``: a checkpoint trained on another order (DeepSEA and Beluga
use A, G, C, T) has the permutation folded into ``conv1`` by the converter (``source_alphabet``
records it). Parameter names: ``conv{i}``, ``bn{i}``, ``dense{i}``, ``out``.
"""

import dataclasses
import json
from typing import ClassVar

from jaxmotif.graph import (
    Act,
    BatchNorm,
    Conv,
    Dropout,
    Flatten,
    Graph,
    Input,
    Linear,
    MaxPool,
    Node,
    Seq,
    Tap,
)
from jaxmotif.nonlinear import DEFAULT_OPS


@dataclasses.dataclass(frozen=True)
class ClassicConfig:
    """Sizes of a classic CNN; the layer pattern (kernel widths, pools, norms, activation) is per class.

    seq_len: input length L. widths: channels of each convolution. hidden: width of each hidden
    Linear. output_names: one per output (``num_outputs`` of them). source_alphabet: the one-hot
    order of the original checkpoint (already folded into ``conv1``: the model reads ACGT).
    """

    seq_len: int
    widths: tuple[int, ...]
    hidden: tuple[int, ...]
    output_names: tuple[str, ...]
    source_alphabet: str = "ACGT"
    final_activation: str = "sigmoid"

    # the layer pattern, set by each architecture's subclass (class attributes, not config fields)
    arch: ClassVar[str] = "classic"
    kernel_widths: ClassVar[tuple[int, ...]] = ()
    pools: ClassVar[tuple[int, ...]] = ()
    conv_norms: ClassVar[bool] = False  # BatchNorm after each convolution (Basset)
    dense_norms: ClassVar[bool] = False  # BatchNorm after each hidden Linear (Basset)
    activation: ClassVar[str] = "relu"

    alphabet = "ACGT"
    has_dnase = False
    side_input = None
    side_shape = None
    side_name = "none"

    def __post_init__(self):
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        object.__setattr__(self, "output_names", tuple(self.output_names))
        if len(self.widths) != len(self.kernel_widths):
            n = len(self.kernel_widths)
            raise ValueError(f"{self.arch}: {len(self.widths)} widths for {n} convolutions")
        if self.final_activation not in ("sigmoid", "none"):
            raise ValueError(f"final_activation={self.final_activation!r} must be sigmoid or none")
        if self.pooled_len < 1:
            raise ValueError(f"{self.arch}: seq_len={self.seq_len} leaves no position before the flatten")

    @property
    def num_outputs(self) -> int:
        return len(self.output_names)

    @property
    def conv_lengths(self) -> list[int]:
        """Positions after each convolution and its pool (valid convolutions, floor pooling)."""
        lengths, n = [], self.seq_len
        for width, pool in zip(self.kernel_widths, self.pools, strict=True):
            n = (n - width + 1) // pool
            lengths.append(n)
        return lengths

    @property
    def pooled_len(self) -> int:
        return self.conv_lengths[-1]

    def graph(self) -> Graph:
        body, norm = [], 0
        for i, (out, width, pool) in enumerate(zip(self.widths, self.kernel_widths, self.pools, strict=True)):
            body += [Conv(f"conv{i + 1}", out, width, padding="valid"), Tap(f"conv{i + 1}")]
            if self.conv_norms:
                norm += 1
                body.append(BatchNorm(f"bn{norm}"))
            body.append(Act(self.activation))
            if pool > 1:
                body.append(MaxPool(pool))
        head = []
        for i, width in enumerate(self.hidden):
            head += [Linear(f"dense{i + 1}", width), Tap(f"dense{i + 1}")]
            if self.dense_norms:
                norm += 1
                head.append(BatchNorm(f"bn{norm}"))
            head += [Act(self.activation), Dropout()]
        head.append(Linear("out", self.num_outputs))
        nodes = (
            Node("features", Seq(None, tuple(body)), ("seq",)),
            Node("flat", Flatten(), ("features",)),
            Node("logits", Seq(None, tuple(head)), ("flat",)),
        )
        return Graph((Input("seq", 4),), nodes, ("logits",))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_dict(cls, d: dict):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}")
        return cls(**d)


def targets(outputs: dict, config: ClassicConfig, ops=DEFAULT_OPS, logits: bool = False):
    """The attribution-target view ``(N, T)``: the logits, after the sigmoid unless ``logits``."""
    out = outputs["logits"]
    return out if logits or config.final_activation == "none" else ops.sigmoid(out)
