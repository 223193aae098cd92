"""Fast ISM derived from the graph (jaxmotif.graph.affected) equals full ISM at every position.

References: ``mutant_predictions_full`` (every mutant through the whole model) and, for BPNet at
its published input length, the plain forward pass of each mutant. fp32 throughout, 1e-5
relative to the largest output.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import random_onehot

import jaxmotif
from jaxmotif.graph.affected import mutant_outputs
from jaxmotif.ism import mutant_predictions_full, split_apply
from jaxmotif.ism_graph import flops_per_window, mutant_predictions_graph
from jaxmotif.models import BPNetConfig, ChromBPNetConfig, DeepHistoneConfig, Model
from jaxmotif.nonlinear import DEFAULT_OPS


def spread(model, factor=3.0):
    """Random init leaves outputs tiny; scale every kernel so differences would show."""
    model.params = jax.tree.map(lambda x: x * factor if x.ndim > 1 else x, model.params)
    return model


def side_input(rng, cfg):
    if cfg.side_shape is None:
        return None
    return rng.poisson(2.0, cfg.side_shape).astype(np.float32)


def assert_rel(got, want, rtol=1e-5):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    np.testing.assert_allclose(got, want, rtol=0, atol=rtol * max(np.abs(want).max(), 1e-6))


CASES = {
    "bpnet-control": BPNetConfig(seq_len=131, n_filters=8, n_layers=3, n_control_tracks=2, trimming=40),
    "chrombpnet": ChromBPNetConfig(
        bias=BPNetConfig(seq_len=150, n_filters=4, n_layers=2, n_outputs=1, n_control_tracks=0),
        accessibility=BPNetConfig(seq_len=150, n_filters=8, n_layers=3, n_outputs=1, n_control_tracks=0),
    ),
    "deephistone": DeepHistoneConfig(seq_len=40, widths=(4, 6, 8), hidden=5),  # L % 16 != 0
    # no dilated layers (a legal bpnet-lite BPNet), no trimming: the affected windows reach both edges
    "bpnet-0-layers": BPNetConfig(seq_len=90, n_filters=3, n_layers=0, n_control_tracks=2, trimming=0),
}
# trimming < 37: the counts head averages the whole input; one strand, no counts bias
SMALL_BPNET = BPNetConfig(
    seq_len=117,
    n_filters=6,
    n_layers=2,
    n_outputs=1,
    n_control_tracks=1,
    trimming=20,
    count_output_bias=False,
)


@pytest.mark.parametrize("name", CASES)
def test_fast_equals_full_at_every_position(rng, name):
    cfg = CASES[name]
    model = spread(Model.random(cfg, key=jax.random.key(1)))
    seq = random_onehot(rng, 1, cfg.seq_len)[0]
    seq[[0, cfg.seq_len // 2]] = 0.0  # N rows, one at the edge
    side = side_input(rng, cfg)
    d = None if side is None else jnp.asarray(side)
    preds, ref = jax.jit(lambda p, s, d: mutant_predictions_graph(model, p, s, d))(model.params, seq, d)
    full = mutant_predictions_full(split_apply(model), model.params, jnp.asarray(seq), d, 96)
    keep = seq.sum(-1) > 0
    assert preds.shape == (cfg.seq_len, 4, len(cfg.output_names))
    assert_rel(np.asarray(preds)[keep], np.asarray(full)[keep])
    assert_rel(ref, model.apply(model.params, seq[None], None if side is None else side[None])[0])
    # the reference entries are the reference output bit for bit (same sliced computation)
    at_ref = np.asarray(preds)[keep][seq[keep] > 0]
    np.testing.assert_array_equal(at_ref, np.broadcast_to(np.asarray(ref), at_ref.shape))


def test_mutation_map_fast_equals_full_for_bpnet(rng):
    cfg = SMALL_BPNET
    model = spread(Model.random(cfg, key=jax.random.key(2)))
    seq = random_onehot(rng, 2, cfg.seq_len, n_frac=0.02)
    ctl = np.stack([side_input(rng, cfg) for _ in range(2)])
    fast = jaxmotif.mutation_map(model, seq, ctl, targets="counts", method="fast")  # score="delta"
    full = jaxmotif.mutation_map(model, seq, ctl, targets="counts", method="full")
    assert fast.shape == (2, cfg.seq_len, 4, 1)
    np.testing.assert_array_equal(np.isnan(fast), np.isnan(full))
    ok = ~np.isnan(full)
    # deltas are differences of outputs: 1e-5 of the outputs is ~1e-4 of the largest delta here
    assert_rel(fast[ok], full[ok], 1e-4)
    assert np.all(fast[ok][seq[ok[..., 0]] > 0] == 0)  # reference entries exactly 0
    assert jaxmotif.ism.default_method(model) == "fast"


def test_bpnet_published_length_on_a_few_positions(rng):
    """64 x 8 geometry (2114 in, trimming 557) with 8 filters: edges, the crop borders, the middle."""
    cfg = BPNetConfig(n_filters=8, n_layers=8, n_control_tracks=2)
    model = spread(Model.random(cfg, key=jax.random.key(3)), 2.0)
    seq = random_onehot(rng, 1, cfg.seq_len)[0]
    ctl = side_input(rng, cfg)
    positions = np.array([0, 1, 520, 557, 1057, 1556, 2113])
    preds, _ = jax.jit(lambda p, s, d: mutant_predictions_graph(model, p, s, d, positions=positions))(
        model.params, seq, ctl
    )
    mutants = np.repeat(seq[None], 4 * len(positions), axis=0).reshape(len(positions), 4, *seq.shape)
    for i, p in enumerate(positions):
        mutants[i, :, p] = np.eye(4, dtype=np.float32)
    mutants = mutants.reshape(-1, *seq.shape)
    want = model(mutants, np.repeat(ctl[None], len(mutants), axis=0), batch_size=8)
    want = np.asarray(
        jaxmotif.Model.apply(model, model.params, mutants, np.repeat(ctl[None], len(mutants), 0))
    )
    assert_rel(np.asarray(preds).reshape(-1, 2), want)


def test_flops_per_window():
    for cfg in (BPNetConfig(), CASES["chrombpnet"]):
        full, fast = flops_per_window(cfg, "full"), flops_per_window(cfg, "fast")
        assert 0 < fast < full
    bp = BPNetConfig()
    assert flops_per_window(bp, "full") / flops_per_window(bp, "fast") > 4  # 6.3 counted
    # A forward pass of the default BPNet: Σ L K Cin Cout over iconv, 8 rconvs, fconv, linear.
    forward = 2114 * (21 * 4 * 64 + 8 * 3 * 64 * 64 + 75 * 66 * 2) + 65
    assert flops_per_window(bp, "full") == pytest.approx(2 * (3 * 2114 + 1) * forward)
    dh = DeepHistoneConfig(seq_len=64, widths=(4, 4, 4), hidden=3)
    assert flops_per_window(dh, "fast") == jaxmotif.ism_fast.flops_per_window(dh, "fast")


def test_fast_on_a_graph_using_the_rest_of_the_vocabulary(rng):
    """'valid' and dilated convolutions, pool by 3 with a ragged tail, crops, Flatten into a
    non-Linear layer (full update), means, BatchNorm, concatenation and LogSumExp of vectors."""
    from jaxmotif.graph import (
        Act,
        BatchNorm,
        Concat,
        Conv,
        Crop,
        Flatten,
        Graph,
        Input,
        Linear,
        LogSumExp,
        MaxPool,
        MeanPositions,
        Node,
        Seq,
        build,
        run,
    )

    body = Seq("body", (Conv("c1", 5, 5, padding="valid"), BatchNorm("bn"), Act("relu"), MaxPool(3)))
    graph = Graph(
        (Input("seq", 4),),
        (
            Node("h", body, ("seq",)),
            Node("a", Seq(None, (Conv("c2", 3, 3, dilation=2), Crop(2), Flatten(), Act("softplus"))), ("h",)),
            Node("b", Seq(None, (MeanPositions(), Linear("lin", 4))), ("h",)),
            Node("ab", Concat(), ("a", "b")),
            Node("u", Linear("head", 2), ("ab",)),
            Node("v", Linear("head2", 2), ("b",)),
            Node("out", LogSumExp(), ("u", "v")),
        ),
        ("out",),
    )
    length = 41
    module = build(graph, length, key=jax.random.key(0))
    seq = random_onehot(rng, 1, length)[0]

    def targets(outs):
        return outs["out"]

    preds, ref = jax.jit(
        lambda s: mutant_outputs(module, graph, targets, s, ops=DEFAULT_OPS, position_chunk=8)
    )(seq)
    mutants = np.repeat(seq[None], 4 * length, axis=0).reshape(length, 4, length, 4)
    for p in range(length):
        mutants[p, :, p] = np.eye(4, dtype=np.float32)
    want = run(module, {"seq": jnp.asarray(mutants.reshape(-1, length, 4))})["out"].reshape(length, 4, 2)
    assert_rel(preds, want)
    assert_rel(ref, run(module, {"seq": jnp.asarray(seq[None])})["out"][0])


def test_bf16_delta_is_exact_zero_where_the_head_is_blind(rng):
    """The delta form's invariant at bf16: a substitution whose change never reaches a nonzero
    head row scores exactly 0 (the change is carried, never a difference of two roundings); the
    others respond, with no rounding offset, and follow fp32."""
    from jaxmotif.graph import geometry
    from jaxmotif.models.deepsea import DeepSEAConfig

    cfg = DeepSEAConfig(seq_len=200, widths=(8, 8, 8), hidden=(6,), output_names=("a", "b"))
    model = spread(Model.random(cfg, key=jax.random.key(5)), 2.0)
    shape = geometry(cfg.graph(), cfg.seq_len, "seq")[0]["features"]  # 3 positions, stride 16
    kernel = np.array(model.params["dense1"]["kernel"][...])
    kernel[shape.channels :] = 0.0  # the head reads feature position 0 only
    model.params["dense1"]["kernel"][...] = jnp.asarray(kernel)
    blind = np.arange(cfg.seq_len) > shape.hi  # beyond position 0's receptive field
    assert 10 < blind.sum() < cfg.seq_len // 2
    seq = random_onehot(rng, 2, cfg.seq_len)
    exact = jaxmotif.mutation_map(model, seq, method="fast", score="delta")
    bf16 = jaxmotif.mutation_map(model, seq, method="fast", score="delta", precision="bf16")
    substituted = np.broadcast_to((seq == 0)[..., None], exact.shape)
    seen = substituted & ~blind[None, :, None, None]
    for delta in (exact, bf16):
        assert np.all(delta[:, blind] == 0.0)
        assert np.mean(delta[seen] != 0) > 0.9
    values, counts = np.unique(bf16[seen][bf16[seen] != 0], return_counts=True)
    assert counts.max() <= 0.01 * seen.sum()  # no value shared by many substitutions: no offset
    assert np.corrcoef(exact[seen], bf16[seen])[0, 1] >= 0.99


def test_listed_substitutions_of_a_graph_equal_its_mutation_map(rng):
    """``mutation_scores_at(method="fast")`` on a graph model: p(s) is the map's reference, p(ŝ)
    the map's entry, and listing the reference base gives exactly p(s)."""
    from jaxmotif.ism import mutation_scores_at

    cfg = SMALL_BPNET
    model = spread(Model.random(cfg, key=jax.random.key(6)))
    seq = random_onehot(rng, 2, cfg.seq_len)
    ctl = np.stack([side_input(rng, cfg) for _ in range(2)])
    raw = jaxmotif.mutation_map(model, seq, ctl, score="raw", method="fast")
    positions = np.array([[0, 5, 5, 116], [60, 60, 3, 90]])
    bases = np.array([[1, 2, 3, 0], [0, 3, 1, 2]])
    bases[0, 0] = np.argmax(seq[0, 0])  # one listed reference base
    got = mutation_scores_at(model, seq, ctl, positions, bases, method="fast")
    assert got.shape == (2, 4, 2, 2)
    for n in range(2):
        for k in range(4):
            p, b = positions[n, k], bases[n, k]
            np.testing.assert_allclose(got[n, k, 1], raw[n, p, b], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(got[n, k, 0], raw[n, p, np.argmax(seq[n, p])], rtol=1e-5, atol=1e-6)
            if seq[n, p, b] == 1:  # the reference base: exactly no change
                np.testing.assert_array_equal(got[n, k, 0], got[n, k, 1])


def test_classic_head_rows_per_position_or_per_step_agree(rng):
    """A Flatten -> Linear head: the whole map (each step's positions share the kernel rows they
    read) and listed positions (each gathers its own rows) give the same outputs; both equal
    ``full``."""
    from jaxmotif.models.deepsea import DeepSEAConfig

    cfg = DeepSEAConfig(seq_len=180, widths=(6, 6, 6), hidden=(5,), output_names=("a", "b"))
    model = spread(Model.random(cfg, key=jax.random.key(7)), 2.0)
    seq = random_onehot(rng, 1, cfg.seq_len)[0]
    whole, ref = jax.jit(lambda s: mutant_predictions_graph(model, model.params, s, position_chunk=16))(seq)
    where = np.array([0, 17, 50, 51, 179, 3])
    listed, ref2 = jax.jit(lambda s: mutant_predictions_graph(model, model.params, s, positions=where))(seq)
    full = mutant_predictions_full(split_apply(model), model.params, jnp.asarray(seq), None, 96)
    assert_rel(whole, full)
    assert_rel(listed, np.asarray(whole)[where])
    np.testing.assert_array_equal(ref, ref2)
