"""Motif files as other tools write them, and TomTom on them against memelite run directly.

Small hand-written files in the layouts of MEME-suite output (minimal format and ``meme.txt``), JASPAR,
HOCOMOCO and CIS-BP conversions; every number checked against a hand reading, every bad file against a
one-line error naming the file, the line and (where there is one) the motif.
"""

import gzip
import warnings

import numpy as np
import pytest

from jaxmotif.io.meme import MemeFormatError, Motif, read_meme, write_meme

memelite_io = pytest.importorskip("memelite.io")

HEADER_V5 = """MEME version 5.5.4

ALPHABET= ACGT

strands: + -

Background letter frequencies (from uniform background):
A 0.29500 C 0.20500_
G 0.20500 T 0.29500_

""".replace("_\n", " \n")  # MEME ends background lines with a space

# MEME's meme.txt: statistics on the MOTIF line, a relative-entropy histogram with numbers first on
# its lines, a site table, a log-odds block of integers, then the probability matrix.
MEME_TXT = """********************************************************************************
MEME - Motif discovery tool
********************************************************************************
MEME version 5.5.4 (Release date: Fri Jun 16 12:19:08 2023 -0700)

ALPHABET= ACGT

Background letter frequencies (from file `bg.txt'):
A 0.29500 C 0.20500_
G 0.20500 T 0.29500_
********************************************************************************
MOTIF GGGA MEME-1\twidth =   4  sites =  20  llr = 200  E-value = 1.2e-005
********************************************************************************
        2.0
Relative         1.4   *  *
(21.3 bits)      1.0  ******
--------------------------------------------------------------------------------
Sequence name            Strand  Start   P-value                   Site
seq3                         +     12  1.23e-05 ACGTACGTAC GGGA TTTTACGTAC
--------------------------------------------------------------------------------
log-odds matrix: alength= 4 w= 4 n= 1000 bayes= 4.5 E= 1.2e-005
  -123  -123   187  -123
  -123  -123   187  -123
  -123  -123   187  -123
   172  -123  -123  -123
--------------------------------------------------------------------------------
\tMotif GGGA MEME-1 position-specific probability matrix
--------------------------------------------------------------------------------
letter-probability matrix: alength= 4 w= 4 nsites= 20 E= 1.2e-005
 0.000000  0.000000  1.000000  0.000000
 5.0e-02\t0.0\t9.5e-01\t0.0
 0.100000  0.100000  0.700000  0.099000
 0.850000  0.050000  0.051000  0.050000
--------------------------------------------------------------------------------
MOTIF 2\twidth =   1  sites =  5  llr = 20  E-value = 3.0e+000
letter-probability matrix: alength= 4 w= 1 nsites= 5 E= 3.0e+000
 0.25 0.25 0.25 0.25
""".replace("_\n", " \n")

MINIMAL_V5 = (
    HEADER_V5
    + """MOTIF TTTC STREME-2
letter-probability matrix: alength= 4 w= 3 nsites= 17.6 E= 2.3e+001
  0.100000\t  0.200000\t  0.300000\t  0.400000\t
 1.000000e+00  0  0  0
 0.333 0.333 0.333 0.0
URL http://example.org/TTTC

MOTIF AAAG DREME-3
letter-probability matrix: alength= 4 w= 1 nsites= 20 E= 1e-5
0.25 0.25 0.25 0.2510
"""
)

JASPAR = """MEME version 4

ALPHABET= ACGT

strands: + -

Background letter frequencies
A 0.25 C 0.25 G 0.25 T 0.25

MOTIF MA0139.2 CTCF
letter-probability matrix: alength= 4 w= 2 nsites= 913 E= 0
  0.091287  0.304478  0.116101  0.488134
  0.180350  0.308213  0.048201  0.463236
URL http://jaspar.genereg.net/matrix/MA0139.2

MOTIF MA0140.3 GATA1::TAL1
letter-probability matrix: alength= 4 w= 1 nsites= 17 E= 0
  0.0  0.0  1.0  0.0
URL http://jaspar.genereg.net/matrix/MA0140.3
"""

HOCOMOCO = """MEME version 4

ALPHABET= ACGT

strands: + -

Background letter frequencies
A 0.25 C 0.25 G 0.25 T 0.25

MOTIF AHR_HUMAN.H11MO.0.B

letter-probability matrix: alength= 4 w= 2 nsites= 64 E= 0
0.265625\t0.09375\t0.453125\t0.1875
0.0\t0.0\t1.0\t0.0
"""

CISBP = """MEME version 4

ALPHABET= ACGT

strands: + -

Background letter frequencies
A 0.25 C 0.25 G 0.25 T 0.25

MOTIF M00001_2.00 (Ebf1)_(Mus_musculus)_(DBD_0.98)

letter-probability matrix: alength= 4 w= 1 nsites= 20 E= 0
  0.232\t0.245\t0.310\t0.213

"""

DNA_BLOCK = """MEME version 5

ALPHABET "DNA" DNA-LIKE
A "Adenine" CC0000 ~ T "Thymine" 008000
C "Cytosine" 0000CC ~ G "Guanine" FFB300
N "Any base" = ACGT
END ALPHABET

MOTIF a
letter-probability matrix: alength= 4 w= 1
0.5 0.25 0.125 0.125
"""

# (name, alt_name, nsites, pwm) of every motif, read by hand from the texts above.
EXPECTED = {
    "meme_txt": [
        (
            "GGGA",
            "MEME-1",
            20,
            [[0, 0, 1, 0], [0.05, 0, 0.95, 0], [0.1, 0.1, 0.7, 0.099], [0.85, 0.05, 0.051, 0.05]],
        ),
        ("2", None, 5, [[0.25] * 4]),
    ],
    "minimal_v5": [
        ("TTTC", "STREME-2", 18, [[0.1, 0.2, 0.3, 0.4], [1, 0, 0, 0], [0.333, 0.333, 0.333, 0]]),
        ("AAAG", "DREME-3", 20, [[0.25, 0.25, 0.25, 0.251]]),
    ],
    "jaspar": [
        (
            "MA0139.2",
            "CTCF",
            913,
            [[0.091287, 0.304478, 0.116101, 0.488134], [0.18035, 0.308213, 0.048201, 0.463236]],
        ),
        ("MA0140.3", "GATA1::TAL1", 17, [[0, 0, 1, 0]]),
    ],
    "hocomoco": [("AHR_HUMAN.H11MO.0.B", None, 64, [[0.265625, 0.09375, 0.453125, 0.1875], [0, 0, 1, 0]])],
    "cisbp": [("M00001_2.00", "(Ebf1)_(Mus_musculus)_(DBD_0.98)", 20, [[0.232, 0.245, 0.31, 0.213]])],
    "dna_block": [("a", None, None, [[0.5, 0.25, 0.125, 0.125]])],
}
TEXTS = {
    "meme_txt": MEME_TXT,
    "minimal_v5": MINIMAL_V5,
    "jaspar": JASPAR,
    "hocomoco": HOCOMOCO,
    "cisbp": CISBP,
    "dna_block": DNA_BLOCK,
}


def encoded(text: str, variant: str) -> bytes:
    if variant == "crlf":
        text = text.replace("\n", "\r\n")
    elif variant == "cr":
        text = text.replace("\n", "\r")
    return (b"\xef\xbb\xbf" if variant == "bom" else b"") + text.encode()


@pytest.mark.parametrize("variant", ["lf", "crlf", "cr", "bom"])
@pytest.mark.parametrize("kind", list(TEXTS))
def test_real_world_meme_files_read_as_written(tmp_path, kind, variant):
    path = tmp_path / f"{kind}.meme"
    path.write_bytes(encoded(TEXTS[kind], variant))
    motifs = read_meme(path)
    assert [(m.name, m.alt_name, m.nsites) for m in motifs] == [e[:3] for e in EXPECTED[kind]]
    for motif, expected in zip(motifs, EXPECTED[kind], strict=True):
        hand = np.asarray(expected[3], dtype=np.float64)
        # Rows off 1 by rounding (0.999, 1.001) are renormalized; everything else is read as written.
        np.testing.assert_allclose(motif.pwm, hand / hand.sum(axis=1, keepdims=True), rtol=0, atol=1e-12)
    if variant == "lf" and kind != "meme_txt":
        # memelite's reader (keys: the rest of the MOTIF line) reads the same matrices.
        theirs = memelite_io.read_meme(str(path))
        assert [key.split()[0] for key in theirs] == [e[0] for e in EXPECTED[kind]]
        for pwm, expected in zip(theirs.values(), EXPECTED[kind], strict=True):
            np.testing.assert_allclose(pwm.T, expected[3], atol=1e-12)


ONE = (
    "MEME version 5\n\n{alphabet}\nMOTIF {name}\nletter-probability matrix: alength= {alength} w= {w}\n{rows}"
)
ROW = "0.25 0.25 0.25 0.25\n"
RNA_BLOCK = (
    'ALPHABET "RNA" RNA-LIKE\nA "Adenine"\nC "Cytosine"\nG "Guanine"\nU "Uracil"\nN = ACGU\nEND ALPHABET\n'
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            ONE.format(alphabet="ALPHABET= ACGU\n", name="r", alength=4, w=1, rows=ROW),
            r":3: .*ALPHABET= ACGU",
        ),
        (ONE.format(alphabet=RNA_BLOCK, name="r", alength=4, w=1, rows=ROW), r":9: .*ALPHABET= ACGU"),
        (
            ONE.format(
                alphabet="ALPHABET= ACDEFGHIKLMNPQRSTVWY\n", name="p", alength=20, w=1, rows="0.05 " * 20
            ),
            r":3: only the DNA alphabet ACGT .*ACDEFGHIKLMNPQRSTVWY",
        ),
        (
            ONE.format(alphabet="", name="p", alength=20, w=1, rows="0.05 " * 20),
            r":5: motif 'p' has alength= 20",
        ),
        # w= larger than the rows: at the next MOTIF, at a blank line, at the end of the file
        (
            ONE.format(alphabet="", name="m1", alength=4, w=3, rows=ROW * 2 + "MOTIF n\n"),
            r":5: motif 'm1' .*w= 3 .*2 rows",
        ),
        (
            ONE.format(alphabet="", name="m2", alength=4, w=3, rows=ROW * 2 + "URL http://x\n"),
            r":5: motif 'm2' .*w= 3 .*2 rows",
        ),
        (
            ONE.format(alphabet="", name="m3", alength=4, w=3, rows=ROW),
            r":5: motif 'm3' .*w= 3 but has 1 rows",
        ),
        # w= smaller than the rows
        (
            ONE.format(alphabet="", name="m4", alength=4, w=1, rows=ROW * 2),
            r":7: motif 'm4' declares w= 1 but has more",
        ),
        # counts where probabilities belong
        (
            ONE.format(alphabet="", name="c", alength=4, w=1, rows="5 5 5 5\n"),
            r":5: motif 'c'.*row 0 sums to 20",
        ),
        ("", r"empty.meme: no letter-probability matrix"),
        ("MEME version 5\n\nALPHABET= ACGT\n\nstrands: + -\n", r"empty.meme: no letter-probability matrix"),
    ],
)
def test_bad_meme_files_give_one_line_errors(tmp_path, text, message):
    path = tmp_path / "empty.meme"
    path.write_text(text)
    with pytest.raises(MemeFormatError, match=message) as info:
        read_meme(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_non_utf8_or_gzip_file_is_refused_naming_it(tmp_path):
    path = tmp_path / "latin1.meme"
    path.write_bytes(JASPAR.replace("CTCF", "CTCF\xe9").encode("latin-1"))
    with pytest.raises(MemeFormatError, match=r"latin1.meme:10: not UTF-8"):
        read_meme(path)
    path.write_bytes(gzip.compress(JASPAR.encode()))
    with pytest.raises(MemeFormatError, match=r"latin1.meme: is gzip-compressed"):
        read_meme(path)


def test_written_names_with_special_characters_read_back_by_both_readers(tmp_path):
    rng = np.random.default_rng(3)
    motifs = [
        Motif("pos_patterns.pattern_0", rng.dirichlet(np.ones(4), size=5), nsites=0, alt_name="GATA1::TAL1"),
        Motif("filter#1/α", rng.dirichlet(np.ones(4), size=3), nsites=7, alt_name="(Ebf1)_(Mus_musculus)"),
        Motif("MA0139.2", rng.dirichlet(np.ones(4), size=1), nsites=None),
    ]
    path = tmp_path / "names.meme"
    write_meme(path, motifs)
    back = read_meme(path)
    assert [(m.name, m.alt_name, m.nsites) for m in back] == [(m.name, m.alt_name, m.nsites) for m in motifs]
    theirs = memelite_io.read_meme(str(path))
    assert list(theirs) == [
        "pos_patterns.pattern_0 GATA1::TAL1",
        "filter#1/α (Ebf1)_(Mus_musculus)",
        "MA0139.2",
    ]
    for ours, pwm, original in zip(back, theirs.values(), motifs, strict=True):
        np.testing.assert_allclose(ours.pwm, original.pwm, atol=1e-6)
        np.testing.assert_allclose(pwm.T, ours.pwm, atol=2e-6)
    # An alternate name with a space would be cut to its first word by every MEME reader: refused.
    with pytest.raises(ValueError, match="'MA0139.2': alt_name must be a non-empty word"):
        write_meme(tmp_path / "x.meme", [motifs[2]._replace(alt_name="CTCF like")])
    assert not (tmp_path / "x.meme").exists()


def dyadic_pwm(rng: np.random.Generator, width: int) -> np.ndarray:
    """Rows of multiples of 1/64 summing to 1: written exactly with 6 decimals and never renormalized,
    so jaxmotif and memelite read bit-identical matrices from the same file."""
    counts = rng.multinomial(64, rng.dirichlet(np.full(4, 0.5)), size=width)
    return counts / 64.0


def test_tomtom_on_user_database_equals_memelite_on_the_same_files(tmp_path):
    from memelite import tomtom

    from jaxmotif.motifs import load_motif_db, tomtom_matches

    rng = np.random.default_rng(11)
    # A user database in JASPAR's layout (URL lines, alt names), widths 1 to 25: targets shorter and
    # longer than every query. 30 targets, above memelite's 25-target warning.
    targets = [Motif(f"MA{i:04d}.1", dyadic_pwm(rng, 1 + (i * 7) % 25), 20, f"TF{i}") for i in range(30)]
    db_text = JASPAR.split("MOTIF")[0] + "".join(
        f"MOTIF {t.name} {t.alt_name}\n"
        f"letter-probability matrix: alength= 4 w= {len(t.pwm)} nsites= 20 E= 0\n"
        + "".join("\t".join(f"{v:.6f}" for v in row) + "\n" for row in t.pwm)
        + f"URL http://jaspar.genereg.net/matrix/{t.name}\n\n"
        for t in targets
    )
    db_path = tmp_path / "db.meme"
    db_path.write_bytes(db_text.replace("\n", "\r\n").encode())  # as downloaded on Windows
    queries = [
        Motif("filter1", dyadic_pwm(rng, 9), 12),
        Motif("filter2", targets[5].pwm[::-1, ::-1].copy(), 3),  # reverse complement of a target
        Motif("filter3", np.full((7, 4), 0.25), 1),  # a filter whose sites were all N: uniform rows
        Motif("filter4", dyadic_pwm(rng, 30), None),  # longer than every target
    ]
    q_path = tmp_path / "filters.meme"
    write_meme(q_path, queries)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no small-database warning, nothing else either
        rows = tomtom_matches(read_meme(q_path), load_motif_db(db_path), top=None)
    # memelite run directly on the same two files, as its command line does.
    db_theirs = memelite_io.read_meme(str(db_path))
    q_theirs = memelite_io.read_meme(str(q_path))
    p, _, offsets, _, strands = tomtom(list(q_theirs.values()), list(db_theirs.values()))[:5]
    ids = [key.split()[0] for key in db_theirs]
    assert ids == [t.name for t in targets]
    for i, query in enumerate(queries):
        mine = {r["target_id"]: r for r in rows if r["filter"] == query.name}
        assert len(mine) == len(targets)
        np.testing.assert_array_equal([mine[t]["p_value"] for t in ids], p[i])
        np.testing.assert_array_equal([mine[t]["offset"] for t in ids], offsets[i])
        np.testing.assert_array_equal(
            [mine[t]["orientation"] for t in ids], ["+-"[int(s)] for s in strands[i]]
        )
        np.testing.assert_allclose([mine[t]["e_value"] for t in ids], p[i] * len(targets), rtol=1e-15)
        best = min(rows_of(rows, query.name), key=lambda r: r["rank"])
        assert best["target_id"] == ids[int(np.argmin(p[i]))]
    best2 = rows_of(rows, "filter2")[0]
    assert (best2["target_id"], best2["orientation"], best2["offset"]) == ("MA0005.1", "-", 0)


def rows_of(rows, name):
    return [r for r in rows if r["filter"] == name]


def test_user_database_with_a_repeated_id_is_refused(tmp_path):
    from jaxmotif.motifs import load_motif_db

    path = tmp_path / "two.meme"
    path.write_text(JASPAR + JASPAR.split("\n\n", 4)[-1].replace("MA0139.2 CTCF", "MA0140.3 other"))
    assert [m.name for m in read_meme(path)] == ["MA0139.2", "MA0140.3", "MA0140.3", "MA0140.3"]
    with pytest.raises(ValueError, match=r"two.meme: two motifs are named 'MA0140.3'"):
        load_motif_db(path)
