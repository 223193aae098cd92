"""``python -m jaxmotif.demo``: every method of jaxmotif on the bundled demo model and data.

The demo is a list of steps, :data:`STEPS`; each ``step_x(out_dir, model, paths) -> list[Path]``
writes into ``out_dir`` and returns the files it wrote, which :func:`main` prints.
"""

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from jaxmotif.cli.common import add_overwrite_arg, check_output, new_output, run_cli
from jaxmotif.demo import (
    DEMO_MOTIFS,
    DEMO_PLANTED,
    DEMO_SINGLE_MOTIF_OUTPUTS,
    DemoPaths,
    demo_model,
    demo_paths,
)

EPILOG = """\
example:
  python -m jaxmotif.demo
  python -m jaxmotif.demo --out my_demo --steps metrics filters

steps: metrics (held-out AUROC), saliency (gradient x input logos), methods (every attribution
method on one planted site), mutmap (Zarr store, bigWig summaries, DeepBind plot of a planted
site), filters (conv1 PWMs, MEME, TomTom, logos), optimize (class optimization of H3K4me1 and
H3K36me3, 4 restarts x 300 steps, TomTom, logos), report (report/report.html: filters, class
optimization, TF-MoDISco patterns, mutation maps and attribution logos of those two outputs).

An existing --out folder is refused unless --overwrite, which replaces it whole once the run is
done (the steps write into a new folder beside it; nothing of an earlier run is left). Without
--out the demo writes demo_out and replaces it on every run: it is the demo's own folder.
"""

DEFAULT_OUT = "demo_out"
SALIENCY_SEQUENCES = 3  # demo sequences shown in the saliency step
LOGO_HALF_WIDTH = 30  # bases either side of the most salient position in each logo


def read_demo_sequences(paths: DemoPaths, alphabet: str = "ACGT"):
    """(one-hot (N, L, 4), DNase (N, L), FASTA records) of the bundled held-out demo sequences."""
    from jaxmotif.io.fasta import read_fasta
    from jaxmotif.sequence import one_hot

    records = read_fasta(paths.seqs)
    seqs = np.stack([one_hot(r.sequence, alphabet, name=r.name) for r in records])
    dnase = np.load(paths.seqs_dnase)
    return seqs, dnase, records


def _headers(paths: DemoPaths) -> list[str]:
    return [line[1:].strip() for line in paths.seqs.read_text().splitlines() if line.startswith(">")]


def planted_sites(header: str) -> list[tuple[str, int, str]]:
    """(motif name, start, strand) of each planted site in a demo FASTA header (``sites=...`` field)."""
    field = next((f for f in header.split() if f.startswith("sites=")), "sites=none")[len("sites=") :]
    if field == "none":
        return []
    out = []
    for item in field.split(";"):
        name, rest = item.split("@")
        out.append((name, int(rest[:-1]), rest[-1]))
    return out


def step_metrics(out_dir: Path, model, paths: DemoPaths) -> list[Path]:
    """Print the model's held-out AUROC and what drives each output (from metrics.json)."""
    metrics = json.loads(paths.metrics.read_text())
    for name, value in metrics["auroc_heldout"].items():
        print(f"  {name:9s} AUROC {value:.3f}   {DEMO_PLANTED.get(name, '')}")
    return []


def _first_single_motif_output() -> tuple[str, str]:
    """(output name, motif name) of the first demo output driven by one motif alone."""
    target = next(iter(DEMO_SINGLE_MOTIF_OUTPUTS))
    return target, dict(DEMO_MOTIFS)[DEMO_SINGLE_MOTIF_OUTPUTS[target]]


def step_saliency(out_dir: Path, model, paths: DemoPaths) -> list[Path]:
    """Gradient x input of a single-motif output on demo sequences that carry its motif; logos as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxmotif.attribution import saliency
    from jaxmotif.logos import plot_attribution_logo

    target, motif_name = _first_single_motif_output()
    seqs, dnase, records = read_demo_sequences(paths, model.config.alphabet)
    headers = _headers(paths)
    chosen = [i for i, h in enumerate(headers) if any(s[0] == motif_name for s in planted_sites(h))]
    chosen = chosen[:SALIENCY_SEQUENCES]
    values = saliency(model, seqs[chosen], dnase[chosen], target=target, method="grad_x_input")  # (n, L, 4)
    npz = out_dir / "saliency.npz"
    np.savez(npz, saliency=values, names=np.array([records[i].name for i in chosen]), target=np.array(target))

    fig, axes = plt.subplots(len(chosen), 1, figsize=(10, 1.8 * len(chosen)), squeeze=False)
    for ax, i, v in zip(axes[:, 0], chosen, values, strict=True):
        peak = int(np.argmax(np.abs(v).sum(axis=1)))
        lo = max(0, min(peak - LOGO_HALF_WIDTH, v.shape[0] - 2 * LOGO_HALF_WIDTH))
        hi = lo + 2 * LOGO_HALF_WIDTH
        sites = ", ".join(f"{n}@{s}{st}" for n, s, st in planted_sites(headers[i]))
        plot_attribution_logo(
            ax, v[lo:hi], model.config.alphabet, title=f"{records[i].name} [{lo}, {hi})  planted: {sites}"
        )
    fig.suptitle(f"gradient x input of {target} (driven by {motif_name})", fontsize=10)
    fig.tight_layout()
    png = out_dir / "saliency_logos.png"
    fig.savefig(png, dpi=110)
    plt.close(fig)
    print(f"  {target}: {len(chosen)} sequences with a planted {motif_name} site")
    return [npz, png]


def step_methods(out_dir: Path, model, paths: DemoPaths) -> list[Path]:
    """Every attribution method of ``jaxmotif.saliency`` on one planted site, one logo row each."""
    import jax
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxmotif.attribution import ATTRIBUTION_METHODS, saliency
    from jaxmotif.logos import plot_attribution_logo

    target, motif_name = _first_single_motif_output()
    seqs, dnase, records = read_demo_sequences(paths, model.config.alphabet)
    headers = _headers(paths)
    i, start = next((i, s[1]) for i, h in enumerate(headers) for s in planted_sites(h) if s[0] == motif_name)
    lo = max(0, min(start - 15, seqs.shape[1] - 40))
    options = {
        "integrated_gradients": {"steps": 32, "baseline": "zeros"},
        "smoothgrad": {"samples": 16, "key": jax.random.key(0)},
        "deep_lift_shap": {"n_shuffles": 8, "key": jax.random.key(0)},
    }
    fig, axes = plt.subplots(len(ATTRIBUTION_METHODS), 1, figsize=(9, 1.35 * len(ATTRIBUTION_METHODS)))
    for ax, method in zip(axes, ATTRIBUTION_METHODS, strict=True):
        values = saliency(
            model, seqs[i : i + 1], dnase[i : i + 1], target=target, method=method, **options.get(method, {})
        )
        plot_attribution_logo(ax, values[0, lo : lo + 40], model.config.alphabet, title=method)
    fig.suptitle(
        f"{target} on {records[i].name}: planted {motif_name} at {start}, positions [{lo}, {lo + 40})"
    )
    fig.tight_layout()
    png = out_dir / "methods.png"
    fig.savefig(png, dpi=100)
    plt.close(fig)
    print(f"  {len(ATTRIBUTION_METHODS)} attribution methods on a planted {motif_name} site")
    return [png]


def _run_cli(main_fn, argv: list[str], what: str) -> None:
    """Run another jaxmotif CLI's ``main``; a non-zero exit is a bug of the demo, so raise."""
    code = main_fn(argv)
    if code != 0:
        raise RuntimeError(f"the {what} step failed (exit code {code}): {' '.join(argv)}")


def _planted_site(paths: DemoPaths, motif_name: str) -> tuple[str, int, int]:
    """(chrom, start, end) of a planted ``motif_name`` site, one inside a demo region if there is one.

    The DeepBind plot computes its own window's mutation map, so a site outside the scanned
    regions is fine too.
    """
    from jaxmotif.io.bed import read_bed

    regions = read_bed(paths.regions)
    sites = [s for s in read_bed(paths.planted_sites) if s.name == motif_name]
    if not sites:
        raise ValueError(f"no planted {motif_name} site in {paths.planted_sites}")
    inside = [
        s for s in sites if any(r.chrom == s.chrom and r.start <= s.start and s.end <= r.end for r in regions)
    ]
    site = (inside or sites)[0]
    return site.chrom, site.start, site.end


def step_mutmap(out_dir: Path, model, paths: DemoPaths) -> list[Path]:
    """Mutation maps of the demo regions (Zarr store + bigWig summaries) and the DeepBind plot of a site."""
    from jaxmotif.cli.mutmap import main as mutmap_main
    from jaxmotif.demo import writable_genome

    target = next(iter(DEMO_SINGLE_MOTIF_OUTPUTS))
    motif_name = dict(DEMO_MOTIFS)[DEMO_SINGLE_MOTIF_OUTPUTS[target]]
    genome = writable_genome(out_dir / "genome")
    store = out_dir / "mutmap.zarr"
    # The demo always starts afresh: outputs of an earlier demo run are replaced whole.
    common = ["--checkpoint", str(paths.model), "--fasta", str(genome), "--dnase", str(paths.dnase)]
    common.append("--overwrite")
    _run_cli(
        mutmap_main,
        [
            *common,
            "--regions",
            str(paths.regions),
            "--out",
            str(store),
            "--bigwig",
            str(out_dir / "mutmap."),
            "--chunk-len",
            "4096",
            "--quiet",
        ],
        "mutmap",
    )
    chrom, start, end = _planted_site(paths, motif_name)
    middle = (start + end) // 2
    view = f"{chrom}:{max(middle - 25, 0) + 1}-{middle + 25}"  # browser coordinates: 1-based, inclusive
    png = out_dir / "mutmap_site.png"
    _run_cli(mutmap_main, [*common, "--plot", view, "--targets", target, "--out", str(png)], "mutmap plot")
    print(f"  {target}: DeepBind mutation map of the planted {motif_name} site {chrom}:{start}-{end}")
    bigwigs = sorted(out_dir.glob("mutmap.*.bw"))
    return [store, *bigwigs, png]


def _print_matches(tsv: Path, expected: dict[str, str], top: int) -> None:
    """For each query of ``expected`` (query -> JASPAR ID) print where the ID ranks in ``tsv``."""
    import csv

    with open(tsv, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    for query, target_id in expected.items():
        hits = [r for r in rows if r["filter"] == query and r["target_id"] == target_id]
        where = (
            f"rank {hits[0]['rank']} (p={float(hits[0]['p_value']):.2g})" if hits else f"not in the top {top}"
        )
        print(f"  {query}: {target_id} {dict(DEMO_MOTIFS)[target_id]} {where}")


def step_filters(out_dir: Path, model, paths: DemoPaths) -> list[Path]:
    """conv1 filters -> PWMs (seed rule, F = 0.9) -> MEME -> TomTom against JASPAR 2024 vertebrates."""
    import csv

    from jaxmotif.cli.filters import main as filters_main

    folder = out_dir / "filters"
    _run_cli(filters_main, ["--out", str(folder)], "filters")
    with open(folder / "tomtom.tsv", newline="") as fh:
        best = {}
        for row in csv.DictReader(fh, delimiter="\t"):
            if row["target_id"] in dict(DEMO_MOTIFS) and row["rank"] == "1":
                best.setdefault(row["target_id"], (row["filter"], float(row["p_value"])))
    for motif_id, name in DEMO_MOTIFS:
        found = best.get(motif_id)
        where = f"rank-1 match of {found[0]} (p={found[1]:.2g})" if found else "no filter's rank-1 match"
        print(f"  planted {name} ({motif_id}): {where}")
    return [folder / name for name in ("filters.meme", "filters.npz", "tomtom.tsv", "logos.png")]


#: Class optimization in the demo: few restarts and steps so it takes about a minute on a CPU
#: (the CLI's defaults, DeepMotif's 32 restarts x 1000 steps, give the same motifs more slowly).
OPTIMIZE_RESTARTS = 4
OPTIMIZE_STEPS = 300


def step_optimize(out_dir: Path, model, paths: DemoPaths) -> list[Path]:
    """Class optimization of the two single-motif outputs -> PWMs -> MEME -> TomTom top-3."""
    from jaxmotif.cli.filters import TOP_MATCHES
    from jaxmotif.cli.optimize import main as optimize_main

    folder = out_dir / "optimize"
    targets = list(DEMO_SINGLE_MOTIF_OUTPUTS)
    _run_cli(
        optimize_main,
        [
            "--out",
            str(folder),
            "--targets",
            *targets,
            "--restarts",
            str(OPTIMIZE_RESTARTS),
            "--steps",
            str(OPTIMIZE_STEPS),
            "--seed",
            "0",
        ],
        "optimize",
    )
    print("  where each output's driving motif ranks among the TomTom matches of its optimized input:")
    _print_matches(folder / "tomtom.tsv", DEMO_SINGLE_MOTIF_OUTPUTS, TOP_MATCHES)
    return [folder / name for name in ("optimized.npz", "optimized.meme", "tomtom.tsv", "logos.png")]


def step_report(out_dir: Path, model, paths: DemoPaths) -> list[Path]:
    """The one-page report (report.html) of what the demo model learned, for its single-motif outputs."""
    from jaxmotif.cli.report import main as report_main

    folder = out_dir / "report"
    targets = list(DEMO_SINGLE_MOTIF_OUTPUTS)
    restarts, steps = str(OPTIMIZE_RESTARTS), str(OPTIMIZE_STEPS)
    args = ["--out", str(folder), "--targets", *targets, "--restarts", restarts, "--steps", steps]
    _run_cli(report_main, args, "report")
    return [folder / "report.html"]


#: The demo's steps in order: name -> step function.
STEPS: dict[str, Callable[[Path, object, DemoPaths], list[Path]]] = {
    "metrics": step_metrics,
    "saliency": step_saliency,
    "methods": step_methods,
    "mutmap": step_mutmap,
    "filters": step_filters,
    "optimize": step_optimize,
    "report": step_report,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m jaxmotif.demo",
        description="Run jaxmotif end to end on the bundled demo model (a small two-branch DeepHistone "
        "trained on synthetic data with planted JASPAR motifs) and print where every output went.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out",
        default=None,
        help=f"output folder, created with its parents (default: {DEFAULT_OUT}, which each run without "
        "--out replaces: it is the demo's own folder)",
    )
    add_overwrite_arg(parser)
    parser.add_argument(
        "--steps",
        nargs="+",
        choices=list(STEPS),
        default=None,
        metavar="STEP",
        help=f"run only these steps, of: {' '.join(STEPS)} (default: all)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return run_cli(lambda: _run(args), catch=(OSError, ValueError))


def _run(args) -> int:
    if args.out is None:  # the demo's own folder, reused by every run without --out
        args.out, args.overwrite = DEFAULT_OUT, True
    out = check_output(args.out, args.overwrite)
    paths = demo_paths()
    model = demo_model()
    print(f"demo model: {model}")
    names = args.steps or list(STEPS)
    written: list[Path] = []
    with new_output(out, args.overwrite, folder=True) as tmp:
        for k, name in enumerate(names, start=1):
            print(f"[{k}/{len(names)}] {name} ...")
            t0 = time.perf_counter()
            # The steps write into the new folder; it becomes --out when every step is done.
            files = [out / Path(f).relative_to(tmp) for f in STEPS[name](tmp, model, paths)]
            for f in files:
                print(f"  wrote {f}")
            print(f"  ({time.perf_counter() - t0:.1f} s)")
            written.extend(files)
    print(f"done: {len(written)} files in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
