"""Integrated gradients, SmoothGrad and the dinucleotide shuffle against independent computations."""

import itertools
from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from conftest import random_onehot, torch_pair
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxmotif
from jaxmotif import integrated
from jaxmotif.models.model import Model

WIDTHS = (8, 8, 8)

# ---------------------------------------------------------------------------------------------
# Dinucleotide shuffle
# ---------------------------------------------------------------------------------------------


def encode(text):
    table = {c: i for i, c in enumerate("ACGT")}
    x = np.zeros((len(text), 4), np.float32)
    for i, c in enumerate(text):
        if c in table:
            x[i, table[c]] = 1
    return x


def decode(x):
    return "".join("ACGT"[int(r.argmax())] if r.any() else "N" for r in x)


def doublets(text):
    return Counter(text[i : i + 2] for i in range(len(text) - 1))


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="ACGTN", min_size=1, max_size=60), st.integers(0, 2**31 - 1))
def test_shuffle_preserves_doublets_and_ends(text, seed):
    shuffles = jaxmotif.dinucleotide_shuffle(encode(text), key=jax.random.key(seed), num_shuffles=3)
    assert shuffles.shape == (3, len(text), 4)
    for s in shuffles:
        out = decode(s)
        assert doublets(out) == doublets(text)
        assert out[0] == text[0] and out[-1] == text[-1]


def test_shuffle_is_uniform_over_sequences_with_the_same_doublets():
    text = "AACAGCATGA"
    same = {  # by brute force: every sequence of this length with the first base and doublets
        "".join(p)
        for p in itertools.product("ACGT", repeat=len(text))
        if p[0] == text[0] and doublets("".join(p)) == doublets(text)
    }
    draws = 6000
    got = jaxmotif.dinucleotide_shuffle(encode(text)[None], key=jax.random.key(0), num_shuffles=draws)[0]
    counts = Counter(decode(s) for s in got)
    assert set(counts) == same  # every such sequence, and nothing else
    expected = draws / len(same)
    chi2 = sum((c - expected) ** 2 / expected for c in counts.values())
    # 48 sequences, df = 47: the 99.99th percentile of chi-square(47) is 91.8 (fixed key: no flakes)
    assert len(same) == 48 and chi2 < 91.8, (len(same), chi2)


def test_shuffle_keys_and_rows():
    rng = np.random.default_rng(0)
    seq = random_onehot(rng, 3, 50)
    a = jaxmotif.dinucleotide_shuffle(seq, key=jax.random.key(1))
    np.testing.assert_array_equal(a, jaxmotif.dinucleotide_shuffle(seq, key=jax.random.key(1)))
    assert not np.array_equal(a, jaxmotif.dinucleotide_shuffle(seq, key=jax.random.key(2)))
    # a row's shuffles do not depend on the rows after it
    np.testing.assert_array_equal(a[:2], jaxmotif.dinucleotide_shuffle(seq[:2], key=jax.random.key(1)))
    bad = seq.copy()
    bad[1, 7] = 0.5
    with pytest.raises(ValueError, match="sequence 1 position 7"):
        jaxmotif.dinucleotide_shuffle(bad, key=jax.random.key(0))


# ---------------------------------------------------------------------------------------------
# Integrated gradients
# ---------------------------------------------------------------------------------------------


def smooth_apply(params, seq, dnase):
    """A smooth two-output CNN (tanh, no pooling): quadrature converges fast along any path."""
    h = jax.lax.conv_general_dilated(
        seq, params["w"], (1,), ((4, 4),), dimension_numbers=("NWC", "WIO", "NWC")
    )
    return jnp.tanh(jnp.mean(jnp.tanh(h), axis=1) @ params["v"])


@pytest.mark.parametrize("rule", integrated.INTEGRATION_RULES)
@pytest.mark.parametrize("baseline", ["zeros", "uniform", "shuffle"])
def test_completeness_on_a_smooth_model(rng, rule, baseline):
    params = {
        "w": jnp.asarray(rng.normal(size=(9, 4, 3)), jnp.float32),
        "v": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32),
    }
    seq = random_onehot(rng, 4, 50)
    refs = integrated.make_baselines(seq, baseline, key=jax.random.key(0), num_baselines=3)
    points, weights = integrated._padded_chunks(*integrated.path_points(64, rule, refs.shape[1]), 24)
    kernel = jax.jit(
        lambda s, b: integrated.integrated_gradients_kernel(
            smooth_apply, params, s, None, b, (0, 1), jnp.asarray(points), jnp.asarray(weights)
        )
    )
    attr = np.asarray(kernel(seq, refs))  # (N, 2, L, 4)
    fx = np.asarray(smooth_apply(params, seq, None))
    fb = np.mean([np.asarray(smooth_apply(params, refs[:, b], None)) for b in range(refs.shape[1])], axis=0)
    delta = fx - fb
    assert np.max(np.abs(attr.sum(axis=(2, 3)) - delta) / np.abs(delta)) < 1e-3


def test_completeness_on_deephistone_where_the_path_is_straight(rng):
    """Bias-free ReLU nets are positively homogeneous: along the path from the all-zero reference
    the logits are linear, every quadrature rule is exact and completeness holds to rounding.
    (Along other paths ReLU and max-pool kinks leave a quadrature gap that shrinks with steps.)"""
    config = jaxmotif.DeepHistoneConfig(
        variant="full", seq_len=64, num_outputs=2, widths=WIDTHS, hidden=8, output_names=("a", "b")
    )
    model = Model.random(config, key=jax.random.key(2))
    seq = random_onehot(rng, 3, 64)
    dnase = rng.random((3, 64)).astype(np.float32)
    attr = jaxmotif.integrated_gradients(
        model, seq, dnase, target=None, steps=64, baseline="zeros", logits=True
    )
    delta = model.compiled(logits=True)(model.params, seq, dnase) - model.compiled(logits=True)(
        model.params, np.zeros_like(seq), dnase
    )
    np.testing.assert_allclose(attr.sum(axis=(2, 3)), delta, rtol=1e-3, atol=1e-7)


def torch_integrated_gradients(net, seq, dnase, refs, target, alphas, weights):
    """The same quadrature, with the gradients from torch.autograd, one path point at a time."""
    total = np.zeros(seq.shape, np.float64)
    for b in range(refs.shape[1]):
        acc = np.zeros(seq.shape, np.float64)
        for a, w in zip(alphas, weights, strict=True):
            point = (refs[:, b] + a * (seq - refs[:, b])).astype(np.float32)
            x = torch.tensor(np.ascontiguousarray(point.transpose(0, 2, 1)), requires_grad=True)
            net(x, torch.tensor(dnase[:, None]))[:, target].sum().backward()
            acc += w * x.grad.numpy().transpose(0, 2, 1)
        total += (seq - refs[:, b]) * acc
    return total / refs.shape[1]


def test_integrated_gradients_equal_torch_reference(rng):
    net, model = torch_pair("full", 64, widths=WIDTHS, outputs=3, seed=8)
    seq = random_onehot(rng, 3, 64)
    dnase = rng.random((3, 64)).astype(np.float32)
    key = jax.random.key(5)
    got = jaxmotif.saliency(
        model, seq, dnase, None, "integrated_gradients", key=key, steps=10, baseline="shuffle",
        num_baselines=2, rule="riemann_middle", step_batch=4, batch_size=2,
    )  # fmt: skip
    refs = integrated.make_baselines(seq, "shuffle", key=key, num_baselines=2)
    alphas, weights = integrated.integration_points(10, "riemann_middle")
    for t in (0, 2):
        ref = torch_integrated_gradients(net, seq, dnase, refs, t, alphas, weights)
        assert np.max(np.abs(got[:, t] - ref)) <= 1e-5 * np.max(np.abs(ref))
    # chunking of sequences and path points does not change the result
    again = jaxmotif.integrated_gradients(
        model, seq, dnase, 2, steps=10, baseline="shuffle", num_baselines=2, key=key,
        rule="riemann_middle", step_batch=10, batch_size=3,
    )  # fmt: skip
    np.testing.assert_allclose(again, got[:, 2], rtol=1e-5, atol=1e-6 * np.abs(again).max())


# ---------------------------------------------------------------------------------------------
# SmoothGrad
# ---------------------------------------------------------------------------------------------


def test_smoothgrad_equals_torch_reference_and_is_chunking_invariant(rng):
    net, model = torch_pair("dna", 64, widths=WIDTHS, outputs=2, seed=9)
    seq = random_onehot(rng, 3, 64)
    key = jax.random.key(11)
    got = jaxmotif.smoothgrad(
        model, seq, target=1, key=key, samples=6, sigma=0.2, sample_batch=4, batch_size=2
    )
    ref = np.zeros(seq.shape, np.float64)
    for i in range(3):
        for j in range(6):
            k = jax.random.fold_in(jax.random.fold_in(key, i), j)
            noisy = seq[i] + 0.2 * np.asarray(jax.random.normal(k, (64, 4), jnp.float32))
            x = torch.tensor(np.ascontiguousarray(noisy.T[None]), requires_grad=True)
            net(x)[0, 1].backward()
            ref[i] += x.grad.numpy()[0].T / 6
    assert np.max(np.abs(got - ref)) <= 1e-5 * np.max(np.abs(ref))
    again = jaxmotif.saliency(
        model, seq, None, 1, "smoothgrad", key=key, samples=6, sigma=0.2, sample_batch=5
    )
    np.testing.assert_allclose(again, got, rtol=1e-5, atol=1e-7 * np.abs(got).max())
    # no noise: the plain gradient
    plain = jaxmotif.smoothgrad(model, seq, target=1, key=key, samples=2, sigma=0.0)
    grad = jaxmotif.saliency(model, seq, target=1, method="gradient")
    np.testing.assert_allclose(plain, grad, rtol=1e-5, atol=1e-7 * np.abs(grad).max())


def test_method_options_are_checked(rng):
    _, model = torch_pair("dna", 64, widths=WIDTHS, outputs=2)
    seq = random_onehot(rng, 2, 64)
    with pytest.raises(ValueError, match="needs an explicit key"):
        jaxmotif.saliency(model, seq, method="smoothgrad")
    with pytest.raises(ValueError, match="baseline='shuffle' needs an explicit key"):
        jaxmotif.saliency(model, seq, method="integrated_gradients", baseline="shuffle")
    with pytest.raises(ValueError, match=r"takes no options \['samples'\]"):
        jaxmotif.saliency(model, seq, method="integrated_gradients", samples=3)
    with pytest.raises(ValueError, match=r"method='gradient' takes no options \['steps'\]"):
        jaxmotif.saliency(model, seq, method="gradient", steps=3)
    with pytest.raises(ValueError, match="baseline='mean'"):
        jaxmotif.integrated_gradients(model, seq, baseline="mean")
    with pytest.raises(ValueError, match="baseline shape"):
        jaxmotif.integrated_gradients(model, seq, baseline=np.zeros((3, 4)))


# ---------------------------------------------------------------------------------------------
# The saliency CLI
# ---------------------------------------------------------------------------------------------


def test_saliency_cli(rng, tmp_path, capsys):
    from jaxmotif.cli.saliency import main
    from jaxmotif.models.checkpoint import save_model

    _, model = torch_pair("full", 64, widths=WIDTHS, outputs=2, seed=10)
    save_model(model, tmp_path / "ckpt")
    seq = random_onehot(rng, 3, 64)
    fasta = tmp_path / "seqs.fa"
    fasta.write_text("".join(f">s{i}\n{decode(s)}\n" for i, s in enumerate(seq)))
    dnase = rng.random((3, 64)).astype(np.float32)
    np.save(tmp_path / "dnase.npy", dnase)
    common = [
        "--checkpoint",
        str(tmp_path / "ckpt"),
        "--fasta",
        str(fasta),
        "--dnase-npy",
        str(tmp_path / "dnase.npy"),
    ]
    out = tmp_path / "ig.npz"
    args = ["--method", "integrated_gradients", "--steps", "8", "--targets", "1", "--out", str(out)]
    args += ["--quiet", "--logos", "3"]
    assert main([*common, *args]) == 0
    with np.load(out) as z:
        assert z["saliency"].shape == (3, 64, 4) and list(z["names"]) == ["s0", "s1", "s2"]
        assert str(z["method"]) == "integrated_gradients" and list(z["targets"]) == [model.output_names[1]]
        expected = jaxmotif.integrated_gradients(model, seq, dnase, 1, steps=8)
        np.testing.assert_allclose(z["saliency"], expected, rtol=1e-5, atol=1e-8)
    assert len(list((tmp_path / "ig_logos").glob("*.png"))) == 3
    out2 = tmp_path / "dc.npz"
    assert main([*common, "--method", "deconvnet", "--out", str(out2), "--no-logos", "--quiet"]) == 0
    with np.load(out2) as z:
        assert z["saliency"].shape == (3, 2, 64, 4)
    # bad input: one line on stderr, exit code 1, nothing written
    capsys.readouterr()
    bad = tmp_path / "bad.npz"
    assert main([*common, "--method", "deconvnet", "--steps", "8", "--out", str(bad), "--quiet"]) == 1
    assert capsys.readouterr().err.strip() == "error: --steps not used by --method deconvnet"
    assert main([*common, "--targets", "H3K4me1", "--out", str(bad), "--quiet"]) == 1
    assert "target='H3K4me1' is not an output" in capsys.readouterr().err
    fasta.write_text(">short\nACGT\n")
    assert main([*common, "--out", str(bad), "--quiet"]) == 1
    assert "record 'short' has length 4; the model takes 64" in capsys.readouterr().err
    assert not bad.exists()


# ---------------------------------------------------------------------------------------------
# Randomness by row: a seed fixes the numbers, whatever the batching
# ---------------------------------------------------------------------------------------------

# Each random method with small options: API keywords, and the saliency CLI's flags.
RANDOM_RUNS = {
    "smoothgrad": ({"samples": 3, "sigma": 0.3}, ["--samples", "3", "--sigma", "0.3"]),
    "deep_lift_shap": ({"n_shuffles": 2, "hypothetical": True}, ["--n-shuffles", "2", "--hypothetical"]),
    "integrated_gradients": (
        {"steps": 4, "baseline": "shuffle", "num_baselines": 2},
        ["--steps", "4", "--baseline", "shuffle", "--num-baselines", "2"],
    ),
}


@pytest.fixture(scope="module")
def rows_case():
    """One model and 4 sequences for the tests below: they share its compiled kernels (calls of 1,
    3 and 4 sequences), which keeps them fast."""
    from jaxmotif.models import DeepHistoneConfig

    config = DeepHistoneConfig(
        variant="full", seq_len=64, widths=(8, 8, 8), hidden=12, num_outputs=2, output_names=("m1", "m2")
    )
    rng = np.random.default_rng(22)
    seq, dnase = random_onehot(rng, 4, 64), rng.random((4, 64)).astype(np.float32)
    return Model.random(config, key=jax.random.key(21)), seq, dnase


def test_random_methods_draw_by_row_not_by_batch(rows_case):
    """jaxmotif.saliency: sequence i's noise / shuffles come from (key, rows[i]) only -- the same
    with batch_size or max_memory splitting the input, and a slice with its rows equals the whole's
    rows. (The splits reuse the calls of one sequence: no compilations beyond the CLI test's.)"""
    from jaxmotif import deeplift, memory

    model, seq, dnase = rows_case
    key = jax.random.key(23)
    act, fixed = memory.activation_elements(model), memory.param_bytes(model)
    # Budgets with room for one sequence (all its points / references and both targets) per call.
    one = {
        "smoothgrad": fixed + 4 * memory.path_elements(1, 3, 2, 0, act, 64),
        "integrated_gradients": fixed + 4 * memory.path_elements(1, 8, 2, 2, act, 64),
        "deep_lift_shap": 2 * fixed + 4 * memory.deeplift_elements(1, 2, 2, act, 64, fast=True),
    }
    assert memory.path_plan(
        one["smoothgrad"],
        sequences=4,
        points=3,
        targets=2,
        references=0,
        activations=act,
        length=64,
        fixed_bytes=fixed,
    ) == (1, 3, 2)
    assert deeplift._chunks(model, 4, 2, 2, None, one["deep_lift_shap"]) == (1, 2)
    for method, (options, _) in RANDOM_RUNS.items():
        whole = jaxmotif.saliency(model, seq, dnase, None, method, key=key, **options)  # (4, 2, L, 4)
        scale = np.abs(whole).max()
        for split in ({"batch_size": 1}, {"max_memory": one[method]}):
            got = jaxmotif.saliency(model, seq, dnase, None, method, key=key, **split, **options)
            np.testing.assert_allclose(got, whole, rtol=1e-5, atol=1e-6 * scale, err_msg=f"{method} {split}")
        kw = dict(key=key, batch_size=1, **options)
        sliced = jaxmotif.saliency(model, seq[1:], dnase[1:], None, method, rows=range(1, 4), **kw)
        np.testing.assert_allclose(sliced, whole[1:], rtol=1e-5, atol=1e-6 * scale, err_msg=method)
        # Without its rows the slice draws rows 0..2's numbers: visibly other maps.
        unrowed = jaxmotif.saliency(model, seq[1:], dnase[1:], None, method, **kw)
        assert np.abs(unrowed - whole[1:]).max() > 1e-3 * scale, method
    with pytest.raises(ValueError, match=r"rows shape \(2,\) must be \(4,\)"):
        jaxmotif.saliency(model, seq, dnase, 0, "smoothgrad", key=key, rows=[0, 1])
    with pytest.raises(ValueError, match=r"rows must lie in \[0, 2\*\*31\)"):
        jaxmotif.deep_lift_shap(model, seq, dnase, 0, key=key, rows=np.arange(-1, 3))
    with pytest.raises(ValueError, match=r"method='gradient' takes no options \['rows'\]"):
        jaxmotif.saliency(model, seq, dnase, 0, "gradient", rows=range(4))
    with pytest.raises(ValueError, match="draws no random numbers; drop rows"):
        jaxmotif.saliency(model, seq, dnase, 0, "deconvnet", rows=range(4))


def test_shuffles_by_row_equal_the_attribute_scans():
    """dinucleotide_shuffle(rows=...) draws what the attribute scan draws for those store rows."""
    from jaxmotif.scan import shuffled_reference_indices

    rng = np.random.default_rng(24)
    seq = random_onehot(rng, 4, 40, n_frac=0.1)
    key = jax.random.key(25)
    whole = jaxmotif.dinucleotide_shuffle(seq, key=key, num_shuffles=2)
    got = jaxmotif.dinucleotide_shuffle(seq[1:3], key=key, num_shuffles=2, rows=[1, 2])
    np.testing.assert_array_equal(got, whole[1:3])
    idx = np.where(seq.any(-1), seq.argmax(-1), -1).astype(np.int8)
    scan = shuffled_reference_indices(idx[[3, 0]], np.array([3, 0]), 2, key)  # (2, R, L), -1 for N
    np.testing.assert_array_equal(np.eye(5, dtype=np.float32)[scan][..., :4], whole[[3, 0]])


def _cli_inputs(case, tmp_path, monkeypatch):
    """The case's sequences as a FASTA and .npy; the CLI gets the case's model object itself
    (its compiled kernels are reused: the checkpoint path is tested in test_saliency_cli)."""
    from jaxmotif.models import checkpoint

    model, seq, dnase = case
    monkeypatch.setattr(checkpoint, "load_model", lambda path: model)
    (tmp_path / "s.fa").write_text("".join(f">s{i}\n{decode(s)}\n" for i, s in enumerate(seq)))
    np.save(tmp_path / "d.npy", dnase)
    argv = ["--checkpoint", str(tmp_path / "ckpt"), "--fasta", str(tmp_path / "s.fa")]
    return [*argv, "--dnase-npy", str(tmp_path / "d.npy"), "--quiet", "--seed", "5"]


def _store(path):
    import zarr

    group = zarr.open_group(str(path), mode="r")
    return np.asarray(group["attributions"][:]), dict(group.attrs)


def test_saliency_cli_seed_fixes_the_maps_whatever_the_batch_size(rows_case, tmp_path, monkeypatch):
    """python -m jaxmotif.saliency: the same --seed gives the same .npz and .zarr maps with
    --batch-size 1, 3 or the default, equal to jaxmotif.saliency on all records at once."""
    from jaxmotif.cli.saliency import main

    model, seq, dnase = rows_case
    common = _cli_inputs(rows_case, tmp_path, monkeypatch)
    for method, (options, flags) in RANDOM_RUNS.items():
        expected = jaxmotif.saliency(model, seq, dnase, None, method, key=jax.random.key(5), **options)
        for batch in ([], ["--batch-size", "1"], ["--batch-size", "3"]):
            out = tmp_path / f"{method}{len(batch) and batch[1]}.npz"
            assert main([*common, "--method", method, *flags, *batch, "--out", str(out)]) == 0
            with np.load(out) as z:
                np.testing.assert_array_equal(z["saliency"], expected, err_msg=f"{method} {batch}")
        store = tmp_path / f"{method}.zarr"
        assert main([*common, "--method", method, *flags, "--batch-size", "3", "--out", str(store)]) == 0
        attributions, attrs = _store(store)
        np.testing.assert_array_equal(attributions, np.moveaxis(expected, 1, -1), err_msg=method)
        assert "fold_in(key(--seed), i)" in attrs["values"]
        # SmoothGrad and hypothetical DeepSHAP give every base a value: hypothetical, as the store
        # says; integrated gradients give each input channel's contribution (not hypothetical).
        absent = np.abs(attributions * (1 - seq)[..., None]).max()
        assert attrs["hypothetical"] is (method != "integrated_gradients") and absent > 0, method
    # The seed matters: another one gives other maps.
    out = tmp_path / "other.npz"
    other = [*common, "--method", "smoothgrad", *RANDOM_RUNS["smoothgrad"][1], "--seed", "6"]
    assert main([*other, "--out", str(out)]) == 0
    with np.load(out) as z, np.load(tmp_path / "smoothgrad0.npz") as first:
        assert np.abs(z["saliency"] - first["saliency"]).max() > 1e-3 * np.abs(first["saliency"]).max()


def test_saliency_store_says_what_its_values_are():
    """--out X.zarr's attrs: hypothetical exactly for the maps with a value at every base (the
    gradient and what averages or replaces it, hypothetical DeepSHAP), as python -m
    jaxmotif.attribute flags the same numbers (its grad_x_input stores the gradient itself)."""
    from jaxmotif.attribution import ATTRIBUTION_METHODS
    from jaxmotif.cli.saliency import store_meaning
    from jaxmotif.scan import ATTRIBUTE_VALUES

    every_base = {"gradient", "deconvnet", "guided_backprop", "inverse_activation", "smoothgrad"}
    for method in ATTRIBUTION_METHODS:
        for option in (False, True) if method == "deep_lift_shap" else (False,):
            hypothetical, values = store_meaning(method, option)
            assert hypothetical is (method in every_base or option), method
            assert ("not hypothetical" in values) is not hypothetical, values
            if (
                method in ATTRIBUTE_VALUES
                and method != "grad_x_input"
                and (option or method != "deep_lift_shap")
            ):
                assert hypothetical is (method != "integrated_gradients"), method  # the attribute CLI's flag
    assert "noise drawn from fold_in(key(--seed), i)" in store_meaning("smoothgrad")[1]
    assert "x input" in store_meaning("grad_x_input")[1]
