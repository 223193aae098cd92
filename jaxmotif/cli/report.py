"""``python -m jaxmotif.report``: one self-contained HTML page of what a model learned."""

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxmotif.cli.common import (
    CliError,
    add_overwrite_arg,
    add_targets_arg,
    new_output,
    parse_targets,
    run_cli,
)

EPILOG = """\
example:
  python -m jaxmotif.report --out report/                   # the bundled demo model and sequences
  python -m jaxmotif.report --checkpoint ckpt/ --fasta hg38.fa --regions peaks.bed --dnase dnase.bw \\
      --targets H3K27ac --out report/
  python -m jaxmotif.report --checkpoint ckpt/ --fasta windows.fa --dnase-npy dnase.npy --out report/ \\
      --attributions contribs.zarr --restarts 32 --steps 1000

With --regions, --fasta is a genome and each region gives one window of the model's input length
centred on it; without, --fasta holds windows of that length, one per record.

writes OUT/report.html: conv1 filters beside their JASPAR matches (aligned by TomTom's offset and
strand), then per output the class-optimization motif, the TF-MoDISco patterns with their matches
and seqlet counts, and the attribution logo and mutation map of its highest-scoring windows, then
the settings and versions used. Every figure is embedded, so the page is one file.
"""


def _parser() -> argparse.ArgumentParser:
    from jaxmotif.cli.filters import add_motif_db_arguments

    parser = argparse.ArgumentParser(
        prog="python -m jaxmotif.report",
        description="A one-page HTML report of what a model learned (filters, class optimization, "
        "TF-MoDISco, mutation maps).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint", help="jaxmotif checkpoint folder (default: the bundled demo model)")
    parser.add_argument("--fasta", help="genome FASTA (with --regions) or equal-length windows")
    parser.add_argument("--regions", help="BED of regions; one window centred on each")
    parser.add_argument("--dnase", help="DNase bigWig (two-branch models, with --regions)")
    parser.add_argument("--dnase-npy", help="DNase of the FASTA windows, .npy of shape (N, L)")
    parser.add_argument("--attributions", help="attribution store to take hypothetical contributions from")
    parser.add_argument("--out", required=True, help="output folder (holds report.html)")
    add_targets_arg(parser, "Outputs to report on.")
    parser.add_argument("--restarts", type=int, default=4, help="class-optimization restarts (default: 4)")
    parser.add_argument("--steps", type=int, default=300, help="class-optimization steps (default: 300)")
    parser.add_argument("--top-regions", type=int, default=2, help="windows shown per output (default: 2)")
    parser.add_argument(
        "--max-seqlets", type=int, default=250, help="TF-MoDISco seqlets per sign (default: %(default)s)"
    )
    parser.add_argument(
        "--leiden-runs", type=int, default=2, help="TF-MoDISco Leiden restarts (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed of class optimization")
    add_motif_db_arguments(parser)
    add_overwrite_arg(parser)
    return parser


def _genome_windows(model, fasta: str, regions: str, dnase: str | None):
    """One-hot (N, L, 4) and DNase (N, L) of windows centred on each BED region, and their names."""
    from jaxmotif.cli.mutmap import read_windows
    from jaxmotif.io.bed import read_bed
    from jaxmotif.io.bigwig import BigWigReader
    from jaxmotif.io.fasta import Genome
    from jaxmotif.tiling import Window

    length = model.config.seq_len
    bed = read_bed(regions)
    if not bed:
        raise CliError(f"--regions {regions} holds no region")
    with Genome(fasta) as genome:
        windows = []
        for r in bed:
            if r.chrom not in genome:
                raise CliError(f"--regions: chromosome {r.chrom!r} is not in {fasta}")
            start = (r.start + r.end) // 2 - length // 2
            windows.append(Window(r.chrom, start, start + length, start, start + length))
        reader = BigWigReader(dnase) if dnase else None
        try:
            data = read_windows(windows, genome, model.config.alphabet, reader)
        finally:
            if reader is not None:
                reader.close()
    names = [f"{w.chrom}:{w.start}-{w.end}" for w in windows]
    return data.seq, data.dnase, names, windows


def _inputs(args, model, demo):
    """(one-hot, DNase or None, names, one line on where they came from)."""
    from jaxmotif.cli.filters import read_sequences

    if args.regions:
        if not args.fasta:
            raise CliError("--regions needs --fasta (the genome)")
        if args.dnase_npy:
            raise CliError("--dnase-npy goes with FASTA windows; with --regions pass --dnase TRACK.bw")
        if model.config.has_dnase and not args.dnase:
            raise CliError("this two-branch model needs --dnase TRACK.bw with --regions")
        seqs, dnase, names, _ = _genome_windows(model, args.fasta, args.regions, args.dnase)
        note = f"Windows centred on the regions of {args.regions} in {args.fasta}."
    else:
        if args.dnase:
            raise CliError("--dnase (bigWig) needs --regions; FASTA windows take --dnase-npy")
        fasta = Path(args.fasta) if args.fasta else Path(demo.seqs)
        dnase_npy = args.dnase_npy or (str(demo.seqs_dnase) if demo is not None and not args.fasta else None)
        seqs, names = read_sequences(fasta, model.config.alphabet)
        if seqs.shape[1] != model.config.seq_len:
            raise CliError(
                f"--fasta {fasta}: windows of {seqs.shape[1]} bp; the model takes {model.config.seq_len}"
            )
        dnase = None
        if dnase_npy:
            dnase = np.load(dnase_npy).astype(np.float32)
            if dnase.shape != seqs.shape[:2]:
                raise CliError(f"--dnase-npy shape {dnase.shape} must be {seqs.shape[:2]}")
        if model.config.has_dnase and dnase is None:
            raise CliError("this two-branch model needs --dnase-npy with FASTA windows")
        note = (
            "The bundled demo sequences." if demo is not None and not args.fasta else f"Windows of {fasta}."
        )
    if not model.config.has_dnase:
        dnase = None
    return seqs.astype(np.float32), dnase, names, note


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return run_cli(lambda: _run(args), catch=(ValueError, FileNotFoundError, ImportError))


def _run(args) -> int:
    from jaxmotif.cli.common import check_output
    from jaxmotif.cli.filters import load_model_or_demo, load_motif_database
    from jaxmotif.io.attribution_store import open_attribution_store
    from jaxmotif.reporting import ReportSettings, build_report

    for flag, value in (
        ("--restarts", args.restarts),
        ("--steps", args.steps),
        ("--top-regions", args.top_regions),
        ("--max-seqlets", args.max_seqlets),
        ("--leiden-runs", args.leiden_runs),
    ):
        if value < 1:
            raise CliError(f"{flag} {value} must be positive")
    if args.no_tomtom:
        raise CliError("the report needs TomTom; drop --no-tomtom")
    if args.checkpoint is not None and args.fasta is None:
        raise CliError("--checkpoint needs --fasta (the demo sequences only fit the demo model)")
    out = check_output(args.out, args.overwrite)
    store = open_attribution_store(args.attributions) if args.attributions else None
    database = load_motif_database(args.motif_db, args.tax_group)
    model, demo = load_model_or_demo(args.checkpoint)
    targets = parse_targets(args.targets)
    try:
        model.target_indices(targets)
    except ValueError as err:
        raise CliError(f"--targets: {err}") from None
    seqs, dnase, names, note = _inputs(args, model, demo)
    settings = ReportSettings(
        targets=targets,
        optimize_restarts=args.restarts,
        optimize_steps=args.steps,
        top_regions=args.top_regions,
        modisco={"max_seqlets_per_metacluster": args.max_seqlets, "n_leiden_runs": args.leiden_runs},
        seed=args.seed,
    )
    with new_output(out, args.overwrite, folder=True) as tmp:
        result = build_report(
            model,
            seqs,
            dnase,
            tmp / "report.html",
            names=names,
            settings=settings,
            database=database,
            attributions=store,
            inputs_note=note,
            progress=lambda msg: print(f"  {msg} ...", file=sys.stderr, flush=True),
        )
    print(f"wrote {out}/report.html")
    for name, rows in result.matches.items():
        best = {r["filter"]: r for r in rows if r["rank"] == 1}
        found = ", ".join(
            f"{p.name.split('.')[0][:3]}.{p.name.rsplit('_', 1)[-1]} {best[p.name]['target_name']}"
            for p in result.patterns[name]
            if p.name in best
        )
        print(f"  {name}: {len(result.patterns[name])} TF-MoDISco patterns; best matches: {found or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
