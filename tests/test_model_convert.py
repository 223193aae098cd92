"""The converted Flax DeepHistone equals PyTorch; bad state_dicts are refused by name, nothing written."""

import numpy as np
import pytest
import torch
from conftest import random_onehot, torch_forward, torch_pair

import jaxmotif
from convert import ConversionError, convert_state_dict, load_state_dict
from convert.__main__ import main as convert_main
from convert.torch_reference import NetDeepHistone, NetDeepHistoneDNA, randomize_batchnorm


def rel_err(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize(
    "variant,seq_len,outputs",
    [("full", 1000, 7), ("full", 272, 3), ("dna", 500, 2), ("dna", 1000, 5)],
)
def test_converted_model_equals_pytorch(rng, variant, seq_len, outputs):
    # logits (activation "none") are the sharp test: sigmoids near 0.5 would hide errors
    net, model = torch_pair(variant, seq_len, outputs=outputs, activation="none", seed=seq_len)
    seq = random_onehot(rng, 6, seq_len, n_frac=0.02)
    dnase = rng.gamma(1.0, 2.0, (6, seq_len)).astype(np.float32) if variant == "full" else None
    ref = torch_forward(net, seq, dnase)
    got = model(seq, dnase)
    assert got.shape == (6, outputs)
    assert rel_err(got, ref) <= 1e-5


def test_final_activations_match_pytorch(rng):
    for activation in ("sigmoid", "softmax"):
        net, model = torch_pair("dna", 160, outputs=3, activation=activation)
        seq = random_onehot(rng, 4, 160)
        np.testing.assert_allclose(model(seq), torch_forward(net, seq), rtol=1e-5, atol=1e-6)


def test_checkpoint_round_trip_and_cli(tmp_path, rng):
    net = NetDeepHistoneDNA(seq_len=500, widths=(8, 8, 8), hidden=12, outputs=2)
    randomize_batchnorm(net)
    net.eval()
    sd_path = tmp_path / "model.txt"  # the seed saves state_dicts as .txt
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, sd_path)  # DataParallel prefix
    out = tmp_path / "ckpt"
    assert convert_main([str(sd_path), str(out), "--output-names", "neg", "pos"]) == 0
    model = jaxmotif.load_model(out)
    assert model.config.variant == "dna" and model.config.seq_len == 500
    assert model.output_names == ("neg", "pos")
    seq = random_onehot(rng, 3, 500)
    np.testing.assert_allclose(model(seq), torch_forward(net, seq), rtol=1e-5, atol=1e-6)
    # an existing, non-empty OUT_DIR is kept as it is
    assert convert_main([str(sd_path), str(out)]) == 1


def test_safetensors_input(tmp_path, rng):
    from safetensors.torch import save_file

    net = NetDeepHistone(seq_len=64, widths=(8, 8, 8), hidden=12)
    net.eval()
    path = tmp_path / "m.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    config, params = convert_state_dict(load_state_dict(path))
    assert config.variant == "full" and config.seq_len == 64 and config.num_outputs == 7


def small_sd():
    net = NetDeepHistone(seq_len=64, widths=(8, 8, 8), hidden=12)
    return {k: v.clone() for k, v in net.state_dict().items()}


@pytest.mark.parametrize(
    "corrupt,message",
    [
        (
            lambda sd: sd.pop("seq_map.block1.layer.1.block.2.bias"),
            "missing keys: seq_map.block1.layer.1.block.2.bias",
        ),
        (
            lambda sd: sd.__setitem__("seq_map.extra.weight", torch.zeros(3)),
            "unexpected keys: seq_map.extra.weight",
        ),
        (
            lambda sd: sd.__setitem__("dns_map.trans1.2.weight", torch.zeros(8, 31, 1, 1)),
            "wrong shapes: dns_map.trans1.2.weight (8, 31, 1, 1) (expected (8, 32, 1, 1))",
        ),
        (lambda sd: sd.__setitem__("linear_map.1.weight", torch.zeros(12, 100)), "not a multiple"),
    ],
)
def test_bad_state_dicts_are_named_and_nothing_written(tmp_path, capsys, corrupt, message):
    sd = small_sd()
    corrupt(sd)
    path = tmp_path / "bad.pt"
    torch.save(sd, path)
    out = tmp_path / "out"
    assert convert_main([str(path), str(out)]) == 1
    assert message in capsys.readouterr().err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.pt"]  # no temporary folder left behind


def test_truncated_file_and_foreign_pickles(tmp_path, capsys):
    good = tmp_path / "good.pt"
    torch.save(small_sd(), good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    a_list = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], a_list)
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps(Evil()))
    for path, message in [
        (truncated, "a damaged zip archive"),
        (a_list, "not a state_dict"),
        (evil, "not a torch checkpoint"),  # a bare pickle: torch.load(weights_only=True) refuses it
        (tmp_path / "absent.pt", "no such file"),
    ]:
        out = tmp_path / f"out_{path.stem}"
        assert convert_main([str(path), str(out)]) == 1
        err = capsys.readouterr()
        assert message in err.err, err.err
        assert "this must never run" not in err.out
        assert not out.exists()


def test_seq_len_inference_and_override():
    sd = {
        k: v.numpy()
        for k, v in NetDeepHistoneDNA(seq_len=500, widths=(8, 8, 8), hidden=12).state_dict().items()
    }
    assert convert_state_dict(sd)[0].seq_len == 500
    assert convert_state_dict(sd, seq_len=496)[0].seq_len == 496
    with pytest.raises(ConversionError, match="--seq-len 400"):
        convert_state_dict(sd, seq_len=400)


def test_model_rejects_wrong_shapes(rng):
    _, model = torch_pair("full", 64, widths=(8, 8, 8), hidden=12)
    with pytest.raises(ValueError, match=r"seq shape \(2, 63, 4\) must be \(N, 64, 4\)"):
        model(random_onehot(rng, 2, 63), np.zeros((2, 63), np.float32))
    with pytest.raises(ValueError, match="needs a DNase input"):
        model(random_onehot(rng, 2, 64))


def test_batch_size_invariance_and_tail(rng):
    _, model = torch_pair("full", 64, widths=(8, 8, 8), hidden=12, activation="none")
    seq = random_onehot(rng, 7, 64)
    dnase = rng.random((7, 64)).astype(np.float32)
    whole = model(seq, dnase, batch_size=64)
    np.testing.assert_allclose(model(seq, dnase, batch_size=3), whole, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(model(seq[:1], dnase[:1], batch_size=1), whole[:1], rtol=1e-6, atol=1e-6)


def test_fast_precisions_close_to_fp32(rng):
    _, model = torch_pair("full", 128, activation="none")
    seq = random_onehot(rng, 4, 128)
    dnase = rng.random((4, 128)).astype(np.float32)
    exact = model(seq, dnase)
    scale = np.max(np.abs(exact))
    # bf16 keeps 8 bits of mantissa: ~0.4% per rounding, accumulated over ~15 layers
    assert np.max(np.abs(model(seq, dnase, precision="bf16") - exact)) / scale < 0.1
    # on CPU tf32 is fp32; on a GPU it rounds operands to 10 bits of mantissa
    assert np.max(np.abs(model(seq, dnase, precision="tf32") - exact)) / scale < 1e-2
    with pytest.raises(ValueError, match="precision='fp16'"):
        model(seq, dnase, precision="fp16")
