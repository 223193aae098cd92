"""``python -m jaxmotif.mutmap``: genome-scale mutation maps into a Zarr store.

Regions (BED or whole chromosomes) are tiled with windows of the model's length
(:mod:`jaxmotif.tiling`), every window's 3·L substitutions are scored by
:func:`jaxmotif.ism.compiled_mutation_map` on all local devices, and each base's scores land in
``OUT.zarr/<chrom>/scores`` at its genome coordinate (:mod:`jaxmotif.io.zarr_store`). Other modes:
``--vcf`` scores listed SNVs into a TSV, ``--plot`` draws one window's DeepBind view.

Work is split by store chunk: a chunk is written whole once every window touching it is scored,
then marked done, so a killed run loses the chunks in flight (at most ``--chunk-len`` bases each,
65,536 by default) and ``--resume`` redoes exactly those. The store records what defines its
content (config, a digest of the weights, precision, method, score, windows, and the identity of
the FASTA, DNase and control files); a ``--resume`` or ``--part`` with anything different is refused. For
several processes (``jax.distributed`` on a multi-host TPU/GPU slice, or ``--part I/N`` for cluster
array jobs) process ``i`` owns chunks ``i::N`` of the store and scores the windows touching them;
windows straddling two processes' chunks are scored by both (a fraction of about window/chunk_len
extra work), and no two processes ever write the same file.
"""

import argparse
import contextlib
import gzip
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxmotif.cli.common import (
    CliError,
    add_overwrite_arg,
    add_targets_arg,
    check_output,
    check_output_parent,
    new_output,
    resolve_cli_targets,
    run_cli,
)
from jaxmotif.scan import (
    IUPAC_NOTE,
    STORE_DTYPES,
    STORE_ROUNDING,
    ScanError,
    check_key,
    file_identity,
    params_digest,
    pending_chunks,
    process_part,
    read_windows,
    scan_windows,
    stored_bytes,
    swap_in,
    sync,
    windows_digest,
)
from jaxmotif.scan import check_sequences as _check_sequences

EPILOG = """\
examples:
  # every base of the BED regions, all outputs, delta scores, bigWig summaries for a browser
  python -m jaxmotif.mutmap --checkpoint ckpt/ --fasta hg38.fa --regions peaks.bed \\
      --dnase dnase.bw --out peaks_mutmap.zarr --bigwig tracks/peaks.
  # whole chromosomes, two outputs, DeepBind's score, fast ISM in tf32; resume after a crash
  python -m jaxmotif.mutmap --checkpoint ckpt/ --fasta hg38.fa --chrom chr21 chr22 \\
      --dnase dnase.bw --out chr21_22.zarr --targets H3K27ac,H3K4me3 --score deepbind \\
      --method fast --precision tf32 --resume
  # just some SNVs, into a TSV (only the listed ALT bases go through the model)
  python -m jaxmotif.mutmap --checkpoint ckpt/ --fasta hg38.fa --dnase dnase.bw --vcf snvs.vcf --out snvs.tsv
  # a bpnet-lite BPNet with 2 control tracks: their bigWigs of raw counts, plus strand then minus
  python -m jaxmotif.mutmap --checkpoint bpnet_ckpt/ --fasta hg38.fa --regions peaks.bed \\
      --control ctl.plus.bw,ctl.minus.bw --out peaks_bpnet.zarr
  # the DeepBind figure of one window; coordinates as a genome browser shows them (1-based, inclusive)
  python -m jaxmotif.mutmap --checkpoint ckpt/ --fasta hg38.fa --dnase dnase.bw \\
      --plot chr1:1,000,501-1,000,560 --out site.png
  # array job of 4 parts, then one run that writes the bigWig tracks of the finished store
  python -m jaxmotif.mutmap ... --out all.zarr --part 2/4
  python -m jaxmotif.mutmap ... --out all.zarr --resume --bigwig tracks/all.
  # no arguments: the bundled demo model, genome, regions and DNase, into ./jaxmotif_mutmap_demo/
  python -m jaxmotif.mutmap

Read the store with zarr or jaxmotif.io.zarr_store.open_mutmap(path).read(chrom, start, end).
Several hosts: start every process with jax.distributed.initialize() (or use --part I/N in an
array job); all write into the same --out store, each its own chunks.
"""

SUMMARIES = ("mean", "maxabs")
DEMO_DIR = "jaxmotif_mutmap_demo"  # the no-argument demo's folder, under the working directory, reused


# ---------------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m jaxmotif.mutmap",
        description="Mutation maps (DeepBind's ΔS and friends) of every base of genome regions, "
        "written to a Zarr store aligned to genome coordinates.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--checkpoint", metavar="DIR", help="jaxmotif checkpoint folder (default: the bundled demo model)"
    )
    p.add_argument(
        "--fasta",
        metavar="GENOME.fa",
        help="reference genome FASTA, plain or bgzip (default with the demo model: the demo genome)",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--regions", metavar="BED", help="regions to scan (BED, 0-based half-open)")
    where.add_argument("--chrom", nargs="+", metavar="CHROM", help="scan these whole chromosomes")
    where.add_argument(
        "--vcf",
        metavar="FILE",
        help="score only these SNVs (VCF, plain or gzip) into a TSV: one window per SNV site, only the "
        "listed ALT bases through the model, rows streamed",
    )
    where.add_argument(
        "--plot",
        metavar="CHROM:START-END",
        help="draw the DeepBind view of one window; 1-based and inclusive like a genome browser "
        "(chr1:1,000,501-1,000,560 is 60 bases; commas allowed)",
    )
    add_side_args(p)
    p.add_argument(
        "--out", metavar="OUT", help="OUT.zarr store (scan), .tsv (--vcf) or .png/.pdf/.svg (--plot)"
    )
    add_overwrite_arg(p)
    p.add_argument(
        "--score", choices=("raw", "delta", "deepbind"), default="delta", help="default: %(default)s"
    )
    add_targets_arg(p)
    p.add_argument("--stride", type=int, help="window stride in bp (default: the window length)")
    p.add_argument(
        "--precision",
        choices=("fp32", "tf32", "bf16"),
        default="fp32",
        help="fp32 (default, exact), tf32, or bf16. Delta maps carry no offset at any precision; with "
        "--method fast, bf16 deltas correlate 0.996-1.000 with fp32 (2%% error on the largest effects), "
        "with --method full only 0.94 on some models: use fp32 or tf32 there (benchmarks/README.md)",
    )
    p.add_argument(
        "--method",
        choices=("full", "fast"),
        default="fast",
        help="ISM kernel: fast recomputes only what a substitution reaches, exact (default: %(default)s)",
    )
    p.add_argument(
        "--bigwig",
        metavar="PREFIX",
        help="also write PREFIX<target>.{mean,maxabs}.bw summaries (folders created), once the store "
        "is complete; with --part, the part that completes it writes them, else the run says so",
    )
    p.add_argument(
        "--resume", action="store_true", help="continue an interrupted scan into an existing --out"
    )
    p.add_argument(
        "--batch-size",
        type=int,
        help="windows per device step (default: one per local device; --vcf: 8); an input with fewer "
        "windows runs them all in one step of that many",
    )
    p.add_argument(
        "--mutant-chunk",
        type=int,
        help="memory control: mutants evaluated at once per window, for both methods (full: N per "
        "step, default 512; fast: N/3 positions per step, at least 16, default 32 on CPU and 256 "
        "on accelerators); memory grows with batch-size x mutant-chunk",
    )
    p.add_argument(
        "--chunk-len",
        type=int,
        default=65536,
        help="store chunk length in bp; a crash loses at most the chunks in flight (default: %(default)s)",
    )
    p.add_argument(
        "--part",
        metavar="I/N",
        help="process I (0-based) of N writing into one store (array jobs; set by jax.distributed otherwise)",
    )
    p.add_argument(
        "--strict-bases",
        action="store_true",
        help="refuse IUPAC ambiguity codes (R, Y, ...) in the scanned sequence instead of reading them as N",
    )
    add_store_dtype_arg(
        p, "demo model's delta scores, measured: median |delta| 1e-5, 99th percentile 1e-2, largest 0.8"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def add_side_args(p: argparse.ArgumentParser) -> None:
    """``--dnase``, ``--dnase-transform`` and ``--control`` (shared with attribute)."""
    p.add_argument("--dnase", metavar="BW", help="DNase bigWig (required by two-branch models)")
    p.add_argument(
        "--dnase-transform",
        choices=("none", "log1p"),
        default="none",
        help="transform applied to DNase values as read (default: %(default)s; match your training)",
    )
    p.add_argument(
        "--control",
        metavar="BW[,BW...]",
        action="append",
        help="a bpnet-lite BPNet's control tracks: exactly n_control_tracks bigWigs of raw per-base "
        "counts, in the order the model was trained (bpnet-lite's: plus strand, then minus strand; or "
        "one unstranded track; the order matters: the model's channels follow it, and a --resume "
        "with another order is refused), comma-separated or the flag repeated (--control plus.bw "
        "--control minus.bw; repeat it for a path holding a comma); read as stored, no transform",
    )


def _control_groups(args) -> list[tuple[str, list[str]]]:
    """Each occurrence of ``--control`` and the paths it names, in the order given.

    An occurrence (``args.control``: a list, or one string from an older caller) is one path when it
    names an existing file as a whole (a path holding a comma), else a comma-separated list of paths.
    """
    given = getattr(args, "control", None) or []
    groups = []
    for item in [given] if isinstance(given, str) else given:
        if "," in item and Path(item).is_file():
            groups.append((item, [item]))
            continue
        parts = [p.strip() for p in item.split(",")]
        if any(not p for p in parts):
            raise CliError(f"--control {item!r} holds an empty path (BW[,BW...], comma-separated)")
        groups.append((item, parts))
    return groups


def control_paths(args) -> list[str]:
    """The ``--control`` bigWigs as a list, in the order given (empty without ``--control``)."""
    return [path for _, paths in _control_groups(args) for path in paths]


def check_side_args(model, args) -> None:
    """Refuses a side input (--dnase / --control) the model does not take, or a missing one.

    BPNet-family configs (``side_name == "control"``) take control tracks, never DNase; the others
    (DeepHistone, classic) take DNase or nothing, never control tracks.
    """
    cfg = model.config
    controls = control_paths(args)
    if getattr(cfg, "side_name", None) == "control":  # BPNet / ChromBPNet
        n = int(getattr(cfg, "n_control_tracks", 0))
        if args.dnase:
            need = f"; its {n} control tracks go in --control" if n else ""
            raise CliError(
                f"the model in {args.checkpoint} is a {getattr(cfg, 'arch', 'BPNet')}, which takes no DNase: "
                f"drop --dnase{need}"
            )
        if n and not controls:
            raise CliError(
                f"the model in {args.checkpoint} takes {n} control tracks: pass --control with {n} bigWigs "
                "of raw counts (comma-separated or --control repeated), in its training order "
                "(bpnet-lite: plus strand, then minus)"
            )
        if controls and not n:
            raise CliError(f"the model in {args.checkpoint} takes no control tracks: drop --control")
        for item, paths in _control_groups(args):  # before the count: a missing path with a comma
            for path in paths:  # was split in pieces, and the refusal says so
                if not Path(path).is_file():
                    split = (
                        f" (split on commas from --control {item}, which names no file)"
                        if paths != [item]
                        else ""
                    )
                    raise CliError(f"control bigWig not found: {path}{split}")
        if len(controls) != n:
            raise CliError(
                f"--control names {len(controls)} bigWigs; the model in {args.checkpoint} takes {n} control "
                "tracks (bpnet-lite's order: plus strand, then minus)"
            )
        if controls and args.dnase_transform != "none":
            raise CliError(
                f"--dnase-transform {args.dnase_transform} does not apply to control tracks: bpnet-lite "
                "feeds them as raw counts (the model takes log(1 + sum) itself); drop it"
            )
        return
    if controls:
        raise CliError(f"the model in {args.checkpoint} takes no control tracks: drop --control")
    if cfg.has_dnase and not args.dnase:
        raise CliError(f"the model in {args.checkpoint} has a DNase branch: pass --dnase BW")
    if not cfg.has_dnase and args.dnase:
        raise CliError(f"the model in {args.checkpoint} is DNA-only: drop --dnase")
    if args.dnase and not Path(args.dnase).is_file():
        raise CliError(f"DNase bigWig not found: {args.dnase}")


def open_side_reader(args):
    """The reader of the model's side input: a BigWigReader (DNase), a StackedBigWigReader (control
    tracks, (L, C) per window) or None; call after :func:`check_side_args`."""
    from jaxmotif.io.bigwig import BigWigReader, StackedBigWigReader

    controls = control_paths(args)
    if controls:
        return StackedBigWigReader(controls)
    return BigWigReader(args.dnase) if args.dnase else None


def check_side_chroms(reader, chroms, genome_sizes=None, stream=None) -> None:
    """Refuses chromosomes the DNase bigWig (or any control bigWig) lacks, naming the file.

    With ``genome_sizes`` (the FASTA's), a chromosome whose length differs between a bigWig and the
    FASTA (a track of another assembly, most likely) gets one ``warning:`` line on ``stream``: the
    run goes on, reading 0 where the bigWig has no bases.
    """
    from jaxmotif.io.bigwig import StackedBigWigReader
    from jaxmotif.io.fasta import naming_hint

    if reader is None:
        return
    if genome_sizes is not None:
        files = reader.readers if isinstance(reader, StackedBigWigReader) else [reader]
        for r in files:
            sizes = r.chrom_sizes
            differ = [c for c in sorted(chroms) if c in sizes and sizes[c] != genome_sizes.get(c, sizes[c])]
            if differ:
                c = differ[0]
                print(
                    f"warning: chromosome {c!r} is {genome_sizes[c]} bp in the FASTA but {sizes[c]} bp in "
                    f"the bigWig {r.path} ({len(differ)} chromosome(s) differ; another assembly?); bases "
                    "the bigWig lacks read as 0",
                    file=sys.stderr if stream is None else stream,
                )
    for chrom in sorted(chroms):
        if isinstance(reader, StackedBigWigReader):
            path = reader.missing(chrom)
            if path is not None:
                known = next(r.chrom_sizes for r in reader.readers if r.path == path)
                raise CliError(
                    f"chromosome {chrom!r} is not in the control bigWig {path}{naming_hint(chrom, known)}"
                )
        elif chrom not in reader.chrom_sizes:
            raise CliError(
                f"chromosome {chrom!r} is not in the DNase bigWig {reader.path}"
                f"{naming_hint(chrom, reader.chrom_sizes)}"
            )


def side_key(args) -> dict:
    """Scan-key entries of the side input files: DNase always (None without), control when given."""
    controls = control_paths(args)
    return {
        "dnase": file_identity(args.dnase),
        **({"control": [file_identity(p) for p in controls]} if controls else {}),
    }


def add_store_dtype_arg(p: argparse.ArgumentParser, spread: str) -> None:
    """``--store-dtype``, its rounding stated beside the scores' own spread (shared with attribute)."""
    p.add_argument(
        "--store-dtype",
        choices=STORE_DTYPES,
        default="float32",
        help=store_dtype_help(spread),
    )


def store_dtype_help(spread: str) -> str:
    rounding = ", ".join(f"{k} {v:.0e}" for k, v in STORE_ROUNDING.items())
    return (
        f"precision of the stored scores (default: %(default)s). Relative rounding per value: {rounding}; "
        f"{spread}. float16 stores 2 bytes per value but below 6.1e-5 its spacing is a fixed 6e-8 "
        "(values of 1e-5 keep only about 2 digits); bfloat16 keeps float32's range with 8 significant "
        "bits and is held in float32 arrays whose zero low bytes Zarr's byte-shuffle zstd removes"
    )


def check_sequences(genome, intervals, *, strict: bool, stream) -> int:
    """:func:`jaxmotif.scan.check_sequences`, its refusal as a :class:`CliError`."""
    try:
        return _check_sequences(genome, intervals, strict=strict, stream=stream)
    except ScanError as e:
        raise CliError(str(e)) from None


def _part(args) -> tuple[int, int]:
    try:
        return process_part(args.part)
    except ScanError as e:
        raise CliError(str(e)) from None


# ---------------------------------------------------------------------------------------------
# bigWig summaries, VCF, plot
# ---------------------------------------------------------------------------------------------


def summarize(scores: np.ndarray, ref: np.ndarray, score: str) -> dict[str, np.ndarray]:
    """Per-base summaries over the three alternatives: mean Δ and max |Δ|, each (n, T).

    scores (n, 4, T) as stored; for ``raw`` Δ is taken against the reference entry p(s).
    NaN where the reference is N or not scanned.
    """
    delta = scores
    if score == "raw":
        at_ref = np.take_along_axis(scores, np.maximum(ref, 0)[:, None, None].astype(np.intp), axis=1)
        delta = scores - at_ref
    with np.errstate(invalid="ignore"), warnings_off():
        mean = np.sum(delta, axis=1) / 3.0  # the reference entry is 0
        maxabs = np.max(np.abs(delta), axis=1)
    return {"mean": mean, "maxabs": maxabs}


@contextlib.contextmanager
def warnings_off():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def write_summary_bigwigs(store, prefix: str, score: str, chrom_sizes) -> list[Path]:
    """One bigWig per target and summary, ``{prefix}{target}.{mean,maxabs}.bw``, from written chunks."""
    from jaxmotif.io.bigwig import write_bigwig

    written = []
    names = store.output_names
    for t, name in enumerate(names):
        tracks = {s: [] for s in SUMMARIES}
        for chrom in store.chroms_in_order():
            done = store.done_mask(chrom)
            for c in np.flatnonzero(done):
                c0, c1 = store.chunk_span(chrom, int(c))
                part = store.read(chrom, c0, c1)
                sums = summarize(part.scores[:, :, t : t + 1], part.ref, score)
                for s in SUMMARIES:
                    tracks[s].append((chrom, c0, sums[s][:, 0]))
        for s in SUMMARIES:
            path = Path(f"{prefix}{name}.{s}.bw")
            write_bigwig(path, chrom_sizes, tracks[s])
            written.append(path)
    return written


def bigwig_paths(prefix: str, output_names) -> list[Path]:
    return [Path(f"{prefix}{name}.{s}.bw") for name in output_names for s in SUMMARIES]


class Variant(NamedTuple):
    chrom: str
    pos: int  # 1-based, as in VCF
    id: str
    ref: str
    alt: str


def iter_vcf_snvs(path, genome) -> Iterator[Variant | None]:
    """SNVs of a VCF (plain or gzip) in file order, REF checked against the genome; None per skipped
    non-SNV allele. Streams: holds one line at a time."""
    from jaxmotif.io.fasta import naming_hint

    path = Path(path)
    if not path.is_file():
        raise CliError(f"VCF file not found: {path}")
    with open(path, "rb") as probe:
        opener = gzip.open if probe.read(2) == b"\x1f\x8b" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if line.startswith("#") or not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            where = f"{path}:{line_no}"
            if len(fields) < 5:
                raise CliError(f"{where}: expected at least 5 tab-separated VCF columns, got {len(fields)}")
            chrom, pos_text, vid, ref, alts = fields[:5]
            if chrom not in genome:
                raise CliError(
                    f"{where}: unknown chromosome {chrom!r} (not in {genome.path})"
                    f"{naming_hint(chrom, genome.chrom_sizes)}"
                )
            try:
                pos = int(pos_text)
            except ValueError:
                raise CliError(f"{where}: POS {pos_text!r} is not an integer") from None
            size = genome.chrom_size(chrom)
            if not 1 <= pos <= size:
                raise CliError(f"{where}: {chrom}:{pos} is outside {chrom} (length {size})")
            for alt in alts.split(","):
                snv = len(ref) == 1 and len(alt) == 1 and alt.upper() in "ACGT" and ref.upper() in "ACGT"
                if not snv or alt.upper() == ref.upper():
                    yield None
                    continue
                genome_base = genome.fetch(chrom, pos - 1, pos).upper()
                if genome_base != ref.upper():
                    raise CliError(
                        f"{where}: REF {ref!r} does not match the genome's {genome_base!r} at {chrom}:{pos}"
                    )
                yield Variant(chrom, pos, vid, ref.upper(), alt.upper())


def read_vcf_snvs(path, genome) -> tuple[list[Variant], int]:
    """All SNVs of a VCF as a list, and the number of skipped non-SNV alleles (small files, tests)."""
    variants, skipped = [], 0
    for v in iter_vcf_snvs(path, genome):
        if v is None:
            skipped += 1
        else:
            variants.append(v)
    return variants, skipped


SITE_SNVS = 3  # listed substitutions per window: the three ALT bases a site can have


def iter_sites(variants: Iterator[Variant | None]) -> Iterator[list[Variant]]:
    """Consecutive SNVs of one position, at most 3 per group (each group gets one centred window)."""
    group: list[Variant] = []
    for v in variants:
        if v is None:
            continue
        if group and ((v.chrom, v.pos) != (group[0].chrom, group[0].pos) or len(group) == SITE_SNVS):
            yield group
            group = []
        group.append(v)
    if group:
        yield group


def _write_rows(handle, rows: list[list[str]]) -> None:
    """One batch of TSV rows (the only rows held on the host at once)."""
    handle.write("".join("\t".join(r) + "\n" for r in rows))


def score_vcf(
    model,
    genome,
    sites: Iterator[list[Variant]],
    handle,
    *,
    dnase_reader=None,
    dnase_transform="none",
    score="delta",
    targets,
    precision=None,
    method="fast",
    mutant_chunk=None,
    windows_per_step: int = 8,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Scores SNV sites batch by batch and streams their rows to ``handle``; returns rows written.

    Each site gets the window centred on it and only its listed ALT bases (padded to 3 by
    repetition) go through the model with :func:`jaxmotif.ism.compiled_listed_mutations`, whose
    p(s) comes from the same computation as the p(ŝ). Host memory: one batch of windows and rows.
    """
    import jax

    from jaxmotif.ism import compiled_listed_mutations
    from jaxmotif.tiling import tile_region

    kernel = compiled_listed_mutations(
        model, targets=targets, precision=precision, method=method, mutant_chunk=mutant_chunk
    )
    alphabet = model.config.alphabet
    length = model.config.seq_len
    params = model.params
    written = 0

    def run(batch: list[list[Variant]]):
        windows = [tile_region(g[0].chrom, g[0].pos - 1, g[0].pos, length)[0] for g in batch]
        pad = windows_per_step - len(batch)
        windows = windows + [windows[-1]] * pad
        data = read_windows(windows, genome, alphabet, dnase_reader, dnase_transform)
        positions = np.zeros((windows_per_step, SITE_SNVS), np.int32)
        bases = np.zeros((windows_per_step, SITE_SNVS), np.int32)
        for i, w in enumerate(windows):
            group = batch[min(i, len(batch) - 1)]
            alts = [alphabet.index(v.alt) for v in group]
            alts += [alts[-1]] * (SITE_SNVS - len(alts))
            positions[i] = group[0].pos - 1 - w.start
            bases[i] = alts
        dnase = None if data.dnase is None else jax.device_put(data.dnase)
        return kernel(params, jax.device_put(data.seq), dnase, positions, bases)

    def finish(batch, result):
        nonlocal written
        out = np.asarray(result)  # (B, 3, 2, T')
        rows = []
        for i, group in enumerate(batch):
            for k, v in enumerate(group):
                p_ref, p_alt = out[i, k, 0], out[i, k, 1]
                delta = p_alt - p_ref  # float32, of two identically computed outputs
                if score == "raw":
                    value = p_alt
                elif score == "delta":
                    value = delta
                else:
                    value = delta * np.maximum(np.maximum(p_ref, p_alt), np.float32(0))
                row = [v.chrom, str(v.pos), v.id, v.ref, v.alt]
                for t in range(out.shape[-1]):
                    row += [f"{p_ref[t]:.6g}", f"{p_alt[t]:.6g}", f"{value[t]:.6g}"]
                rows.append(row)
        _write_rows(handle, rows)
        written += len(rows)
        if progress is not None:
            progress(len(rows))

    in_flight = None
    batch: list[list[Variant]] = []
    for group in sites:
        batch.append(group)
        if len(batch) == windows_per_step:
            result = run(batch)  # asynchronous: the device works while the last batch is written
            if in_flight is not None:
                finish(*in_flight)
            in_flight, batch = (batch, result), []
    if batch:
        result = run(batch)
        if in_flight is not None:
            finish(*in_flight)
        in_flight = (batch, result)
    if in_flight is not None:
        finish(*in_flight)
    return written


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------


class Inputs(NamedTuple):
    model: object
    genome: object
    dnase_reader: object  # BigWigReader (DNase), StackedBigWigReader (control tracks) or None
    targets: tuple[int, ...] | None


def demo_genome_dir() -> Path:
    """Where the demo genome is copied for pyfaidx's index when no --fasta is given (reused)."""
    return Path(tempfile.gettempdir()) / "jaxmotif-demo-genome"


def _open_inputs(args, stream=None) -> Inputs:
    """Loads and checks checkpoint (or the demo model), FASTA, DNase or control tracks and targets
    (no device work)."""
    from jaxmotif.io.fasta import Genome
    from jaxmotif.models.checkpoint import load_model

    stream = sys.stderr if stream is None else stream
    if args.checkpoint:
        if not Path(args.checkpoint).is_dir():
            raise CliError(f"checkpoint folder {args.checkpoint} does not exist")
        model = load_model(args.checkpoint)
        if not args.fasta:
            raise CliError("--fasta is required")
    else:
        from jaxmotif.demo import demo_model, demo_paths, writable_genome

        model = demo_model()
        args.checkpoint = str(demo_paths().model)
        if not args.fasta:
            args.fasta = str(writable_genome(demo_genome_dir()))
            if not args.dnase:
                args.dnase = str(demo_paths().dnase)
        print(f"note: no --checkpoint: using the bundled demo model ({args.checkpoint})", file=stream)
    if not Path(args.fasta).is_file():
        raise CliError(f"genome FASTA not found: {args.fasta}")
    check_side_args(model, args)
    if args.stride is not None and not 1 <= args.stride <= model.config.seq_len:
        raise CliError(
            f"--stride {args.stride} must be between 1 and the window length {model.config.seq_len}"
        )
    for name in ("batch_size", "mutant_chunk", "chunk_len"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise CliError(f"--{name.replace('_', '-')} {value} must be positive")
    targets = resolve_cli_targets(model, args.targets) if args.targets else None
    genome = Genome(args.fasta)
    return Inputs(model, genome, open_side_reader(args), targets)


# What each scan-key entry means, for the one-line refusal.
KEY_MEANING = {
    "config": "the model's config",
    "params_sha256": "the model's weights (another checkpoint)",
    "precision": "--precision",
    "method": "--method",
    "score": "--score",
    "outputs": "--targets",
    "window": "the window length",
    "stride": "--stride",
    "windows_sha256": "the regions (--regions/--chrom)",
    "dnase_transform": "--dnase-transform",
    "fasta": "the FASTA file (path, size or modification time)",
    "dnase": "the DNase bigWig (path, size or modification time)",
    "control": "the control bigWigs (--control: paths, order, sizes or modification times)",
    "strict_bases": "--strict-bases",
    "store_dtype": "--store-dtype",
}


def _scan_key(model, windows, args, output_names) -> dict:
    """What defines the store's content; a resume or another part must match it exactly."""
    digest = windows_digest(windows)
    return {
        "config": json.loads(model.config.to_json()),
        "params_sha256": params_digest(model.params),
        "precision": args.precision,
        "method": args.method,
        "score": args.score,
        "outputs": list(output_names),
        "window": model.config.seq_len,
        "stride": args.stride or model.config.seq_len,
        "windows_sha256": digest,
        "dnase_transform": args.dnase_transform,
        "fasta": file_identity(args.fasta),
        **side_key(args),
        "strict_bases": bool(args.strict_bases),
        **({} if args.store_dtype == "float32" else {"store_dtype": args.store_dtype}),
    }


def _check_key(out: Path, old: dict, key: dict) -> None:
    try:
        check_key(out, old, key, KEY_MEANING)
    except ScanError as e:
        raise CliError(str(e)) from None


def _open_store(args, model, genome, windows, output_names, part, key):
    """(store, final path or None): the store to scan into; with --overwrite a new one beside
    ``--out`` that :func:`_swap_in` renames over it once complete."""
    from jaxmotif.io.zarr_store import MutmapStore, StoreError

    out = Path(args.out)
    chroms = list(dict.fromkeys(w.chrom for w in windows))
    sizes = {c: genome.chrom_size(c) for c in chroms}
    attrs = {
        "config": key["config"],
        "score": args.score,
        "alphabet": model.config.alphabet,
        "scan": key,
        "chroms": chroms,
        "args": {k: v for k, v in vars(args).items() if v is not None},
    }
    store_options = {"chunk_len": args.chunk_len, "store_dtype": args.store_dtype}
    shared = args.resume or part[1] > 1
    if out.exists() and not shared:
        if not args.overwrite:
            raise CliError(
                f"{out} exists; pass --resume to continue it, --overwrite to replace it, "
                "or choose another --out"
            )
        tmp = out.with_name(f".{out.name}.new-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        return MutmapStore.create(tmp, sizes, output_names, attrs, **store_options), out
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            return MutmapStore.create(out, sizes, output_names, attrs, **store_options), None
        except (OSError, StoreError):
            if not out.exists():  # another part created it between our check and rename
                raise
    try:
        store = MutmapStore(out, mode="r+")
    except StoreError as e:
        raise CliError(str(e)) from None
    _check_key(out, store.attrs.get("scan", {}), key)
    return store, None


def run_scan(args, *, stream=None) -> Path:
    stream = sys.stderr if stream is None else stream
    from jaxmotif.io.bed import BedError, Region, read_bed, validate_regions
    from jaxmotif.tiling import tile_regions

    if not args.out:
        raise CliError("--out is required")
    part = _part(args)
    inputs = _open_inputs(args, stream)
    genome = inputs.genome
    if args.regions:
        if not Path(args.regions).is_file():
            raise CliError(f"regions file not found: {args.regions}")
        regions = read_bed(args.regions)
        if not regions:
            raise CliError(f"{args.regions} holds no regions")
    elif args.chrom:
        for chrom in args.chrom:
            genome.chrom_size(chrom)  # names the unknown chromosome
        regions = [Region(c, 0, genome.chrom_size(c)) for c in args.chrom]
    else:
        raise CliError("say what to scan: --regions BED, --chrom CHROM ..., --vcf FILE or --plot REGION")
    try:
        validate_regions(regions, genome.chrom_sizes)
    except BedError as e:
        raise CliError(str(e)) from None
    model = inputs.model
    windows = tile_regions(regions, model.config.seq_len, args.stride, chrom_order=list(genome.chrom_sizes))
    check_side_chroms(inputs.dnase_reader, {w.chrom for w in windows}, genome.chrom_sizes, stream)
    output_names = [model.output_names[i] for i in (inputs.targets or range(model.config.num_outputs))]
    if args.bigwig:
        for path in bigwig_paths(args.bigwig, output_names):
            check_output(path, args.overwrite, "--bigwig")
    check_output_parent(args.out)
    key = _scan_key(model, windows, args, output_names)
    if Path(args.out).exists() and (args.resume or part[1] > 1):  # refuse a mismatch before the slow check
        from jaxmotif.io.zarr_store import MutmapStore, StoreError

        try:
            _check_key(Path(args.out), MutmapStore(args.out).attrs.get("scan", {}), key)
        except StoreError as e:
            raise CliError(str(e)) from None
    spans = [(w.chrom, w.start, w.end) for w in windows]
    check_sequences(genome, spans, strict=args.strict_bases, stream=stream)

    store, swap_to = open_store_once(
        lambda: _open_store(args, model, genome, windows, output_names, part, key),
        part,
        args.part is None,
        "jaxmotif.mutmap.created",
    )
    summary = scan_with_bar(
        store,
        swap_to,
        lambda total, already: _progress_bar(total, args.quiet, stream, initial=already),
        lambda progress, plan: scan_windows(
            model,
            genome,
            windows,
            store,
            dnase_reader=inputs.dnase_reader,
            dnase_transform=args.dnase_transform,
            score=args.score,
            targets=inputs.targets,
            precision=args.precision,
            method=args.method,
            batch_size=args.batch_size,
            mutant_chunk=args.mutant_chunk,
            part=part,
            progress=progress,
            plan=plan,
            iupac="error" if args.strict_bases else "n",
            store_dtype=args.store_dtype,
        ),
    )
    if args.part is None:
        sync("jaxmotif.mutmap.scanned")
    print(
        f"scored {summary.windows} windows ({summary.bases:,} bp) into {summary.chunks} chunks of {args.out} "
        f"in {summary.seconds:.1f} s",
        file=stream,
    )
    scanned = sum(w.assign_end - w.assign_start for w in windows)
    print(
        f"store: {stored_bytes(store.path) / max(scanned, 1):.1f} bytes per scanned base "
        f"({len(output_names)} outputs x 4 bases, {args.store_dtype}, Zarr-compressed)",
        file=stream,
    )
    if args.bigwig and (args.part is not None or part[0] == 0):
        missing = pending_chunks(store, windows)
        if missing:
            print(
                f"bigWig tracks not written yet: {missing} store chunks are left to other parts; once every "
                f"part has finished, run the same command with --resume --bigwig {args.bigwig} and no --part",
                file=stream,
            )
        else:
            for path in bigwig_paths(args.bigwig, output_names):
                path.parent.mkdir(parents=True, exist_ok=True)
            paths = write_summary_bigwigs(store, args.bigwig, args.score, genome.chrom_sizes)
            print(f"wrote {len(paths)} bigWig summaries: {paths[0]} ...", file=stream)
    if swap_to is not None:
        swap_in(store.path, swap_to)
    return Path(args.out)


RESUME_HINT = "finished chunks are kept, rerun with --resume to continue"  # after Ctrl-C in a scan


def open_store_once(open_store: Callable, part: tuple[int, int], distributed: bool, barrier: str):
    """``open_store()`` in this process: under ``jax.distributed`` (``distributed`` and N > 1
    processes) process 0 creates the store first and the others open it after ``barrier``."""
    if not (distributed and part[1] > 1):
        return open_store()
    opened = open_store() if part[0] == 0 else None
    sync(barrier)
    return open_store() if opened is None else opened


def scan_with_bar(store, swap_to, make_bar: Callable, scan: Callable):
    """``scan(progress, plan)`` with a progress bar made by ``make_bar(total, already)`` once the
    scan knows its total; returns its summary. If it fails, a store being built by --overwrite
    (``swap_to`` set) is removed, so the old one stays as it was."""
    bar = None

    def plan(total, already):
        nonlocal bar
        bar = make_bar(total, already)

    try:
        return scan(lambda n: bar.update(n), plan)
    except BaseException:
        if swap_to is not None:
            shutil.rmtree(store.path, ignore_errors=True)
        raise
    finally:
        if bar is not None:
            bar.close()


def _progress_bar(total: int, quiet: bool, stream, initial: int = 0, unit: str = "bp"):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit=unit,
        unit_scale=True,
        desc="mutmap",
        disable=quiet,
        file=stream,
        smoothing=0.1,
    )


def run_vcf(args, *, stream=None) -> Path:
    stream = sys.stderr if stream is None else stream
    from jaxmotif.tiling import tile_region

    if not args.out:
        raise CliError("--out is required (the TSV to write)")
    check_output(args.out, args.overwrite)
    inputs = _open_inputs(args, stream)
    model, genome = inputs.model, inputs.genome
    targets = inputs.targets or tuple(range(model.config.num_outputs))
    length = model.config.seq_len
    # Pass 1, before any device work: every line checked, every window's bases validated; only
    # counters are kept, so host memory does not grow with the number of SNVs.
    n_snvs, n_sites, skipped, dnase_chroms = 0, 0, 0, set()
    spans: list[tuple[str, int, int]] = []
    iupac, site, site_snvs = 0, None, 0
    for v in iter_vcf_snvs(args.vcf, genome):
        if v is None:
            skipped += 1
            continue
        n_snvs += 1
        # Windows as iter_sites groups them (consecutive SNVs of a position, 3 at most): the batch
        # needs no more rows than there are windows.
        if (v.chrom, v.pos) != site or site_snvs == SITE_SNVS:
            site, site_snvs, n_sites = (v.chrom, v.pos), 0, n_sites + 1
        site_snvs += 1
        if v.chrom not in dnase_chroms:
            check_side_chroms(inputs.dnase_reader, {v.chrom})
            dnase_chroms.add(v.chrom)
        w = tile_region(v.chrom, v.pos - 1, v.pos, length)[0]
        spans.append((w.chrom, w.start, w.end))
        if len(spans) >= 4096:  # validate in bounded batches
            iupac += check_sequences(genome, spans, strict=args.strict_bases, stream=None)
            spans = []
    if spans:
        iupac += check_sequences(genome, spans, strict=args.strict_bases, stream=None)
    if iupac:
        print(f"warning: {iupac:,} IUPAC ambiguity codes in the SNV windows {IUPAC_NOTE}", file=stream)
    header = ["chrom", "pos", "id", "ref", "alt"]
    for t in targets:
        name = model.output_names[t]
        header += [f"{name}:p_ref", f"{name}:p_alt", f"{name}:{args.score}"]
    import jax

    windows_per_step = min(args.batch_size or max(8, jax.local_device_count()), max(n_sites, 1))
    bar = _progress_bar(n_snvs, args.quiet, stream, unit="SNV")
    try:
        with new_output(args.out, args.overwrite, folder=False) as tmp, open(tmp, "w") as handle:
            handle.write("\t".join(header) + "\n")
            rows = score_vcf(
                model,
                genome,
                iter_sites(iter_vcf_snvs(args.vcf, genome)),
                handle,
                dnase_reader=inputs.dnase_reader,
                dnase_transform=args.dnase_transform,
                score=args.score,
                targets=targets,
                precision=args.precision,
                method=args.method,
                mutant_chunk=args.mutant_chunk,
                windows_per_step=windows_per_step,
                progress=bar.update,
            )
    finally:
        bar.close()
    note = f" ({skipped} non-SNV alleles skipped)" if skipped else ""
    print(f"scored {rows} SNVs into {args.out}{note}", file=stream)
    return Path(args.out)


def run_plot(args, *, stream=None) -> Path:
    stream = sys.stderr if stream is None else stream
    from jaxmotif import plot
    from jaxmotif.io.bed import BedError, parse_browser_region, validate_regions
    from jaxmotif.ism import mutation_map
    from jaxmotif.tiling import tile_region

    if not args.out:
        raise CliError("--out is required (the figure to write: .png, .pdf or .svg)")
    out = Path(args.out)
    if out.suffix.lower() not in plot.FIGURE_SUFFIXES:
        raise CliError(f"--out {out} must end with one of {plot.FIGURE_SUFFIXES} with --plot")
    check_output(out, args.overwrite)
    try:
        region = parse_browser_region(args.plot)
    except BedError as e:
        raise CliError(str(e)) from None
    inputs = _open_inputs(args, stream)
    model, genome = inputs.model, inputs.genome
    try:
        validate_regions([region], genome.chrom_sizes)
    except BedError as e:
        raise CliError(str(e).replace(str(region), args.plot)) from None
    length = model.config.seq_len
    if region.end - region.start > length:
        raise CliError(f"--plot {args.plot} is longer than one window ({length} bp)")
    check_side_chroms(inputs.dnase_reader, {region.chrom})
    (window,) = tile_region(region.chrom, region.start, region.end, length)
    spans = [(window.chrom, window.start, window.end)]
    check_sequences(genome, spans, strict=args.strict_bases, stream=stream)
    data = read_windows(
        [window],
        genome,
        model.config.alphabet,
        inputs.dnase_reader,
        args.dnase_transform,
        iupac="error" if args.strict_bases else "n",
    )
    targets = inputs.targets or tuple(range(model.config.num_outputs))
    scores = mutation_map(
        model,
        data.seq,
        data.dnase,
        score=args.score,
        targets=targets,
        precision=args.precision,
        method=args.method,
        mutant_chunk=args.mutant_chunk,
    )[0]
    a, b = region.start - window.start, region.end - window.start
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        len(targets), 1, figsize=(max(6.0, min(0.15 * (b - a) + 2, 40.0)), 3.0 * len(targets)), squeeze=False
    )
    shown = f"{region.chrom}:{region.start + 1:,}-{region.end:,}"  # as the browser shows it
    try:
        for k, t in enumerate(targets):
            plot.mutation_map(
                axes[k, 0],
                scores[a:b, :, k],
                data.seq[0, a:b],
                model.config.alphabet,
                title=f"{model.output_names[t]}  {shown}",
                start=region.start + 1,  # 1-based genome positions on the axis, like the browser
                label=args.score,
            )
        fig.tight_layout()
        with new_output(out, args.overwrite, folder=False) as tmp:
            fig.savefig(tmp, dpi=150, bbox_inches="tight", format=out.suffix.lower().lstrip("."))
    finally:
        plt.close(fig)
    print(f"wrote {out}", file=stream)
    return out


def _demo_view(paths, read_bed) -> tuple[str, str]:
    """A planted site, inside a demo region, of a motif that alone drives an output, and that output;
    else a region's middle and output 0. The view is in browser coordinates (1-based, inclusive)."""
    from jaxmotif.demo import DEMO_MOTIFS, DEMO_SINGLE_MOTIF_OUTPUTS

    names = dict(DEMO_MOTIFS)
    wanted = {names[motif_id]: output for output, motif_id in DEMO_SINGLE_MOTIF_OUTPUTS.items()}
    regions = read_bed(paths.regions)
    try:
        sites = read_bed(paths.planted_sites)
    except (OSError, ValueError):  # a demo without planted sites still gets a figure
        sites = []
    for site in sites:
        inside = any(r.chrom == site.chrom and r.start <= site.start and site.end <= r.end for r in regions)
        if inside and site.name in wanted:
            middle = (site.start + site.end) // 2
            return f"{site.chrom}:{max(middle - 25, 0) + 1}-{middle + 25}", wanted[site.name]
    first = regions[0]
    middle = (first.start + first.end) // 2
    return f"{first.chrom}:{max(middle - 25, 0) + 1}-{middle + 25}", "0"


def run_demo(stream=None, out_dir: str | os.PathLike = DEMO_DIR) -> Path:
    """The bundled demo: scan the demo regions, bigWig summaries and one figure, into ``out_dir``
    (``./jaxmotif_mutmap_demo`` by default), replacing the outputs of an earlier demo run there."""
    stream = sys.stdout if stream is None else stream
    from jaxmotif.demo import demo_paths, writable_genome
    from jaxmotif.io.bed import read_bed

    paths = demo_paths()
    out_dir = Path(out_dir)
    genome = writable_genome(out_dir / "genome")
    parser = build_parser()
    common = ["--checkpoint", str(paths.model), "--fasta", str(genome), "--dnase", str(paths.dnase)]
    scan = parser.parse_args(
        [
            *common,
            "--regions",
            str(paths.regions),
            "--out",
            str(out_dir / "mutmap.zarr"),
            "--bigwig",
            str(out_dir / "demo."),
            "--chunk-len",
            "4096",
            "--overwrite",
        ]
    )
    run_scan(scan)
    view, target = _demo_view(paths, read_bed)
    run_plot(
        parser.parse_args(
            [*common, "--plot", view, "--targets", target, "--out", str(out_dir / "mutmap.png")]
            + ["--overwrite"]
        )
    )
    print(f"demo outputs in {out_dir}:", file=stream)
    for p in sorted(out_dir.iterdir()):
        if p.name != "genome" and not p.name.startswith("."):
            print(f"  {p}", file=stream)
    return out_dir


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)

    def body():
        if not argv:
            run_demo()
        elif args.vcf:
            run_vcf(args)
        elif args.plot:
            run_plot(args)
        else:
            run_scan(args)

    return run_cli(body, catch=(ValueError, FileNotFoundError), interrupted=RESUME_HINT)


if __name__ == "__main__":
    sys.exit(main())
