"""The one-page report: it builds on the demo model, parses, and every figure is an embedded PNG."""

import base64
from html.parser import HTMLParser

import numpy as np
import pytest


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images: list[dict] = []
        self.headings: list[str] = []
        self._in_h = False

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs))
        self._in_h = tag in ("h2", "h3")

    def handle_data(self, data):
        if self._in_h:
            self.headings.append(data)

    def handle_endtag(self, tag):
        self._in_h = False


@pytest.mark.slow
def test_report_on_the_demo(tmp_path):
    import jaxmotif
    from jaxmotif.cli.demo import read_demo_sequences
    from jaxmotif.motif_discovery import gradient_hypothetical
    from jaxmotif.reporting import ReportSettings, build_report

    model = jaxmotif.demo_model()
    seqs, dnase, records = read_demo_sequences(jaxmotif.demo_paths())
    seqs, dnase, records = seqs[:60], dnase[:60], records[:60]
    calls = []

    def attribution(model_, s, d, target):  # the attribution function is a parameter
        calls.append(target)
        return gradient_hypothetical(model_, s, d, target)

    settings = ReportSettings(
        targets=["H3K36me3"], optimize_restarts=1, optimize_steps=20, top_regions=1,
        modisco={"max_seqlets_per_metacluster": 100},
    )  # fmt: skip
    result = build_report(
        model, seqs, dnase, tmp_path / "report.html", names=[r.name for r in records], settings=settings,
        attribution_fn=attribution,
    )  # fmt: skip
    assert calls == [model.output_names.index("H3K36me3")]
    text = result.path.read_text()
    parser = _Images()
    parser.feed(text)
    parser.close()
    # conv1 figure, class optimization, TF-MoDISco patterns, one region; every one embedded and a PNG.
    assert len(parser.images) >= 3 + (1 if result.patterns["H3K36me3"] else 0)
    for img in parser.images:
        prefix = "data:image/png;base64,"
        assert img["src"].startswith(prefix)
        png = base64.b64decode(img["src"][len(prefix) :], validate=True)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    for heading in ("conv1 filters", "Output H3K36me3", "Class optimization", "TF-MoDISco patterns"):
        assert any(h.startswith(heading) for h in parser.headings), heading
    assert "Settings and versions" in parser.headings and "modisco-lite" in text
    assert "http://" not in text and "https://" not in text  # self-contained: nothing to fetch
    assert set(result.seconds) >= {"conv1", "optimize", "modisco H3K36me3"}


def test_report_cli_errors(tmp_path, capsys):
    from jaxmotif.cli.report import main

    (tmp_path / "taken").mkdir()
    assert main(["--out", str(tmp_path / "taken")]) == 1
    assert "pass --overwrite" in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "r"), "--targets", "NOPE"]) == 1
    assert "--targets" in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "r"), "--steps", "0"]) == 1
    assert main(["--out", str(tmp_path / "r"), "--attributions", str(tmp_path / "none.zarr")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "r"), "--regions", "x.bed"]) == 1
    assert "--regions needs --fasta" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_modisco_windows():
    from jaxmotif.reporting import MIN_MODISCO_WINDOWS, modisco_windows

    scores = np.linspace(0, 1, 200)
    np.testing.assert_array_equal(modisco_windows(scores), np.flatnonzero(scores >= 0.5))
    few = np.zeros(200)
    few[[3, 7]] = 0.9
    chosen = modisco_windows(few)
    assert len(chosen) == 50 >= MIN_MODISCO_WINDOWS and {3, 7} <= set(chosen.tolist())


def test_report_genome_windows_are_centred_on_regions(tmp_path):
    """--fasta GENOME --regions BED: one window of the model's length centred on each region."""
    import jaxmotif
    from jaxmotif.cli.report import _genome_windows
    from jaxmotif.demo import writable_genome
    from jaxmotif.io.bed import read_bed
    from jaxmotif.io.bigwig import read_bigwig
    from jaxmotif.io.fasta import Genome
    from jaxmotif.sequence import one_hot

    model, paths = jaxmotif.demo_model(), jaxmotif.demo_paths()
    genome = writable_genome(tmp_path)
    seqs, dnase, names, _ = _genome_windows(model, str(genome), str(paths.regions), str(paths.dnase))
    regions = read_bed(paths.regions)
    assert seqs.shape == (len(regions), 1000, 4) and dnase.shape == (len(regions), 1000)
    with Genome(genome) as g:
        for i, r in enumerate(regions):
            start = (r.start + r.end) // 2 - 500
            assert names[i] == f"{r.chrom}:{start}-{start + 1000}"
            lo, hi = max(start, 0), min(start + 1000, g.chrom_size(r.chrom))  # N past the ends
            np.testing.assert_array_equal(seqs[i, lo - start : hi - start], one_hot(g.fetch(r.chrom, lo, hi)))
            assert not seqs[i, hi - start :].any() and not seqs[i, : lo - start].any()
            np.testing.assert_allclose(
                dnase[i, lo - start : hi - start], read_bigwig(paths.dnase, r.chrom, lo, hi)
            )
