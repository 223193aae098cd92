"""``python -m jaxmotif.modisco``: TF-MoDISco on stored hypothetical contributions, TomTom vs JASPAR."""

import argparse
import sys
from collections.abc import Sequence

from jaxmotif.cli.common import CliError, add_overwrite_arg, check_output, new_output, run_cli

EPILOG = """\
example:
  python -m jaxmotif.attribute ... --out contribs.zarr        # or any store of the same layout
  python -m jaxmotif.modisco --attributions contribs.zarr --target H3K4me1 --out motifs/ \\
      --motif-db JASPAR2024 --tax-group vertebrates

writes OUT/modisco_results.h5 (modisco-lite's format), OUT/patterns.meme (each pattern's PPM trimmed
to the positions whose |CWM| reaches 0.3 of its largest, as modisco-lite's report trims),
OUT/tomtom.tsv (top matches per pattern, the columns of python -m jaxmotif.filters) and
OUT/logos.png (each pattern above its best match, aligned by TomTom's offset and strand).
"""

TOP_MATCHES = 5


def _parser() -> argparse.ArgumentParser:
    from jaxmotif.cli.filters import add_motif_db_arguments

    parser = argparse.ArgumentParser(
        prog="python -m jaxmotif.modisco",
        description="TF-MoDISco motifs (modisco-lite) from an attribution store, matched against JASPAR.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--attributions", required=True, help="attribution store (Zarr) to read")
    parser.add_argument("--target", help="output name or index (may be left out when the store holds one)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--max-seqlets", type=int, default=2000, help="seqlets kept per sign (default: %(default)s)"
    )
    parser.add_argument(
        "--leiden-runs", type=int, default=50, help="Leiden clustering restarts (default: %(default)s)"
    )
    parser.add_argument(
        "--fdr", type=float, default=0.05, help="target FDR of seqlet extraction (default: %(default)s)"
    )
    parser.add_argument(
        "--allow-non-hypothetical",
        action="store_true",
        help="run on a store whose attributions are not hypothetical (patterns are then weaker)",
    )
    add_motif_db_arguments(parser)
    add_overwrite_arg(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return run_cli(lambda: _run(args), catch=(ValueError, FileNotFoundError, ImportError))


def _run(args) -> int:
    from jaxmotif.cli.filters import load_motif_database
    from jaxmotif.io.attribution_store import open_attribution_store
    from jaxmotif.logos import aligned_matches_from_rows, plot_aligned_matches
    from jaxmotif.motif_discovery import match_patterns, run_modisco, write_patterns

    for flag, value in (("--max-seqlets", args.max_seqlets), ("--leiden-runs", args.leiden_runs)):
        if value < 1:
            raise CliError(f"{flag} {value} must be positive")
    if not 0 < args.fdr < 1:
        raise CliError(f"--fdr {args.fdr} must lie in (0, 1)")
    out = check_output(args.out, args.overwrite)
    store = open_attribution_store(args.attributions)
    target = store.target_index(args.target)
    name = store.target_names[target]
    if not store.hypothetical:
        if not args.allow_non_hypothetical:
            raise CliError(
                f"{store.path} holds {store.method} attributions that are not hypothetical; TF-MoDISco needs "
                "hypothetical contributions (deep_lift_shap, or gradient centred over bases); pass "
                "--allow-non-hypothetical to run anyway"
            )
        print(
            f"warning: {store.path} attributions are not hypothetical; patterns will be weaker",
            file=sys.stderr,
        )
    database = None if args.no_tomtom else load_motif_database(args.motif_db, args.tax_group)
    n, length = store.shape
    print(f"TF-MoDISco on {name}: {n} windows x {length} bp ({store.method})", file=sys.stderr)
    data = store.read(target)
    result = run_modisco(
        data.one_hot,
        data.attributions,
        max_seqlets_per_metacluster=args.max_seqlets,
        n_leiden_runs=args.leiden_runs,
        target_seqlet_fdr=args.fdr,
    )
    rows = [] if database is None else match_patterns(result.patterns, database, top=TOP_MATCHES)
    with new_output(out, args.overwrite, folder=True) as tmp:
        write_patterns(tmp, result, rows)
        if result.patterns:
            matches = {} if database is None else aligned_matches_from_rows(rows, database)
            plot_aligned_matches(
                tmp / "logos.png",
                [p.motif for p in result.patterns],
                matches,
                ncols=min(3, len(result.patterns)),
            )
    print(
        f"{len(result.patterns)} patterns; wrote {out}/modisco_results.h5, patterns.meme, tomtom.tsv", end=""
    )
    print(", logos.png" if result.patterns else "")
    best = {r["filter"]: r for r in rows if r["rank"] == 1}
    for p in result.patterns:
        r = best.get(p.name)
        match = f"{r['target_id']} {r['target_name']}\tp={r['p_value']:.2g}" if r else "no match"
        print(f"  {p.name}\t{p.n_seqlets} seqlets\t{match}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
