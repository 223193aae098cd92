"""Safe readers: bpnet-lite whole-module files, Keras ChromBPNet h5, refusals, and the CLI's output policy."""

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from convert.__main__ import main as convert_main
from convert.detect import bpnet_family_hyperparameters, bpnet_hyperparameters, detect_arch
from convert.readers import ConversionError, read_checkpoint, read_chrombpnet_h5, read_chrombpnet_pair

bpnetlite = pytest.importorskip("bpnetlite")
from bpnetlite.bpnet import BPNet  # noqa: E402
from bpnetlite.chrombpnet import ChromBPNet  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _bpnet(n_filters, n_layers, n_control_tracks=0, n_outputs=2, **kw):
    torch.manual_seed(n_filters * 10 + n_layers)
    return BPNet(
        n_filters, n_layers, n_outputs=n_outputs, n_control_tracks=n_control_tracks, verbose=False, **kw
    )


def _assert_same_tensors(tensors, module):
    sd = module.state_dict()
    assert set(tensors) == set(sd)
    for key, value in sd.items():
        np.testing.assert_array_equal(tensors[key], value.numpy(), err_msg=key)


@pytest.mark.parametrize(
    "n_filters,n_layers,controls,extra",
    [(8, 2, 0, {}), (6, 3, 2, {}), (4, 1, 1, {"profile_output_bias": False, "trimming": 30})],
)
def test_bpnet_whole_module_is_read_without_running_it(tmp_path, n_filters, n_layers, controls, extra):
    net = _bpnet(n_filters, n_layers, controls, **extra)
    path = tmp_path / "bpnet.final.torch"
    torch.save(net, path)  # what bpnet-lite's fit() writes
    ck = read_checkpoint(path)
    assert ck.source == "module" and ck.root_class == "bpnetlite.bpnet.BPNet"
    _assert_same_tensors(ck.tensors, net)
    assert ck.modules["iconv"].cls == "torch.nn.modules.conv.Conv1d"
    assert detect_arch(ck) == "bpnet"
    hyper = bpnet_family_hyperparameters(ck, "bpnet")[""]
    assert hyper["n_filters"] == n_filters and hyper["n_layers"] == n_layers
    assert hyper["n_control_tracks"] == controls and hyper["trimming"] == net.trimming
    assert hyper["name"] == net.name


def test_chrombpnet_whole_module_and_state_dict_agree(tmp_path):
    net = ChromBPNet(_bpnet(4, 2, n_outputs=1), _bpnet(8, 3, n_outputs=1))
    path = tmp_path / "chrombpnet.final.torch"
    torch.save(net, path)
    ck = read_checkpoint(path)
    _assert_same_tensors(ck.tensors, net)
    assert detect_arch(ck) == "chrombpnet"
    hyper = bpnet_family_hyperparameters(ck, "chrombpnet")
    assert (hyper["bias"]["n_layers"], hyper["accessibility"]["n_filters"]) == (2, 8)
    # the same weights as a state_dict (zip) and as safetensors read identically
    torch.save(net.state_dict(), tmp_path / "sd.pt")
    sd = read_checkpoint(tmp_path / "sd.pt")
    assert sd.source == "state_dict" and detect_arch(sd) == "chrombpnet"
    _assert_same_tensors(sd.tensors, net)


def test_reader_needs_neither_bpnetlite_nor_torch(tmp_path):
    path = tmp_path / "bpnet.torch"
    torch.save(_bpnet(4, 2), path)
    code = (
        "import sys; sys.modules['bpnetlite'] = None; sys.modules['torch'] = None\n"
        "from convert.readers import read_checkpoint\n"
        f"ck = read_checkpoint({str(path)!r})\n"
        "print(ck.root_class, ck.modules[''].hyper['n_layers'], sorted(ck.tensors)[0])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["bpnetlite.bpnet.BPNet", "2", "fconv.bias"]


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class UnknownNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(4, 2, 3)


def test_malicious_and_unknown_pickles_are_refused_and_nothing_written(tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.torch"
    torch.save({"iconv.weight": torch.zeros(2), "x": _Evil(marker)}, evil)
    unknown = tmp_path / "unknown.torch"
    torch.save(UnknownNet(), unknown)
    for path, culprit in [(evil, f"{os.system.__module__}.system"), (unknown, "UnknownNet")]:
        with pytest.raises(ConversionError, match=culprit):
            read_checkpoint(path)
        out = tmp_path / f"out_{path.stem}"
        assert convert_main([str(path), str(out)]) == 1
        err = capsys.readouterr().err
        assert culprit in err and "refusing to load" in err and err.count("\n") == 1
        assert not out.exists()
    assert not marker.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.torch", "unknown.torch"]


def test_hyperparameter_and_shape_mismatches_name_the_key(tmp_path):
    net = _bpnet(4, 2)
    net.n_layers = 3  # recorded in the pickle, contradicted by the tensors
    torch.save(net, tmp_path / "lying.torch")
    with pytest.raises(ConversionError, match=r"n_layers = 3 recorded in the file, but the tensors give 2"):
        bpnet_family_hyperparameters(read_checkpoint(tmp_path / "lying.torch"), "bpnet")
    sd = {k: v.numpy() for k, v in _bpnet(4, 2).state_dict().items()}
    sd["rconvs.1.weight"] = np.zeros((4, 4, 5), np.float32)
    with pytest.raises(
        ConversionError, match=r"rconvs\.1\.weight has shape \(4, 4, 5\), expected \(4, 4, 3\)"
    ):
        bpnet_hyperparameters(sd)
    del sd["fconv.weight"]
    with pytest.raises(ConversionError, match="missing key 'fconv.weight'"):
        bpnet_hyperparameters(sd)


# ---- ENCODE ChromBPNet Keras h5 --------------------------------------------------------------------------


def write_keras_bpnet(path, prefix, n_filters, n_layers, seed):
    """A Keras ``model.save`` h5 in ChromBPNet's layer names, random weights (kernels (K, Cin, Cout))."""
    rng = np.random.default_rng(seed)
    head = prefix + "bpnet_" if prefix else ""

    def normal(*shape):
        return rng.normal(size=shape).astype(np.float32)

    with h5py.File(path, "w") as h5:
        weights = h5.create_group("model_weights")

        def layer(name, kernel, bias):
            group = weights.create_group(name).create_group(name)
            group["kernel:0"], group["bias:0"] = kernel, bias

        layer(f"{prefix}bpnet_1st_conv", normal(21, 4, n_filters), normal(n_filters))
        for i in range(1, n_layers + 1):
            layer(f"{prefix}bpnet_{i}conv", normal(3, n_filters, n_filters), normal(n_filters))
            weights.create_group(f"{prefix}bpnet_{i}crop")  # weightless layers are present too
        layer(f"{head}prof_out_precrop", normal(75, n_filters, 1), normal(1))
        layer(f"{head}logcount_predictions", normal(n_filters, 1), normal(1))


def test_keras_chrombpnet_pair_matches_bpnetlite_loader(tmp_path):
    bias, acc = tmp_path / "bias_model_scaled.h5", tmp_path / "chrombpnet_nobias.h5"
    write_keras_bpnet(bias, "", 4, 2, seed=1)
    write_keras_bpnet(acc, "wo_bias_", 8, 3, seed=2)
    for path in (bias, acc):
        ck = read_chrombpnet_h5(path)
        reference = BPNet.from_chrombpnet(str(path))  # bpnet-lite's own reader of these files
        _assert_same_tensors(ck.tensors, reference)
        assert ck.modules[""].hyper["trimming"] == reference.trimming
    pair = read_checkpoint(acc, bias=bias)
    assert pair.tensors.keys() == read_chrombpnet_pair(bias, acc).tensors.keys()
    _assert_same_tensors(pair.tensors, ChromBPNet.from_chrombpnet(str(bias), str(acc)))
    assert detect_arch(pair) == "chrombpnet"
    hyper = bpnet_family_hyperparameters(pair, "chrombpnet")
    assert (hyper["bias"]["n_layers"], hyper["accessibility"]["n_layers"]) == (2, 3)


def test_keras_file_that_is_not_chrombpnet(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as h5:
        h5.create_group("model_weights").create_group("dense_1")
    with pytest.raises(ConversionError, match="not a ChromBPNet Keras model"):
        read_checkpoint(path)
    with pytest.raises(ConversionError, match="--bias is for Keras .h5 pairs"):
        read_checkpoint(tmp_path / "x.pt", bias=path)


# ---- CLI policy (issue 16) -------------------------------------------------------------------------------


def test_existing_output_is_refused_before_the_file_is_read(tmp_path, capsys):
    out = tmp_path / "ckpt"
    out.mkdir()
    (out / "old.txt").write_text("old")
    # the input does not even exist: the output policy answers first
    assert convert_main([str(tmp_path / "absent.pt"), str(out)]) == 1
    err = capsys.readouterr().err
    assert "exists; pass --overwrite" in err and "absent.pt" not in err
    assert (out / "old.txt").exists()


def test_overwrite_replaces_and_alphabet_is_folded(tmp_path, rng):
    """The same DeepHistone saved in AGCT and in ACGT row order converts to identical ACGT models."""
    import jaxmotif
    from convert.torch_reference import NetDeepHistoneDNA, randomize_batchnorm

    net = randomize_batchnorm(NetDeepHistoneDNA(seq_len=64, widths=(4, 4, 4), hidden=6, outputs=2)).eval()
    acgt = {k: v.clone() for k, v in net.state_dict().items()}
    agct = dict(acgt)
    # conv1 rows are the bases: row i of an AGCT checkpoint is base "AGCT"[i]
    agct["seq_map.conv1.0.weight"] = acgt["seq_map.conv1.0.weight"][
        :, :, ["ACGT".index(b) for b in "AGCT"], :
    ]
    torch.save(acgt, tmp_path / "acgt.pt")
    torch.save(agct, tmp_path / "agct.pt")
    out = tmp_path / "ckpt"
    (out / "stale").mkdir(parents=True)
    assert convert_main([str(tmp_path / "acgt.pt"), str(out), "--overwrite"]) == 0
    assert not (out / "stale").exists()
    a = jaxmotif.load_model(out)
    assert convert_main([str(tmp_path / "agct.pt"), str(tmp_path / "b"), "--alphabet", "AGCT"]) == 0
    b = jaxmotif.load_model(tmp_path / "b")
    assert a.config.alphabet == b.config.alphabet == "ACGT"
    seq = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (3, 64))]
    np.testing.assert_array_equal(a(seq), b(seq))


def test_output_names_from_a_file(tmp_path):
    import jaxmotif
    from convert.torch_reference import NetDeepHistoneDNA

    torch.save(NetDeepHistoneDNA(seq_len=64, widths=(4, 4, 4), hidden=6).state_dict(), tmp_path / "m.pt")
    (tmp_path / "names.txt").write_text("closed\nopen\n")
    assert (
        convert_main(
            [str(tmp_path / "m.pt"), str(tmp_path / "c"), "--output-names", str(tmp_path / "names.txt")]
        )
        == 0
    )
    assert jaxmotif.load_model(tmp_path / "c").output_names == ("closed", "open")


def test_torch_reference_cites_nothing_outside_the_repository():
    text = (REPO / "convert" / "torch_reference.py").read_text()
    assert "shared/" not in text and "/work/" not in text


def test_trimming_flag_must_agree_with_a_recorded_one(tmp_path):
    torch.save(_bpnet(4, 2, trimming=40), tmp_path / "m.torch")
    ck = read_checkpoint(tmp_path / "m.torch")
    assert bpnet_family_hyperparameters(ck, "bpnet")[""]["trimming"] == 40
    with pytest.raises(ConversionError, match="--trimming 30, but the file records trimming = 40"):
        bpnet_family_hyperparameters(ck, "bpnet", trimming=30)


def test_a_stride_zero_bomb_is_refused(tmp_path):
    """A 1-element storage viewed as a huge broadcast tensor is refused before anything is allocated."""
    torch.save({"w": torch.zeros(1).expand(2**20, 2**15)}, tmp_path / "bomb.pt")
    with pytest.raises(ConversionError, match="implausibly large"):
        read_checkpoint(tmp_path / "bomb.pt")
