"""DeepSEA (Zhou & Troyanskaya 2015) as in the kipoi model zoo, channels-last.

seq (N, 1000, 4) ACGT (the published weights read A, G, C, T: folded into conv1 by the converter)
conv1 320 x 8 valid -> Threshold(0, 1e-6) -> max-pool 4
conv2 480 x 8 valid -> Threshold -> max-pool 4
conv3 960 x 8 valid -> Threshold                                (N, 53, 960)
flatten -> dense1 925 -> Threshold -> out 919 -> sigmoid
"""

import dataclasses

from jaxmotif.models.classic import ClassicConfig, targets  # noqa: F401 (targets: the model's output view)


@dataclasses.dataclass(frozen=True)
class DeepSEAConfig(ClassicConfig):
    seq_len: int = 1000
    widths: tuple[int, ...] = (320, 480, 960)
    hidden: tuple[int, ...] = (925,)
    output_names: tuple[str, ...] = tuple(f"output{i}" for i in range(919))
    source_alphabet: str = "AGCT"

    arch = "deepsea"
    kernel_widths = (8, 8, 8)
    pools = (4, 4, 1)
    activation = "threshold"
