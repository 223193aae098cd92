"""BPNet control tracks (``--control``) in ``python -m jaxmotif.mutmap`` and ``python -m jaxmotif.attribute``:
stores equal the Python API on the same windows, every refusal is one line and writes nothing, and a
``--resume`` with other control files is refused."""

import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import jaxmotif
from jaxmotif.cli import attribute as attribute_cli
from jaxmotif.cli import mutmap as mutmap_cli
from jaxmotif.io.bigwig import BigWigError, StackedBigWigReader, read_bigwig, write_bigwig
from jaxmotif.io.zarr_store import open_mutmap
from jaxmotif.models import BPNetConfig, DeepHistoneConfig, Model, save_model
from jaxmotif.sequence import encode_indices, one_hot_from_indices
from jaxmotif.tiling import tile_regions

L = 48
CHROMS = {"chrA": 230, "chrB": 97}
BED = [("chrA", 0, 30), ("chrA", 100, 180), ("chrB", 60, 97)]  # a chromosome start and end


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("control")
    rng = np.random.default_rng(3)
    seqs = {}
    with open(root / "genome.fa", "w") as f:
        for chrom, size in CHROMS.items():
            s = np.array(list("ACGTacgt"))[rng.integers(0, 8, size)]
            s[40:43] = "N"
            seqs[chrom] = "".join(s)
            f.write(f">{chrom}\n" + "\n".join(seqs[chrom][i : i + 60] for i in range(0, size, 60)) + "\n")
    (root / "regions.bed").write_text("".join(f"{c}\t{s}\t{e}\n" for c, s, e in BED))
    # Raw per-strand counts, different on each strand (so their order shows), with a no-data gap.
    for strand, scale in (("plus", 6), ("minus", 2)):
        tracks = {c: rng.poisson(scale, n).astype(np.float32) for c, n in CHROMS.items()}
        tracks["chrA"][150:170] = np.nan
        write_bigwig(root / f"{strand}.bw", CHROMS, [(c, 0, v) for c, v in tracks.items()])
    write_bigwig(root / "plus_chrA.bw", {"chrA": CHROMS["chrA"]}, [("chrA", 0, np.ones(CHROMS["chrA"]))])
    write_bigwig(root / "dnase.bw", CHROMS, [(c, 0, np.ones(n)) for c, n in CHROMS.items()])
    config = BPNetConfig(seq_len=L, n_filters=4, n_layers=2, n_outputs=2, n_control_tracks=2, trimming=8)
    model = Model.random(config, key=jax.random.key(7))
    save_model(model, root / "ckpt")
    plain = BPNetConfig(seq_len=L, n_filters=4, n_layers=1, n_outputs=2, n_control_tracks=0, trimming=8)
    save_model(Model.random(plain, key=jax.random.key(8)), root / "ckpt0")
    dh = DeepHistoneConfig(
        variant="dna", seq_len=L, widths=(4, 4, 4), hidden=8, num_outputs=1, output_names=("m",)
    )
    save_model(Model.random(dh, key=jax.random.key(9)), root / "ckpt_dh")
    control = f"{root / 'plus.bw'},{root / 'minus.bw'}"
    base = ["--checkpoint", str(root / "ckpt"), "--fasta", str(root / "genome.fa"), "--control", control]
    return {"root": root, "model": model, "seqs": seqs, "base": base, "control": control}


def fetch(s, start, end):
    left, right = max(0, -start), max(0, end - len(s))
    return "N" * left + s[max(start, 0) : min(end, len(s))] + "N" * right


def api_inputs(data, windows, controls=("plus", "minus")):
    """One-hot (N, L, 4) and control tracks (N, L, 2) of windows, read file by file with read_bigwig."""
    seq = np.stack(
        [one_hot_from_indices(encode_indices(fetch(data["seqs"][c], a, b), iupac="n")) for c, a, b in windows]
    )
    ctl = np.stack(
        [
            np.stack([read_bigwig(data["root"] / f"{s}.bw", c, a, b) for s in controls], axis=-1)
            for c, a, b in windows
        ]
    )
    return seq, ctl


def test_stacked_reader_is_channels_last_and_names_the_file_without_a_chromosome(data):
    root = data["root"]
    with StackedBigWigReader([root / "plus.bw", root / "minus.bw"]) as r:
        got = r.read("chrB", 90, 100)  # runs 3 bases past chrB's end: zeros there
        assert got.shape == (10, 2) and got.dtype == np.float32
        np.testing.assert_array_equal(got[:, 0], read_bigwig(root / "plus.bw", "chrB", 90, 100))
        np.testing.assert_array_equal(got[:, 1], read_bigwig(root / "minus.bw", "chrB", 90, 100))
        assert np.all(got[7:] == 0)
        assert r.chrom_sizes == CHROMS and r.missing("chrB") is None
    with StackedBigWigReader([root / "plus.bw", root / "plus_chrA.bw"]) as r:
        assert r.chrom_sizes == {"chrA": 230} and r.missing("chrB") == str(root / "plus_chrA.bw")
        with pytest.raises(BigWigError, match="plus_chrA.bw"):
            r.read("chrB", 0, 10)


def test_mutmap_store_equals_mutation_map_with_the_controls(data, tmp_path):
    out = tmp_path / "m.zarr"
    argv = [*data["base"], "--regions", str(data["root"] / "regions.bed"), "--out", str(out)]
    assert mutmap_cli.main([*argv, "--chunk-len", "64", "--batch-size", "2", "--quiet"]) == 0
    store = open_mutmap(out)
    assert store.output_names == ["profile", "counts"]
    assert [p["path"] for p in store.attrs["scan"]["control"]] == data["control"].split(",")
    windows = tile_regions(BED, L, chrom_order=list(CHROMS))
    spans = [(w.chrom, w.start, w.end) for w in windows]
    seq, ctl = api_inputs(data, spans)
    assert ctl.shape == (len(windows), L, 2)
    expected = jaxmotif.mutation_map(data["model"], seq, ctl)
    # The controls matter (the profile head sees them), and in their order: the store would differ
    # from maps made with swapped or zero controls.
    swapped = jaxmotif.mutation_map(data["model"], seq, ctl[..., ::-1])
    zero = jaxmotif.mutation_map(data["model"], seq, np.zeros_like(ctl))
    finite = np.isfinite(expected)
    assert np.abs(swapped - expected)[finite].max() > 1e-4 and np.abs(zero - expected)[finite].max() > 1e-4
    # The CLI runs 2 windows per step, the API 1: XLA on CPU picks kernels by batch shape, so p(s)
    # and p(s^) (|p| up to ~8) may differ in their last float32 bits (measured 4.8e-7 in the deltas).
    for w, e in zip(windows, expected, strict=True):
        got = store.read(w.chrom, w.assign_start, w.assign_end).scores
        np.testing.assert_allclose(
            got, e[w.offset : w.offset + w.assign_end - w.assign_start], rtol=1e-6, atol=4e-6
        )


def test_mutmap_resume_with_other_control_files_is_refused(data, tmp_path, capsys):
    out = tmp_path / "r.zarr"
    plus, minus = data["control"].split(",")
    common = ["--checkpoint", str(data["root"] / "ckpt"), "--fasta", str(data["root"] / "genome.fa")]
    common += ["--chrom", "chrB", "--out", str(out), "--quiet"]
    assert mutmap_cli.main([*common, "--control", f"{plus},{minus}"]) == 0
    capsys.readouterr()
    assert mutmap_cli.main([*common, "--control", f"{minus},{plus}", "--resume"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "control bigWigs" in err and err.count("\n") == 1
    assert mutmap_cli.main([*common, "--control", f"{plus},{minus}", "--resume"]) == 0  # same files: fine


def test_mutmap_vcf_and_plot_paths_take_the_controls(data, tmp_path, capsys):
    seqs, model = data["seqs"], data["model"]
    ref = seqs["chrB"][95].upper()
    alt = next(b for b in "ACGT" if b != ref)
    vcf = tmp_path / "v.vcf"
    vcf.write_text(f"#CHROM\tPOS\tID\tREF\tALT\nchrB\t96\trs1\t{ref}\t{alt}\n")
    out = tmp_path / "v.tsv"
    assert mutmap_cli.main([*data["base"], "--vcf", str(vcf), "--out", str(out), "--quiet"]) == 0
    row = out.read_text().splitlines()[1].split("\t")
    (w,) = tile_regions([("chrB", 95, 96)], L)
    seq, ctl = api_inputs(data, [(w.chrom, w.start, w.end)])
    want = jaxmotif.mutation_map(model, seq, ctl)[0, 95 - w.start, "ACGT".index(alt)]
    np.testing.assert_allclose([float(row[7]), float(row[10])], want, rtol=1e-4, atol=4e-6)
    png = tmp_path / "site.png"
    assert mutmap_cli.main([*data["base"], "--plot", "chrA:101-130", "--out", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_attribute_gradient_equals_saliency_with_the_controls(data, tmp_path, capsys):
    out = tmp_path / "a.zarr"
    argv = [*data["base"], "--regions", str(data["root"] / "regions.bed"), "--method", "gradient"]
    argv += ["--targets", "profile", "--out", str(out), "--quiet"]
    assert attribute_cli.main(argv) == 0
    import zarr

    g = zarr.open_group(str(out), mode="r")
    spans = [(c, (s + e) // 2 - L // 2, (s + e) // 2 - L // 2 + L) for c, s, e in BED]
    seq, ctl = api_inputs(data, spans)
    raw = jaxmotif.saliency(data["model"], seq, ctl, "profile", method="gradient")  # (N, L, 4)
    expected = raw - raw.mean(axis=-1, keepdims=True)
    np.testing.assert_allclose(np.asarray(g["attributions"][:])[..., 0], expected, rtol=1e-5, atol=1e-7)
    capsys.readouterr()
    plus, minus = data["control"].split(",")
    swapped = [*argv[:5], f"{minus},{plus}", *argv[6:], "--resume"]
    assert attribute_cli.main(swapped) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "control bigWigs" in err and err.count("\n") == 1


REFUSALS = [
    ({"--control": None}, "takes 2 control tracks: pass --control"),
    ({"--control": "{plus}"}, "--control names 1 bigWigs; the model in"),
    ({"--control": "{plus},{minus},{plus}"}, "--control names 3 bigWigs"),
    ({"--control": "{plus},"}, "holds an empty path"),
    ({"--dnase": "{root}/dnase.bw"}, "takes no DNase: drop --dnase"),
    ({"--dnase-transform": "log1p"}, "--dnase-transform log1p does not apply to control tracks"),
    ({"--control": "{plus},{root}/nope.bw"}, "control bigWig not found: "),
    ({"--control": "{plus},{root}/plus_chrA.bw"}, "chromosome 'chrB' is not in the control bigWig"),
    ({"--checkpoint": "{root}/ckpt0"}, "takes no control tracks: drop --control"),
    ({"--checkpoint": "{root}/ckpt_dh"}, "takes no control tracks: drop --control"),
    ({"--checkpoint": "{root}/ckpt0", "--control": None, "--dnase": "{root}/dnase.bw"}, "drop --dnase"),
]


@pytest.mark.parametrize("tool", ["mutmap", "attribute"])
@pytest.mark.parametrize("change,message", REFUSALS)
def test_refusals_are_one_line_and_write_nothing(data, tmp_path, capsys, tool, change, message):
    root = data["root"]
    plus, minus = data["control"].split(",")
    args = dict(zip(data["base"][0::2], data["base"][1::2], strict=True))
    for k, v in change.items():
        args[k] = None if v is None else v.format(root=root, plus=plus, minus=minus)
    argv = [x for k, v in args.items() if v is not None for x in (k, v)]
    out = tmp_path / "o.zarr"
    cli = mutmap_cli if tool == "mutmap" else attribute_cli
    assert cli.main([*argv, "--regions", str(root / "regions.bed"), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


def test_python_call_takes_a_list_of_control_files(data, tmp_path):
    out = jaxmotif.scan.scan_mutations(
        tmp_path / "p.zarr",
        fasta=data["root"] / "genome.fa",
        checkpoint=data["root"] / "ckpt",
        chrom=["chrB"],
        control=data["control"].split(","),
        quiet=True,
    )
    assert open_mutmap(out).done_mask("chrB").all()


def test_mutmap_sharded_over_four_fake_devices_equals_one_device(data, tmp_path):
    argv = [*data["base"], "--regions", str(data["root"] / "regions.bed"), "--chunk-len", "64", "--quiet"]
    script = textwrap.dedent(
        f"""
        import sys, jax
        assert jax.local_device_count() == 4
        jax.config.update("jax_numpy_rank_promotion", "raise")
        from jaxmotif.cli import mutmap as cli
        sys.exit(cli.main({[*argv, "--batch-size", "4", "--out", str(tmp_path / "four.zarr")]!r}))
        """
    )
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert mutmap_cli.main([*argv, "--batch-size", "1", "--out", str(tmp_path / "one.zarr")]) == 0
    a, b = open_mutmap(tmp_path / "four.zarr"), open_mutmap(tmp_path / "one.zarr")
    for chrom in CHROMS:
        np.testing.assert_array_equal(a.done_mask(chrom), b.done_mask(chrom))
        x, y = a.scores(chrom)[:], b.scores(chrom)[:]
        np.testing.assert_array_equal(np.isnan(x), np.isnan(y))
        # XLA on CPU picks kernels by the per-device batch shape: p(s) and p(s^) (|p| up to ~8: the
        # counts head sees log(1 + the controls' sum)) differ in their last float32 bits, measured
        # up to 1.7e-6 in the deltas; the controls themselves change them by > 1e-4.
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=4e-6)


def test_control_repeated_or_comma_separated_gives_one_store_and_paths_may_hold_commas(
    data, tmp_path, capsys
):
    """--control a,b and --control a --control b are the same scan (same key, same store); a path
    holding a comma works when named by its own --control (it names an existing file as a whole);
    a missing file is a one-line refusal naming it, before anything is written."""
    import shutil

    import zarr

    plus, minus = data["control"].split(",")
    model = ["--checkpoint", str(data["root"] / "ckpt"), "--fasta", str(data["root"] / "genome.fa")]
    common = [*model, "--chrom", "chrB", "--quiet"]
    comma, repeated = tmp_path / "comma.zarr", tmp_path / "repeated.zarr"
    assert mutmap_cli.main([*common, "--control", f"{plus},{minus}", "--out", str(comma)]) == 0
    both = ["--control", plus, "--control", minus]
    assert mutmap_cli.main([*common, *both, "--out", str(repeated)]) == 0
    a, b = open_mutmap(comma), open_mutmap(repeated)
    assert a.attrs["scan"] == b.attrs["scan"]
    assert [p["path"] for p in a.attrs["scan"]["control"]] == [plus, minus]  # in the order given
    np.testing.assert_array_equal(a.scores("chrB")[:], b.scores("chrB")[:])
    assert mutmap_cli.main([*common, *both, "--out", str(comma), "--resume"]) == 0  # the same scan key
    # A path with a comma, named by its own --control, is read (the same bytes as plus.bw).
    odd = tmp_path / "ctl,plus.bw"
    shutil.copyfile(plus, odd)
    out = tmp_path / "odd.zarr"
    assert mutmap_cli.main([*common, "--control", str(odd), "--control", minus, "--out", str(out)]) == 0
    c = open_mutmap(out)
    assert [p["path"] for p in c.attrs["scan"]["control"]] == [str(odd), minus]
    np.testing.assert_array_equal(c.scores("chrB")[:], a.scores("chrB")[:])
    # The Python call's list passes one --control per path.
    g = jaxmotif.scan.attribute_regions(
        tmp_path / "odd_attr.zarr",
        fasta=data["root"] / "genome.fa",
        regions=data["root"] / "regions.bed",
        checkpoint=data["root"] / "ckpt",
        control=[odd, minus],
        method="gradient",
        quiet=True,
    )
    assert zarr.open_group(str(g), mode="r").attrs["scan"]["control"][0]["path"] == str(odd)
    # A missing file: one line naming it; a missing path with a comma says it was split.
    capsys.readouterr()
    nope, split = tmp_path / "nope.bw", tmp_path / "no,pe.bw"
    refusals = [
        (["--control", plus, "--control", str(nope)], f"control bigWig not found: {nope}"),
        (
            ["--control", plus, "--control", str(split)],
            f"not found: {tmp_path / 'no'} (split on commas from --control {split}, which names no file)",
        ),
    ]
    bad = tmp_path / "bad.zarr"
    for flags, message in refusals:
        for tool in (mutmap_cli, attribute_cli):
            argv = [*model, "--regions", str(data["root"] / "regions.bed"), *flags, "--out", str(bad)]
            assert tool.main(argv) == 1
            err = capsys.readouterr().err
            assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
            assert not bad.exists()
