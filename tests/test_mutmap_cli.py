"""``python -m jaxmotif.mutmap``: coverage, store contents, resume, parts, sharding, VCF, plot, errors."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

import jaxmotif
from jaxmotif.cli import mutmap as cli
from jaxmotif.io.bigwig import read_bigwig, write_bigwig
from jaxmotif.io.zarr_store import MutmapStore, open_mutmap
from jaxmotif.models import DeepHistoneConfig, Model, save_model
from jaxmotif.sequence import encode_indices, one_hot_from_indices
from jaxmotif.tiling import tile_regions

L = 64
CHROMS = {"chrA": 701, "chrB": 333}
# Odd-sized, short (< L), overlapping, at both chromosome ends, and a whole chromosome.
BED = [
    ("chrA", 0, 7),
    ("chrA", 5, 200),
    ("chrA", 180, 251),
    ("chrA", 300, 321),
    ("chrA", 650, 701),
    ("chrB", 0, 333),
]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("mutmap")
    rng = np.random.default_rng(11)
    seqs = {}
    with open(root / "genome.fa", "w") as f:
        for chrom, size in CHROMS.items():
            s = np.array(list("ACGTacgt"))[rng.integers(0, 8, size)]
            s[100:110] = "N"
            seqs[chrom] = "".join(s)
            f.write(f">{chrom} test\n")
            f.write("\n".join(seqs[chrom][i : i + 60] for i in range(0, size, 60)) + "\n")
    (root / "regions.bed").write_text("".join(f"{c}\t{s}\t{e}\n" for c, s, e in BED))
    dnase = {c: rng.random(n).astype(np.float32) * 4 for c, n in CHROMS.items()}
    dnase["chrB"][200:260] = np.nan  # no data there: read as 0
    write_bigwig(root / "dnase.bw", CHROMS, [(c, 0, v) for c, v in dnase.items()])
    config = DeepHistoneConfig(
        variant="full", seq_len=L, widths=(8, 8, 8), hidden=16, num_outputs=3, output_names=("m1", "m2", "m3")
    )
    model = Model.random(config, key=jax.random.key(2))
    save_model(model, root / "ckpt")
    base = [
        "--checkpoint",
        str(root / "ckpt"),
        "--fasta",
        str(root / "genome.fa"),
        "--dnase",
        str(root / "dnase.bw"),
    ]
    scan = [
        *base,
        "--regions",
        str(root / "regions.bed"),
        "--chunk-len",
        "128",
        "--batch-size",
        "2",
        "--quiet",
    ]
    assert cli.main([*scan, "--out", str(root / "ref.zarr"), "--bigwig", str(root / "bw.")]) == 0
    return {"root": root, "model": model, "seqs": seqs, "base": base, "scan": scan}


def in_region_mask(chrom):
    mask = np.zeros(CHROMS[chrom], bool)
    for c, s, e in BED:
        if c == chrom:
            mask[s:e] = True
    return mask


def read_store(path):
    store = open_mutmap(path)
    return {c: (store.scores(c)[:], store.ref(c)[:], store.done_mask(c)) for c in store.chroms}


def test_store_covers_regions_and_equals_mutation_map(data):
    store = open_mutmap(data["root"] / "ref.zarr")
    model = data["model"]
    attrs = store.attrs
    assert attrs["score"] == "delta" and store.output_names == ["m1", "m2", "m3"]
    assert attrs["config"]["seq_len"] == L and attrs["version"] == jaxmotif.__version__
    assert store.chroms == ["chrA", "chrB"] and store.scores("chrA").shape == (701, 4, 3)
    for chrom in CHROMS:
        scores, ref, _ = store.scores(chrom)[:], store.ref(chrom)[:], None
        mask = in_region_mask(chrom)
        want_ref = encode_indices(data["seqs"][chrom])
        np.testing.assert_array_equal(ref[mask], want_ref[mask])
        assert np.all(ref[~mask] == -2) and np.all(np.isnan(scores[~mask]))
        scanned_base = mask & (want_ref >= 0)
        assert np.all(np.isfinite(scores[scanned_base])) and np.all(np.isnan(scores[mask & (want_ref < 0)]))
    # Every base of the regions equals mutation_map on the window the tiling assigned it to.
    windows = tile_regions([b for b in BED], L, chrom_order=list(CHROMS))
    seq = np.stack(
        [one_hot_from_indices(encode_indices(fetch(data["seqs"][w.chrom], w.start, w.end))) for w in windows]
    )
    dnase = np.stack([read_bigwig(data["root"] / "dnase.bw", w.chrom, w.start, w.end) for w in windows])
    expected = jaxmotif.mutation_map(model, seq, dnase, batch_size=2)
    for w, e in zip(windows, expected, strict=True):
        got = store.read(w.chrom, w.assign_start, w.assign_end).scores
        np.testing.assert_allclose(
            got, e[w.offset : w.offset + w.assign_end - w.assign_start], rtol=1e-6, atol=1e-9
        )
    # Chunks without any region base were never written: chrA's chunks 3 and 4 (384-640) hold none.
    assert store.done_mask("chrA").tolist() == [True, True, True, False, False, True]
    assert store.scores("chrA").nchunks_initialized == 4


def fetch(s, start, end):
    left, right = max(0, -start), max(0, end - len(s))
    return "N" * left + s[max(start, 0) : min(end, len(s))] + "N" * right


def test_bigwig_summaries(data):
    root = data["root"]
    store = open_mutmap(root / "ref.zarr")
    s = store.read("chrA", 0, 701)
    for t, name in enumerate(store.output_names):
        mean = read_bigwig(root / f"bw.{name}.mean.bw", "chrA", 0, 701)
        maxabs = read_bigwig(root / f"bw.{name}.maxabs.bw", "chrA", 0, 701)
        ok = np.isfinite(s.scores[:, 0, t])
        np.testing.assert_allclose(mean[ok], s.scores[ok, :, t].sum(1) / 3, rtol=1e-5, atol=1e-9)
        np.testing.assert_allclose(maxabs[ok], np.abs(s.scores[ok, :, t]).max(1), rtol=1e-5, atol=1e-9)
        assert np.all(mean[~ok] == 0)  # no data: bigWig gaps read as 0


def test_killed_run_resumes_to_identical_store(data, monkeypatch, capsys):
    out = data["root"] / "killed.zarr"
    calls = {"n": 0}
    original = MutmapStore.mark_done

    def crash_after_two(self, chrom, chunks):
        calls["n"] += 1
        if calls["n"] > 2:  # the third chunk's data is written, its done flag is not: a crash
            raise RuntimeError("simulated crash")
        original(self, chrom, chunks)

    monkeypatch.setattr(MutmapStore, "mark_done", crash_after_two)
    with pytest.raises(RuntimeError, match="simulated crash"):
        cli.main([*data["scan"], "--out", str(out)])
    monkeypatch.setattr(MutmapStore, "mark_done", original)
    partial = read_store(out)
    assert sum(int(d.sum()) for _, _, d in partial.values()) == 2
    assert cli.main([*data["scan"], "--out", str(out)]) == 1  # exists, no --resume
    assert "pass --resume" in capsys.readouterr().err
    scan = [a for a in data["scan"] if a != "--quiet"]
    assert cli.main([*scan, "--out", str(out), "--resume"]) == 0
    assert_stores_equal(read_store(out), read_store(data["root"] / "ref.zarr"))
    # The resumed run's progress bar counts the chunks already done and ends at 100 %.
    bar = capsys.readouterr().err
    assert "mutmap:" in bar and "100%" in bar.split("mutmap:")[-1]
    # A resume with different settings is refused.
    assert cli.main([*data["scan"], "--out", str(out), "--resume", "--score", "raw"]) == 1
    assert "score differs" in capsys.readouterr().err


def assert_stores_equal(a, b):
    assert a.keys() == b.keys()
    for chrom in a:
        for x, y in zip(a[chrom], b[chrom], strict=True):
            np.testing.assert_array_equal(x, y)


def tree_digest(path):
    """Every file under ``path`` with its bytes: equal digests mean an untouched store."""
    import hashlib

    return {
        p.relative_to(path): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in path.rglob("*")
        if p.is_file()
    }


def test_parts_write_one_store_equal_to_a_single_run(data, tmp_path, capsys):
    root = data["root"]
    out = root / "parts.zarr"
    tracks = tmp_path / "new" / "tracks" / "p."  # folders created
    assert cli.main([*data["scan"], "--out", str(out), "--part", "1/2", "--bigwig", str(tracks)]) == 0
    err = capsys.readouterr().err
    assert "bigWig tracks not written yet" in err and "--resume --bigwig" in err
    assert not tracks.parent.exists() or not list(tracks.parent.iterdir())
    # The other part with anything that changes the result is refused, naming it, store untouched.
    before = tree_digest(out)
    other_ckpt = tmp_path / "ckpt2"  # same config, other weights
    save_model(Model.random(data["model"].config, key=jax.random.key(99)), other_ckpt)
    other_fasta = tmp_path / "genome.fa"
    other_fasta.write_bytes((root / "genome.fa").read_bytes())  # same bases, another file
    changes = [
        (["--checkpoint", str(other_ckpt)], "params_sha256"),
        (["--precision", "bf16"], "precision"),
        (["--method", "full"], "method"),
        (["--fasta", str(other_fasta)], "fasta"),
    ]
    head = dict(zip(data["scan"][0:6:2], data["scan"][1:6:2], strict=True))  # checkpoint, fasta, dnase
    for change, name in changes:
        opts, extra = dict(head), []
        if change[0] in opts:
            opts[change[0]] = change[1]
        else:
            extra = change
        argv = [x for kv in opts.items() for x in kv] + data["scan"][6:] + extra
        for mode in (["--part", "0/2"], ["--resume"]):
            assert cli.main([*argv, "--out", str(out), *mode]) == 1
            err = capsys.readouterr().err
            assert err.startswith("error: ") and err.count("\n") == 1 and f"{name} differs" in err, err
            assert tree_digest(out) == before
    # The part that completes the store writes the tracks.
    assert cli.main([*data["scan"], "--out", str(out), "--part", "0/2", "--bigwig", str(tracks)]) == 0
    assert "wrote 6 bigWig summaries" in capsys.readouterr().err
    assert_stores_equal(read_store(out), read_store(root / "ref.zarr"))
    for name in ("m1", "m3"):
        for kind in ("mean", "maxabs"):
            np.testing.assert_array_equal(
                read_bigwig(f"{tracks}{name}.{kind}.bw", "chrA", 0, 701),
                read_bigwig(root / f"bw.{name}.{kind}.bw", "chrA", 0, 701),
            )


def test_overwrite_parents_and_targets_syntax(data, tmp_path, capsys):
    out = tmp_path / "res" / "deep" / "x.zarr"  # parent folders created
    small = tmp_path / "small.bed"
    small.write_text("chrA\t20\t60\n")
    base = [*data["base"], "--regions", str(small), "--quiet", "--out", str(out)]
    assert cli.main([*base, "--targets", "m3", "0"]) == 0
    assert open_mutmap(out).output_names == ["m3", "m1"]
    assert cli.main([*base, "--targets", "m2"]) == 1
    err = capsys.readouterr().err
    assert "exists" in err and "--overwrite" in err and open_mutmap(out).output_names == ["m3", "m1"]
    assert cli.main([*base, "--targets", "m2,m3", "--overwrite"]) == 0
    store = open_mutmap(out)
    assert store.output_names == ["m2", "m3"] and store.attrs["scan"]["outputs"] == ["m2", "m3"]
    assert [p.name for p in out.parent.iterdir()] == ["x.zarr"]  # nothing stale beside it


def test_iupac_codes_warned_and_counted_or_refused(data, tmp_path, capsys):
    seqs = dict(data["seqs"])
    seqs["chrA"] = seqs["chrA"][:30] + "R" + seqs["chrA"][31:40] + "y" + seqs["chrA"][41:]
    fasta = tmp_path / "iupac.fa"
    fasta.write_text("".join(f">{c}\n{s}\n" for c, s in seqs.items()))
    bed = tmp_path / "r.bed"
    bed.write_text("chrA\t20\t60\n")
    argv = [*data["base"], "--fasta", str(fasta), "--regions", str(bed), "--quiet"]
    strict = tmp_path / "strict.zarr"
    assert cli.main([*argv, "--out", str(strict), "--strict-bases"]) == 1
    err = capsys.readouterr().err
    assert (
        err
        == "error: chrA:31: IUPAC ambiguity code 'R' in "
        + str(fasta)
        + " (--strict-bases refuses IUPAC codes)\n"
    )
    assert not strict.exists()
    out = tmp_path / "n.zarr"
    assert cli.main([*argv, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "warning: 2 IUPAC ambiguity codes" in err and "chrA:31 'R'" in err
    part = open_mutmap(out).read("chrA", 20, 60)
    assert part.ref[10] == -1 and part.ref[20] == -1 and np.all(np.isnan(part.scores[[10, 20]]))


def test_sharded_over_four_fake_devices_equals_one_device(data, tmp_path):
    argv = [*data["scan"][:-3], "--batch-size", "4", "--quiet", "--out", str(tmp_path / "four.zarr")]
    script = textwrap.dedent(
        f"""
        import sys, numpy as np, jax
        assert jax.local_device_count() == 4
        jax.config.update("jax_numpy_rank_promotion", "raise")
        from jaxmotif.cli import mutmap as cli
        import jaxmotif
        sys.exit(cli.main({argv!r}))
        """
    )
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    a, b = read_store(tmp_path / "four.zarr"), read_store(data["root"] / "ref.zarr")
    assert a.keys() == b.keys()
    for chrom in a:
        np.testing.assert_array_equal(a[chrom][1], b[chrom][1])
        np.testing.assert_array_equal(a[chrom][2], b[chrom][2])
        # XLA on CPU picks kernels by the per-device batch shape (2 windows here, 1 there), so
        # outputs in (0, 1) may differ in their last bit (6e-8); deltas inherit that, no more.
        np.testing.assert_array_equal(np.isnan(a[chrom][0]), np.isnan(b[chrom][0]))
        np.testing.assert_allclose(a[chrom][0], b[chrom][0], rtol=0, atol=2.5e-7)


def test_vcf_snvs_into_tsv(data, tmp_path, capsys):
    seqs, model = data["seqs"], data["model"]
    ref_a, ref_b = seqs["chrA"][3].upper(), seqs["chrB"][332].upper()
    alt_a, alt_a2 = [b for b in "ACGT" if b != ref_a][:2]
    vcf = tmp_path / "v.vcf"
    vcf.write_text(
        "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\n"
        f"chrA\t4\trs1\t{ref_a}\t{alt_a},{alt_a2}\n"
        f"chrB\t333\trs2\t{ref_b}\tA\n"
        f"chrA\t50\tindel\t{seqs['chrA'][49].upper()}\t{seqs['chrA'][49].upper()}TT\n"
    )
    out = tmp_path / "v.tsv"
    assert (
        cli.main([*data["base"], "--vcf", str(vcf), "--out", str(out), "--score", "deepbind", "--quiet"]) == 0
    )
    assert "1 non-SNV" in capsys.readouterr().err
    lines = [line.split("\t") for line in out.read_text().splitlines()]
    assert lines[0][:5] == ["chrom", "pos", "id", "ref", "alt"] and lines[0][5:8] == [
        "m1:p_ref",
        "m1:p_alt",
        "m1:deepbind",
    ]
    rows = [r for r in lines[1:] if r[3] != r[4]]
    assert [r[2] for r in lines[1:]] == ["rs1", "rs1", "rs2"]
    # Check one row against mutation_map on the centred window.
    chrom, pos = "chrB", 333
    (w,) = tile_regions([(chrom, pos - 1, pos)], L)
    seq = one_hot_from_indices(encode_indices(fetch(seqs[chrom], w.start, w.end)))[None]
    dn = read_bigwig(data["root"] / "dnase.bw", chrom, w.start, w.end)[None]
    want = jaxmotif.mutation_map(model, seq, dn, score="deepbind")[0, pos - 1 - w.start, 0]
    row = next(r for r in rows if r[2] == "rs2")
    np.testing.assert_allclose([float(row[5 + 3 * t + 2]) for t in range(3)], want, rtol=1e-4, atol=1e-9)
    bad = tmp_path / "bad.vcf"
    bad.write_text(f"chrA\t4\trs1\t{'A' if ref_a != 'A' else 'C'}\tG\n")
    assert cli.main([*data["base"], "--vcf", str(bad), "--out", str(tmp_path / "b.tsv")]) == 1
    assert "does not match the genome" in capsys.readouterr().err and not (tmp_path / "b.tsv").exists()


def test_small_inputs_reach_the_kernel_unpadded(data, tmp_path, monkeypatch):
    """--batch-size 8 on 2 windows: the kernel gets 2 rows, the store equals the run padded to 8;
    --vcf's default 8 windows per step on 2 SNV sites (3 SNVs): 2 rows, the same TSV values."""
    from jaxmotif import ism, scan

    rows = []

    def counting(make):
        def made(*args, **kwargs):
            fn = make(*args, **kwargs)
            return lambda p, x, *rest: (rows.append(x.shape[0]), fn(p, x, *rest))[1]

        return made

    monkeypatch.setattr(scan, "indices_kernel", counting(scan.indices_kernel))
    monkeypatch.setattr(ism, "compiled_listed_mutations", counting(ism.compiled_listed_mutations))
    bed = tmp_path / "two.bed"
    bed.write_text("chrA\t300\t321\nchrB\t0\t80\n")
    argv = [*data["base"], "--regions", str(bed), "--batch-size", "8", "--chunk-len", "128", "--quiet"]
    n_windows = len(tile_regions([("chrA", 300, 321), ("chrB", 0, 80)], L))
    assert n_windows < 8
    assert cli.main([*argv, "--out", str(tmp_path / "small.zarr")]) == 0
    assert rows == [n_windows]
    with monkeypatch.context() as m:
        m.setattr(scan, "scan_step", lambda n, b, d: -(-b // d) * d)  # the old rule: the full batch
        rows.clear()
        assert cli.main([*argv, "--out", str(tmp_path / "padded.zarr")]) == 0
        assert rows == [8]
    a, b = read_store(tmp_path / "small.zarr"), read_store(tmp_path / "padded.zarr")
    for chrom in CHROMS:
        np.testing.assert_array_equal(a[chrom][1], b[chrom][1])
        np.testing.assert_array_equal(a[chrom][2], b[chrom][2])
        # XLA on CPU picks kernels by batch shape: float32 rounding only.
        np.testing.assert_allclose(a[chrom][0], b[chrom][0], rtol=1e-6, atol=1e-9)
    assert (
        open_mutmap(tmp_path / "small.zarr").attrs["scan"]
        == open_mutmap(tmp_path / "padded.zarr").attrs["scan"]
    )
    seqs = data["seqs"]
    ref_a, ref_b = seqs["chrA"][199].upper(), seqs["chrA"][209].upper()
    alts = [x for x in "ACGT" if x != ref_a]
    vcf = tmp_path / "two.vcf"
    vcf.write_text(
        f"#CHROM\tPOS\tID\tREF\tALT\nchrA\t200\ts1\t{ref_a}\t{alts[0]},{alts[1]}\n"
        f"chrA\t210\ts2\t{ref_b}\t{'A' if ref_b != 'A' else 'C'}\n"
    )
    rows.clear()
    out = tmp_path / "two.tsv"
    assert cli.main([*data["base"], "--vcf", str(vcf), "--out", str(out), "--quiet"]) == 0
    assert rows == [2]
    got = [r.split("\t") for r in out.read_text().splitlines()[1:]]
    # The padded run: score_vcf at 8 windows per step, as the CLI ran before.
    import io

    from jaxmotif.io.bigwig import BigWigReader
    from jaxmotif.io.fasta import Genome

    rows.clear()
    handle = io.StringIO()
    genome = Genome(str(data["root"] / "genome.fa"))
    with BigWigReader(data["root"] / "dnase.bw") as dnase:
        n = cli.score_vcf(
            data["model"],
            genome,
            cli.iter_sites(cli.iter_vcf_snvs(vcf, genome)),
            handle,
            dnase_reader=dnase,
            targets=(0, 1, 2),
            windows_per_step=8,
        )
    assert n == 3 and rows == [8]
    want = [r.split("\t") for r in handle.getvalue().splitlines()]
    assert [r[:5] for r in got] == [r[:5] for r in want]
    np.testing.assert_allclose(
        np.array([r[5:] for r in got], float), np.array([r[5:] for r in want], float), rtol=1e-5, atol=1e-9
    )


def test_plot_window(data, tmp_path):
    out = tmp_path / "site.png"
    assert cli.main([*data["base"], "--plot", "chrA:20-60", "--targets", "m2", "--out", str(out)]) == 0
    assert out.stat().st_size > 1000 and out.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "change,message",
    [
        ({"--checkpoint": "missing_ckpt"}, "checkpoint folder"),
        ({"--dnase": None}, "has a DNase branch: pass --dnase"),
        ({"bed": "chrZ\t0\t10\n"}, "unknown chromosome 'chrZ'"),
        ({"bed": "chrB\t300\t400\n"}, "runs past the end of chrB"),
        ({"--targets": "m1,H3K27ac"}, "'H3K27ac' is not an output"),
        ({"--stride": "65"}, "--stride 65"),
    ],
)
def test_input_errors_before_any_work(data, tmp_path, capsys, change, message):
    args = dict(zip(data["base"][0::2], data["base"][1::2], strict=True))
    bed = tmp_path / "r.bed"
    bed.write_text(change.pop("bed", "chrA\t0\t10\n"))
    args.update(change)
    argv = [x for k, v in args.items() if v is not None for x in (k, v)]
    out = tmp_path / "o.zarr"
    assert cli.main([*argv, "--regions", str(bed), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".o.zarr")]


def test_help_has_an_example(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "python -m jaxmotif.mutmap --checkpoint" in capsys.readouterr().out


def test_store_attrs_are_json(data):
    attrs = open_mutmap(data["root"] / "ref.zarr").attrs
    json.dumps(attrs)
    assert attrs["scan"]["stride"] == L and Path(attrs["args"]["regions"]).name == "regions.bed"


def test_no_arguments_runs_the_demo(data, monkeypatch, tmp_path, capsys):
    import jaxmotif.demo as demo

    root = data["root"]
    fake = demo.DemoPaths(
        root=root, model=root / "ckpt", metrics=root / "none", motifs=root / "none", seqs=root / "none",
        seqs_dnase=root / "none", genome=root / "genome.fa", dnase=root / "dnase.bw",
        regions=root / "regions.bed", planted_sites=root / "none",
    )  # fmt: skip
    monkeypatch.setattr(demo, "demo_paths", lambda root=None: fake)
    monkeypatch.chdir(tmp_path)
    for _ in range(2):  # the demo writes into one named folder and reuses it
        assert cli.main([]) == 0
        out = capsys.readouterr().out
        folder = Path(cli.DEMO_DIR)
        assert f"demo outputs in {folder}" in out
        assert (folder / "mutmap.png").is_file() and (folder / "demo.m1.mean.bw").is_file()
    assert [p.name for p in tmp_path.iterdir()] == [cli.DEMO_DIR]
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]
    store = open_mutmap(folder / "mutmap.zarr")
    assert (
        store.attrs["scan"]["windows_sha256"]
        == open_mutmap(root / "ref.zarr").attrs["scan"]["windows_sha256"]
    )


def test_vcf_streams_listed_snvs_equal_to_the_mutation_map(data, tmp_path, monkeypatch):
    seqs, model = data["seqs"], data["model"]
    held = []
    original = cli._write_rows
    monkeypatch.setattr(
        cli, "_write_rows", lambda handle, rows: (held.append(len(rows)), original(handle, rows))
    )
    alphabet = model.config.alphabet

    def vcf_for(n_sites):
        lines = ["#CHROM\tPOS\tID\tREF\tALT"]
        for i in range(n_sites):
            pos = 200 + 7 * i  # 1-based, all real bases of chrA
            ref = seqs["chrA"][pos - 1].upper()
            alts = [b for b in "ACGT" if b != ref][: 1 + i % 3]
            lines.append(f"chrA\t{pos}\ts{i}\t{ref}\t{','.join(alts)}")
        path = tmp_path / f"{n_sites}.vcf"
        path.write_text("\n".join(lines) + "\n")
        return path

    rows_by_count = {}
    for n_sites in (3, 12):
        held.clear()
        out = tmp_path / f"{n_sites}.tsv"
        argv = [
            *data["base"],
            "--vcf",
            str(vcf_for(n_sites)),
            "--out",
            str(out),
            "--batch-size",
            "2",
            "--quiet",
        ]
        assert cli.main(argv) == 0
        # Host rows held at once: one batch of 2 windows, at most 3 SNVs each, whatever the count.
        assert max(held) <= 6 and len(held) == -(-n_sites // 2)
        rows_by_count[n_sites] = [r.split("\t") for r in out.read_text().splitlines()[1:]]
    rows = rows_by_count[12]
    assert len(rows) == sum(1 + i % 3 for i in range(12))
    # Every row equals the full mutation map of the SNV's centred window at the listed base.
    from jaxmotif.tiling import tile_region

    windows = [tile_region("chrA", int(r[1]) - 1, int(r[1]), L)[0] for r in rows[:4]]  # centred
    seq = np.stack(
        [one_hot_from_indices(encode_indices(fetch(seqs["chrA"], w.start, w.end))) for w in windows]
    )
    dn = np.stack([read_bigwig(data["root"] / "dnase.bw", "chrA", w.start, w.end) for w in windows])
    raw = jaxmotif.mutation_map(model, seq, dn, score="raw")
    delta = jaxmotif.mutation_map(model, seq, dn, score="delta")
    for r, w, m, d in zip(rows[:4], windows, raw, delta, strict=True):
        at = int(r[1]) - 1 - w.start
        b = alphabet.index(r[4])
        got = np.array([float(x) for x in r[5:]]).reshape(3, 3)  # (targets, [p_ref, p_alt, delta])
        np.testing.assert_allclose(got[:, 1], m[at, b], rtol=1e-5)
        np.testing.assert_allclose(got[:, 0], m[at, alphabet.index(r[3])], rtol=1e-5)
        np.testing.assert_allclose(got[:, 2], d[at, b], rtol=1e-3, atol=1e-8)


def test_plot_coordinates_are_browser_coordinates(data, tmp_path, capsys):
    from jaxmotif.io.bed import BedError, Region, parse_browser_region

    assert parse_browser_region("chr1:1,000,501-1,000,560") == Region("chr1", 1000500, 1000560)
    assert parse_browser_region("chrA:5-5") == Region("chrA", 4, 5)
    for bad in ("chr1:0-10", "chr1:10-9", "chr1:10"):
        with pytest.raises(BedError, match="invalid region"):
            parse_browser_region(bad)
    out = tmp_path / "figs" / "w.svg"  # parent created
    argv = [*data["base"], "--plot", "chrA:21-60", "--targets", "m2", "--out", str(out)]
    assert cli.main(argv) == 0 and b"chrA:21-60" in out.read_bytes()
    assert cli.main(argv) == 1 and "--overwrite" in capsys.readouterr().err
    assert cli.main([*argv, "--overwrite"]) == 0 and [p.name for p in out.parent.iterdir()] == ["w.svg"]


def test_out_without_checkpoint_uses_the_demo_model(tmp_path, capsys):
    from jaxmotif.demo import demo_paths

    lines = demo_paths().genome.read_text().splitlines()
    chrom = lines[0][1:].split()[0]
    base = "".join(lines[1:4])[99].upper()  # position 100 of the first chromosome
    alt = "A" if base != "A" else "C"
    vcf = tmp_path / "v.vcf"
    vcf.write_text(f"{chrom}\t100\tx\t{base}\t{alt}\n")
    assert cli.main(["--vcf", str(vcf), "--out", str(tmp_path / "v.tsv"), "--quiet", "--targets", "0"]) == 0
    assert "bundled demo model" in capsys.readouterr().err
    assert len((tmp_path / "v.tsv").read_text().splitlines()) == 2
