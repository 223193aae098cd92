"""Saliency equals torch.autograd on the same converted weights, for every method and target form."""

import numpy as np
import pytest
import torch
from conftest import compile_messages, random_onehot, torch_pair

import jaxmotif
from jaxmotif.attribution import SALIENCY_METHODS


def torch_saliency(net, seq, dnase, target, method):
    x = torch.tensor(np.ascontiguousarray(seq.transpose(0, 2, 1)), requires_grad=True)
    out = net(x) if dnase is None else net(x, torch.tensor(dnase[:, None]))
    out[:, target].sum().backward()
    g = x.grad.numpy().transpose(0, 2, 1)  # back to (N, L, 4) by transposing, never reshaping
    if method == "gradient":
        return g
    gx = g * seq
    return np.abs(gx) if method == "abs_grad_x_input" else gx


@pytest.mark.parametrize("variant,seq_len", [("full", 160), ("dna", 500)])
@pytest.mark.parametrize("method", SALIENCY_METHODS)
def test_saliency_equals_torch_autograd(rng, variant, seq_len, method):
    net, model = torch_pair(variant, seq_len, outputs=3, seed=1)
    seq = random_onehot(rng, 5, seq_len, n_frac=0.01)
    dnase = rng.random((5, seq_len)).astype(np.float32) if variant == "full" else None
    every = jaxmotif.saliency(model, seq, dnase, target=None, method=method, batch_size=2)
    assert every.shape == (5, 3, seq_len, 4)
    for t in range(3):
        ref = torch_saliency(net, seq, dnase, t, method)
        scale = np.max(np.abs(ref))
        assert np.max(np.abs(every[:, t] - ref)) <= 1e-5 * scale
    one = jaxmotif.saliency(model, seq, dnase, target=model.output_names[2], method=method)
    assert one.shape == (5, seq_len, 4)
    np.testing.assert_allclose(one, every[:, 2], rtol=1e-5, atol=1e-7 * np.max(np.abs(every)))


def test_saliency_logits_and_zero_rows(rng):
    net, model = torch_pair("dna", 64, outputs=2, activation="none", seed=2)
    seq = random_onehot(rng, 3, 64)
    seq[:, 10] = 0.0  # an N
    ref = torch_saliency(net, seq, None, 1, "grad_x_input")
    got = jaxmotif.saliency(model, seq, target=1, method="grad_x_input", logits=True)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6 * np.max(np.abs(ref)))
    assert np.all(got[:, 10] == 0)


def test_saliency_does_not_recompile(rng):
    _, model = torch_pair("dna", 64, outputs=2)
    seq = random_onehot(rng, 4, 64)
    jaxmotif.saliency(model, seq, target=0)
    with compile_messages() as messages:
        jaxmotif.saliency(model, seq, target=0)
    assert not [m for m in messages if "Compiling" in m]


def test_saliency_errors(rng):
    _, model = torch_pair("dna", 64, outputs=2)
    with pytest.raises(ValueError, match="target='H3K4me1' is not an output"):
        jaxmotif.saliency(model, random_onehot(rng, 1, 64), target="H3K4me1")
    with pytest.raises(ValueError, match="method='deeplift'"):
        jaxmotif.saliency(model, random_onehot(rng, 1, 64), method="deeplift")
