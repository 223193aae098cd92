"""Checkpoints unlike our fixtures, as real ones are: other sizes, training-script wrappers and
prefixes, fp16 weights, bpnet-lite wrappers, and damaged or foreign files.

Each converts through ``python -m convert`` (auto-detect) and must predict like PyTorch in float64
(the classic models max-pool: fp32 near-ties would route differently), or be refused with one line
naming the culprit and nothing written.
"""

import os
import zipfile

import jax
import numpy as np
import pytest
import torch

import jaxmotif
from convert.__main__ import main as convert_main
from convert.torch_reference import Beluga, basset, deepsea, randomize_batchnorm

bpnetlite = pytest.importorskip("bpnetlite")
from bpnetlite.bpnet import BasePairNet, BPNet, ControlWrapper, CountWrapper  # noqa: E402
from bpnetlite.chrombpnet import ChromBPNet  # noqa: E402
from bpnetlite.logging import Logger  # noqa: E402


def assert_rel(got, want, rtol=1e-10):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    scale = max(np.max(np.abs(want)), 1e-12)
    assert np.max(np.abs(got - want)) <= rtol * scale, np.max(np.abs(got - want)) / scale


def convert(tmp_path, obj, *args, legacy=False):
    """torch.save(obj) -> python -m convert (no --arch) -> the loaded model."""
    path = tmp_path / "model.pth"
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    out = tmp_path / "ckpt"
    assert convert_main([str(path), str(out), *args]) == 0
    return jaxmotif.load_model(out)


def outputs64(model, seq, control=None):
    with jax.enable_x64(True):
        params = jax.tree.map(lambda a: np.asarray(a, np.float64), model.params)
        return model.outputs(params, seq, control)


def refused(tmp_path, capsys, path, *args) -> str:
    out = tmp_path / "refused"
    assert convert_main([str(path), str(out), *args]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and not out.exists(), err
    return err


# ---- bpnet-lite ---------------------------------------------------------------------------------------


def _bpnet(n_filters, n_layers, controls, strands, **kw):
    torch.manual_seed(n_filters + n_layers)
    return BPNet(
        n_filters, n_layers, n_outputs=strands, n_control_tracks=controls, verbose=False, **kw
    ).eval()


def _wrapped(net):
    return ControlWrapper(net)


CASES = {
    # no dilated layers at all (bpnet-lite allows it; its empty rconvs must survive the checkpoint)
    "0 layers, module": (lambda: _bpnet(4, 0, 0, 1), lambda n: n, 120),
    # a Lightning-style {"state_dict": {"model.<key>": ...}} with fp16 weights and 2 control tracks
    "lightning fp16 state_dict": (
        lambda: _bpnet(4, 3, 2, 2).half().float(),
        lambda n: {"state_dict": {f"model.{k}": v.half() for k, v in n.state_dict().items()}, "epoch": 3},
        200,
    ),
    # trimming below the fconv half-width (the counts span is the whole input), one control track
    "trimming 20, ControlWrapper": (lambda: _bpnet(4, 2, 1, 1, trimming=20), _wrapped, 150),
    "CountWrapper": (lambda: _bpnet(4, 1, 0, 2), CountWrapper, 150),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bpnet_variants_convert_and_predict_like_bpnetlite(tmp_path, rng, case):
    make, save, length = CASES[case]
    net = make()
    model = convert(tmp_path, save(net), "--seq-len", str(length))
    controls = net.n_control_tracks
    seq = np.eye(4)[rng.integers(0, 4, (2, length))]
    control = rng.random((2, length, controls)) if controls else None
    got = outputs64(model, seq, control)
    with torch.no_grad():
        x = torch.tensor(seq.transpose(0, 2, 1))
        ctl = None if control is None else torch.tensor(control.transpose(0, 2, 1))
        profile, counts = net.double()(x, ctl)
    assert model.config.trimming == net.trimming
    assert_rel(got["profile"], profile.numpy().transpose(0, 2, 1))
    assert_rel(got["counts"], counts.numpy())


def test_chrombpnet_as_bpnetlite_saves_it_predicts_like_bpnetlite(tmp_path, rng):
    bias, acc = _bpnet(3, 2, 0, 1), _bpnet(5, 3, 0, 1)
    net = ChromBPNet(bias, acc, name="k562").eval()
    net.logger = Logger(["Epoch", "Saved?"], verbose=False)  # fit() sets one before saving
    model = convert(tmp_path, net, "--seq-len", "200")  # fit() writes torch.save(self, name.final.torch)
    assert model.config.arch == "chrombpnet" and model.config.bias.trimming == bias.trimming
    seq = np.eye(4)[rng.integers(0, 4, (2, 200))]
    got = outputs64(model, seq)
    with torch.no_grad():
        profile, counts = net.double()(torch.tensor(seq.transpose(0, 2, 1)))
    assert_rel(got["profile"], profile.numpy().transpose(0, 2, 1))
    assert_rel(got["counts"], counts.numpy())


def test_bpnet_lookalikes_are_refused_naming_why(tmp_path, capsys):
    torch.manual_seed(0)
    other = tmp_path / "basepairnet.torch"  # same keys and shapes as a BPNet, another graph
    torch.save(BasePairNet(4, 2, n_outputs=2, n_control_tracks=2, verbose=False), other)
    assert "BasePairNet" in refused(tmp_path, capsys, other)
    padded = _bpnet(4, 2, 0, 1, trimming=0)
    padded.iconv.padding = (5,)  # changed after construction (bpnet-lite's from_chrombpnet_lite does)
    torch.save(padded, tmp_path / "padded.torch")
    assert "iconv.padding = [5]" in refused(tmp_path, capsys, tmp_path / "padded.torch")
    deep = tmp_path / "deep.pth"  # 9 layers at the default trimming leave nothing of L = 2114
    torch.save(_bpnet(2, 9, 0, 1).state_dict(), deep)
    err = refused(tmp_path, capsys, deep)
    assert "trimming = 1069" in err and "--seq-len (at least 2139)" in err and "--trimming" in err
    err = refused(tmp_path, capsys, deep, "--arch", "chrombpnet")
    assert "missing key 'bias.iconv.weight'" in err


# ---- Basset / DeepSEA / Beluga ----------------------------------------------------------------------


def _classic(arch, seq_len, outputs):
    torch.manual_seed(1)
    if arch == "basset":
        net = basset(seq_len=seq_len, widths=(6, 5, 7), hidden=9, outputs=outputs)
    elif arch == "deepsea":
        net = deepsea(seq_len=seq_len, widths=(5, 6, 7), hidden=9, outputs=outputs)
    else:
        net = Beluga(seq_len=seq_len, widths=(3, 4, 5, 4, 3, 5), hidden=7, outputs=outputs)
    return randomize_batchnorm(net, seed=2).eval()


def _with_optimizer(sd):
    params = [torch.nn.Parameter(v.clone()) for v in sd.values() if v.is_floating_point()]
    opt = torch.optim.Adam(params)
    sum((p**2).sum() for p in params).backward()
    opt.step()  # real optimizer state: step counts and moments
    return {"model_state_dict": sd, "optimizer_state_dict": opt.state_dict(), "epoch": 7}


def _prefixed(prefix, sd):
    return {prefix + k: v for k, v in sd.items()}


CLASSIC_CASES = {
    # kipoi's Basset under a user's `self.model` and a {"model": ...} wrapper, 10 outputs
    "basset model. prefix": (
        "basset",
        600,
        10,
        lambda sd: {"model": _prefixed("model.", sd), "epoch": 2},
        {},
    ),
    # DataParallel around a wrapper module, PyTorch-tutorial checkpoint with Adam state
    "deepsea module.model.": (
        "deepsea",
        1000,
        4,
        lambda sd: _with_optimizer(_prefixed("module.model.", sd)),
        {},
    ),
    # a 2000-bp DeepSEA: L is read from the first Linear, the round length preferred
    "deepsea 2000 bp fp16": ("deepsea", 2000, 3, lambda sd: {k: v.half() for k, v in sd.items()}, {}),
    # Beluga's own keys start with "model.": Lightning's prefix on top, a loss buffer beside the
    # model (left out, with a warning), legacy (pre-zip) format
    "beluga lightning legacy": (
        "beluga",
        1000,
        2,
        lambda sd: {
            "state_dict": {**_prefixed("model.", sd), "criterion.pos_weight": torch.ones(2)},
            "hyper_parameters": {"lr": 1e-3},
        },
        {"legacy": True},
    ),
}


@pytest.mark.parametrize("case", sorted(CLASSIC_CASES))
def test_classic_wrappers_and_sizes_convert_and_predict_like_pytorch(tmp_path, rng, capsys, case):
    arch, seq_len, outputs, save, options = CLASSIC_CASES[case]
    net = _classic(arch, seq_len, outputs)
    if "fp16" in case:
        net = net.half().float()  # the weights the converter sees
    model = convert(tmp_path, save(net.state_dict()), **options)  # no --arch, no --seq-len
    if "lightning" in case:
        assert "1 key(s) outside the model left out: criterion.pos_weight" in capsys.readouterr().err
    assert model.config.arch == arch and model.config.seq_len == seq_len
    assert len(model.config.output_names) == outputs
    seq = np.eye(4)[rng.integers(0, 4, (2, seq_len))]
    rows = seq[:, :, ["ACGT".index(b) for b in model.config.source_alphabet]].transpose(0, 2, 1)
    x = torch.tensor(rows)[:, :, :, None] if arch == "basset" else torch.tensor(rows)[:, :, None, :]
    with torch.no_grad():
        want = net.double()(x).numpy()
    with jax.enable_x64(True):
        params = jax.tree.map(lambda a: np.asarray(a, np.float64), model.params)
        got = model.apply(params, seq)
    assert_rel(got, want)


# ---- damaged and foreign files --------------------------------------------------------------------------


class _Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_damaged_and_foreign_files_get_one_line_errors(tmp_path, capsys):
    good = tmp_path / "good.pth"
    torch.save(_classic("deepsea", 200, 2).state_dict(), good)
    cases = {
        "text.pth": (b"hello world\n", "not a torch checkpoint this converter reads"),  # torch: KeyError
        "cut.pth": (good.read_bytes()[:-40], "a damaged zip archive"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        assert message in refused(tmp_path, capsys, tmp_path / name)
    marker = tmp_path / "pwned"
    legacy = tmp_path / "legacy.pth"  # a pre-zip pickle: torch.load(weights_only=True) refuses it
    torch.save({"state_dict": {}, "x": _Evil(marker)}, legacy, _use_new_zipfile_serialization=False)
    err = refused(tmp_path, capsys, legacy)
    assert (
        f"refusing to load {os.system.__module__}.system" in err and "weights_only` set to `False" not in err
    )
    selene = torch.nn.Sequential(torch.nn.Conv1d(4, 3, 8), torch.nn.BatchNorm1d(3))  # Selene-like DeepSEA
    torch.save({"state_dict": selene.state_dict()}, tmp_path / "selene.pth")
    assert "cannot tell the architecture" in refused(tmp_path, capsys, tmp_path / "selene.pth")
    assert "missing key '13.1.weight'" in refused(tmp_path, capsys, good, "--arch", "basset")
    old_module = tmp_path / "old.torch"  # a whole module in the legacy format: only tensors are read there
    torch.save(_bpnet(2, 1, 0, 1), old_module, _use_new_zipfile_serialization=False)
    err = refused(tmp_path, capsys, old_module)
    assert "refusing to load bpnetlite.bpnet.BPNet" in err and "weights_only` set to `False" not in err
    with zipfile.ZipFile(good) as z:
        members = {n: z.read(n) for n in z.namelist()}
    storage = next(n for n in members if "/data/" in n)
    members[storage] = bytes(2**22)  # far more bytes than the tensor's items, deflated to a few KB
    with zipfile.ZipFile(tmp_path / "bomb.pth", "w") as z:
        for n, data in members.items():
            z.writestr(n, data, zipfile.ZIP_DEFLATED if n == storage else zipfile.ZIP_STORED)
    assert f"storage {storage.rsplit('/', 1)[1]!r} holds 4194304 bytes" in refused(
        tmp_path, capsys, tmp_path / "bomb.pth"
    )
    sd = torch.load(good, weights_only=True)
    torch.save({**_prefixed("model.", sd), **_prefixed("ema.", sd)}, tmp_path / "two.pth")
    assert "several models in one file, under ema., model." in refused(tmp_path, capsys, tmp_path / "two.pth")
    assert not marker.exists()
