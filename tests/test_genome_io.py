"""Tests for jaxmotif.io: FASTA records, Genome windows, BED regions, bigWig round trips."""

import gzip
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxmotif.io import bigwig as bigwig_module
from jaxmotif.io.bed import BedError, Region, parse_region, read_bed, validate_regions
from jaxmotif.io.bigwig import BigWigError, BigWigReader, read_bigwig, write_bigwig
from jaxmotif.io.fasta import FastaError, FastaRecord, Genome, GenomeError, read_fasta

# Two chromosomes with 60-column lines (pyfaidx needs equal line lengths within a record).
CHR1 = "ACGTACGTAC" * 13  # 130 bases
CHR2 = "ggccNNttaa" * 3  # 30 bases, soft-masked and with Ns


def write_fasta(path: Path, records: dict[str, str], width: int = 60) -> Path:
    lines = []
    for name, seq in records.items():
        lines.append(f">{name} some description")
        lines.extend(seq[i : i + width] for i in range(0, len(seq), width))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def genome_fasta(tmp_path):
    return write_fasta(tmp_path / "genome.fa", {"chr1": CHR1, "chr2": CHR2})


# ---------------------------------------------------------------------------------------------- FASTA


def test_read_fasta_records(genome_fasta):
    records = read_fasta(genome_fasta)
    assert records == [FastaRecord("chr1", CHR1), FastaRecord("chr2", CHR2)]
    assert records[0].name == "chr1"


def test_read_fasta_gzip_blank_lines_and_crlf(tmp_path):
    path = tmp_path / "reads.fa.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(">a\r\nACGT\r\nAC\r\n\r\n>b desc\nnnnn\n\n")
    assert read_fasta(path) == [FastaRecord("a", "ACGTAC"), FastaRecord("b", "nnnn")]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "no FASTA records (empty file)"),
        ("\n\n", "no FASTA records"),
        ("ACGT\n>a\nACGT\n", ":1: sequence data before the first '>' header"),
        ("\n\nACGT\n", ":3: sequence data before the first '>' header"),
        (">a\nACGT\n>\nACGT\n", ":3: header '>' has no record name"),
        (">a\nACGT\n>   \nACGT\n", ":3: header '>' has no record name"),
        (">a\nACGT\n>b\n>c\nAC\n", ":3: record 'b' has no sequence"),
        (">a\nACGT\n\n>b\n", ":4: record 'b' has no sequence"),
    ],
)
def test_read_fasta_malformed(tmp_path, content, expected):
    path = tmp_path / "bad.fa"
    path.write_text(content)
    with pytest.raises(FastaError) as info:
        read_fasta(path)
    message = str(info.value)
    assert str(path) in message and expected in message
    assert "\n" not in message
    assert isinstance(info.value, ValueError)


def test_read_fasta_binary_file(tmp_path):
    path = tmp_path / "binary.fa"
    path.write_bytes(b">a\nAC\xff\xfeGT\n")
    with pytest.raises(FastaError, match="not a text FASTA file"):
        read_fasta(path)


# --------------------------------------------------------------------------------------------- Genome


def test_genome_sizes_and_fetch_inside(genome_fasta):
    with Genome(genome_fasta) as genome:
        assert genome.chrom_sizes == {"chr1": 130, "chr2": 30}
        assert "chr1" in genome and "chrX" not in genome
        assert genome.fetch("chr1", 0, 130) == CHR1
        assert genome.fetch("chr1", 55, 70) == CHR1[55:70]  # across a line break
        assert genome.fetch("chr2", 3, 9) == CHR2[3:9]  # case kept
        assert genome.fetch("chr1", 5, 5) == ""


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (-5, 10, "N" * 5 + CHR1[:10]),
        (120, 140, CHR1[120:] + "N" * 10),
        (-3, 133, "N" * 3 + CHR1 + "N" * 3),
        (-20, -10, "N" * 10),
        (200, 210, "N" * 10),
        (-4, 0, "NNNN"),
        (130, 131, "N"),
    ],
)
def test_genome_fetch_pads_with_n(genome_fasta, start, end, expected):
    with Genome(genome_fasta) as genome:
        window = genome.fetch("chr1", start, end)
    assert window == expected
    assert len(window) == end - start


def test_genome_uppercase_and_errors(genome_fasta):
    with Genome(genome_fasta, uppercase=True) as genome:
        assert genome.fetch("chr2", -2, 4) == "NNGGCC"
        with pytest.raises(GenomeError, match=r"unknown chromosome 'chrX' .*2 known: 'chr1', 'chr2'"):
            genome.fetch("chrX", 0, 10)
        with pytest.raises(GenomeError, match="end < start"):
            genome.fetch("chr1", 10, 5)
    with pytest.raises(FileNotFoundError, match="missing.fa"):
        Genome(genome_fasta.parent / "missing.fa")


def test_genome_agrees_with_read_fasta(tmp_path):
    rng = np.random.default_rng(1)
    records = {
        f"s{i}": "".join(rng.choice(list("ACGTNacgt"), size=int(rng.integers(1, 300)))) for i in range(5)
    }
    path = write_fasta(tmp_path / "random.fa", records, width=50)
    assert {r.name: r.sequence for r in read_fasta(path)} == records
    with Genome(path) as genome:
        assert genome.chrom_sizes == {k: len(v) for k, v in records.items()}
        for name, seq in records.items():
            assert genome.fetch(name, -7, len(seq) + 3) == "N" * 7 + seq + "N" * 3


def test_genome_malformed_fasta(tmp_path):
    path = tmp_path / "ragged.fa"
    path.write_text(">a\nACGTACGT\nACG\nACGTACGT\n")
    with pytest.raises(GenomeError, match=r"ragged\.fa: Line length of fasta file is not consistent"):
        Genome(path)
    # Plain gzip has no random access; pyfaidx needs bgzip and says so.
    path = tmp_path / "plain.fa.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(">a\nACGT\n")
    with pytest.raises(GenomeError, match=r"plain\.fa\.gz: .*BGZF"):
        Genome(path)


# ------------------------------------------------------------------------------------------------ BED


def test_read_bed(tmp_path):
    path = tmp_path / "peaks.bed"
    path.write_text(
        "# comment\n"
        "track name=peaks\n"
        "browser position chr1:1-100\n"
        "\n"
        "chr1\t10\t20\tpeak1\t0\t+\n"
        "chr1\t30\t40\n"
        "chr2\t0\t5\t.\n"
        "chr2 5 9 spaced\n"
    )
    assert read_bed(path) == [
        Region("chr1", 10, 20, "peak1"),
        Region("chr1", 30, 40, None),
        Region("chr2", 0, 5, None),
        Region("chr2", 5, 9, "spaced"),
    ]
    assert str(Region("chr1", 10, 20)) == "chr1:10-20"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("chr1\t10", "expected at least 3 columns"),
        ("chr1\tten\t20", "start 'ten' is not an integer"),
        ("chr1\t10\t20.5", "end '20.5' is not an integer"),
        ("chr1\t-1\t20", "start -1 is negative"),
        ("chr1\t20\t20", "end 20 <= start 20"),
        ("chr1\t30\t20", "end 20 <= start 30"),
    ],
)
def test_read_bed_errors_name_file_and_line(tmp_path, line, expected):
    path = tmp_path / "bad.bed"
    path.write_text(f"# header\nchr1\t0\t10\n\n{line}\nchr1\t0\t10\n")
    with pytest.raises(BedError) as info:
        read_bed(path)
    assert str(info.value).startswith(f"{path}:4: ")
    assert expected in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("chr1:100-200", Region("chr1", 100, 200)),
        (" chr1:1,000-2,500 ", Region("chr1", 1000, 2500)),
        ("HLA-A*01:01:01:01:5-10", Region("HLA-A*01:01:01:01", 5, 10)),
    ],
)
def test_parse_region(text, expected):
    assert parse_region(text) == expected


@pytest.mark.parametrize("text", ["chr1", "chr1:100", "chr1:200-100", "chr1:a-b", ":1-2", "chr1:-5-10"])
def test_parse_region_errors(text):
    with pytest.raises(BedError, match="invalid region"):
        parse_region(text)


def test_validate_regions():
    sizes = {"chr1": 100, "chr2": 50}
    validate_regions([Region("chr1", 0, 100), Region("chr2", 10, 20)], sizes)
    with pytest.raises(
        BedError, match=r"region 1 \(chr3:0-10 'p2'\): unknown chromosome 'chr3'.*'chr1', 'chr2'"
    ):
        validate_regions([Region("chr1", 0, 10), Region("chr3", 0, 10, "p2"), Region("chr4", 0, 1)], sizes)
    with pytest.raises(BedError, match=r"region 0 \(chr2:40-51\): runs past the end of chr2 \(length 50\)"):
        validate_regions([Region("chr2", 40, 51)], sizes)
    with pytest.raises(BedError, match="invalid interval"):
        validate_regions([Region("chr2", 10, 10)], sizes)


# --------------------------------------------------------------------------------------------- bigWig

SIZES = {"chr2": 40, "chr1": 100}  # deliberately not sorted by name: header order is kept


def test_bigwig_round_trip_with_nan_gaps_and_ends(tmp_path):
    a = np.array([np.nan, 1.5, 2.0, np.nan, np.nan, -3.25, 4.0, np.nan], np.float32)
    b = np.array([7.0, np.nan, 8.0], np.float32)
    c = np.arange(10, dtype=np.float32)
    path = tmp_path / "track.bw"
    # Tracks out of order; one runs past the end of chr2, one starts before 0.
    write_bigwig(path, SIZES, [("chr1", 50, a), ("chr2", 35, c), ("chr1", -1, b)])

    expected_chr1 = np.zeros(100, np.float32)
    expected_chr1[50:58] = np.nan_to_num(a)
    expected_chr1[0:2] = [0.0, 8.0]
    expected_chr2 = np.zeros(40, np.float32)
    expected_chr2[35:40] = c[:5]

    with BigWigReader(path) as reader:
        assert reader.chrom_sizes == SIZES
        assert list(reader.chrom_sizes) == ["chr2", "chr1"]
        np.testing.assert_array_equal(reader.read("chr1", 0, 100), expected_chr1)
        np.testing.assert_array_equal(reader.read("chr2", 0, 40), expected_chr2)
        # Past either end: zero padding, length always end - start.
        got = reader.read("chr2", -3, 45)
        assert got.dtype == np.float32 and got.shape == (48,)
        np.testing.assert_array_equal(got, np.concatenate([np.zeros(3), expected_chr2, np.zeros(5)]))
        np.testing.assert_array_equal(reader.read("chr1", 200, 205), np.zeros(5))
        assert reader.read("chr1", 7, 7).shape == (0,)
    np.testing.assert_array_equal(read_bigwig(path, "chr1", 48, 60), expected_chr1[48:60])
    assert [p.name for p in tmp_path.iterdir()] == ["track.bw"]  # no temporary left behind


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.one_of(st.just(np.nan), st.floats(-1e3, 1e3, width=32)), min_size=1, max_size=60),
    st.integers(-10, 60),
)
def test_bigwig_round_trip_random_nan_patterns(values, start):
    values = np.array(values, np.float32)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "r.bw")
        write_bigwig(path, {"chrA": 50}, [("chrA", start, values)])
        got = read_bigwig(path, "chrA", start, start + len(values))
    expected = np.nan_to_num(values)
    inside = (np.arange(len(values)) + start >= 0) & (np.arange(len(values)) + start < 50)
    expected[~inside] = 0.0
    np.testing.assert_array_equal(got, expected)


def test_bigwig_empty_file_reads_zeros(tmp_path):
    path = tmp_path / "empty.bw"
    write_bigwig(path, {"chr1": 10}, [("chr1", 0, np.full(10, np.nan, np.float32))])
    np.testing.assert_array_equal(read_bigwig(path, "chr1", -1, 11), np.zeros(12))


def test_bigwig_unknown_chromosome(tmp_path):
    path = tmp_path / "t.bw"
    write_bigwig(path, SIZES, [("chr1", 0, np.ones(3, np.float32))])
    with pytest.raises(BigWigError, match=r"unknown chromosome 'chrX' in bigWig .*t\.bw.*'chr2', 'chr1'"):
        read_bigwig(path, "chrX", 0, 10)
    with pytest.raises(BigWigError, match=r"track 0 \(chrX:0\): unknown chromosome 'chrX'"):
        write_bigwig(tmp_path / "u.bw", SIZES, [("chrX", 0, np.ones(3, np.float32))])
    assert not (tmp_path / "u.bw").exists()


def test_bigwig_bad_files(tmp_path):
    text = tmp_path / "signal.bedGraph"
    text.write_text("chr1\t0\t10\t1.0\n")
    with pytest.raises(BigWigError, match=r"signal\.bedGraph is not a bigWig file"):
        BigWigReader(text)
    with pytest.raises(FileNotFoundError, match=r"nothing\.bw"):
        read_bigwig(tmp_path / "nothing.bw", "chr1", 0, 1)


def test_bigwig_write_errors_leave_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "keep.bw"
    write_bigwig(path, SIZES, [("chr1", 0, np.ones(5, np.float32))])
    before = path.read_bytes()
    with pytest.raises(BigWigError, match=r"track 1 \(chr1:3-8\) overlaps track 0 \(chr1:0-5\)"):
        write_bigwig(path, SIZES, [("chr1", 0, np.ones(5, np.float32)), ("chr1", 3, np.ones(5, np.float32))])
    with pytest.raises(BigWigError, match="infinite value at chr1:2"):
        write_bigwig(path, SIZES, [("chr1", 0, np.array([0, 1, np.inf], np.float32))])
    with pytest.raises(BigWigError, match=r"shape \(L,\)"):
        write_bigwig(path, SIZES, [("chr1", 0, np.ones((2, 2), np.float32))])

    # A failure in the middle of writing, once the temporary file exists, must remove it.
    def explode(values):
        raise RuntimeError("disk full")

    monkeypatch.setattr(bigwig_module, "_non_nan_runs", explode)
    with pytest.raises(BigWigError, match="disk full"):
        write_bigwig(path, SIZES, [("chr1", 0, np.full(5, 2.0, np.float32))])
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.bw"]


def test_bigwig_reader_closed(tmp_path):
    path = tmp_path / "c.bw"
    write_bigwig(path, SIZES, [])
    reader = BigWigReader(path)
    reader.close()
    reader.close()
    with pytest.raises(ValueError, match="closed"):
        reader.read("chr1", 0, 1)
