"""Genome inputs users have that the other tests do not (task ioaudit): FASTA line endings, blank
lines, wraps, soft-masking, compression; BED headers, CRLF and extra columns; chromosome naming
styles; bigWig gaps and other assemblies; outputs under a path that is a file.

Each case either reads the same numbers as the plain input (checked against an independent
reading: Python string slicing of the generated sequence, the ``--dnase-npy`` path) or is refused
in one line naming the culprit, with nothing written. A tiny random model (L = 64) keeps the CLI
runs short.
"""

import gzip
import re
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxmotif.cli import attribute, mutmap, saliency
from jaxmotif.io.bed import BedError, Region, validate_regions
from jaxmotif.io.bigwig import BigWigError, BigWigReader, write_bigwig
from jaxmotif.io.fasta import Genome, GenomeError, naming_hint, read_fasta
from jaxmotif.models import DeepHistoneConfig, Model, save_model

L = 64
CHROMS = {"chrUn_KI270302v1": 300, "chr1.1": 200}
COMPLEMENT = str.maketrans("ACGTacgtNn", "TGCAtgcaNn")


def _wrap(seq: str, width: int) -> list[str]:
    return [seq[i : i + width] for i in range(0, len(seq), width)]


def _fasta_text(seqs: dict[str, str], width: int, eol: str = "\n", desc: str = "") -> str:
    return "".join(f">{c}{desc}{eol}" + eol.join(_wrap(s, width)) + eol for c, s in seqs.items())


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A genome (soft-masked stretch, '_' and '.' in names) written plainly and messily, its DNase
    with a gap, and a tiny DNase model."""
    root = tmp_path_factory.mktemp("audit")
    rng = np.random.default_rng(11)
    seqs = {c: "".join(rng.choice(list("ACGT"), n)) for c, n in CHROMS.items()}
    masked = dict(seqs)
    masked["chr1.1"] = seqs["chr1.1"][:50] + seqs["chr1.1"][50:150].lower() + seqs["chr1.1"][150:]
    (root / "plain.fa").write_text(_fasta_text(seqs, 60))
    # Windows line endings, soft-masking, descriptions after the name, one trailing blank line.
    (root / "messy.fa").write_bytes(
        (_fasta_text(masked, 70, "\r\n", " Homo sapiens, unplaced") + "\r\n").encode()
    )
    dnase = {c: rng.random(n).astype(np.float32) for c, n in CHROMS.items()}
    gapped = {c: v.copy() for c, v in dnase.items()}
    gapped["chr1.1"][60:90] = np.nan  # no data there: reads as 0
    write_bigwig(root / "dnase.bw", CHROMS, [(c, 0, v) for c, v in gapped.items()])
    config = DeepHistoneConfig(
        variant="full", seq_len=L, widths=(8, 8, 8), hidden=16, num_outputs=2, output_names=("m1", "m2")
    )
    save_model(Model.random(config, key=jax.random.key(3)), root / "ckpt")
    dnase_read = {c: np.where(np.isnan(v), 0, v) for c, v in gapped.items()}
    return {"root": root, "seqs": seqs, "dnase": dnase_read}


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


# ------------------------------------------------------------------------------------- FASTA readers

SEQ = "ACGTACGTAC" * 13  # 130 bases


@pytest.mark.parametrize(
    "content",
    [
        ">chr1\r\n" + "\r\n".join(_wrap(SEQ, 60)) + "\r\n",  # Windows
        ">chr1\r" + "\r".join(_wrap(SEQ, 60)) + "\r",  # classic Mac
        ">chr1\n" + "\n".join(_wrap(SEQ, 60)),  # no final newline
        ">chr1\n" + "\n".join(_wrap(SEQ, 60)) + "\n\n\n  \n",  # trailing blank lines
        ">chr1\n" + SEQ[:7] + "\n" + SEQ[7:100] + "\n\n" + SEQ[100:] + "\n",  # uneven wraps, a blank line
        ">chr1 Homo sapiens chromosome 1, GRCh38\tx\n" + SEQ + "\n",  # description after the name
        ">chr1\n" + SEQ.lower() + "\n",  # soft-masked: case kept
    ],
    ids=["crlf", "cr", "no-final-newline", "trailing-blanks", "uneven", "description", "lowercase"],
)
def test_read_fasta_takes_the_shapes_files_come_in(tmp_path, content):
    path = tmp_path / "x.fa"
    path.write_bytes(content.encode())
    records = read_fasta(path)
    assert [r.name for r in records] == ["chr1"]
    assert records[0].sequence == (SEQ.lower() if content.startswith(">chr1\nacgt") else SEQ)
    # gzip of the same bytes reads the same
    gz = tmp_path / "x.fa.gz"
    gz.write_bytes(gzip.compress(content.encode()))
    assert read_fasta(gz) == records


def test_read_fasta_long_single_line_and_duplicates(tmp_path):
    long = "ACGT" * 50_000
    path = tmp_path / "long.fa"
    path.write_text(f">a\n{long}\n>a\nAC\n")
    # Duplicate names are kept for window files (bedtools getfasta writes one per BED line).
    assert read_fasta(path) == [("a", long), ("a", "AC")]


def test_genome_reads_a_messy_but_regular_file_like_the_plain_one(world):
    root, seqs = world["root"], world["seqs"]
    with Genome(root / "plain.fa") as plain, Genome(root / "messy.fa") as messy:
        assert messy.chrom_sizes == plain.chrom_sizes == CHROMS
        for chrom, seq in seqs.items():
            assert plain.fetch(chrom, -3, CHROMS[chrom] + 2) == "NNN" + seq + "NN"
            assert messy.fetch(chrom, 0, CHROMS[chrom]).upper() == seq
        assert messy.fetch("chr1.1", 50, 150) == seqs["chr1.1"][50:150].lower()  # soft-masking kept
    assert {r.name: r.sequence.upper() for r in read_fasta(root / "messy.fa")} == seqs


def test_genome_reads_regular_files_with_blank_lines_and_any_line_ending(tmp_path):
    """Blank lines after records (pyfaidx alone refuses two, or one "\\r\\n"), CRLF or LF, a final
    newline or not, random widths: every base as read_fasta reads it, past-end padding included."""
    rng = np.random.default_rng(2)
    for trial in range(25):
        eol = ["\n", "\r\n"][trial % 2]
        records = {
            f"c{i}_{trial}.{i}": "".join(rng.choice(list("ACGTNacgtn"), int(rng.integers(1, 400))))
            for i in range(int(rng.integers(1, 4)))
        }
        text = ""
        for name, seq in records.items():
            text += f">{name} d{eol}" + eol.join(_wrap(seq, int(rng.integers(1, 90)))) + eol
            text += eol * int(rng.integers(0, 4))
        if rng.random() < 0.3:
            text = text.rstrip("\r\n")  # no final newline
        path = tmp_path / f"t{trial}.fa"
        path.write_bytes(text.encode())
        assert {r.name: r.sequence for r in read_fasta(path)} == records
        with Genome(path) as genome:
            assert genome.chrom_sizes == {k: len(v) for k, v in records.items()}, trial
            for name, seq in records.items():
                assert genome.fetch(name, -2, len(seq) + 1) == "NN" + seq + "N", (trial, name)
                a = int(rng.integers(0, len(seq)))
                assert genome.fetch(name, a, len(seq)) == seq[a:]


def test_genome_reads_bgzip_with_its_indexes(tmp_path):
    bgzf = pytest.importorskip("Bio.bgzf")
    path = tmp_path / "g.fa.gz"
    with bgzf.BgzfWriter(str(path), "wb") as handle:
        handle.write(_fasta_text({"chr1": SEQ, "chr2": "ACGTN" * 30}, 60).encode())
    with Genome(path) as genome:
        assert genome.fetch("chr1", 55, 140) == SEQ[55:] + "N" * 10
        assert genome.fetch("chr2", 0, 5) == "ACGTN"
    assert (tmp_path / "g.fa.gz.fai").exists() and (tmp_path / "g.fa.gz.gzi").exists()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        # pyfaidx raised a bare RuntimeError ("please report this issue") for this one
        (">chr1\nACGTACGT\n\nACGTACGT\n\n", r"blank lines inside or after record 'chr1'.*seqkit"),
        (">chr1\nACGTACGT\n\n\nACGTACGT\n", r"Line length of fasta file is not consistent.*seqkit"),
        (
            ">chr1\nACGTACGT\nACG\nACGTACGT\n",
            r"Line length of fasta file is not consistent.*line 3; .*seqkit",
        ),
        # pyfaidx read this as one header line: chr1 of length 0 and no chr2
        (">chr1\rACGT\rACGT\r>chr2\rAC\r", r"bare carriage return"),
        ("", r"does not contain a valid sequence"),
        (">chr1\nACGT\n>chr1\nACGT\n", r'Duplicate key "chr1"'),
        (gzip.compress(b">chr1\nACGT\n"), r"gzip-compressed but not named \.gz"),
        (bytes(range(256)) * 4, r"before the first sequence definition line"),
    ],
    ids=["blank-inside", "blank-inside-2", "uneven", "cr-only", "empty", "duplicate", "plain-gzip", "binary"],
)
def test_genome_refuses_what_it_cannot_index_in_one_line(tmp_path, content, expected):
    path = tmp_path / "bad.fa"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(GenomeError, match=expected) as info:
        Genome(path)
    message = str(info.value)
    assert not Path(f"{path}.fai").exists() or "Duplicate" in message  # pyfaidx indexes, then checks names
    assert message.startswith(f"cannot index genome FASTA {path}: ") and "\n" not in message
    if "seqkit" not in expected:
        assert "seqkit" not in message  # the rewrap hint only where rewrapping helps


def test_genome_suffix_and_content_must_agree(tmp_path):
    (tmp_path / "plain.fa.gz").write_text(">chr1\nACGT\n")
    with pytest.raises(GenomeError, match=r"plain\.fa\.gz: it is named \.gz but not compressed"):
        Genome(tmp_path / "plain.fa.gz")


def test_genome_unwritable_index_is_one_line(tmp_path, monkeypatch):
    import pyfaidx

    path = tmp_path / "g.fa"
    path.write_text(">chr1\nACGT\n")

    def fail(*args, **kwargs):
        raise OSError(f"{path}.fai may not be writable. Please use Fasta(rebuild=False)")

    monkeypatch.setattr(pyfaidx, "Fasta", fail)
    with pytest.raises(GenomeError, match=r"g\.fa\.fai may not be writable"):
        Genome(path)


# ------------------------------------------------------------------------------------------ naming


def test_naming_hint_names_the_other_style():
    assert "did you mean 'chr1'?" in naming_hint("1", {"chr1", "chr2"})
    assert "did you mean '1'?" in naming_hint("chr1", {"1", "2"})
    assert "did you mean 'MT'?" in naming_hint("chrM", {"1", "MT"})
    assert "did you mean 'chrM'?" in naming_hint("MT", {"chr1", "chrM"})
    assert naming_hint("chr3", {"chr1", "1"}) == "" and naming_hint("3", {"chr1"}) == ""


def test_unknown_chromosomes_suggest_the_other_naming(world, tmp_path):
    with Genome(world["root"] / "plain.fa") as genome:
        with pytest.raises(GenomeError, match=r"unknown chromosome '1\.1'.*did you mean 'chr1\.1'"):
            genome.fetch("1.1", 0, 10)
    with pytest.raises(BedError, match=r"region 0 \(1\.1:0-10\): unknown chromosome.*did you mean 'chr1\.1'"):
        validate_regions([Region("1.1", 0, 10)], CHROMS)
    with BigWigReader(world["root"] / "dnase.bw") as reader:
        with pytest.raises(BigWigError, match=r"unknown chromosome 'Un_KI270302v1'.*'chrUn_KI270302v1'"):
            reader.read("Un_KI270302v1", 0, 10)


# ---------------------------------------------------------------------------- genome-scale CLIs


def _attribute_argv(world, fasta, regions, out, *extra, dnase="dnase.bw"):
    root = world["root"]
    return [
        "--checkpoint",
        str(root / "ckpt"),
        "--fasta",
        str(root / fasta),
        "--regions",
        str(regions),
        "--dnase",
        str(root / dnase),
        "--method",
        "gradient",
        "--quiet",
        "--out",
        str(out),
        *extra,
    ]


def _store(path):
    import zarr

    g = zarr.open_group(str(path), mode="r")
    return {k: np.asarray(g[k][:]) for k in ("one_hot", "attributions", "regions/chrom", "regions/start")}


def test_attribute_messy_inputs_give_the_plain_inputs_store(world, tmp_path, capsys):
    """CRLF + soft-masked + described FASTA and a BED with track/browser/# lines, CRLF and extra
    columns (column 10 not an integer: not a narrowPeak, read without --summit-centred) give the
    store of the plain files."""
    plain_bed = tmp_path / "plain.bed"
    plain_bed.write_text("chr1.1\t40\t120\nchrUn_KI270302v1\t250\t300\n")
    messy_bed = tmp_path / "messy.bed"
    messy_bed.write_bytes(
        b"track name=peaks description='x'\r\nbrowser position chr1.1:1-100\r\n# a comment\r\n"
        b"chr1.1\t40\t120\tpk1\t0\t+\t1\t2\t3\tnot-a-summit\textra\r\n"
        b"chrUn_KI270302v1\t250\t300\tpk2\t0\t-\t1\t2\t3\t.\r\n"
    )
    assert attribute.main(_attribute_argv(world, "plain.fa", plain_bed, tmp_path / "a" / "p.zarr")) == 0
    assert attribute.main(_attribute_argv(world, "messy.fa", messy_bed, tmp_path / "b" / "m.zarr")) == 0
    a, b = _store(tmp_path / "a" / "p.zarr"), _store(tmp_path / "b" / "m.zarr")
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    # Independent reading of the windows: centred on each region, N past the chromosome end.
    seqs = world["seqs"]
    for row, (chrom, lo, hi) in enumerate((("chr1.1", 40, 120), ("chrUn_KI270302v1", 250, 300))):
        start = (lo + hi) // 2 - L // 2
        text = "".join(seqs[chrom][p] if p < CHROMS[chrom] else "N" for p in range(start, start + L))
        onehot = np.array([[float(base == c) for c in "ACGT"] for base in text])
        np.testing.assert_array_equal(a["one_hot"][row], onehot)


def test_bigwig_of_another_assembly_warns_and_reads_zero_past_its_end(world, tmp_path, capsys):
    root = world["root"]
    short = {"chrUn_KI270302v1": 300, "chr1.1": 100}
    write_bigwig(root / "short.bw", short, [("chr1.1", 0, world["dnase"]["chr1.1"][:100])])
    bed = tmp_path / "r.bed"
    bed.write_text("chr1.1\t100\t164\n")
    out = tmp_path / "s.zarr"
    assert attribute.main(_attribute_argv(world, "plain.fa", bed, out, dnase="short.bw")) == 0
    err = capsys.readouterr().err
    assert "warning: chromosome 'chr1.1' is 200 bp in the FASTA but 100 bp in the bigWig" in err, err
    assert (BigWigReader(root / "short.bw").read("chr1.1", 90, 110)[10:] == 0).all()


@pytest.mark.parametrize(
    ("bed", "extra", "dnase", "expected"),
    [
        ("1.1\t0\t50\n", (), "dnase.bw", r"unknown chromosome '1\.1'.*did you mean 'chr1\.1'\?"),
        ("chr2\t0\t50\n", (), "dnase.bw", r"unknown chromosome 'chr2' \(2 known"),
        ("chr1.1\t150\t201\n", (), "dnase.bw", r"runs past the end of chr1\.1 \(length 200\)"),
        ("chr1.1\t10\t10\n", (), "dnase.bw", r"r\.bed:1: end 10 <= start 10"),
        ("chr1.1\t-5\t10\n", (), "dnase.bw", r"r\.bed:1: start -5 is negative"),
        ("track x\n# only headers\n", (), "dnase.bw", r"holds no regions"),
        (
            "chr1.1\t0\t50\tp\t0\t.\t1\t1\t1\t50\n",
            ("--summit-centred",),
            "dnase.bw",
            r"r\.bed:1: summit \(column 10\) 50 lies outside the region \(50 bp",
        ),
        ("chr1.1\t0\t50\n", (), "nochr.bw", r"not in the DNase bigWig .*nochr\.bw; did you mean '1\.1'\?"),
        (
            "chr1.1\t0\t50\n",
            (),
            "partial.bw",
            r"chromosome 'chr1\.1' is not in the DNase bigWig .*partial\.bw$",
        ),
    ],
    ids=[
        "naming",
        "unknown",
        "past-end",
        "zero-length",
        "negative",
        "headers-only",
        "summit",
        "bw-naming",
        "bw-lacks",
    ],
)
def test_attribute_refuses_bad_regions_in_one_line(world, tmp_path, capsys, bed, extra, dnase, expected):
    root = world["root"]
    if not (root / "nochr.bw").exists():
        write_bigwig(root / "nochr.bw", {"1.1": 200}, [("1.1", 0, np.ones(200, np.float32))])
        write_bigwig(root / "partial.bw", {"chrUn_KI270302v1": 300}, [])
    path = tmp_path / "r.bed"
    path.write_text(bed)
    out = tmp_path / "new" / "o.zarr"
    assert attribute.main(_attribute_argv(world, "plain.fa", path, out, *extra, dnase=dnase)) == 1
    line = _one_error_line(capsys)
    assert re.search(expected, line), line
    assert not (tmp_path / "new").exists()


def test_outputs_under_a_file_are_refused_before_any_work(world, tmp_path, capsys):
    root = world["root"]
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    bed = tmp_path / "r.bed"
    bed.write_text("chr1.1\t0\t50\n")
    assert attribute.main(_attribute_argv(world, "plain.fa", bed, blocker / "deeper" / "o.zarr")) == 1
    assert (
        _one_error_line(capsys) == f"error: --out {blocker}/deeper/o.zarr: {blocker} is a file, not a folder"
    )
    base = [
        "--checkpoint",
        str(root / "ckpt"),
        "--fasta",
        str(root / "plain.fa"),
        "--dnase",
        str(root / "dnase.bw"),
    ]
    assert mutmap.main([*base, "--regions", str(bed), "--out", str(blocker / "m.zarr"), "--quiet"]) == 1
    assert "afile is a file, not a folder" in _one_error_line(capsys)
    assert (
        mutmap.main(
            [*base, "--regions", str(bed), "--out", str(tmp_path / "ok.zarr"), "--bigwig", f"{blocker}/t."]
        )
        == 1
    )
    assert _one_error_line(capsys).startswith(f"error: --bigwig {blocker}/t.")
    assert not (tmp_path / "ok.zarr").exists()
    vcf = tmp_path / "v.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\n1.1\t5\t.\tA\tC\n")
    assert mutmap.main([*base, "--vcf", str(vcf), "--out", str(tmp_path / "v.tsv")]) == 1
    assert "unknown chromosome '1.1'" in (line := _one_error_line(capsys)) and "did you mean 'chr1.1'" in line
    assert blocker.read_text() == "not a folder"


# ------------------------------------------------------------------------------- window FASTA


def test_saliency_reads_bedtools_getfasta_names(world, tmp_path, capsys):
    """Records named as ``bedtools getfasta -name`` (NAME::chrom:start-end) and ``-s`` ((+), and (-)
    for the reverse complement) get their DNase from the bigWig, back to front for (-): the maps
    equal those of the same records with the expected rows given as --dnase-npy."""
    seqs, dnase = world["seqs"], world["dnase"]
    windows = [
        ("p1::chr1.1", 10, "", False),
        ("chr1.1", 40, "(+)", False),
        ("chrUn_KI270302v1", 200, "(-)", True),
    ]
    fasta, rows = [], []
    for name, start, strand, reverse in windows:
        chrom = name.rpartition("::")[2]
        text, row = seqs[chrom][start : start + L], dnase[chrom][start : start + L]
        if reverse:
            text, row = text.translate(COMPLEMENT)[::-1], row[::-1]
        fasta.append(f">{name}:{start}-{start + L}{strand}\n{text}\n")
        rows.append(row)
    (tmp_path / "w.fa").write_text("".join(fasta))
    np.save(tmp_path / "rows.npy", np.stack(rows))
    common = ["--checkpoint", str(world["root"] / "ckpt"), "--fasta", str(tmp_path / "w.fa"), "--quiet"]
    common += ["--method", "grad_x_input"]
    assert (
        saliency.main([*common, "--dnase", str(world["root"] / "dnase.bw"), "--out", str(tmp_path / "a.npz")])
        == 0
    )
    assert (
        saliency.main([*common, "--dnase-npy", str(tmp_path / "rows.npy"), "--out", str(tmp_path / "b.npz")])
        == 0
    )
    a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    np.testing.assert_array_equal(a["saliency"], b["saliency"])
    assert saliency.genome_axis(f"p1::chr1.1:10-{10 + L}", L) == (11, "chr1.1 position (1-based)")
    assert saliency.genome_axis(f"chr1.1:10-{10 + L}(-)", L) is None  # reversed: window offsets
    # samtools faidx names its windows 1-based inclusive: one base short here, and said so.
    seq = world["seqs"]["chr1.1"][10 : 10 + L]
    (tmp_path / "s.fa").write_text(f">chr1.1:11-{10 + L}\n{seq}\n")
    argv = [*common[:2], "--fasta", str(tmp_path / "s.fa"), "--dnase", str(world["root"] / "dnase.bw")]
    assert saliency.main([*argv, "--out", str(tmp_path / "s.npz")]) == 1
    line = _one_error_line(capsys)
    assert f"spans {L - 1} bp; need {L}" in line and "samtools faidx" in line, line
    assert not (tmp_path / "s.npz").exists()
