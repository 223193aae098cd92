"""Beluga (Zhou et al. 2018, ExPecto's ``chromatin.py``), channels-last.

seq (N, 2000, 4) ACGT (the published weights read A, G, C, T: folded into conv1 by the converter)
conv1 320, conv2 320 (x 8 valid, ReLU each) -> max-pool 4
conv3 480, conv4 480                        -> max-pool 4
conv5 640, conv6 640                                            (N, 106, 640)
flatten -> dense1 2003 -> ReLU -> out 2002 -> sigmoid
"""

import dataclasses

from jaxmotif.models.classic import ClassicConfig, targets  # noqa: F401 (targets: the model's output view)


@dataclasses.dataclass(frozen=True)
class BelugaConfig(ClassicConfig):
    seq_len: int = 2000
    widths: tuple[int, ...] = (320, 320, 480, 480, 640, 640)
    hidden: tuple[int, ...] = (2003,)
    output_names: tuple[str, ...] = tuple(f"output{i}" for i in range(2002))
    source_alphabet: str = "AGCT"

    arch = "beluga"
    kernel_widths = (8,) * 6
    pools = (1, 4, 1, 4, 1, 1)
