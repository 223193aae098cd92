"""PyTorch reference definitions of the architectures ``python -m convert`` reads.

Module names and indices match the published code, so their ``state_dict`` keys are exactly those
of the published checkpoints (``convert.convert.expected_shapes`` lists DeepHistone's, and
``convert.classic.expected_shapes`` those of Basset, DeepSEA and Beluga):

- DeepHistone (Yin et al. 2019): :class:`NetDeepHistone`, :class:`NetDeepHistoneDNA`.
- Basset (Kelley et al. 2016) in the kipoi model zoo's layout: :func:`basset`, input ``(N, 4, L, 1)``.
- DeepSEA (Zhou & Troyanskaya 2015) in kipoi's layout: :func:`deepsea`, input ``(N, 4, 1, L)``,
  one-hot rows in A, G, C, T order.
- Beluga (Zhou et al. 2018, ExPecto's ``chromatin.py``): :class:`Beluga`, input ``(N, 4, 1, L)``,
  rows in A, G, C, T order.

Widths, hidden sizes, output counts and lengths are parameters so tests can use narrow models; the
defaults are the published ones. Use these to check your own checkpoint against its conversion:

    >>> net = NetDeepHistone(); net.load_state_dict(torch.load(path, weights_only=True)); net.eval()
    >>> net(seq_nchw, dnase_nchw)   # seq (N, 4, L), dnase (N, 1, L)
"""

import torch
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, grow_rate: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.BatchNorm2d(in_planes),
            nn.ReLU(),
            nn.Conv2d(in_planes, grow_rate, (1, 9), 1, (0, 4)),
        )

    def forward(self, x):
        return torch.cat([x, self.block(x)], 1)


class DenseBlock(nn.Module):
    def __init__(self, nb_layers: int, in_planes: int, grow_rate: int):
        super().__init__()
        self.layer = nn.Sequential(
            *[BasicBlock(in_planes + i * grow_rate, grow_rate) for i in range(nb_layers)]
        )

    def forward(self, x):
        return self.layer(x)


class ModuleDense(nn.Module):
    """One branch: ``(N, rows, L)`` -> ``(N, w3 * (L // 16))`` flattened channel-major (c * W + w)."""

    def __init__(self, seq_or_dnase: str = "seq", widths=(128, 256, 512)):
        super().__init__()
        w1, w2, w3 = widths
        self.rows = 4 if seq_or_dnase == "seq" else 1
        self.conv1 = nn.Sequential(nn.Conv2d(1, w1, (self.rows, 9), 1, (0, 4)))
        self.block1 = DenseBlock(3, w1, w1)
        self.trans1 = nn.Sequential(
            nn.BatchNorm2d(4 * w1), nn.ReLU(), nn.Conv2d(4 * w1, w2, (1, 1), 1), nn.MaxPool2d((1, 4))
        )
        self.block2 = DenseBlock(3, w2, w2)
        self.trans2 = nn.Sequential(
            nn.BatchNorm2d(4 * w2), nn.ReLU(), nn.Conv2d(4 * w2, w3, (1, 1), 1), nn.MaxPool2d((1, 4))
        )

    def get_conv1(self, x):
        """conv1's output ``(N, w1, 1, L)``, as the seed's get_PWM.py reads it."""
        return self.conv1(x.reshape(x.shape[0], 1, self.rows, x.shape[-1]))

    def forward(self, x):
        out = self.get_conv1(x)
        out = self.trans1(self.block1(out))
        out = self.trans2(self.block2(out))
        return out.reshape(out.shape[0], -1)


def _head(features: int, hidden: int, outputs: int, activation: str):
    layers = [
        nn.Dropout(0.5),
        nn.Linear(features, hidden),
        nn.BatchNorm1d(hidden),
        nn.ReLU(),
        nn.Linear(hidden, outputs),
    ]
    if activation == "sigmoid":
        layers.append(nn.Sigmoid())
    elif activation == "softmax":
        layers.append(nn.Softmax(dim=-1))
    return nn.Sequential(*layers)


class NetDeepHistone(nn.Module):
    """The published two-branch model: ``forward(seq (N, 4, L), dns (N, 1, L)) -> (N, 7)``."""

    def __init__(self, seq_len=1000, widths=(128, 256, 512), hidden=925, outputs=7, activation="sigmoid"):
        super().__init__()
        self.seq_map = ModuleDense("seq", widths)
        self.dns_map = ModuleDense("dnase", widths)
        features = 2 * widths[2] * (seq_len // 16)
        self.linear_map = _head(features, hidden, outputs, activation)

    def forward(self, seq, dns):
        return self.linear_map(torch.cat((self.seq_map(seq), self.dns_map(dns)), 1))


class NetDeepHistoneDNA(nn.Module):
    """The seed scripts' DNA-only variant (``model_dna.NetDeepHistone``): ``forward(seq (N, 4, L))``."""

    def __init__(self, seq_len=500, widths=(128, 256, 512), hidden=925, outputs=2, activation="sigmoid"):
        super().__init__()
        self.seq_map = ModuleDense("seq", widths)
        self.linear_map = _head(widths[2] * (seq_len // 16), hidden, outputs, activation)

    def forward(self, seq):
        return self.linear_map(self.seq_map(seq))


class _Flatten(nn.Module):
    """PyTorch's flatten of ``(N, C, H, W)``: index ``c * H * W + h * W + w`` (channel-major)."""

    def forward(self, x):
        return x.reshape(x.shape[0], -1)


def _linear(features: int, out: int) -> nn.Sequential:
    # kipoi wraps each Linear as Sequential(Lambda(reshape), Linear): the key is "<i>.1.weight"
    return nn.Sequential(nn.Identity(), nn.Linear(features, out))


def conv_lengths(seq_len: int, widths, pools) -> list[int]:
    """Positions after each valid convolution (and its pool, 1 = none), PyTorch's floor pooling."""
    lengths, n = [], seq_len
    for width, pool in zip(widths, pools, strict=True):
        n = (n - width + 1) // pool
        lengths.append(n)
    return lengths


def basset(
    seq_len: int = 600, widths=(300, 200, 200), hidden: int = 1000, outputs: int = 164
) -> nn.Sequential:
    """kipoi ``Basset``: ``(N, 4, L, 1) -> (N, outputs)`` sigmoid; convolutions run along dim 2.

    Indices: convs 0/4/8 (kernels (19, 1), (11, 1), (7, 1), no padding), BatchNorm2d 1/5/9, ReLU,
    max-pools (3, 1)/(4, 1)/(4, 1); flatten 12; Linear 13.1 / 17.1 / 21.1 with BatchNorm1d 14 / 18.
    """
    w1, w2, w3 = widths
    pooled = conv_lengths(seq_len, (19, 11, 7), (3, 4, 4))[-1]
    return nn.Sequential(
        nn.Conv2d(4, w1, (19, 1)),
        nn.BatchNorm2d(w1),
        nn.ReLU(),
        nn.MaxPool2d((3, 1), (3, 1)),
        nn.Conv2d(w1, w2, (11, 1)),
        nn.BatchNorm2d(w2),
        nn.ReLU(),
        nn.MaxPool2d((4, 1), (4, 1)),
        nn.Conv2d(w2, w3, (7, 1)),
        nn.BatchNorm2d(w3),
        nn.ReLU(),
        nn.MaxPool2d((4, 1), (4, 1)),
        _Flatten(),
        _linear(w3 * pooled, hidden),
        nn.BatchNorm1d(hidden),
        nn.ReLU(),
        nn.Dropout(0.3),
        _linear(hidden, hidden),
        nn.BatchNorm1d(hidden),
        nn.ReLU(),
        nn.Dropout(0.3),
        _linear(hidden, outputs),
        nn.Sigmoid(),
    )


def deepsea(seq_len: int = 1000, widths=(320, 480, 960), hidden: int = 925, outputs: int = 919):
    """kipoi ``DeepSEA``: ``(N, 4, 1, L)`` (rows A, G, C, T) ``-> (N, outputs)`` sigmoid.

    Indices: convs 0/4/8 (kernels (1, 8), no padding), each followed by ``Threshold(0, 1e-6)``;
    max-pools (1, 4) at 2 and 6; dropouts; flatten 11; Linear 12.1, Threshold 13, Linear 14.1, Sigmoid 15.
    """
    w1, w2, w3 = widths
    pooled = conv_lengths(seq_len, (8, 8, 8), (4, 4, 1))[-1]
    return nn.Sequential(
        nn.Conv2d(4, w1, (1, 8)),
        nn.Threshold(0, 1e-6),
        nn.MaxPool2d((1, 4), (1, 4)),
        nn.Dropout(0.2),
        nn.Conv2d(w1, w2, (1, 8)),
        nn.Threshold(0, 1e-6),
        nn.MaxPool2d((1, 4), (1, 4)),
        nn.Dropout(0.2),
        nn.Conv2d(w2, w3, (1, 8)),
        nn.Threshold(0, 1e-6),
        nn.Dropout(0.5),
        _Flatten(),
        _linear(w3 * pooled, hidden),
        nn.Threshold(0, 1e-6),
        _linear(hidden, outputs),
        nn.Sigmoid(),
    )


class Beluga(nn.Module):
    """ExPecto's ``Beluga``: ``(N, 4, 1, L)`` (rows A, G, C, T) ``-> (N, outputs)`` sigmoid.

    ``model.0``: convs at 0, 2, 6, 8, 12, 14 (kernels (1, 8), no padding, ReLU after each), dropout
    + max-pool (1, 4) at 4-5 and 10-11. ``model.1``: dropout 0, flatten 1, Linear 2.1, ReLU 3,
    Linear 4.1. ``model.2``: Sigmoid.
    """

    def __init__(self, seq_len=2000, widths=(320, 320, 480, 480, 640, 640), hidden=2003, outputs=2002):
        super().__init__()
        w = (4, *widths)
        pooled = conv_lengths(seq_len, (8,) * 6, (1, 4, 1, 4, 1, 1))[-1]

        def conv(i):
            return [nn.Conv2d(w[i], w[i + 1], (1, 8)), nn.ReLU()]

        pool = [nn.Dropout(0.2), nn.MaxPool2d((1, 4), (1, 4))]
        self.model = nn.Sequential(
            nn.Sequential(*conv(0), *conv(1), *pool, *conv(2), *conv(3), *pool, *conv(4), *conv(5)),
            nn.Sequential(
                nn.Dropout(0.5),
                _Flatten(),
                _linear(widths[-1] * pooled, hidden),
                nn.ReLU(),
                _linear(hidden, outputs),
            ),
            nn.Sigmoid(),
        )

    def forward(self, x):
        return self.model(x)


def randomize_batchnorm(net: nn.Module, *, seed: int = 0) -> nn.Module:
    """Gives every BatchNorm non-trivial running statistics and affine weights (for tests)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.randn(c, generator=g) * 0.2)
                m.num_batches_tracked.fill_(100)
    return net
