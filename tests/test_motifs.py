"""MEME I/O, JASPAR loading, TomTom matching and logos (jaxmotif.io.meme, jaxmotif.motifs, jaxmotif.logos)."""

import csv
import math

import numpy as np
import pytest

from jaxmotif.io.meme import (
    MemeFormatError,
    Motif,
    information_content,
    read_meme,
    trim_by_information,
    write_meme,
)

memelite_io = pytest.importorskip("memelite.io")
pytest.importorskip("pyjaspar")

from jaxmotif.logos import plot_attribution_logo, plot_motif_matches, plot_pwm_logo  # noqa: E402
from jaxmotif.motifs import (  # noqa: E402
    DEMO_MOTIF_IDS,
    TOMTOM_COLUMNS,
    benjamini_hochberg,
    demo_motifs_from_jaspar,
    demo_motifs_path,
    jaspar_motifs,
    load_motif_db,
    tomtom_matches,
    write_tomtom_tsv,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def random_motifs(seed: int = 0) -> list[Motif]:
    rng = np.random.default_rng(seed)
    return [
        Motif("filter1", rng.dirichlet(np.ones(4), size=9), nsites=12, alt_name="CTCF-like"),
        Motif("filter2", rng.dirichlet(np.full(4, 0.3), size=5), nsites=None, alt_name=None),
        Motif("filter3", rng.dirichlet(np.ones(4), size=21), nsites=3, alt_name="x"),
    ]


def reverse_complement(motif: Motif, name: str) -> Motif:
    # A, C, G, T columns: reversing both axes maps each letter to its complement.
    return Motif(name, np.ascontiguousarray(motif.pwm[::-1, ::-1]), motif.nsites, motif.alt_name)


# ---------------------------------------------------------------------------------------------------
# MEME format


def test_meme_round_trip_ours_and_memelite(tmp_path):
    motifs = random_motifs()
    path = tmp_path / "filters.meme"
    write_meme(path, motifs)

    back = read_meme(path)
    assert [m.name for m in back] == [m.name for m in motifs]
    assert [m.alt_name for m in back] == [m.alt_name for m in motifs]
    assert [m.nsites for m in back] == [m.nsites for m in motifs]
    for ours, original in zip(back, motifs, strict=True):
        np.testing.assert_allclose(ours.pwm, original.pwm, atol=1e-6)
        np.testing.assert_allclose(ours.pwm.sum(axis=1), 1.0, atol=1e-12)

    # memelite's independent reader keys motifs by the rest of the MOTIF line, values (4, w).
    theirs = memelite_io.read_meme(str(path))
    assert list(theirs) == ["filter1 CTCF-like", "filter2", "filter3 x"]
    for pwm, original in zip(theirs.values(), motifs, strict=True):
        np.testing.assert_allclose(pwm.T, original.pwm, atol=1e-6)


def test_meme_header_and_matrix_lines(tmp_path):
    path = tmp_path / "m.meme"
    write_meme(path, random_motifs()[:2], version="5.0.4")
    lines = path.read_text().splitlines()
    assert lines[0] == "MEME version 5.0.4"
    background = "A 0.25 C 0.25 G 0.25 T 0.25"
    header = ["ALPHABET= ACGT", "strands: + -", "Background letter frequencies", background]
    assert all(line in lines for line in header)
    assert "MOTIF filter1 CTCF-like" in lines
    assert "letter-probability matrix: alength= 4 w= 9 nsites= 12 E= 0" in lines
    # Unknown nsites is left out rather than invented, so it reads back as None.
    assert "letter-probability matrix: alength= 4 w= 5 E= 0" in lines
    start = lines.index("MOTIF filter2") + 2
    rows = [list(map(float, line.split())) for line in lines[start : start + 5]]
    assert np.asarray(rows).shape == (5, 4)


@pytest.mark.parametrize(
    ("bad_row", "message"),
    [
        ([np.nan, 0.5, 0.25, 0.25], "NaN or inf at position 2"),
        ([-0.1, 0.6, 0.25, 0.25], "negative probability at position 2"),
        ([0.5, 0.5, 0.5, 0.5], "row 2 sums to 2"),
    ],
)
def test_write_meme_refuses_bad_rows_and_keeps_old_file(tmp_path, bad_row, message):
    path = tmp_path / "out.meme"
    path.write_text("previous contents\n")
    pwm = np.full((4, 4), 0.25)
    pwm[2] = bad_row
    with pytest.raises(ValueError, match=rf"'filter7'.*{message}"):
        write_meme(path, [random_motifs()[0], Motif("filter7", pwm)])
    # The write is atomic: the old file is untouched and no temporary file is left behind.
    assert path.read_text() == "previous contents\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.meme"]


def test_write_meme_refuses_duplicate_and_spaced_names(tmp_path):
    m = random_motifs()[0]
    with pytest.raises(ValueError, match="duplicate motif name 'filter1'"):
        write_meme(tmp_path / "a.meme", [m, m])
    with pytest.raises(ValueError, match="without whitespace"):
        write_meme(tmp_path / "a.meme", [m._replace(name="two words")])


JASPAR_STYLE = """MEME version 4

ALPHABET= ACGT

strands: + -

Background letter frequencies
A 0.25 C 0.25 G 0.25 T 0.25

MOTIF MA0004.1\tArnt
letter-probability matrix: alength= 4 w= 3 nsites= 20 E= 0
 0.200000\t0.800000\t0.000000\t0.000000

  0.950000  0.000000  0.050000  0.000000
 0.000000 1.000000 0.000000 0.000000
URL http://jaspar.genereg.net/matrix/MA0004.1

MOTIF noalt
log-odds matrix: alength= 4 w= 2
 1.2 -3.0 0.1 -0.5
 1.2 -3.0 0.1 -0.5
letter-probability matrix: alength= 4 w= 2
0.25 0.25 0.25 0.2501
0.1 0.2 0.3 0.4
"""


def test_read_meme_tolerates_jaspar_style_files(tmp_path):
    path = tmp_path / "jaspar.meme"
    path.write_text(JASPAR_STYLE)
    motifs = read_meme(path)
    assert [(m.name, m.alt_name, m.nsites, m.pwm.shape) for m in motifs] == [
        ("MA0004.1", "Arnt", 20, (3, 4)),
        ("noalt", None, None, (2, 4)),
    ]
    np.testing.assert_allclose(motifs[0].pwm[1], [0.95, 0, 0.05, 0])
    # Rounded rows are renormalized.
    np.testing.assert_allclose(motifs[1].pwm.sum(axis=1), 1.0)


LAST_ROW = " 0.000000 1.000000 0.000000 0.000000"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        # one row too few: the matrix ends at the URL line
        (lambda t: t.replace(f"{LAST_ROW}\n", ""), r"jaspar.meme:11: .*w= 3 but has 2 rows"),
        # a row with 3 values
        (lambda t: t.replace(LAST_ROW, "0.0 1.0 0.0"), r"jaspar.meme:15: .*row 3"),
        # one row too many
        (lambda t: t.replace("URL http", "0.1 0.2 0.3 0.4\nURL http"), r"jaspar.meme:16: .*more rows"),
        # a count matrix in a probability block
        (lambda t: t.replace("0.1 0.2 0.3 0.4", "10 20 30 40"), r"jaspar.meme:22: .*row 1 sums to 100"),
        (lambda t: t.replace("ALPHABET= ACGT", "ALPHABET= ACDEFGHIKLMNPQRSTVWY"), r"jaspar.meme:3: .*ACGT"),
        (lambda t: "just text\n", r"no letter-probability matrix"),
    ],
)
def test_read_meme_errors_name_file_and_line(tmp_path, edit, message):
    path = tmp_path / "jaspar.meme"
    path.write_text(edit(JASPAR_STYLE))
    with pytest.raises(MemeFormatError, match=message):
        read_meme(path)


def test_information_content_and_trim():
    assert information_content(np.full((7, 4), 0.25)) == pytest.approx(0.0)
    assert information_content(np.eye(4)[[0, 2, 3]]) == pytest.approx(6.0)
    assert information_content(np.array([[0.5, 0.5, 0.0, 0.0]])) == pytest.approx(1.0)

    # A 12-wide conserved block inside nearly uniform flanks (a little information everywhere).
    rng = np.random.default_rng(1)
    pwm = rng.dirichlet(np.full(4, 2000.0), size=40)
    pwm[15:27] = np.eye(4)[np.arange(12) % 4] * 0.97 + 0.01
    start, end = trim_by_information(pwm, min_width=9, max_width=20)
    assert end - start == 20 and start <= 15 and end >= 27
    # A per-position price trims the weak flanks off; a narrow max_width cuts into the block.
    assert trim_by_information(pwm, 9, 20, column_penalty=0.5) == (15, 27)
    start, end = trim_by_information(pwm, 5, 8)
    assert end - start == 8 and 15 <= start and end <= 27
    # Exactly uninformative flanks tie, and ties go to the narrowest window.
    flat = np.full((40, 4), 0.25)
    flat[15:27] = pwm[15:27]
    assert trim_by_information(flat, 9, 20) == (15, 27)
    assert trim_by_information(np.full((30, 4), 0.25), 9, 20) == (0, 9)
    assert trim_by_information(pwm[:6], 9, 20) == (0, 6)
    with pytest.raises(ValueError, match="min_width"):
        trim_by_information(pwm, 10, 5)


# ---------------------------------------------------------------------------------------------------
# Benjamini–Hochberg


def test_benjamini_hochberg_matches_hand_computation():
    # sorted: 0.005 0.01 0.03 0.04 0.5 -> p*m/rank: 0.025 0.025 0.05 0.05 0.5 (already monotone)
    q = benjamini_hochberg(np.array([0.01, 0.04, 0.03, 0.005, 0.5]))
    np.testing.assert_allclose(q, [0.025, 0.05, 0.05, 0.025, 0.5])
    # p*m/rank = 0.04, 0.021: the running minimum from the top lowers the first to 0.021.
    np.testing.assert_allclose(benjamini_hochberg([0.02, 0.021]), [0.021, 0.021])
    # Capped at 1; empty input is fine.
    np.testing.assert_allclose(benjamini_hochberg([0.9, 0.8, 0.95]), [0.95, 0.95, 0.95])
    assert benjamini_hochberg([]).shape == (0,)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        benjamini_hochberg([0.1, 1.5])


# ---------------------------------------------------------------------------------------------------
# JASPAR and the demo motifs


def test_jaspar_motifs_offline():
    motifs = jaspar_motifs("JASPAR2024", "CORE", "vertebrates")
    assert len(motifs) > 800
    by_id = {m.name: m for m in motifs}
    assert by_id["MA0139.2"].alt_name == "CTCF"
    assert by_id["MA0139.2"].pwm.shape == (15, 4)
    for motif in motifs:
        np.testing.assert_allclose(motif.pwm.sum(axis=1), 1.0)
    # Cached arrays are shared, so they are read-only.
    assert not by_id["MA0139.2"].pwm.flags.writeable
    assert [m.name for m in load_motif_db("JASPAR2024")] == list(by_id)
    plants = load_motif_db("JASPAR2024:plants")
    assert plants and not {m.name for m in plants} & set(by_id)
    with pytest.raises(ValueError, match="bundled releases"):
        jaspar_motifs("JASPAR1999")
    with pytest.raises(FileNotFoundError, match="neither a JASPAR release spec"):
        load_motif_db("no_such_file.meme")
    # no filter at all: every collection and group (pyjaspar alone writes invalid SQL for this)
    everything = {m.name for m in jaspar_motifs("JASPAR2024", None, None)}
    core_all_groups = {m.name for m in jaspar_motifs("JASPAR2024", "CORE", None)}
    assert set(by_id) | {m.name for m in plants} <= core_all_groups < everything


def test_demo_motifs_file_is_regenerated_exactly(tmp_path):
    bundled = read_meme(demo_motifs_path())
    assert tuple(m.name for m in bundled) == DEMO_MOTIF_IDS
    assert [m.alt_name for m in bundled] == ["CTCF", "GATA1::TAL1", "Spi1", "FOS::JUN"]
    assert all(8 <= m.pwm.shape[0] <= 19 for m in bundled)
    write_meme(tmp_path / "demo.meme", demo_motifs_from_jaspar("JASPAR2024"))
    assert (tmp_path / "demo.meme").read_bytes() == demo_motifs_path().read_bytes()
    assert [m.name for m in load_motif_db(demo_motifs_path())] == list(DEMO_MOTIF_IDS)


# ---------------------------------------------------------------------------------------------------
# TomTom against JASPAR 2024 CORE vertebrates


@pytest.fixture(scope="module")
def jaspar_tomtom():
    """One memelite call for every query (numba compiles TomTom once, ~1 min without a cache)."""
    demo = read_meme(demo_motifs_path())
    rng = np.random.default_rng(7)
    # Dirichlet around each column: a PWM as noisy as one estimated from ~50 sites.
    noised = [
        Motif(f"noised_{m.name}", np.stack([rng.dirichlet(50 * col + 0.5) for col in m.pwm]), m.nsites)
        for m in demo
    ]
    flipped = [reverse_complement(m, f"rc_{m.name}") for m in demo]
    targets = jaspar_motifs("JASPAR2024", "CORE", "vertebrates")
    rows = tomtom_matches(demo + noised + flipped, targets, top=5)
    return demo, targets, rows


def rows_for(rows, name):
    return [row for row in rows if row["filter"] == name]


def test_tomtom_rows_have_the_documented_columns(jaspar_tomtom):
    demo, targets, rows = jaspar_tomtom
    assert len(rows) == 3 * len(demo) * 5
    for row in rows:
        assert tuple(row) == TOMTOM_COLUMNS
        assert row["e_value"] == pytest.approx(row["p_value"] * len(targets))
        assert row["p_value"] <= row["q_value"] <= 1.0
        assert row["orientation"] in "+-"
    ctcf = rows_for(rows, "MA0139.2")
    assert [row["rank"] for row in ctcf] == [1, 2, 3, 4, 5]
    assert [row["p_value"] for row in ctcf] == sorted(row["p_value"] for row in ctcf)
    assert ctcf[0]["nsites"] == 913
    assert ctcf[0]["information_content"] == pytest.approx(information_content(demo[0].pwm))


@pytest.mark.parametrize("prefix", ["", "noised_", "rc_"])
def test_tomtom_finds_each_demo_motif_itself_first(jaspar_tomtom, prefix):
    demo, _, rows = jaspar_tomtom
    for motif in demo:
        best = rows_for(rows, prefix + motif.name)[0]
        assert best["rank"] == 1
        assert (best["target_id"], best["target_name"]) == (motif.name, motif.alt_name)
        assert best["p_value"] < 1e-8
        assert best["offset"] == 0


def test_tomtom_orientation_of_reverse_complement(jaspar_tomtom):
    demo, _, rows = jaspar_tomtom
    # FOS::JUN (TGAsTCA) is nearly palindromic, so only the asymmetric motifs have a defined strand.
    for motif in demo[:3]:
        assert rows_for(rows, motif.name)[0]["orientation"] == "+"
        assert rows_for(rows, "rc_" + motif.name)[0]["orientation"] == "-"


def test_tomtom_q_values_are_bh_over_all_targets():
    targets = jaspar_motifs()
    query = read_meme(demo_motifs_path())[:1]
    every = tomtom_matches(query, targets, top=None)
    assert len(every) == len(targets)
    by_target = {row["target_id"]: row for row in every}
    p = np.array([by_target[t.name]["p_value"] for t in targets])
    q = np.array([by_target[t.name]["q_value"] for t in targets])
    np.testing.assert_allclose(q, benjamini_hochberg(p))
    assert tomtom_matches(query, targets, top=2) == every[:2]


def test_write_tomtom_tsv(tmp_path, jaspar_tomtom):
    _, _, rows = jaspar_tomtom
    path = tmp_path / "tomtom.tsv"
    write_tomtom_tsv(path, rows)
    with open(path, newline="") as handle:
        table = list(csv.reader(handle, delimiter="\t"))
    assert tuple(table[0]) == TOMTOM_COLUMNS
    assert len(table) == len(rows) + 1
    first = dict(zip(table[0], table[1], strict=True))
    assert first["filter"] == "MA0139.2" and first["target_id"] == "MA0139.2" and first["rank"] == "1"
    assert math.isclose(float(first["p_value"]), rows[0]["p_value"], rel_tol=1e-5)
    with pytest.raises(ValueError, match="row 0 lacks columns"):
        write_tomtom_tsv(path, [{"filter": "x"}])


# ---------------------------------------------------------------------------------------------------
# Logos


def test_plot_motif_matches_writes_png(tmp_path):
    demo = read_meme(demo_motifs_path())
    matches = {demo[0].name: demo[0], demo[1].name: None, demo[2].name: demo[2]}
    path = tmp_path / "matches.png"
    plot_motif_matches(
        path, demo[:3], matches, p_values={demo[0].name: 1e-20}, orientations={demo[2].name: "-"}, ncols=2
    )
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["matches.png"]


def test_logo_letters_come_from_the_alphabet():
    from matplotlib.figure import Figure

    fig = Figure()
    ax_pwm, ax_attr = fig.subplots(2)
    values = np.random.default_rng(0).normal(size=(12, 4))
    logo = plot_attribution_logo(ax_attr, values, alphabet="ATGC", title="grad x input")
    assert list(logo.glyph_df.columns) == ["A", "T", "G", "C"]
    logo = plot_pwm_logo(ax_pwm, np.full((5, 4), 0.25), alphabet="acgt")
    assert list(logo.glyph_df.columns) == ["A", "C", "G", "T"]
    assert ax_pwm.get_ylim() == (0.0, 2.0)
    with pytest.raises(ValueError, match="has 3 letters"):
        plot_attribution_logo(ax_attr, values, alphabet="ACG")
