"""``python -m jaxmotif.filters``: conv1 filters -> PWMs -> MEME -> TomTom against JASPAR -> logos.

Also holds the helpers that ``python -m jaxmotif.optimize`` shares: the motif-database options
and the TomTom report with logos. Outputs, targets, memory and errors follow :mod:`jaxmotif.cli.common`.
"""

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxmotif.cli.common import (
    CliError,
    add_max_memory_arg,
    add_overwrite_arg,
    add_strict_bases_arg,
    check_output,
    memory_budget,
    new_output,
    read_fasta_records,
    run_cli,
)

EPILOG_FILTERS = """\
example:
  python -m jaxmotif.filters --checkpoint ckpt/ --fasta peaks.fa --out filters_out/ \\
      --threshold-factor 0.9 --motif-db JASPAR2024 --tax-group vertebrates

  Without --checkpoint and --fasta the bundled demo model and its demo sequences are used.

writes OUT/filters.meme (one MOTIF filter{i} per filter with sites, i 1-based), OUT/filters.npz
(counts, sites, thresholds, edge_sites_excluded, pwms), OUT/tomtom.tsv (top matches per filter)
and OUT/logos.png (each filter's logo beside its best match). An existing OUT is refused unless
--overwrite, which replaces the whole folder (no tomtom.tsv of an earlier run survives --no-tomtom).
Records of other lengths than the model's window (e.g. variable-width peaks) are centred on it:
longer ones cut to their central L bases, shorter ones padded with N on both sides.
"""

TOP_MATCHES = 5
LOGO_COLUMNS = 4


def add_motif_db_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--motif-db",
        default="JASPAR2024",
        help="JASPAR release bundled with pyjaspar (CORE collection), or a MEME file (default: %(default)s)",
    )
    parser.add_argument(
        "--tax-group",
        default="vertebrates",
        help="JASPAR taxonomic group: vertebrates, plants, insects, nematodes, fungi, urochordates or all "
        "(default: %(default)s; ignored for a MEME file)",
    )
    parser.add_argument(
        "--no-tomtom", action="store_true", help="skip TomTom and the match logos (no motif extra needed)"
    )


def load_motif_database(spec: str, tax_group: str):
    """The target motifs for TomTom, from a JASPAR spec (with ``tax_group``) or a MEME file."""
    import re

    try:
        from jaxmotif.motifs import load_motif_db
    except ImportError as err:  # pragma: no cover - the motif extra is part of the dev install
        raise CliError(f"{err}; install the motif extra: pip install 'jaxmotif[motifs]'") from None
    if re.fullmatch(r"JASPAR\d{4}", spec, flags=re.IGNORECASE) and not Path(spec).exists():
        spec = f"{spec}:{tax_group}"
    try:
        return load_motif_db(spec)
    except ImportError as err:
        raise CliError(str(err)) from None
    except (ValueError, FileNotFoundError) as err:
        raise CliError(f"--motif-db {spec}: {err}") from None


def write_match_report(out: Path, motifs: Sequence, database, top: int = TOP_MATCHES) -> list[dict]:
    """TomTom of ``motifs`` against ``database``, written to ``out/tomtom.tsv`` and ``out/logos.png``.

    Returns the TomTom rows (top ``top`` matches per motif).
    """
    from jaxmotif.logos import plot_motif_matches
    from jaxmotif.motifs import tomtom_matches, write_tomtom_tsv

    rows = tomtom_matches(motifs, database, top=top) if motifs else []
    write_tomtom_tsv(out / "tomtom.tsv", rows)
    if motifs:
        by_id = {m.name: m for m in database}
        best = {r["filter"]: r for r in rows if r["rank"] == 1}
        plot_motif_matches(
            out / "logos.png",
            motifs,
            {name: by_id[r["target_id"]] for name, r in best.items()},
            {name: r["p_value"] for name, r in best.items()},
            orientations={name: r["orientation"] for name, r in best.items()},
            ncols=min(LOGO_COLUMNS, len(motifs)),
        )
    return rows


def write_logos_only(out: Path, motifs: Sequence) -> None:
    from jaxmotif.logos import plot_motif_matches

    if motifs:
        plot_motif_matches(out / "logos.png", motifs, {}, ncols=min(LOGO_COLUMNS, len(motifs)))


def load_model_or_demo(checkpoint: str | None):
    """(model, demo paths or None): the checkpoint, or the bundled demo model when none is given."""
    if checkpoint is not None:
        from jaxmotif.models.checkpoint import CheckpointError, load_model

        try:
            return load_model(checkpoint), None
        except CheckpointError as err:
            raise CliError(f"--checkpoint {checkpoint}: {err}") from None
    try:
        from jaxmotif.demo import demo_model, demo_paths
    except ImportError as err:
        raise CliError(f"no --checkpoint given and the bundled demo model is not available ({err})") from None
    return demo_model(), demo_paths()


def centre_to_length(text: str, length: int) -> str:
    """``text`` cut to its central ``length`` bases, or padded with N on both sides to ``length``."""
    if len(text) >= length:
        start = (len(text) - length) // 2
        return text[start : start + length]
    left = (length - len(text)) // 2
    return "N" * left + text + "N" * (length - len(text) - left)


def read_sequences(
    fasta: Path,
    alphabet: str,
    length: int | None = None,
    strict_bases: bool = False,
    *,
    indices: bool = False,
) -> tuple[np.ndarray, list[str]]:
    """One-hot (N, L, 4) uint8 of every record of ``fasta`` (with ``indices``: (N, L) int8 base
    indices, -1 for N), and the record names.

    IUPAC codes are read as N (with a warning) unless ``strict_bases``. Records of unequal lengths
    are centred to ``length`` (the model's window) with a one-line note saying so.
    """
    from jaxmotif.sequence import encode_indices_batch, one_hot_from_indices

    records = read_fasta_records(fasta, strict_bases)
    names = [r.name for r in records]
    texts = [r.sequence for r in records]
    lengths = {len(t) for t in texts}
    if len(lengths) > 1 or (length is not None and lengths != {length}):
        if length is None:
            raise CliError(f"--fasta {fasta}: records of lengths {sorted(lengths)[:5]} need a window length")
        resized = sum(len(t) != length for t in texts)
        print(
            f"note: {resized} of {len(texts)} records of {fasta} are not {length} bp (lengths "
            f"{min(lengths)}-{max(lengths)}); each is centred on the model's {length}-bp window: "
            "longer ones cut to their central bases, shorter ones padded with N",
            file=sys.stderr,
        )
        texts = [centre_to_length(t, length) for t in texts]
    codes = encode_indices_batch(texts, alphabet, names)
    if indices:  # 1 byte per base to the device, which builds the one-hot itself
        return codes, names
    # uint8: exact for one-hot, and a quarter of the bytes to move to the device
    return one_hot_from_indices(codes, dtype=np.uint8), names


def report_error(err: BaseException) -> int:
    print(f"error: {err}", file=sys.stderr)
    return 1


def run_reporting_errors(run, args) -> int:
    """``run(args)``; bad input (and a missing optional package) becomes one ``error:`` line, exit 1."""
    return run_cli(lambda: run(args), catch=(ValueError, FileNotFoundError, ImportError))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m jaxmotif.filters",
        description="conv1 filters as PWMs (the seed's method 7) in MEME format, TomTom matches in JASPAR.",
        epilog=EPILOG_FILTERS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint", help="jaxmotif checkpoint folder (default: the bundled demo model)")
    parser.add_argument("--fasta", help="equal-length sequences, FASTA (default: the demo sequences)")
    parser.add_argument("--out", required=True, help="output folder (created with its parents)")
    add_overwrite_arg(parser)
    parser.add_argument(
        "--threshold-factor",
        type=float,
        default=0.9,
        help="F of the seed rule: site when score - bias >= F * (best score + bias) (default: %(default)s)",
    )
    parser.add_argument(
        "--threshold-mode",
        choices=("seed", "max-activation"),
        default="seed",
        help="seed rule, or Basset's: activation > 0.5 x the filter's maximum (default: %(default)s)",
    )
    parser.add_argument(
        "--alignment",
        choices=("filter", "seed"),
        default="filter",
        help="window of a site: the one the filter saw, or the seed script's (4 bp to the right) "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--max-over",
        choices=("bases", "positions"),
        default="bases",
        help="seed rule's best score: best base per position, or the seed script's max over positions "
        "per base (default: %(default)s)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=256,
        help="at most this many sequences per compiled chunk (fewer when --max-memory needs it)",
    )
    add_max_memory_arg(parser)
    add_strict_bases_arg(parser)
    add_motif_db_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_reporting_errors(_run, _parser().parse_args(argv))


def _run(args) -> int:
    from tqdm import tqdm

    from jaxmotif.filters import conv1_pwms, filter_motifs

    if args.batch_size < 1:
        raise CliError(f"--batch-size {args.batch_size} must be positive")
    if not np.isfinite(args.threshold_factor):
        raise CliError(f"--threshold-factor {args.threshold_factor} must be a finite number")
    if args.checkpoint is not None and args.fasta is None:
        raise CliError("--checkpoint needs --fasta (the demo sequences only fit the demo model)")
    out = check_output(args.out, args.overwrite)
    budget = memory_budget(args)
    database = None if args.no_tomtom else load_motif_database(args.motif_db, args.tax_group)
    model, demo = load_model_or_demo(args.checkpoint)
    fasta = Path(args.fasta) if args.fasta is not None else Path(demo.seqs)
    # int8 base indices: the kernel builds the one-hot on the device (a sixteenth of float32's bytes)
    seqs, _ = read_sequences(
        fasta, model.config.alphabet, model.config.seq_len, args.strict_bases, indices=True
    )

    passes = 2 if args.threshold_mode == "max-activation" else 1
    with tqdm(total=passes * seqs.shape[0], unit="seq", desc="conv1 sites", file=sys.stderr) as bar:
        result = conv1_pwms(
            model,
            seqs,
            threshold_factor=args.threshold_factor,
            mode=args.threshold_mode,
            alignment=args.alignment,
            max_over=args.max_over,
            batch_size=args.batch_size,
            max_memory=budget,
            progress=bar.update,
        )
    motifs = filter_motifs(result)
    empty = np.flatnonzero(result.sites == 0)
    if empty.size:
        listed = ", ".join(f"filter{i + 1}" for i in empty)
        print(
            f"{empty.size} of {result.sites.size} filters have no sites and are left out: {listed}",
            file=sys.stderr,
        )
    if not motifs:
        raise CliError(
            f"no filter has a site in {fasta} at --threshold-factor {args.threshold_factor}; lower it "
            "(the seed notes 0.5-1.0)"
        )

    from jaxmotif.io.meme import write_meme

    with new_output(out, args.overwrite, folder=True) as tmp:
        write_meme(tmp / "filters.meme", motifs)
        np.savez(
            tmp / "filters.npz",
            counts=result.counts,
            sites=result.sites,
            thresholds=result.thresholds,
            edge_sites_excluded=result.edge_sites_excluded,
            pwms=result.pwms,
            filters_with_sites=result.filters_with_sites,
            alphabet=np.array(result.alphabet),
            threshold_factor=np.float64(args.threshold_factor),
            threshold_mode=np.array(args.threshold_mode),
            alignment=np.array(args.alignment),
            max_over=np.array(args.max_over),
        )
        if database is None:
            write_logos_only(tmp, motifs)
            rows = []
        else:
            print(f"TomTom: {len(motifs)} filters against {len(database)} motifs", file=sys.stderr)
            rows = write_match_report(tmp, motifs, database)
    print(
        f"{len(motifs)} filter PWMs from {seqs.shape[0]} sequences; wrote {out}/filters.meme, filters.npz",
        end="",
    )
    print(", tomtom.tsv, logos.png" if database is not None else ", logos.png")
    for row in rows:
        if row["rank"] == 1:
            match = f"{row['target_id']} {row['target_name']}"
            print(f"  {row['filter']}\t{row['nsites']} sites\t{match}\tp={row['p_value']:.2g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
