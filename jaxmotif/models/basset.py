"""Basset (Kelley, Snoek & Rinn 2016) as in the kipoi model zoo, channels-last.

seq (N, 600, 4) ACGT
conv1 300 x 19 valid -> BatchNorm -> ReLU -> max-pool 3
conv2 200 x 11 valid -> BatchNorm -> ReLU -> max-pool 4
conv3 200 x 7  valid -> BatchNorm -> ReLU -> max-pool 4      (N, 10, 200)
flatten -> dense1 1000 -> BatchNorm -> ReLU -> dense2 1000 -> BatchNorm -> ReLU -> out 164 -> sigmoid
"""

import dataclasses

from jaxmotif.models.classic import ClassicConfig, targets  # noqa: F401 (targets: the model's output view)


@dataclasses.dataclass(frozen=True)
class BassetConfig(ClassicConfig):
    seq_len: int = 600
    widths: tuple[int, ...] = (300, 200, 200)
    hidden: tuple[int, ...] = (1000, 1000)
    output_names: tuple[str, ...] = tuple(f"output{i}" for i in range(164))

    arch = "basset"
    kernel_widths = (19, 11, 7)
    pools = (3, 4, 4)
    conv_norms = True
    dense_norms = True
