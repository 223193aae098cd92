"""Fast ISM equals a full recompute of every single-base mutant, at every position."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import random_onehot, torch_pair

from jaxmotif.ism_fast import flops_per_window, mutant_predictions_fast
from jaxmotif.models import DeepHistoneConfig
from jaxmotif.precision import with_precision

TINY = (8, 8, 8)


def full_reference(model, seq, dnase, positions=None):
    """Logits (len(positions), 4, T): every base substituted at each position, all through apply."""
    length = seq.shape[0]
    positions = np.arange(length) if positions is None else np.asarray(positions)
    mutants = np.repeat(seq[None, None], 4, axis=1).repeat(len(positions), axis=0)  # (P, 4, L, 4)
    for i, p in enumerate(positions):
        mutants[i, :, p] = np.eye(4, dtype=np.float32)
    mutants = mutants.reshape(-1, length, 4)
    d = None if dnase is None else np.repeat(dnase[None], len(mutants), axis=0)
    out = jax.jit(model.apply_logits)(model.params, mutants, d)
    return np.asarray(out).reshape(len(positions), 4, -1)


def fast_fn(model, **kw):
    jitted = jax.jit(lambda p, s, d: mutant_predictions_fast(model, p, s, d, **kw))
    return lambda seq, dnase: np.asarray(jitted(model.params, seq, dnase))


def window(rng, variant, length, n_rows=()):
    seq = random_onehot(rng, 1, length)[0]
    seq[list(n_rows)] = 0.0
    dnase = rng.random(length).astype(np.float32) if variant == "full" else None
    return seq, dnase


def assert_matches(got, want, ref):
    """Within 1e-5 of the output scale, and the mutation effects themselves reproduced closely."""
    scale = np.max(np.abs(want))
    err = np.max(np.abs(got - want))
    assert err <= 1e-5 * scale, f"{err=} {scale=}"
    effect = np.max(np.abs(want - ref))
    assert effect > 100 * err, f"mutation effects too small to test: {effect=} {err=}"
    assert np.max(np.abs((got - ref) - (want - ref))) <= 1e-3 * effect


@pytest.mark.parametrize(
    "variant,length,widths,all_bases",
    [
        ("full", 64, TINY, False),
        ("dna", 80, TINY, True),
        ("full", 96, (16, 24, 32), False),
        ("dna", 100, TINY, False),
        ("full", 72, TINY, True),
    ],
)
def test_fast_equals_full_at_every_position(rng, variant, length, widths, all_bases):
    _, model = torch_pair(variant, length, widths=widths, hidden=40, outputs=3, seed=length)
    n_rows = (0, length // 2 + 1)  # an N at the first base and one mid-sequence
    seq, dnase = window(rng, variant, length, n_rows)
    want = full_reference(model, seq, dnase)  # (L, 4, T)
    is_n = seq.sum(-1) == 0
    first_real = int(np.flatnonzero(~is_n)[0])
    ref = want[first_real, np.argmax(seq[first_real])]  # p(s): substituting the reference base

    got = fast_fn(model, logits=True, all_bases=all_bases)(seq, dnase)
    assert got.shape == (length, 4, 3)
    if all_bases:  # N rows: four true substitutions
        assert_matches(got, want, ref)
    else:  # real bases: all four entries (the reference base's is p(s)); N rows: base 0 holds p(s)
        assert_matches(got[~is_n], want[~is_n], ref)
        assert_matches(got[is_n, 1:], want[is_n, 1:], ref)
        np.testing.assert_array_equal(
            got[is_n, 0], np.broadcast_to(got[first_real, np.argmax(seq[first_real])], (2, 3))
        )
        np.testing.assert_allclose(got[is_n, 0], np.broadcast_to(ref, (2, 3)), rtol=1e-5, atol=1e-7)


def test_position_chunks_and_vmap_over_windows(rng):
    length = 100  # 7 groups of 16: chunks of 3 groups leave a remainder step
    _, model = torch_pair("full", length, widths=TINY, hidden=40, outputs=3, seed=3)
    seqs = random_onehot(rng, 3, length, n_frac=0.02)
    dnase = rng.random((3, length)).astype(np.float32)
    per_window = fast_fn(model, position_chunk=16)
    one = np.stack([per_window(seqs[i], dnase[i]) for i in range(3)])
    # Chunks of 3 groups (with a remainder step) and logits: the final activation of the same numbers.
    chunked = fast_fn(model, logits=True, position_chunk=48)(seqs[1], dnase[1])
    np.testing.assert_allclose(1 / (1 + np.exp(-chunked)), one[1], rtol=1e-5, atol=1e-7)
    batched = jax.jit(jax.vmap(lambda s, d: mutant_predictions_fast(model, model.params, s, d)))(seqs, dnase)
    assert batched.shape == (3, length, 4, 3)
    np.testing.assert_allclose(np.asarray(batched), one, rtol=1e-6, atol=1e-7)


def test_long_window_edges_and_pool_boundaries(rng):
    length = 1000  # 62 pooled positions; positions 992-999 are past the last full pool window
    _, model = torch_pair("dna", length, widths=TINY, hidden=40, outputs=2, seed=7)
    seq, _ = window(rng, "dna", length, n_rows=(3, 500))
    positions = np.r_[0:100, 140:150, 494:514, 900:1000]  # both sides of 16- and 4-boundaries
    got = fast_fn(model, logits=True, all_bases=True)(seq, None)[positions]
    want = full_reference(model, seq, None, positions)
    assert_matches(got, want, want[0, np.argmax(seq[0])])


def test_bf16_params_through_with_precision(rng):
    length = 32
    _, model = torch_pair("full", length, widths=TINY, hidden=40, outputs=3, seed=4)
    seq, dnase = window(rng, "full", length)
    fn = lambda p, s, d: mutant_predictions_fast(model, p, s, d, logits=True)  # noqa: E731
    exact = np.asarray(jax.jit(with_precision(fn, "fp32"))(model.params, seq, dnase))
    bf16 = jax.jit(with_precision(fn, "bf16"))(model.params, seq, dnase)
    assert bf16.dtype == jnp.float32 and bf16.shape == exact.shape
    # bf16 keeps 8 bits of mantissa: outputs within a few percent of their scale.
    assert np.max(np.abs(np.asarray(bf16) - exact)) <= 3e-2 * np.max(np.abs(exact))


def test_bad_inputs_name_the_value(rng):
    _, model = torch_pair("full", 64, widths=TINY, hidden=40, outputs=3)
    seq, dnase = window(rng, "full", 64)
    with pytest.raises(ValueError, match=r"seq shape \(63, 4\)"):
        mutant_predictions_fast(model, model.params, seq[:63], dnase)
    with pytest.raises(ValueError, match="dnase shape None"):
        mutant_predictions_fast(model, model.params, seq, None)
    with pytest.raises(ValueError, match="position_chunk=0"):
        mutant_predictions_fast(model, model.params, seq, dnase, position_chunk=0)


def test_flops_per_window_counts_the_published_model():
    cfg = DeepHistoneConfig()  # widths 128/256/512, hidden 925, L = 1000, two branches
    conv = 9 * (128 + 256 + 384) * 128 * 1000 + 512 * 256 * 1000 + 9 * (256 + 512 + 768) * 256 * 250
    branch = 2 * (9 * 4 * 128 * 1000 + conv + 1024 * 512 * 250)
    assert abs(branch / 4.07e9 - 1) < 0.01  # DESIGN.md: about 4.07 GFLOP per branch
    head = 2 * (2 * 62 * 512 * 925 + 925 * 7)
    dnase = branch - 2 * 9 * 3 * 128 * 1000  # conv1 sees 1 row instead of 4
    assert flops_per_window(cfg, "full") == 3001 * (branch + head) + dnase
    fast_total = flops_per_window(cfg, "fast")
    # Per mutant, each channel group's change on its own range (spans 9, 17, 25, 33 positions;
    # a 9-wide convolution writes 8 more), layer k reading groups 0..k:
    layers = (17) + (17 + 25) + (17 + 25 + 33)  # output positions x groups, summed over layers
    trans = 9 + 17 + 25 + 33
    per_mutant = (
        9 * 4 * 128  # conv1: the one-hot change through its 9 taps
        + layers * 9 * 128 * 128
        + trans * 128 * 256  # block1 (every group 128 wide), trans1
        + layers * 9 * 256 * 256
        + trans * 256 * 512  # block2, trans2
        + 9 * 512 * 925
        + 925 * 7  # head: 9 pooled positions' rows, then the output layer
    )
    assert fast_total == (branch + dnase + head) + 3000 * 2 * per_mutant  # the reference is not recomputed
    assert 0.2e9 < 2 * per_mutant < 0.35e9  # issue 6: about 0.3 GFLOP per mutant
    assert flops_per_window(cfg, "fast", all_bases=True) > fast_total
    with pytest.raises(ValueError, match="method='slow'"):
        flops_per_window(cfg, "slow")
