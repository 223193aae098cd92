"""Mutation maps equal a naive one-mutant-per-forward loop and PyTorch on the same converted weights."""

import jax
import numpy as np
import pytest
from conftest import compile_messages, random_onehot, torch_forward, torch_pair

import jaxmotif
from jaxmotif.ism import SCORES, mutant_chunk_size, mutant_predictions_full, split_apply

L = 64
WIDTHS = (8, 8, 8)


def sensitive_pair(variant, seed, outputs=3):
    """A torch_pair whose output layer is scaled up, so substitutions move p(s) by ~1e-2, not ~1e-4."""
    import torch

    from convert import convert_state_dict
    from jaxmotif.models.model import Model

    net, _ = torch_pair(variant, L, widths=WIDTHS, hidden=16, outputs=outputs, seed=seed)
    with torch.no_grad():
        net.linear_map[4].weight.mul_(40.0)
        net.linear_map[2].weight.mul_(3.0)
    sd = {k: v.numpy() for k, v in net.state_dict().items()}
    config, params = convert_state_dict(sd, seq_len=L, final_activation="sigmoid")
    return net, Model.from_params(config, params)


def naive_raw(model, seq, dnase):
    """p(ŝ) for every position and base, one mutant per forward pass (the seed's loop)."""
    fn = jax.jit(model.apply)
    n, length, _ = seq.shape
    out = np.zeros((n, length, 4, model.config.num_outputs), np.float32)
    for w in range(n):
        d = None if dnase is None else dnase[w : w + 1]
        ref = np.asarray(fn(model.params, seq[w : w + 1], d))[0]
        for i in range(length):
            for b in range(4):
                if seq[w, i, b] == 1:
                    out[w, i, b] = ref
                    continue
                x = seq[w : w + 1].copy()
                x[0, i] = 0.0
                x[0, i, b] = 1.0
                out[w, i, b] = np.asarray(fn(model.params, x, d))[0]
    return out


def torch_raw(net, seq, dnase):
    """p(ŝ) from PyTorch, all 4·L single-base variants of a window in one batch."""
    n, length, _ = seq.shape
    out = []
    for w in range(n):
        variants = np.repeat(seq[w : w + 1], 4 * length, axis=0).reshape(length, 4, length, 4)
        for i in range(length):
            variants[i, :, i, :] = np.eye(4, dtype=np.float32)
        variants = variants.reshape(4 * length, length, 4)
        d = None if dnase is None else np.repeat(dnase[w : w + 1], 4 * length, axis=0)
        out.append(torch_forward(net, variants, d).reshape(length, 4, -1))
    return np.stack(out)


def reference_scores(raw, seq, score):
    """The seed's formulas from p(ŝ) (raw) in plain NumPy; NaN at N positions."""
    is_ref = (seq > 0)[..., None]
    p_s = np.sum(raw * is_ref, axis=2, keepdims=True)  # (N, L, 1, T), 0 at N rows
    p_s = np.broadcast_to(p_s.max(axis=1, keepdims=True), raw.shape)  # the window's p(s)
    if score == "raw":
        out = np.where(is_ref, p_s, raw)
    else:
        out = raw - p_s
        if score == "deepbind":
            out = out * np.maximum(np.maximum(p_s, raw), 0.0)
        out = np.where(is_ref, 0.0, out)
    return np.where(~is_ref.any(axis=2, keepdims=True), np.nan, out)


def assert_close_rel(got, want, rel=1e-5, scale=None):
    """max |got - want| <= rel * scale (default scale: max |want|); NaN exactly where want is NaN."""
    assert np.array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    scale = np.max(np.abs(want[ok])) if scale is None else scale
    assert np.max(np.abs(got[ok] - want[ok])) <= rel * scale, (np.max(np.abs(got[ok] - want[ok])), scale)


@pytest.mark.parametrize("variant", ["full", "dna"])
def test_mutation_map_equals_naive_loop_and_torch(rng, variant):
    net, model = sensitive_pair(variant, seed=3)
    seq = random_onehot(rng, 2, L)
    seq[1, 30] = 0.0  # an N
    dnase = rng.random((2, L)).astype(np.float32) * 3 if variant == "full" else None
    torch_ref = torch_raw(net, seq, dnase)
    # The naive loop (3·L jitted forward passes) on the second window only, to keep the test short.
    naive = torch_ref.copy()
    naive[1:] = naive_raw(model, seq[1:], None if dnase is None else dnase[1:])
    assert_close_rel(naive, torch_ref)
    for score in SCORES:
        got = jaxmotif.mutation_map(model, seq, dnase, score=score, mutant_chunk=50)
        assert got.shape == (2, L, 4, 3) and got.dtype == np.float32
        for reference in (naive, torch_ref):
            want = reference_scores(reference, seq, score)
            spread = np.nanmax(np.abs(want))
            assert spread > 1e-3  # substitutions matter: the comparison is not of near-zeros
            # Relative to the largest score; a difference p(ŝ) - p(s) of float32 outputs cannot be
            # closer than their own rounding, so that (1e-5 of max p(ŝ)) is the floor of the scale.
            assert_close_rel(got, want, scale=max(spread, np.max(reference)))


def test_n_positions_reference_entries_and_targets(rng):
    _, model = torch_pair("full", L, widths=WIDTHS, hidden=16, outputs=3, seed=4)
    seq = random_onehot(rng, 3, L)
    seq[0, [0, 17, 63]] = 0.0
    seq[2] = 0.0  # an all-N window
    dnase = rng.random((3, L)).astype(np.float32)
    delta = jaxmotif.mutation_map(model, seq, dnase)
    is_n = ~seq.any(-1)
    assert np.all(np.isnan(delta[is_n])) and not np.any(np.isnan(delta[~is_n]))
    assert np.all(delta[seq > 0] == 0.0)
    raw = jaxmotif.mutation_map(model, seq, dnase, score="raw")
    p_s = model(seq, dnase)
    at_ref = raw[seq > 0]  # (K, T): every reference entry holds the window's p(s)
    windows = np.nonzero(seq > 0)[0]
    np.testing.assert_allclose(at_ref, p_s[windows], rtol=1e-6)
    names = model.output_names
    sub = jaxmotif.mutation_map(model, seq, dnase, targets=[names[2], 0])
    np.testing.assert_array_equal(sub, delta[..., [2, 0]])
    one = jaxmotif.mutation_map(model, seq[1], dnase[1], targets=1)
    assert one.shape == (1, L, 4, 1)
    np.testing.assert_allclose(one[0, ..., 0], delta[1, ..., 1], rtol=1e-6, atol=1e-8)


def test_chunking_and_batching_do_not_change_results(rng):
    _, model = torch_pair("full", L, widths=WIDTHS, hidden=16, outputs=2, seed=5)
    seq = random_onehot(rng, 3, L, n_frac=0.05)
    dnase = rng.random((3, L)).astype(np.float32)
    base = jaxmotif.mutation_map(model, seq, dnase, score="raw", mutant_chunk=3 * L, batch_size=3)
    for chunk, batch in [(7, 1)]:
        got = jaxmotif.mutation_map(model, seq, dnase, score="raw", mutant_chunk=chunk, batch_size=batch)
        np.testing.assert_allclose(got, base, rtol=1e-6, atol=1e-7)
    # 3·L mutants and the reference: 3001 = 6 chunks of 501 (one padded); 193 = 4 of 49 (3 padded).
    assert mutant_chunk_size(1000) == 501 and mutant_chunk_size(64, 50) == 49


def test_split_apply_equals_plain_apply(rng):
    _, model = torch_pair("full", L, widths=WIDTHS, hidden=16, outputs=2, seed=6)
    seq = random_onehot(rng, 1, L)[0]
    dnase = rng.random(L).astype(np.float32)
    split = jax.jit(lambda p, s, d: mutant_predictions_full(split_apply(model), p, s, d, 64))(
        model.params, seq, dnase
    )
    plain = jax.jit(lambda p, s, d: mutant_predictions_full(model.apply, p, s, d, 64))(
        model.params, seq, dnase
    )
    np.testing.assert_allclose(split, plain, rtol=1e-6, atol=1e-7)
    assert split.shape == (L, 4, 2)


def test_fast_precisions_close_to_fp32(rng):
    _, model = torch_pair("full", L, widths=WIDTHS, hidden=16, outputs=2, seed=7)
    seq = random_onehot(rng, 2, L)
    dnase = rng.random((2, L)).astype(np.float32)
    exact = jaxmotif.mutation_map(model, seq, dnase, score="raw")
    # tf32 is float32 on CPU; bf16 keeps 8 mantissa bits, so outputs in (0, 1) differ by ~1e-2.
    tf32 = jaxmotif.mutation_map(model, seq, dnase, score="raw", precision="tf32")
    np.testing.assert_allclose(tf32, exact, atol=1e-3)
    bf16 = jaxmotif.mutation_map(model, seq, dnase, score="raw", precision="bf16")
    assert bf16.dtype == np.float32
    np.testing.assert_allclose(bf16, exact, atol=5e-2)


def test_method_fast_matches_full(rng):
    pytest.importorskip("jaxmotif.ism_fast")
    _, model = sensitive_pair("full", seed=8, outputs=2)
    seq = random_onehot(rng, 2, L, n_frac=0.05)
    dnase = rng.random((2, L)).astype(np.float32)
    full = jaxmotif.mutation_map(model, seq, dnase, score="raw")
    fast = jaxmotif.mutation_map(model, seq, dnase, score="raw", method="fast")
    assert_close_rel(fast, full)


def test_no_recompile_and_errors(rng):
    _, model = torch_pair("dna", L, widths=WIDTHS, hidden=16, outputs=2, seed=9)
    seq = random_onehot(rng, 2, L)
    jaxmotif.mutation_map(model, seq)
    with compile_messages() as messages:
        jaxmotif.mutation_map(model, seq)
    assert not [m for m in messages if "Compiling" in m]
    with pytest.raises(ValueError, match="score='ddg'"):
        jaxmotif.mutation_map(model, seq, score="ddg")
    with pytest.raises(ValueError, match="method='slow'"):
        jaxmotif.mutation_map(model, seq, method="slow")
    with pytest.raises(ValueError, match="target='H3K27ac' is not an output"):
        jaxmotif.mutation_map(model, seq, targets=["H3K27ac"])
    with pytest.raises(ValueError, match="seq shape"):
        jaxmotif.mutation_map(model, seq[:, :10])


# ---- bf16: no rounding offset, zero where the head cannot see, close to fp32 ------------------------

BF16_L = 256  # 16 pooled positions: room for a head that reads only the first half


def half_blind_model(seed):
    """A random two-branch model whose head reads only the first half of the sequence features:
    the dense rows of pooled positions 8-15 are zero (the DNase rows and everything else kept)."""
    from jaxmotif.models import DeepHistoneConfig, Model

    config = DeepHistoneConfig(
        variant="full", seq_len=BF16_L, widths=(8, 8, 8), hidden=16, num_outputs=2, output_names=("a", "b")
    )
    model = Model.random(config, key=jax.random.key(seed))
    pooled, w3 = config.pooled_len, config.widths[2]
    kernel = np.array(model.params["head"]["dense"]["kernel"][...])
    kernel[pooled // 2 * w3 : pooled * w3] = 0.0
    model.params["head"]["dense"]["kernel"][...] = jax.numpy.asarray(kernel)
    return model


def mode_share(delta, seq):
    """Share of the substitutions holding the most frequent non-zero delta value."""
    sub = delta[np.broadcast_to((seq == 0)[..., None], delta.shape)]
    nz = sub[sub != 0]
    return np.unique(nz, return_counts=True)[1].max() / sub.size if nz.size else 0.0


@pytest.mark.parametrize("method", ["fast", "full"])
def test_bf16_delta_has_no_offset_and_is_zero_where_the_head_is_blind(rng, method):
    model = half_blind_model(seed=21)
    seq = random_onehot(rng, 2, BF16_L)
    dnase = rng.random((2, BF16_L)).astype(np.float32) * 2
    exact = jaxmotif.mutation_map(model, seq, dnase, method=method)
    bf16 = jaxmotif.mutation_map(model, seq, dnase, method=method, precision="bf16")
    # Substitutions at p >= 208 reach only pooled positions >= 13 - 4 = 9 (jaxmotif.ism_fast's
    # ranges), all of whose head rows are zero: their effect is exactly nothing, at any precision.
    blind = np.zeros(BF16_L, bool)
    blind[208:] = True
    substituted = np.broadcast_to((seq == 0)[..., None], exact.shape)
    for delta in (exact, bf16):
        assert np.all(delta[:, blind] == 0.0)
        assert np.mean(delta[:, :128][substituted[:, :128]] != 0) > 0.9  # the seen half does respond
    # No constant: bf16's most frequent non-zero value is as rare as fp32's (a rounding offset
    # would hold a large share of the substitutions).
    seen = ~blind
    assert mode_share(bf16[:, seen], seq[:, seen]) <= mode_share(exact[:, seen], seq[:, seen]) + 0.01
    # bf16 deltas follow fp32's. Measured here: 0.9998 fast (delta-form convolutions), 0.9989 full;
    # the published-size measurements are in benchmarks/README.md (fast 0.996-0.999).
    m = substituted & ~blind[None, :, None, None]
    assert np.corrcoef(exact[m], bf16[m])[0, 1] >= (0.998 if method == "fast" else 0.995)


def test_listed_substitutions_equal_the_mutation_map(rng):
    from jaxmotif.ism import mutation_scores_at

    _, model = sensitive_pair("full", seed=12, outputs=3)
    seq = random_onehot(rng, 2, L)
    dnase = rng.random((2, L)).astype(np.float32)
    positions = np.array([[0, 5, 5, 63], [31, 31, 40, 2]])
    bases = np.array([[1, 2, 3, 0], [0, 3, 1, 2]])
    for method in ("fast", "full"):
        raw = jaxmotif.mutation_map(model, seq, dnase, score="raw", method=method)
        got = mutation_scores_at(model, seq, dnase, positions, bases, targets=[2, 0], method=method)
        assert got.shape == (2, 4, 2, 2)
        for n in range(2):
            for k in range(4):
                p, b = positions[n, k], bases[n, k]
                want_alt = raw[n, p, b, [2, 0]]
                want_ref = raw[n, p, np.argmax(seq[n, p]), [2, 0]]
                np.testing.assert_allclose(got[n, k, 1], want_alt, rtol=1e-5, atol=1e-7)
                np.testing.assert_allclose(got[n, k, 0], want_ref, rtol=1e-5, atol=1e-7)
                if seq[n, p, b] == 1:  # the reference base: exactly no change
                    np.testing.assert_array_equal(got[n, k, 0], got[n, k, 1])
