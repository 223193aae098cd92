"""Basset, DeepSEA, Beluga: key maps vs PyTorch (kipoi / ExPecto layouts), detection, L, alphabet."""

import numpy as np
import pytest
import torch

from convert.classic import LAYOUTS, convert_classic, expected_shapes, infer_config
from convert.detect import detect_arch, strip_wrapper
from convert.readers import Checkpoint, ConversionError
from convert.torch_reference import Beluga, basset, deepsea, randomize_batchnorm

# reduced widths and lengths (valid convolutions: L must leave >= 1 position before the flatten)
SMALL = {
    "basset": (lambda: basset(seq_len=200, widths=(6, 5, 7), hidden=9, outputs=3), 200),
    "deepsea": (lambda: deepsea(seq_len=200, widths=(5, 6, 7), hidden=9, outputs=3), 200),
    "beluga": (lambda: Beluga(seq_len=340, widths=(3, 4, 5, 4, 3, 5), hidden=7, outputs=3), 340),
}
FULL = {"basset": (basset, 600), "deepsea": (deepsea, 1000), "beluga": (Beluga, 2000)}


def small_net(arch, seed=0):
    torch.manual_seed(seed)
    make, seq_len = SMALL[arch]
    return randomize_batchnorm(make(), seed=seed).eval(), seq_len


def state_dict(net):
    return {k: v.detach().numpy() for k, v in net.state_dict().items()}


def torch_input(seq_acgt: np.ndarray, arch: str, alphabet: str) -> torch.Tensor:
    """ACGT one-hot ``(N, L, 4)`` -> the checkpoint's layout: rows in ``alphabet`` order, 2-D maps."""
    rows = seq_acgt[:, :, ["ACGT".index(base) for base in alphabet]].transpose(0, 2, 1)
    x = torch.tensor(rows, dtype=torch.float64)
    return x[:, :, :, None] if arch == "basset" else x[:, :, None, :]  # (N,4,L,1) | (N,4,1,L)


def torch_logits(net, x):
    body = net.model[:-1] if isinstance(net, Beluga) else net[:-1]  # everything but the final sigmoid
    with torch.no_grad():
        return body(x).numpy()


def naive_logits(arch, config, params, seq):
    """A plain NumPy loop over the converted channels-last parameters (the independent reference)."""
    layout = LAYOUTS[arch]
    act = (lambda v: np.where(v > 0, v, 1e-6)) if arch == "deepsea" else (lambda v: np.maximum(v, 0.0))

    def norm(h, p):
        return (h - p["mean"]) / np.sqrt(p["var"] + 1e-5) * p["scale"] + p["bias"]

    h, bn = seq.astype(np.float64), 0
    for i, (pool, has_norm) in enumerate(zip(layout.pools, layout.conv_norms, strict=True)):
        kernel, bias = params[f"conv{i + 1}"]["kernel"], params[f"conv{i + 1}"]["bias"]
        width = h.shape[1] - kernel.shape[0] + 1
        h = sum(h[:, k : k + width, :] @ kernel[k] for k in range(kernel.shape[0])) + bias
        if has_norm:
            bn += 1
            h = norm(h, params[f"bn{bn}"])
        h = act(h)
        if pool > 1:
            n = h.shape[1] // pool
            h = h[:, : n * pool].reshape(h.shape[0], n, pool, -1).max(axis=2)
    h = h.reshape(h.shape[0], -1)  # position-major
    names = [f"dense{i + 1}" for i in range(len(layout.dense) - 1)] + ["out"]
    for i, name in enumerate(names):
        h = h @ params[name]["kernel"] + params[name]["bias"]
        if name != "out":
            if i < len(layout.dense_norms) and layout.dense_norms[i]:
                bn += 1
                h = norm(h, params[f"bn{bn}"])
            h = act(h)
    return h


@pytest.mark.parametrize("arch", sorted(SMALL))
def test_key_map_reproduces_pytorch(arch, rng):
    net, seq_len = small_net(arch)
    net.double()
    sd = state_dict(net)
    assert detect_arch(Checkpoint(sd, "state_dict")) == arch
    config, params = convert_classic(sd, arch, seq_len=seq_len)
    assert config.source_alphabet == LAYOUTS[arch].alphabet
    seq = np.eye(4)[rng.integers(0, 4, (3, seq_len))]
    want = torch_logits(net, torch_input(seq, arch, config.source_alphabet))
    got = naive_logits(arch, config, params, seq)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    assert np.std(want) > 1e-3  # the comparison is not between constants


@pytest.mark.parametrize("arch", sorted(SMALL))
def test_alphabet_fold_is_a_row_permutation(arch):
    """The same model saved with AGCT rows and with ACGT rows converts to the same parameters."""
    net, seq_len = small_net(arch, seed=3)
    sd = state_dict(net)  # read as an AGCT checkpoint: input row i is base "AGCT"[i]
    first = LAYOUTS[arch].convs[0] + ".weight"
    as_acgt = dict(sd, **{first: sd[first][:, ["AGCT".index(base) for base in "ACGT"]]})
    _, from_agct = convert_classic(sd, arch, seq_len=seq_len, alphabet="AGCT")
    _, from_acgt = convert_classic(as_acgt, arch, seq_len=seq_len, alphabet="ACGT")
    for name in from_agct:
        for leaf in from_agct[name]:
            np.testing.assert_array_equal(from_agct[name][leaf], from_acgt[name][leaf], err_msg=name)
    _, unfolded = convert_classic(sd, arch, seq_len=seq_len, alphabet="ACGT")
    assert not np.array_equal(unfolded["conv1"]["kernel"], from_agct["conv1"]["kernel"])


@pytest.mark.parametrize("arch", sorted(FULL))
def test_published_sizes_are_detected_without_flags(arch):
    make, seq_len = FULL[arch]
    with torch.device("meta"):  # shapes only: no memory, no forward
        net = make()
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    sd = {
        k: np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), s, [0] * len(s))
        for k, s in shapes.items()
    }
    assert detect_arch(Checkpoint(sd, "state_dict")) == arch
    config = infer_config(sd, arch)
    assert config.seq_len == seq_len and config.num_outputs == LAYOUTS[arch].defaults["outputs"]
    assert config.widths == LAYOUTS[arch].defaults["widths"]
    assert expected_shapes(config) == shapes


def test_mismatches_name_the_key():
    net, _ = small_net("deepsea")
    sd = state_dict(net)
    with pytest.raises(ConversionError, match=r"--seq-len 100 leaves .* but 12\.1\.weight expects"):
        convert_classic(sd, "deepsea", seq_len=100)
    bad = dict(sd, **{"4.weight": np.zeros((6, 4, 1, 8), np.float32)})
    with pytest.raises(
        ConversionError, match=r"wrong shapes: 4\.weight \(6, 4, 1, 8\) \(expected \(6, 5, 1, 8\)\)"
    ):
        convert_classic(bad, "deepsea", seq_len=200)
    with pytest.raises(ConversionError, match="missing key '14.1.weight'"):
        convert_classic({k: v for k, v in sd.items() if not k.startswith("14.")}, "deepsea")
    with pytest.raises(ConversionError, match="--alphabet 'ACGU'"):
        convert_classic(sd, "deepsea", alphabet="ACGU")


def test_kipoi_wrapped_state_dicts_are_unwrapped():
    """kipoi's deepsea_predict.pth wraps the network: Sequential(ReCodeAlphabet, ConcatenateRC, net, ...)."""
    net, _ = small_net("deepsea")
    sd = state_dict(net)
    inner = strip_wrapper({f"2.{k}": v for k, v in sd.items()})
    assert set(inner) == set(sd) and detect_arch(Checkpoint(inner, "state_dict")) == "deepsea"
    unknown = {"2.a.weight": np.zeros(1)}
    assert strip_wrapper(unknown) is unknown
