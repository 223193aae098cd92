"""The bundled demo: model, data files, generator, training code and ``python -m jaxmotif.demo``."""

import json

import jax
import numpy as np
import pytest

from jaxmotif.demo import (
    DEMO_MOTIFS,
    DEMO_PLANTED,
    DEMO_SINGLE_MOTIF_OUTPUTS,
    demo_labels,
    demo_model,
    demo_paths,
    writable_genome,
)
from jaxmotif.demo_training import (
    _train_forward,
    auroc,
    generate,
    load_demo_motifs,
    log_odds,
    motif_models,
    recalibrate,
    train,
    window_scores,
)
from jaxmotif.models import DEEPHISTONE_OUTPUTS, DeepHistoneConfig, Model


@pytest.fixture(scope="module")
def model():
    return demo_model()


@pytest.fixture(scope="module")
def fresh():
    # A seed never used to build the bundled files, so this is held-out data.
    return generate(300, seed=12345)


def test_bundled_model_is_a_two_branch_seven_output_deephistone(model):
    cfg = model.config
    assert cfg.variant == "full" and cfg.has_dnase
    assert cfg.seq_len == 1000 and cfg.num_outputs == 7
    assert cfg.output_names == DEEPHISTONE_OUTPUTS == tuple(DEMO_PLANTED)
    assert cfg.final_activation == "sigmoid"


def test_bundled_files_exist_and_are_small():
    paths = demo_paths()
    for p in paths:
        assert p.exists(), p
    model_bytes = sum(f.stat().st_size for f in paths.model.rglob("*") if f.is_file())
    assert model_bytes <= 5 * 2**20
    total = sum(f.stat().st_size for f in paths.root.rglob("*") if f.is_file())
    assert total <= 6 * 2**20


def test_bundled_model_reaches_auroc_on_fresh_heldout_data(model, fresh):
    pred = model(fresh.onehot(), fresh.dnase)
    scores = {name: auroc(pred[:, k], fresh.labels[:, k]) for k, name in enumerate(model.output_names)}
    assert all(v >= 0.9 for v in scores.values()), scores
    recorded = json.loads(demo_paths().metrics.read_text())["auroc_heldout"]
    assert set(recorded) == set(DEEPHISTONE_OUTPUTS) and min(recorded.values()) >= 0.9


def test_generator_is_deterministic_for_a_seed():
    a, b, c = generate(20, seed=7), generate(20, seed=7), generate(20, seed=8)
    np.testing.assert_array_equal(a.idx, b.idx)
    np.testing.assert_array_equal(a.dnase, b.dnase)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.sites == b.sites
    assert not np.array_equal(a.idx, c.idx)


def test_generated_labels_follow_the_planted_sites(fresh):
    models = motif_models(load_demo_motifs())
    assert fresh.idx.shape == (300, 1000) and fresh.dnase.shape == (300, 1000)
    assert fresh.dnase.dtype == np.float32 and (fresh.dnase >= 0).all()
    np.testing.assert_array_equal(fresh.labels, demo_labels(fresh.present, fresh.is_open))
    for j, m in enumerate(models):
        scores = window_scores(fresh.idx.astype(np.int64), m.lo)
        best = scores.max(axis=1)
        # Windows without the motif rarely hold a chance site as strong as a planted one: the
        # background was scrubbed before planting, and only the junctions of planted sites can
        # form one afterwards.
        assert (best[~fresh.present[:, j]] >= m.plant).mean() <= 0.05
        # Windows with it hold a site reaching the planting threshold at the recorded position.
        for i in np.flatnonzero(fresh.present[:, j]):
            starts = [s.start for s in fresh.sites[i] if s.motif == j]
            assert len(starts) == 2 and (scores[i, starts] >= m.plant - 1e-9).all()  # summation order
    # Every output has both classes (AUROC is defined) and open windows have more DNase.
    assert (fresh.labels.mean(axis=0) > 0.05).all() and (fresh.labels.mean(axis=0) < 0.95).all()
    assert fresh.dnase[fresh.is_open].max(axis=1).mean() > 3 * fresh.dnase[~fresh.is_open].max(axis=1).mean()


def test_single_motif_outputs_depend_on_one_motif_only():
    present = np.array([[1, 0, 0, 0], [0, 1, 1, 1], [0, 0, 1, 0], [1, 1, 1, 1]], dtype=bool)
    names = dict(DEMO_MOTIFS)
    ids = [mid for mid, _ in DEMO_MOTIFS]
    for is_open in (np.zeros(4, bool), np.ones(4, bool)):
        labels = demo_labels(present, is_open)
        for output, motif_id in DEMO_SINGLE_MOTIF_OUTPUTS.items():
            k = DEEPHISTONE_OUTPUTS.index(output)
            np.testing.assert_array_equal(labels[:, k], present[:, ids.index(motif_id)])
            assert names[motif_id] in DEMO_PLANTED[output]


def test_auroc_matches_pairwise_definition():
    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=60), 1)  # rounding makes ties
    labels = rng.random(60) < 0.4
    pos, neg = scores[labels], scores[~labels]
    pairwise = ((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean()
    assert auroc(scores, labels) == pytest.approx(pairwise)
    assert np.isnan(auroc(scores, np.zeros(60, bool)))


def test_window_scores_match_a_naive_loop():
    rng = np.random.default_rng(1)
    lo = log_odds(load_demo_motifs()[0].pwm)
    idx = rng.integers(0, 4, (2, 30))
    w = lo.shape[0]
    rc = lo[::-1, ::-1]
    naive = [
        [
            max(sum(lo[k, idx[n, s + k]] for k in range(w)), sum(rc[k, idx[n, s + k]] for k in range(w)))
            for s in range(30 - w + 1)
        ]
        for n in range(2)
    ]
    np.testing.assert_allclose(window_scores(idx, lo), naive)


def test_tiny_training_run_and_batchnorm_recalibration():
    data = generate(16, seed=3)
    config = DeepHistoneConfig(variant="full", seq_len=1000, widths=(4, 4, 4), hidden=8)
    logs = []
    model = train(
        config,
        data,
        steps=2,
        batch_size=8,
        learning_rate=1e-3,
        seed=0,
        aux_weight=1.0,
        log_every=1,
        log=logs.append,
    )
    assert isinstance(model, Model) and len(logs) == 2
    pred = model(data.onehot(), data.dnase)
    assert pred.shape == (16, 7) and np.isfinite(pred).all()
    # With running statistics taken from one chunk of all rows, the eval-mode model equals the
    # training-mode forward on those rows: the hand-written forward follows the Flax module.
    from flax import nnx

    params = recalibrate(nnx.to_pure_dict(model.params), data, rows=16, chunk=16)
    evaluated = Model.from_params(config, params).apply_logits(params, data.onehot(), data.dnase)
    trained, _ = jax.jit(_train_forward)(params, data.onehot(), data.dnase)
    np.testing.assert_allclose(np.asarray(evaluated), np.asarray(trained), rtol=1e-4, atol=1e-4)


def test_bundled_conv1_filters_name_every_planted_motif_first():
    # The "done when" of the demo: run as `python -m jaxmotif.filters` does by default (seed rule,
    # F = 0.9, the bundled demo sequences), every planted motif is the rank-1 TomTom match of at
    # least one conv1 filter among all JASPAR 2024 CORE vertebrate matrices.
    from jaxmotif.filters import conv1_pwms, filter_motifs
    from jaxmotif.io.fasta import read_fasta
    from jaxmotif.motifs import jaspar_motifs, tomtom_matches
    from jaxmotif.sequence import one_hot_batch

    model = demo_model()
    records = read_fasta(demo_paths().seqs)
    seqs = one_hot_batch([r.sequence for r in records], model.config.alphabet, [r.name for r in records])
    motifs = filter_motifs(conv1_pwms(model, seqs, threshold_factor=0.9))
    rows = tomtom_matches(motifs, jaspar_motifs("JASPAR2024", "CORE", "vertebrates"), top=1)
    first = {r["target_id"] for r in rows}
    missing = [f"{name} ({mid})" for mid, name in DEMO_MOTIFS if mid not in first]
    assert not missing, [(r["filter"], r["target_name"], r["p_value"]) for r in rows]


def test_demo_cli_runs_and_writes_what_it_says(tmp_path, capsys):
    from pathlib import Path

    from jaxmotif.cli.demo import STEPS, main

    assert list(STEPS) == ["metrics", "saliency", "methods", "mutmap", "filters", "optimize", "report"]
    out = tmp_path / "demo"
    # The mutmap and optimize steps take a minute or more on a CPU; `make demo` runs every step.
    assert main(["--out", str(out), "--steps", "metrics", "saliency", "filters"]) == 0
    printed = capsys.readouterr().out
    wrote = [line.split("wrote ", 1)[1].strip() for line in printed.splitlines() if "  wrote " in line]
    assert len(wrote) == 6, printed
    for path in wrote:
        assert Path(path).is_file() and Path(path).is_relative_to(out), path
    assert (out / "saliency_logos.png").stat().st_size > 0
    with np.load(out / "saliency.npz") as z:
        assert z["saliency"].shape[1:] == (1000, 4)
    assert "AUROC" in printed
    for mid, name in DEMO_MOTIFS:
        assert f"planted {name} ({mid}): rank-1 match of filter" in printed, printed
    header = (out / "filters" / "tomtom.tsv").read_text().splitlines()[0].split("\t")
    assert header[:4] == ["filter", "nsites", "information_content", "rank"]


def test_aux_head_is_a_max_over_windows_of_rectified_conv1_scores():
    from jaxmotif.demo_training import _aux_logits

    rng = np.random.default_rng(2)
    kernel = rng.normal(size=(9, 4, 3)).astype(np.float32)
    bias = rng.normal(size=3).astype(np.float32)
    w = rng.normal(size=(3, 7)).astype(np.float32)
    b = rng.normal(size=7).astype(np.float32)
    seq = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (2, 30))]
    got = _aux_logits({"seq_map": {"conv1": {"kernel": kernel, "bias": bias}}}, {"kernel": w, "bias": b}, seq)
    scores = np.stack([np.einsum("nkc,kcf->nf", seq[:, s : s + 9], kernel) for s in range(30 - 8)], 1)
    want = np.maximum(scores + bias, 0).max(axis=1) @ w + b
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


def test_demo_cli_bad_out_is_one_line_error(tmp_path, capsys):
    from jaxmotif.cli.demo import main

    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["--out", str(blocker)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "--overwrite" in err  # an existing output is refused


def test_writable_genome_copy_indexes_with_pyfaidx(tmp_path):
    from jaxmotif.io.bed import read_bed, validate_regions
    from jaxmotif.io.bigwig import BigWigReader
    from jaxmotif.io.fasta import Genome

    path = writable_genome(tmp_path)
    paths = demo_paths()
    with Genome(path) as genome, BigWigReader(paths.dnase) as bw:
        assert genome.chrom_sizes == {"chrA": 30_000, "chrB": 12_000}
        assert bw.chrom_sizes == genome.chrom_sizes
        regions = read_bed(paths.regions)
        validate_regions(regions, genome.chrom_sizes)
        sizes = [r.end - r.start for r in regions]
        assert any(s < 1000 for s in sizes) and any(s % 2 for s in sizes)
        assert any(r.end == genome.chrom_size(r.chrom) or r.start == 0 for r in regions)
        assert bw.read("chrA", 0, 1000).shape == (1000,)
    assert not (paths.root / "genome.fa.fai").exists()
