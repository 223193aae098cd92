"""Every command behaves the same way (issue 16): one walk through the same cases for each CLI.

Cases: an existing output is refused (and left as it was); ``--overwrite`` replaces it whole
(nothing stale survives); a missing parent folder is created; ``--targets`` takes names or
indices with commas or spaces; an IUPAC base is read as N with a warning and a count, and refused
with ``--strict-bases``; the chunks chosen under ``--max-memory`` fit it. The bundled demo model,
two of its sequences and tiny settings keep each run short.
"""

import numpy as np
import pytest

from jaxmotif import memory
from jaxmotif.demo import demo_model, demo_paths
from jaxmotif.io.fasta import read_fasta

CLIS = ("saliency", "filters", "optimize", "demo")
# The cases each CLI takes part in: demo and optimize read no FASTA; demo has no targets or memory option.
CASES = {
    "saliency": ("refused", "overwrite", "parent", "targets", "iupac", "memory"),
    "filters": ("refused", "overwrite", "parent", "iupac", "memory"),
    "optimize": ("refused", "overwrite", "parent", "targets", "memory"),
    "demo": ("refused", "overwrite", "parent"),
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Two demo sequences (FASTA, one with two R codes in iupac.fa) and their DNase rows."""
    root = tmp_path_factory.mktemp("inputs")
    paths = demo_paths()
    records = read_fasta(paths.seqs)[:2]
    (root / "seqs.fa").write_text("".join(f">{r.name}\n{r.sequence}\n" for r in records))
    bad = records[1].sequence[:10] + "R" + records[1].sequence[11:500] + "r" + records[1].sequence[501:]
    (root / "iupac.fa").write_text(f">{records[0].name}\n{records[0].sequence}\n>{records[1].name}\n{bad}\n")
    np.save(root / "dnase.npy", np.load(paths.seqs_dnase)[:2])
    return root


@pytest.fixture(scope="module")
def shared_model():
    return demo_model()


@pytest.fixture(autouse=True)
def _one_demo_model(shared_model, monkeypatch):
    """Every CLI run gets the same demo model object, so its compiled kernels are reused."""
    import jaxmotif.demo

    monkeypatch.setattr(jaxmotif.demo, "demo_model", lambda: shared_model)


def _main(cli):
    from jaxmotif.cli import demo, filters, optimize, saliency

    return {"saliency": saliency.main, "filters": filters.main, "optimize": optimize.main, "demo": demo.main}[
        cli
    ]


def _out(cli, folder):
    """The output path of ``cli`` under ``folder`` (saliency writes an .npz, the others a folder)."""
    return folder / ("sal.npz" if cli == "saliency" else "out")


def _argv(cli, inputs, out, fasta="seqs.fa"):
    fa = str(inputs / fasta)
    if cli == "saliency":
        dnase = str(inputs / "dnase.npy")
        return ["--fasta", fa, "--dnase-npy", dnase, "--method", "gradient", "--out", str(out), "--quiet"]
    if cli == "filters":
        return ["--fasta", fa, "--no-tomtom", "--out", str(out)]
    if cli == "optimize":
        small = ["--restarts", "1", "--steps", "3", "--quiet"]
        return ["--no-tomtom", *small, "--targets", "0", "--out", str(out)]
    return ["--steps", "metrics", "--out", str(out)]


def _result(cli, out):
    """The numbers a run wrote (to compare two runs)."""
    if cli == "saliency":
        return np.load(out)["saliency"]
    if cli == "filters":
        return np.load(out / "filters.npz")["counts"]
    if cli == "optimize":
        return np.load(out / "optimized.npz")["inputs"]
    return None


def _stale_output(cli, out):
    """An earlier run's output, with a file the new run would not write; returns that file."""
    if cli == "saliency":
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(b"old")
        stale = out.with_name(out.stem + "_logos") / "0000_old.png"
    else:
        stale = out / "tomtom.tsv"  # filters/optimize --no-tomtom write none; demo metrics writes nothing
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_text("stale")
    return stale


@pytest.mark.parametrize(
    ("cli", "case"), [(cli, case) for cli in CLIS for case in CASES[cli]], ids=lambda v: str(v)
)
def test_every_cli_follows_the_same_policy(cli, case, inputs, tmp_path, capsys, monkeypatch):
    main = _main(cli)
    out = _out(cli, tmp_path)
    if case == "refused":
        stale = _stale_output(cli, out)
        assert main(_argv(cli, inputs, out)) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and "--overwrite" in err[0], err
        assert stale.read_text() == "stale"  # left as it was
    elif case == "overwrite":
        stale = _stale_output(cli, out)
        assert main([*_argv(cli, inputs, out), "--overwrite"]) == 0
        assert out.exists() and not stale.exists()
        if cli == "saliency":
            assert not stale.parent.exists()  # no logos asked for: the old folder goes too
        assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary left
    elif case == "parent":
        nested = _out(cli, tmp_path / "new" / "deeper")
        assert main(_argv(cli, inputs, nested)) == 0
        assert nested.exists()
    elif case == "targets":
        argv = _argv(cli, inputs, out)
        base = argv[: argv.index("--out")] if cli == "optimize" else argv[:-3]
        base = [a for a in base if a not in ("--targets", "0")]
        runs = []
        # commas, spaces (separate words, or one quoted word), names and indices mixed
        for i, targets in enumerate((["H3K4me3,4"], ["1", "H3K9me3"])):
            where = tmp_path / f"t{i}" / out.name
            assert main([*base, "--targets", *targets, "--out", str(where), "--quiet"]) == 0, targets
            runs.append(_result(cli, where))
        assert runs[0].shape[1] == 2 or runs[0].shape[0] == 2  # two targets (saliency: axis 1)
        for other in runs[1:]:
            np.testing.assert_array_equal(other, runs[0])
        assert main([*base, "--targets", "NOPE", "--out", str(tmp_path / "bad" / out.name)]) == 1
        assert "NOPE" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    elif case == "iupac":
        assert main(_argv(cli, inputs, out, "iupac.fa")) == 0
        err = capsys.readouterr().err
        assert "warning:" in err and "2 IUPAC" in err and "position 10 'R'" in err, err
        strict = _out(cli, tmp_path / "strict")
        assert main([*_argv(cli, inputs, strict, "iupac.fa"), "--strict-bases"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: ") and "IUPAC code 'R'" in err[-1], err
        assert not strict.exists()
    elif case == "memory":
        budget = 24 * 2**20
        held = []
        real_gradient, real_filters = memory.gradient_plan, memory.filter_sites_elements

        def gradient_plan(b, **kw):
            rows, k = real_gradient(b, **kw)
            held.append((b, memory.gradient_elements(rows, k, kw["activations"], kw["length"])))
            held[-1] = (b, held[-1][1] * memory.ITEMSIZE + kw.get("fixed_bytes", 0))
            return rows, k

        monkeypatch.setattr(memory, "gradient_plan", gradient_plan)
        import jaxmotif.filters as filters_mod

        real_reduce = filters_mod._reduce_over_chunks

        def reduce(fn, seq, batch_size, combine, progress):
            held.append((budget, real_filters(batch_size, seq.shape[1], 16, 9) * memory.ITEMSIZE))
            return real_reduce(fn, seq, batch_size, combine, progress)

        monkeypatch.setattr(filters_mod, "_reduce_over_chunks", reduce)
        assert main([*_argv(cli, inputs, out), "--max-memory", "24MB"]) == 0
        assert held and all(b == budget and h <= budget for b, h in held), held
        # The same numbers as a run with the default budget.
        again = _out(cli, tmp_path / "default")
        assert main(_argv(cli, inputs, again)) == 0
        np.testing.assert_allclose(_result(cli, out), _result(cli, again), rtol=1e-6, atol=1e-7)


def test_filters_centres_variable_width_records(inputs, tmp_path, capsys):
    from jaxmotif.cli.filters import centre_to_length, main

    assert centre_to_length("AACGTT", 2) == "CG" and centre_to_length("AC", 5) == "NACNN"
    records = read_fasta(inputs / "seqs.fa")
    text = f">long\n{records[0].sequence}ACGTACGT\n>short\n{records[1].sequence[:900]}\n"
    (tmp_path / "var.fa").write_text(text)
    assert main(["--fasta", str(tmp_path / "var.fa"), "--no-tomtom", "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "2 of 2 records" in err and "centred on the model's 1000-bp window" in err, err


def test_saliency_logos_top_n_with_genome_coordinates(inputs, tmp_path, capsys):
    from jaxmotif.cli.saliency import genome_axis, main

    assert genome_axis("chr2:1,000-2,000", 1000) == (1001, "chr2 position (1-based)")
    assert genome_axis("chr2:1000-2000", 500) is None and genome_axis("demo_0001", 1000) is None
    records = read_fasta(inputs / "seqs.fa")
    (tmp_path / "regions.fa").write_text(
        "".join(f">chr1:{s}-{s + 1000}\n{r.sequence}\n" for s, r in zip((5000, 9000), records, strict=True))
    )
    out = tmp_path / "sal.npz"
    argv = ["--fasta", str(tmp_path / "regions.fa"), "--dnase-npy", str(inputs / "dnase.npy")]
    assert main([*argv, "--targets", "0", "--out", str(out), "--logos", "1", "--quiet"]) == 0
    maps = np.load(out)["saliency"]
    top = int(np.argmax(np.abs(maps).sum(axis=(1, 2))))
    logos = sorted(p.name for p in (tmp_path / "sal_logos").iterdir())
    assert logos == [f"0000_chr1_{(5000, 9000)[top]}-{(6000, 10000)[top]}.png"]


def test_demo_help_lists_every_step(capsys):
    from jaxmotif.cli.demo import STEPS, main

    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for step in STEPS:
        assert step in text.split("steps:", 1)[1], step


def test_demo_without_out_reuses_its_own_folder(tmp_path, monkeypatch):
    from jaxmotif.cli.demo import main

    monkeypatch.chdir(tmp_path)
    assert main(["--steps", "metrics"]) == 0
    (tmp_path / "demo_out" / "old.txt").write_text("earlier run")
    assert main(["--steps", "metrics"]) == 0  # replaced, not refused
    assert (tmp_path / "demo_out").is_dir() and not (tmp_path / "demo_out" / "old.txt").exists()


# The commands with heavier runs (scans, conversion, TF-MoDISco, the report) take part in the case
# that costs nothing to check for each: an existing output is refused before any work, in one line,
# and left as it was. Their --overwrite runs are tested in their own files.
REFUSING = ("mutmap", "attribute", "convert", "modisco", "report")


def _refusing_main(cli):
    import importlib

    module = {"convert": "convert.__main__"}.get(cli, f"jaxmotif.cli.{cli}")
    return importlib.import_module(module).main


@pytest.mark.parametrize("cli", REFUSING)
def test_heavier_clis_refuse_an_existing_output_before_any_work(cli, tmp_path, capsys):
    out = tmp_path / ("out.zarr" if cli in ("mutmap", "attribute") else "out")
    out.mkdir()
    (out / "stale.txt").write_text("stale")
    argv = {
        "mutmap": ["--out", str(out), "--regions", str(demo_paths().regions)],  # demo model and genome
        "attribute": ["--out", str(out), "--regions", str(demo_paths().regions)],
        "convert": [str(tmp_path / "model.pt"), str(out)],  # checked before the checkpoint is read
        "modisco": ["--attributions", str(tmp_path / "missing.zarr"), "--out", str(out)],
        "report": ["--out", str(out)],
    }[cli]
    assert _refusing_main(cli)(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: ") and "--overwrite" in err[-1], err
    assert sorted(p.name for p in out.iterdir()) == ["stale.txt"]
    assert (out / "stale.txt").read_text() == "stale"


@pytest.mark.parametrize("verb", ["mutmap", "attribute"])
def test_ctrl_c_in_a_scan_says_what_is_kept(verb, monkeypatch, capsys):
    """Ctrl-C during a genome scan: one error line saying how to continue, exit 130."""
    import importlib

    cli = importlib.import_module(f"jaxmotif.cli.{verb}")

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run_scan", interrupted)
    assert cli.main(["--out", "x.zarr"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: interrupted; finished chunks are kept, rerun with --resume to continue"]
