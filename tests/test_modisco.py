"""Attribution store, TF-MoDISco (modisco-lite) and aligned motif logos; the demo end to end."""

import csv

import numpy as np
import pytest

from jaxmotif.io.attribution_store import (
    AttributionStoreError,
    open_attribution_store,
    write_attribution_store,
)
from jaxmotif.io.meme import Motif
from jaxmotif.logos import AlignedMatch, aligned_match_figure, aligned_match_matrices
from jaxmotif.motif_discovery import center_over_bases, trim_window

# ---- the store -----------------------------------------------------------------------------------


def _store_inputs(rng, n=5, length=30, targets=2):
    one_hot = np.eye(4, dtype=np.uint8)[rng.integers(0, 4, (n, length))]
    one_hot[0, 3] = 0  # an N
    attributions = rng.normal(size=(n, length, 4, targets)).astype(np.float32)
    regions = [("chrA", 100 * i, 100 * i + length) for i in range(n)]
    return one_hot, attributions, regions


def test_store_round_trip(tmp_path, rng):
    one_hot, attributions, regions = _store_inputs(rng)
    path = write_attribution_store(
        tmp_path / "a.zarr",
        one_hot,
        attributions,
        regions,
        ["H3K4me1", "H3K27ac"],
        "gradient",
        True,
        model="m",
    )
    store = open_attribution_store(path)
    assert store.shape == (5, 30)
    assert store.target_names == ["H3K4me1", "H3K27ac"]
    assert (store.method, store.hypothetical, store.model) == ("gradient", True, "m")
    data = store.read("H3K27ac")
    np.testing.assert_array_equal(data.one_hot, one_hot.astype(np.float32))
    np.testing.assert_array_equal(data.attributions, attributions[..., 1])
    np.testing.assert_array_equal(store.read(0, rows=slice(1, 3)).attributions, attributions[1:3, ..., 0])
    assert [tuple(r) for r in data.regions] == regions
    assert store.target_index("1") == 1


def test_store_errors(tmp_path, rng):
    one_hot, attributions, regions = _store_inputs(rng)
    with pytest.raises(AttributionStoreError, match="does not exist"):
        open_attribution_store(tmp_path / "missing.zarr")
    with pytest.raises(AttributionStoreError, match=r"attributions shape"):
        write_attribution_store(
            tmp_path / "b.zarr", one_hot, attributions[:, :-1], regions, ["a", "b"], "g", True
        )
    with pytest.raises(AttributionStoreError, match="2 target_names"):
        write_attribution_store(
            tmp_path / "b.zarr", one_hot, attributions[..., :1], regions, ["a", "b"], "g", 1
        )
    path = write_attribution_store(tmp_path / "c.zarr", one_hot, attributions, None, ["a", "b"], "g", True)
    store = open_attribution_store(path)
    assert store.regions()[2] == ("seq2", 0, 30)
    with pytest.raises(AttributionStoreError, match="holds 2 targets"):
        store.target_index(None)
    with pytest.raises(AttributionStoreError, match="'nope' is not in"):
        store.target_index("nope")
    with pytest.raises(AttributionStoreError, match="exists"):
        write_attribution_store(path, one_hot, attributions, None, ["a", "b"], "g", True)
    import zarr

    zarr.open_group(str(path), mode="r+").attrs["complete"] = False
    with pytest.raises(AttributionStoreError, match="incomplete"):
        open_attribution_store(path)
    assert open_attribution_store(path, allow_incomplete=True).shape == (5, 30)
    (tmp_path / "plain").mkdir()
    with pytest.raises(AttributionStoreError, match="not"):
        open_attribution_store(tmp_path / "plain")


# ---- small pieces ----------------------------------------------------------------------------------


def test_center_over_bases():
    g = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    centred = center_over_bases(g)
    np.testing.assert_allclose(centred.sum(-1), 0.0, atol=1e-6)
    np.testing.assert_allclose(centred, g - g.mean(-1, keepdims=True))


def test_trim_window_is_modisco_lite_report_rule():
    cwm = np.zeros((12, 4))
    cwm[2, 0] = 0.29  # below 0.3 x max: trimmed
    cwm[4, 1] = -0.5  # |CWM| counts
    cwm[6, 2] = 1.0
    cwm[9, 3] = 0.3  # exactly 0.3 x max: kept (modisco-lite keeps >=)
    assert trim_window(cwm) == (4, 10)
    assert trim_window(np.zeros((5, 4))) == (0, 5)


def test_aligned_match_matrices_by_hand():
    target = Motif("t", np.eye(4)[[0, 1, 2, 3, 0, 1]].astype(float))
    query = np.eye(4)[[2, 3, 0]].astype(float)  # = target[2:5]: TomTom offset 2, query col i ~ target col i+2
    q, t, first = aligned_match_matrices(query, AlignedMatch(target, 2, "+"))
    assert (q.shape, first) == ((6, 4), 2)
    np.testing.assert_array_equal(q[2:5], t[2:5])
    np.testing.assert_array_equal(t, target.pwm)
    # The reverse strand: the query is the reverse complement of target[1:4].
    rc_query = target.pwm[1:4][::-1, ::-1]
    q, t, first = aligned_match_matrices(rc_query, AlignedMatch(target, 2, "-"))
    np.testing.assert_array_equal(q[first : first + 3], t[first : first + 3])


def test_aligned_matches_follow_tomtom(tmp_path):
    """TomTom's own offset and strand put each query over the columns it matched (memelite)."""
    from jaxmotif.logos import aligned_matches_from_rows
    from jaxmotif.motifs import jaspar_motifs, tomtom_matches

    database = jaspar_motifs()
    kaiso = next(m for m in database if m.name == "MA0527.2")
    flank = np.full((3, 4), 0.25)
    queries = [
        Motif("slice", np.array(kaiso.pwm[2:9])),
        Motif("rc_slice", np.array(kaiso.pwm[1:8][::-1, ::-1])),
        Motif("padded_rc", np.vstack([flank, kaiso.pwm, flank[:2]])[::-1, ::-1].copy()),
    ]
    rows = tomtom_matches(queries, database, top=1)
    matches = aligned_matches_from_rows(rows, database)
    for query in queries:
        match = matches[query.name]
        assert match.motif.name == "MA0527.2"
        q, t, _ = aligned_match_matrices(query.pwm, match)
        # Columns where both are drawn, the query's uniform flanks left out: the same columns.
        both = (q.sum(1) > 0) & (t.sum(1) > 0) & ~np.isclose(q, 0.25).all(axis=1)
        assert both.sum() >= 7
        np.testing.assert_allclose(q[both], t[both], atol=1e-12)
    assert matches["rc_slice"].orientation == "-" and matches["slice"].orientation == "+"
    fig = aligned_match_figure(queries, {**matches, "slice": None}, ncols=2)
    assert len([ax for ax in fig.axes if ax.axison]) == 2 * len(queries) - 1  # "no match" panel is off


# ---- the demo end to end --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_peaks():
    """For the two single-motif demo outputs: the demo windows each scores >= 0.5 and gradient
    hypothetical contributions there (TF-MoDISco reads an output's peaks, not background)."""
    import jaxmotif
    from jaxmotif.cli.demo import read_demo_sequences
    from jaxmotif.motif_discovery import gradient_hypothetical
    from jaxmotif.reporting import modisco_windows

    model = jaxmotif.demo_model()
    seqs, dnase, records = read_demo_sequences(jaxmotif.demo_paths())
    probs = np.asarray(model(seqs, dnase))
    out = {}
    for target in ("H3K4me1", "H3K36me3"):
        rows = modisco_windows(probs[:, model.output_names.index(target)])
        hyp = gradient_hypothetical(model, seqs[rows], dnase[rows], target)
        out[target] = (seqs[rows], hyp, [records[i].name for i in rows])
    return model, out


@pytest.mark.slow
def test_demo_modisco_recovers_planted_motifs(tmp_path, demo_peaks, capsys):
    """attribute -> store -> python -m jaxmotif.modisco -> TomTom names RELA and ZBTB33."""
    from jaxmotif.cli.modisco import main
    from jaxmotif.io.meme import read_meme
    from jaxmotif.motif_discovery import read_modisco_h5

    _, peaks = demo_peaks
    expected = {"H3K4me1": "MA0107.1", "H3K36me3": "MA0527.2"}  # RELA, ZBTB33: jaxmotif.demo
    for target, motif_id in expected.items():
        seqs, hyp, names = peaks[target]
        store = write_attribution_store(
            tmp_path / f"{target}.zarr", seqs, hyp[..., None], [(n, 0, 1000) for n in names],
            [target], "gradient_hypothetical", True,
        )  # fmt: skip
        out = tmp_path / f"motifs_{target}"
        # The store holds one target, so --target may be left out.
        args = ["--attributions", str(store), "--out", str(out), "--max-seqlets", "250", "--leiden-runs", "2"]
        assert main(args) == 0
        with open(out / "tomtom.tsv", newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        best = [r for r in rows if r["rank"] == "1" and r["filter"].startswith("pos_patterns")]
        assert motif_id in {r["target_id"] for r in best}, best
        # The files agree with each other: h5 patterns (re-trimmed) = MEME motifs = TomTom queries.
        patterns = read_modisco_h5(out / "modisco_results.h5")
        motifs = read_meme(out / "patterns.meme")
        assert [p.name for p in patterns] == [m.name for m in motifs]
        for p, m in zip(patterns, motifs, strict=True):
            np.testing.assert_allclose(p.motif.pwm, m.pwm, atol=1e-5)
            assert m.nsites == p.n_seqlets
        assert {r["filter"] for r in rows} == {m.name for m in motifs}
        assert (out / "logos.png").stat().st_size > 0
        assert main(args) == 1  # refuses an existing output
        assert "pass --overwrite" in capsys.readouterr().err
    # One-line errors: unknown target, a non-hypothetical store.
    store = tmp_path / "H3K4me1.zarr"
    assert main(["--attributions", str(store), "--target", "H3K27ac", "--out", str(tmp_path / "x")]) == 1
    assert "'H3K27ac' is not in" in capsys.readouterr().err
    seqs, hyp, _ = peaks["H3K4me1"]
    plain = write_attribution_store(tmp_path / "plain.zarr", seqs, hyp[..., None] * seqs[..., None], None,
                                    ["H3K4me1"], "grad_x_input", False)  # fmt: skip
    assert main(["--attributions", str(plain), "--out", str(tmp_path / "y")]) == 1
    assert "not hypothetical" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_run_modisco_rejects_bad_input():
    from jaxmotif.motif_discovery import run_modisco

    x = np.eye(4, dtype=np.float32)[np.zeros((2, 100), int)]
    with pytest.raises(ValueError, match="all zero"):
        run_modisco(x, np.zeros_like(x))
    with pytest.raises(ValueError, match="shape"):
        run_modisco(x, np.zeros((2, 99, 4)))
    bad = np.ones_like(x)
    bad[1, 5, 2] = np.nan
    with pytest.raises(ValueError, match="window 1 have NaN"):
        run_modisco(x, bad)
    with pytest.raises(ValueError, match="too short"):
        run_modisco(x[:, :50], np.ones_like(x[:, :50]))
