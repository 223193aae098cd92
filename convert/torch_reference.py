"""PyTorch reference definitions of DeepHistone (Yin et al. 2019), as published.

Module names match the published code, so their ``state_dict`` keys are exactly those of a
checkpoint trained with it (see shared/reference/deephistone_state_dict.tsv). Widths, hidden size,
output count and length are parameters so tests can use narrow models; the defaults are the
published ones. Use these to check your own checkpoint against its jaxmotif conversion:

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
