"""One self-contained HTML page of what a model learned: ``report.html`` (``python -m jaxmotif.report``).

Sections, for the windows given (one-hot ``(N, L, 4)``, DNase ``(N, L)`` for two-branch models):

1. conv1 filters as PWMs (the seed's rule), each logo above its JASPAR match, aligned by TomTom's
   offset and strand;
2. per output: class-optimization motifs (DeepMotif), TF-MoDISco patterns with their matches and
   seqlet counts, and the attribution logo and mutation map of the windows the output scores highest;
3. the settings and package versions used.

Every figure is a PNG embedded as base64, so the page is one file a collaborator can open offline.
The attributions TF-MoDISco reads come from an attribution store (``python -m jaxmotif.attribute``)
or from ``attribution_fn`` on the fly: :func:`jaxmotif.motif_discovery.gradient_hypothetical` by
default, any ``f(model, seqs, dnase, target) -> (N, L, 4)`` hypothetical contributions (DeepSHAP)
fits.
"""

import base64
import html
import io
import os
import platform
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from jaxmotif.io.meme import Motif
from jaxmotif.motif_discovery import AttributionFn, gradient_hypothetical

#: Packages whose versions the report lists.
VERSION_PACKAGES = ("jaxmotif", "jax", "flax", "numpy", "modisco-lite", "memelite", "pyjaspar", "logomaker")
#: Filters shown in the conv1 figure: the ones with the most significant matches first.
MAX_FILTER_LOGOS = 16
#: Bases either side of the most attributed position in the region figures.
REGION_HALF_WIDTH = 40
#: Matches kept per motif in the tables and tomtom rows.
TOP_MATCHES = 3
FIGURE_DPI = 80
#: TF-MoDISco runs on an output's "peaks": the windows it scores at least PEAK_SCORE (as motif
#: discovery runs on ChIP peaks, not on background), or its top quarter when fewer than
#: MIN_MODISCO_WINDOWS windows score that high.
PEAK_SCORE = 0.5
MIN_MODISCO_WINDOWS = 20


def modisco_windows(scores: np.ndarray) -> np.ndarray:
    """Indices of the windows TF-MoDISco reads, from one output's scores shape=(N,)."""
    scores = np.asarray(scores)
    peaks = np.flatnonzero(scores >= PEAK_SCORE)
    if peaks.size >= MIN_MODISCO_WINDOWS:
        return peaks
    keep = min(scores.size, max(MIN_MODISCO_WINDOWS, scores.size // 4))
    return np.sort(np.argsort(-scores, kind="stable")[:keep])


class ReportSettings(NamedTuple):
    """What :func:`build_report` runs, with the defaults sized for a CPU (a few minutes on the demo).

    targets : outputs (names or indices); None for every output.
    optimize_restarts, optimize_steps : class optimization (DeepMotif: 32 x 1000).
    top_regions : highest-scoring windows shown per output (attribution logo + mutation map).
    filters_threshold : F of the seed's conv1 site rule.
    modisco : extra keyword options of :func:`jaxmotif.motif_discovery.run_modisco`.
    seed : PRNG seed of class optimization.
    """

    targets: Sequence[str | int] | None = None
    optimize_restarts: int = 4
    optimize_steps: int = 300
    top_regions: int = 2
    filters_threshold: float = 0.9
    modisco: dict | None = None
    seed: int = 0


class ReportResult(NamedTuple):
    """path: the report.html; patterns: output name -> TF-MoDISco patterns; matches: output name ->
    TomTom rows of those patterns; filter_rows, optimize_rows: TomTom rows of conv1 filters and of the
    optimized inputs; seconds: per section."""

    path: Path
    patterns: dict[str, list]
    matches: dict[str, list[dict]]
    filter_rows: list[dict]
    optimize_rows: list[dict]
    seconds: dict[str, float]


def _png(fig) -> str:
    """A Figure as a base64 PNG ``<img>`` tag (the figure is not kept)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=FIGURE_DPI)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="figure" src="data:image/png;base64,{data}">'


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in VERSION_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt_p(value) -> str:
    return "" if value is None else f"{value:.2g}"


def _match_table(queries: Sequence[Motif], rows: Sequence[dict], extra: dict[str, Sequence] | None = None):
    """One row per query: its name, extra columns, and its top matches (name, p, strand)."""
    by_query: dict[str, list[dict]] = {}
    for r in rows:
        by_query.setdefault(r["filter"], []).append(r)
    extra = extra or {}
    header = ["motif", *extra, "best matches (JASPAR ID name p strand)"]
    table = []
    for i, q in enumerate(queries):
        hits = sorted(by_query.get(q.name, []), key=lambda r: r["rank"])[:TOP_MATCHES]
        text = "; ".join(
            f"{r['target_id']} {r['target_name']} {_fmt_p(r['p_value'])} {r['orientation']}" for r in hits
        )
        table.append([q.name, *(values[i] for values in extra.values()), text or "none"])
    return _table(header, table)


def _aligned_figure(queries: Sequence[Motif], rows: Sequence[dict], database, titles=None, ncols=4) -> str:
    from jaxmotif.logos import aligned_match_figure, aligned_matches_from_rows

    if not queries:
        return '<p class="none">nothing to draw</p>'
    fig = aligned_match_figure(
        queries,
        aligned_matches_from_rows(rows, database),
        ncols=min(ncols, len(queries)),
        query_titles=titles,
    )
    return _png(fig)


class _Page:
    """The HTML page being built: sections appended in order."""

    def __init__(self, title: str):
        self.title = title
        self.parts: list[str] = []
        self.toc: list[tuple[str, str]] = []

    def section(self, anchor: str, heading: str, level: int = 2) -> None:
        if level == 2:
            self.toc.append((anchor, heading))
        self.parts.append(f'<h{level} id="{html.escape(anchor)}">{html.escape(heading)}</h{level}>')

    def text(self, text: str) -> None:
        self.parts.append(f"<p>{html.escape(text)}</p>")

    def raw(self, markup: str) -> None:
        self.parts.append(markup)

    def render(self) -> str:
        toc = "".join(f'<li><a href="#{html.escape(a)}">{html.escape(h)}</a></li>' for a, h in self.toc)
        return (
            "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{html.escape(self.title)}</h1><nav><ul>{toc}</ul></nav>"
            + "\n".join(self.parts)
            + "</body></html>\n"
        )


_CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1250px; color: #222; line-height: 1.4; padding: 0 1em; }
h1 { border-bottom: 2px solid #2a6; padding-bottom: .2em; }
h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
h3 { margin-top: 1.5em; color: #264; }
nav ul { columns: 3; font-size: .9em; }
table { border-collapse: collapse; font-size: .82em; margin: .5em 0 1em; }
th, td { border: 1px solid #ddd; padding: 2px 8px; text-align: left; vertical-align: top; }
th { background: #f3f6f4; }
img { max-width: 100%; display: block; margin: .5em 0; }
p.none { color: #888; font-style: italic; }
.small { font-size: .85em; color: #555; }
"""


def _conv1_section(page, model, seqs, database, settings) -> list[dict]:
    from jaxmotif.filters import conv1_pwms, filter_motifs
    from jaxmotif.motifs import tomtom_matches

    page.section("conv1", "conv1 filters and their JASPAR matches")
    result = conv1_pwms(model, seqs.astype(np.uint8), threshold_factor=settings.filters_threshold)
    motifs = filter_motifs(result)
    if not motifs:
        page.raw('<p class="none">no filter has a site in these windows</p>')
        return []
    rows = tomtom_matches(motifs, database, top=TOP_MATCHES)
    best = {r["filter"]: r["p_value"] for r in rows if r["rank"] == 1}
    shown = sorted(motifs, key=lambda m: best.get(m.name, 1.0))[:MAX_FILTER_LOGOS]
    page.text(
        f"{len(motifs)} of {result.sites.size} filters have sites (seed rule, "
        f"F = {settings.filters_threshold}); "
        f"the {len(shown)} with the most significant TomTom matches are drawn, each above its best "
        "JASPAR match, shifted by TomTom's offset and reverse-complemented (rc) when the match's "
        "reverse strand aligned."
    )
    page.raw(_aligned_figure(shown, rows, database, ncols=4))
    ic = {m.name: f"{r['information_content']:.1f}" for m in motifs for r in rows if r["filter"] == m.name}
    page.raw(
        _match_table(
            shown,
            rows,
            {"sites": [m.nsites for m in shown], "IC (bits)": [ic.get(m.name, "") for m in shown]},
        )
    )
    return rows


def _optimize_motifs(model, target_ids, settings) -> list[Motif]:
    import jax

    from jaxmotif.optimize import class_inputs, deepmotif_pwm, motif_window

    opt = class_inputs(
        model,
        list(target_ids),
        restarts=settings.optimize_restarts,
        steps=settings.optimize_steps,
        key=jax.random.key(settings.seed),
    )
    motifs = []
    for k, t in enumerate(target_ids):
        x = opt.inputs[k, opt.best_restart[k]]
        start, end = motif_window(x)
        pwm = deepmotif_pwm(x[start:end])
        motifs.append(Motif(name=f"{model.output_names[t]}.optimized", pwm=np.asarray(pwm, np.float64)))
    return motifs


def _region_figure(model, seqs, dnase, contributions, index: int, target: int, title: str):
    """Attribution logo above the DeepBind mutation map of the window's most attributed stretch."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    import jaxmotif.plot
    from jaxmotif.ism import mutation_map
    from jaxmotif.logos import plot_attribution_logo

    observed = contributions * seqs[index]  # (L, 4): the observed base's contribution
    length = seqs.shape[1]
    peak = int(np.argmax(np.abs(observed).sum(axis=1)))
    lo = max(0, min(peak - REGION_HALF_WIDTH, length - 2 * REGION_HALF_WIDTH))
    hi = min(length, lo + 2 * REGION_HALF_WIDTH)
    d = None if dnase is None else dnase[index : index + 1]
    scores = mutation_map(model, seqs[index : index + 1], d, score="deepbind", targets=[target])[0, :, :, 0]
    fig = Figure(figsize=(11, 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, height_ratios=(1, 1.6))
    plot_attribution_logo(
        top,
        observed[lo:hi],
        model.config.alphabet,
        title=f"{title}: attribution, and below it the mutation map",
    )
    ticks = [i for i in range(hi - lo) if (lo + i) % 10 == 0]  # the mutation map's ticks
    top.set_xticks(ticks, [str(lo + i) for i in ticks])
    top.set_xlim(-0.5, hi - lo - 0.5)
    # The mutation map gets a colour bar on its right; an empty one of the same size here keeps
    # the two x axes in register.
    make_axes_locatable(top).append_axes("right", size="1.5%", pad=0.1).set_axis_off()
    jaxmotif.plot.mutation_map(
        bottom, scores[lo:hi], seqs[index, lo:hi], model.config.alphabet, start=lo, label="ΔS (DeepBind)"
    )
    return _png(fig)


def build_report(
    model,
    seqs: np.ndarray,
    dnase: np.ndarray | None,
    out: str | os.PathLike,
    *,
    names: Sequence[str] | None = None,
    settings: ReportSettings | None = None,
    database: Sequence[Motif] | None = None,
    attribution_fn: AttributionFn = gradient_hypothetical,
    attributions=None,
    inputs_note: str = "",
    progress: Callable[[str], None] | None = None,
) -> ReportResult:
    """Write ``out`` (an ``.html`` file): what ``model`` learned, judged on ``seqs``.

    Parameters
    ----------
    model : jaxmotif.Model
    seqs : np.ndarray, shape=(N, L, 4)
        One-hot windows, the model's alphabet; L = the model's input length.
    dnase : np.ndarray, shape=(N, L), or None for DNA-only models
    out : path of the HTML file (written atomically; its folder must exist).
    names : length-N window names (FASTA records or ``chrom:start-end``).
    settings : ReportSettings (default: ``ReportSettings()``)
    database : TomTom targets (default: JASPAR 2024 CORE vertebrates).
    attribution_fn : hypothetical contributions ``f(model, seqs, dnase, target) -> (N, L, 4)``, used
        when ``attributions`` does not hold the target.
    attributions : an :class:`jaxmotif.io.attribution_store.AttributionStore` (its windows replace
        ``seqs`` for TF-MoDISco of the targets it holds), or None.
    inputs_note : one line on where the windows came from, shown in the settings.
    progress : called with a short message as each section starts.

    Returns
    -------
    ReportResult
    """
    from jaxmotif.io.atomic import atomic_write_text
    from jaxmotif.motif_discovery import MODISCO_QUICK, match_patterns, run_modisco

    say = progress or (lambda _msg: None)
    settings = ReportSettings() if settings is None else settings
    seqs = np.asarray(seqs)
    seqs_f = seqs.astype(np.float32)
    if seqs.ndim != 3 or seqs.shape[1:] != (model.config.seq_len, 4):
        raise ValueError(f"seqs shape {seqs.shape} must be (N, {model.config.seq_len}, 4)")
    names = list(names) if names is not None else [f"seq{i}" for i in range(seqs.shape[0])]
    if len(names) != seqs.shape[0]:
        raise ValueError(f"{len(names)} names for {seqs.shape[0]} windows")
    if database is None:
        from jaxmotif.motifs import jaspar_motifs

        database = jaspar_motifs("JASPAR2024")
    target_ids = model.target_indices(None if settings.targets is None else list(settings.targets))
    seconds: dict[str, float] = {}
    page = _Page("What the model learned — jaxmotif report")
    page.raw(
        f'<p class="small">{html.escape(str(model))}<br>{seqs.shape[0]} windows of {seqs.shape[1]} bp. '
        f"{html.escape(inputs_note)}</p>"
    )

    say("conv1 filters")
    t0 = time.perf_counter()
    filter_rows = _conv1_section(page, model, seqs, database, settings)
    seconds["conv1"] = time.perf_counter() - t0

    say(f"class optimization ({settings.optimize_restarts} restarts x {settings.optimize_steps} steps)")
    t0 = time.perf_counter()
    from jaxmotif.motifs import tomtom_matches

    opt_motifs = _optimize_motifs(model, target_ids, settings)
    optimize_rows = tomtom_matches(opt_motifs, database, top=TOP_MATCHES)
    seconds["optimize"] = time.perf_counter() - t0

    say("model outputs")
    t0 = time.perf_counter()
    probs = np.asarray(model(seqs_f, dnase))  # (N, T)
    seconds["predict"] = time.perf_counter() - t0

    patterns_by: dict[str, list] = {}
    matches_by: dict[str, list[dict]] = {}
    store_targets = set(attributions.target_names) if attributions is not None else set()
    for k, t in enumerate(target_ids):
        name = model.output_names[t]
        page.section(f"out-{name}", f"Output {name}")

        page.section(f"opt-{name}", "Class optimization", level=3)
        page.text(
            f"The input that maximizes {name}'s logit ({settings.optimize_restarts} restarts x "
            f"{settings.optimize_steps} steps), its most informative window as a PWM, above its best match."
        )
        page.raw(_aligned_figure(opt_motifs[k : k + 1], optimize_rows, database))
        page.raw(_match_table(opt_motifs[k : k + 1], optimize_rows))

        say(f"{name}: attributions and TF-MoDISco")
        t0 = time.perf_counter()
        if name in store_targets:
            data = attributions.read(name)
            m_seqs, hyp = data.one_hot, data.attributions
            source = f"attribution store {attributions.path} (method {attributions.method})"
        else:
            hyp_all = attribution_fn(model, seqs_f, dnase, t)
            chosen = modisco_windows(probs[:, t])
            m_seqs, hyp = seqs_f[chosen], hyp_all[chosen]
            source = (
                f"{getattr(attribution_fn, '__name__', 'attribution_fn')} on the {len(chosen)} windows "
                f"where {name} is highest (>= {PEAK_SCORE} when at least {MIN_MODISCO_WINDOWS} are)"
            )
        seconds[f"attribution {name}"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        page.section(f"modisco-{name}", "TF-MoDISco patterns", level=3)
        try:
            result = run_modisco(m_seqs, hyp, **{**MODISCO_QUICK, **(settings.modisco or {})})
            patterns = result.patterns
        except (ValueError, IndexError) as err:  # modisco-lite fails on degenerate inputs
            patterns = []
            page.raw(f'<p class="none">TF-MoDISco failed: {html.escape(str(err))}</p>')
        rows = match_patterns(patterns, database, top=TOP_MATCHES)
        patterns_by[name], matches_by[name] = patterns, rows
        seconds[f"modisco {name}"] = time.perf_counter() - t0
        page.text(f"Hypothetical contributions from {source}; {len(patterns)} patterns.")
        if patterns:
            motifs = [p.motif for p in patterns]
            titles = {p.name: f"{p.name} ({p.n_seqlets} seqlets)" for p in patterns}
            page.raw(_aligned_figure(motifs, rows, database, titles, ncols=2))
            page.raw(_match_table(motifs, rows, {"seqlets": [p.n_seqlets for p in patterns]}))
        else:
            page.raw('<p class="none">no patterns (too few seqlets above the FDR threshold)</p>')

        page.section(f"regions-{name}", "Highest-scoring windows", level=3)
        say(f"{name}: mutation maps of the top {settings.top_regions} windows")
        t0 = time.perf_counter()
        contrib = hyp_all if name not in store_targets else attribution_fn(model, seqs_f, dnase, t)
        for index in np.argsort(-probs[:, t], kind="stable")[: settings.top_regions]:
            title = f"{names[index]} ({name} = {probs[index, t]:.3f})"
            page.raw(_region_figure(model, seqs_f, dnase, contrib[index], int(index), t, title))
        seconds[f"regions {name}"] = time.perf_counter() - t0

    page.section("settings", "Settings and versions")
    shown = settings._replace(targets=[model.output_names[t] for t in target_ids])
    page.raw(_table(["setting", "value"], [(k, v) for k, v in shown._asdict().items()]))
    page.raw(_table(["package", "version"], sorted(_versions().items())))
    import jax

    page.raw(
        _table(
            ["section", "seconds"],
            [(k, f"{v:.1f}") for k, v in seconds.items()] + [("device", str(jax.devices()[0]))],
        )
    )
    out = Path(out)
    atomic_write_text(out, page.render())
    return ReportResult(out, patterns_by, matches_by, filter_rows, optimize_rows, seconds)
