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
the FASTA and DNase files); a ``--resume`` or ``--part`` with anything different is refused. For
several processes (``jax.distributed`` on a multi-host TPU/GPU slice, or ``--part I/N`` for cluster
array jobs) process ``i`` owns chunks ``i::N`` of the store and scores the windows touching them;
windows straddling two processes' chunks are scored by both (a fraction of about window/chunk_len
extra work), and no two processes ever write the same file.
"""

import argparse
import contextlib
import gzip
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxmotif.cli.common import (
    CliError,
    add_overwrite_arg,
    add_targets_arg,
    check_output,
    new_output,
    resolve_cli_targets,
)

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
IUPAC_NOTE = "read as N; --strict-bases refuses them"


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
    p.add_argument("--dnase", metavar="BW", help="DNase bigWig (required by two-branch models)")
    p.add_argument(
        "--dnase-transform",
        choices=("none", "log1p"),
        default="none",
        help="transform applied to DNase values as read (default: %(default)s; match your training)",
    )
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
    p.add_argument("--batch-size", type=int, help="windows per device step (default: one per local device)")
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
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _part(args) -> tuple[int, int]:
    import jax

    if args.part is None:
        return jax.process_index(), jax.process_count()
    try:
        i, n = (int(x) for x in args.part.split("/"))
    except ValueError:
        raise CliError(f"--part {args.part!r} must be I/N, e.g. 0/4") from None
    if not 0 <= i < n:
        raise CliError(f"--part {args.part!r}: need 0 <= I < N")
    return i, n


# ---------------------------------------------------------------------------------------------
# The scan: windows -> store chunks
# ---------------------------------------------------------------------------------------------


class ScanSummary(NamedTuple):
    windows: int  # windows scored by this process
    chunks: int  # store chunks written by this process
    bases: int  # bases assigned to the scored windows
    seconds: float


class WindowInputs(NamedTuple):
    seq: np.ndarray  # (B, L, 4) float32 one-hot
    ref: np.ndarray  # (B, L) int8 base index, -1 for N
    dnase: np.ndarray | None  # (B, L) float32


def read_windows(
    windows, genome, alphabet: str, dnase_reader=None, dnase_transform: str = "none", *, iupac: str = "n"
) -> WindowInputs:
    """One-hot, reference indices and DNase of windows (N- and zero-padded past chromosome ends).

    ``iupac``: ``"n"`` reads IUPAC ambiguity codes as N (after :func:`check_sequences` warned), or
    ``"error"``.
    """
    from jaxmotif.sequence import encode_indices, one_hot_from_indices

    ref = np.stack(
        [
            encode_indices(
                genome.fetch(w.chrom, w.start, w.end),
                alphabet,
                name=f"{w.chrom}:{w.start}-{w.end}",
                iupac=iupac,
            )
            for w in windows
        ]
    )
    dnase = None
    if dnase_reader is not None:
        dnase = np.stack([dnase_reader.read(w.chrom, w.start, w.end) for w in windows]).astype(np.float32)
        if dnase_transform == "log1p":
            dnase = np.log1p(np.maximum(dnase, 0.0)).astype(np.float32)
    return WindowInputs(one_hot_from_indices(ref), ref, dnase)


CHECK_BLOCK = 1 << 22  # bases fetched at once while checking the scanned sequence


def merged_spans(intervals, chrom_sizes) -> list[tuple[str, int, int]]:
    """``(chrom, start, end)`` intervals clipped to their chromosomes and merged where they overlap."""
    by_chrom: dict[str, list[tuple[int, int]]] = {}
    for chrom, start, end in intervals:
        a, b = max(int(start), 0), min(int(end), chrom_sizes[chrom])
        if a < b:
            by_chrom.setdefault(chrom, []).append((a, b))
    out = []
    for chrom, spans in by_chrom.items():
        spans.sort()
        cur_a, cur_b = spans[0]
        for a, b in spans[1:]:
            if a <= cur_b:
                cur_b = max(cur_b, b)
            else:
                out.append((chrom, cur_a, cur_b))
                cur_a, cur_b = a, b
        out.append((chrom, cur_a, cur_b))
    return out


def check_sequences(genome, intervals, *, strict: bool, stream) -> int:
    """Validates every base the run will read, in one pass before any device work.

    An invalid character, or with ``strict`` an IUPAC ambiguity code, is a :class:`CliError`
    naming its genome position (1-based). Otherwise IUPAC codes are counted and reported in one
    warning line on ``stream`` (they are read as N; None: no line). Returns their number.
    """
    from jaxmotif.sequence import IUPAC_AMBIGUITY, SequenceError, check_bases, count_iupac

    total, first = 0, None
    for chrom, start, end in merged_spans(intervals, genome.chrom_sizes):
        for a in range(start, end, CHECK_BLOCK):
            b = min(a + CHECK_BLOCK, end)
            bases = genome.fetch(chrom, a, b)
            try:
                check_bases(bases, iupac="error" if strict else "n")
            except SequenceError as err:
                where = f"{chrom}:{a + err.position + 1}"
                if err.char.upper() in IUPAC_AMBIGUITY:
                    raise CliError(
                        f"{where}: IUPAC ambiguity code {err.char!r} in {genome.path} "
                        "(--strict-bases refuses IUPAC codes)"
                    ) from None
                raise CliError(f"{where}: invalid base {err.char!r} in {genome.path}") from None
            count, at = count_iupac(bases)
            if count and first is None:
                first = f"{chrom}:{a + at + 1} {bases[at]!r}"
            total += count
    if total and stream is not None:
        print(
            f"warning: {total:,} IUPAC ambiguity code{'s' if total > 1 else ''} in the scanned sequence "
            f"(first at {first}) {IUPAC_NOTE}",
            file=stream,
        )
    return total


def scan_plan(store, windows, part: tuple[int, int]):
    """(windows to score with the chunks they complete, bases of this part's windows, bases already done).

    Chunks are numbered globally (across chromosomes in store order) so parts are balanced;
    process ``i`` of ``N`` owns chunks ``i::N``. A window is scored if it touches an owned chunk
    not yet marked done.
    """
    part_index, part_count = part
    chunk_len = store.chunk_len
    chroms = set(w.chrom for w in windows)
    owned: dict[str, set[int]] = {}
    todo: dict[str, set[int]] = {}
    base = 0
    for chrom in store.chroms_in_order():
        n = store.n_chunks(chrom)
        if chrom in chroms:
            done = store.done_mask(chrom)
            owned[chrom] = {c for c in range(n) if (base + c) % part_count == part_index}
            todo[chrom] = {c for c in owned[chrom] if not done[c]}
        base += n
    needed, total, already = [], 0, 0
    for w in windows:
        chunks = range(w.assign_start // chunk_len, (w.assign_end - 1) // chunk_len + 1)
        if not any(c in owned[w.chrom] for c in chunks):
            continue
        bases = w.assign_end - w.assign_start
        total += bases
        touched = [c for c in chunks if c in todo[w.chrom]]
        if touched:
            needed.append((w, touched))
        else:
            already += bases
    return needed, total, already


def scan_windows(
    model,
    genome,
    windows,
    store,
    *,
    dnase_reader=None,
    dnase_transform: str = "none",
    score: str = "delta",
    targets=None,
    precision: str | None = None,
    method: str = "fast",
    batch_size: int | None = None,
    mutant_chunk: int | None = None,
    part: tuple[int, int] = (0, 1),
    progress: Callable[[int], None] | None = None,
    plan: Callable[[int, int], None] | None = None,
    iupac: str = "n",
) -> ScanSummary:
    """Scores ``windows`` (from :func:`jaxmotif.tiling.tile_regions`) into ``store``.

    Skips chunks already marked done and chunks owned by other parts; writes each remaining chunk
    whole once all its windows are scored, then marks it done. ``plan(total, already)`` is called
    first with the bases of this part's windows and those already done (a resumed run's progress
    starts there); ``progress`` then gets the bases of each finished batch.
    """
    import jax
    from jax.sharding import NamedSharding, PartitionSpec

    from jaxmotif.batching import BATCH_AXIS, batch_mesh
    from jaxmotif.ism import compiled_mutation_map

    t0 = time.perf_counter()
    needed, total, already = scan_plan(store, windows, part)
    if plan is not None:
        plan(total, already)
    if not needed:
        return ScanSummary(0, 0, 0, time.perf_counter() - t0)
    pending: dict[tuple[str, int], int] = {}
    for w, touched in needed:
        for c in touched:
            pending[w.chrom, c] = pending.get((w.chrom, c), 0) + 1

    mesh = batch_mesh()
    sharding = NamedSharding(mesh, PartitionSpec(BATCH_AXIS))
    step = -(-(batch_size or mesh.size) // mesh.size) * mesh.size
    kernel = compiled_mutation_map(
        model, score=score, targets=targets, precision=precision, method=method, mutant_chunk=mutant_chunk
    )
    params = model.params
    n_out = len(store.output_names)
    buffers: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
    chunks_written = 0

    def dispatch(batch):
        ws = [w for w, _ in batch]
        ws = ws + [ws[-1]] * (step - len(ws))  # static shapes: pad by repeating, results dropped
        inputs = read_windows(ws, genome, model.config.alphabet, dnase_reader, dnase_transform, iupac=iupac)
        seq = jax.device_put(inputs.seq, sharding)
        dnase = None if inputs.dnase is None else jax.device_put(inputs.dnase, sharding)
        return kernel(params, seq, dnase), inputs.ref

    def finish(batch, result, ref):
        nonlocal chunks_written
        scores = np.asarray(result)
        ready = []
        for (w, touched), s, r in zip(batch, scores, ref, strict=False):
            for c in touched:
                c0, c1 = store.chunk_span(w.chrom, c)
                a, b = max(w.assign_start, c0), min(w.assign_end, c1)
                key = (w.chrom, c)
                if key not in buffers:
                    buffers[key] = (
                        np.full((c1 - c0, 4, n_out), np.nan, np.float32),
                        np.full(c1 - c0, -2, np.int8),
                    )
                buf_scores, buf_ref = buffers[key]
                buf_scores[a - c0 : b - c0] = s[a - w.start : b - w.start]
                buf_ref[a - c0 : b - c0] = r[a - w.start : b - w.start]
                pending[key] -= 1
                if pending[key] == 0:
                    ready.append(key)
        for key in ready:
            store.write_chunk(key[0], key[1], *buffers.pop(key))
        for key in ready:  # only after every write of the batch returned
            store.mark_done(key[0], [key[1]])
        chunks_written += len(ready)
        if progress is not None:
            progress(sum(w.assign_end - w.assign_start for w, _ in batch))

    in_flight = None
    for i in range(0, len(needed), step):
        batch = needed[i : i + step]
        result, ref = dispatch(batch)  # asynchronous: the device works while the last batch is written
        if in_flight is not None:
            finish(*in_flight)
        in_flight = (batch, result, ref)
    finish(*in_flight)
    bases = sum(w.assign_end - w.assign_start for w, _ in needed)
    return ScanSummary(len(needed), chunks_written, bases, time.perf_counter() - t0)


def pending_chunks(store, windows) -> int:
    """Store chunks touched by ``windows`` and not yet marked done (by any part)."""
    chunk_len = store.chunk_len
    touched: dict[str, set[int]] = {}
    for w in windows:
        touched.setdefault(w.chrom, set()).update(
            range(w.assign_start // chunk_len, (w.assign_end - 1) // chunk_len + 1)
        )
    missing = 0
    for chrom, chunks in touched.items():
        done = store.done_mask(chrom)
        missing += sum(1 for c in chunks if not done[c])
    return missing


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
                raise CliError(f"{where}: unknown chromosome {chrom!r} (not in {genome.path})")
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
    dnase_reader: object
    targets: tuple[int, ...] | None


def demo_genome_dir() -> Path:
    """Where the demo genome is copied for pyfaidx's index when no --fasta is given (reused)."""
    return Path(tempfile.gettempdir()) / "jaxmotif-demo-genome"


def _open_inputs(args, stream=None) -> Inputs:
    """Loads and checks checkpoint (or the demo model), FASTA, DNase and targets (no device work)."""
    from jaxmotif.io.bigwig import BigWigReader
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
    if model.config.has_dnase and not args.dnase:
        raise CliError(f"the model in {args.checkpoint} has a DNase branch: pass --dnase BW")
    if not model.config.has_dnase and args.dnase:
        raise CliError(f"the model in {args.checkpoint} is DNA-only: drop --dnase")
    if args.dnase and not Path(args.dnase).is_file():
        raise CliError(f"DNase bigWig not found: {args.dnase}")
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
    dnase_reader = BigWigReader(args.dnase) if args.dnase else None
    return Inputs(model, genome, dnase_reader, targets)


def _check_dnase_chroms(dnase_reader, chroms) -> None:
    if dnase_reader is None:
        return
    sizes = dnase_reader.chrom_sizes
    for chrom in chroms:
        if chrom not in sizes:
            raise CliError(f"chromosome {chrom!r} is not in the DNase bigWig {dnase_reader.path}")


def params_digest(params) -> str:
    """SHA-256 of every parameter leaf (path, dtype, shape, bytes): the identity of the weights."""
    import jax

    h = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        arr = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{jax.tree_util.keystr(path)}|{arr.dtype}|{arr.shape}|".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def file_identity(path) -> dict | None:
    """Absolute path, size and modification time of an input file (None for no file)."""
    if not path:
        return None
    st = os.stat(path)
    return {"path": str(Path(path).absolute()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


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
    "strict_bases": "--strict-bases",
}


def _scan_key(model, windows, args, output_names) -> dict:
    """What defines the store's content; a resume or another part must match it exactly."""
    digest = hashlib.sha256(json.dumps([list(w) for w in windows]).encode()).hexdigest()
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
        "dnase": file_identity(args.dnase),
        "strict_bases": bool(args.strict_bases),
    }


def _check_key(out: Path, old: dict, key: dict) -> None:
    for k, v in key.items():
        if old.get(k) != v:
            raise CliError(
                f"{out} was written by a different scan ({k} differs: {KEY_MEANING.get(k, k)} changed); "
                "nothing written: use the same inputs and options, or choose another --out"
            )


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
    shared = args.resume or part[1] > 1
    if out.exists() and not shared:
        if not args.overwrite:
            raise CliError(
                f"{out} exists; pass --resume to continue it, --overwrite to replace it, "
                "or choose another --out"
            )
        tmp = out.with_name(f".{out.name}.new-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        return MutmapStore.create(tmp, sizes, output_names, attrs, chunk_len=args.chunk_len), out
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            return MutmapStore.create(out, sizes, output_names, attrs, chunk_len=args.chunk_len), None
        except (OSError, StoreError):
            if not out.exists():  # another part created it between our check and rename
                raise
    try:
        store = MutmapStore(out, mode="r+")
    except StoreError as e:
        raise CliError(str(e)) from None
    _check_key(out, store.attrs.get("scan", {}), key)
    return store, None


def _swap_in(tmp: Path, out: Path) -> None:
    """Replaces ``out`` by the complete store ``tmp`` (the old store is removed only afterwards)."""
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def _sync(name: str) -> None:
    import jax

    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


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
    _check_dnase_chroms(inputs.dnase_reader, {w.chrom for w in windows})
    output_names = [model.output_names[i] for i in (inputs.targets or range(model.config.num_outputs))]
    if args.bigwig:
        for path in bigwig_paths(args.bigwig, output_names):
            check_output(path, args.overwrite, "--bigwig")
    key = _scan_key(model, windows, args, output_names)
    if Path(args.out).exists() and (args.resume or part[1] > 1):  # refuse a mismatch before the slow check
        from jaxmotif.io.zarr_store import MutmapStore, StoreError

        try:
            _check_key(Path(args.out), MutmapStore(args.out).attrs.get("scan", {}), key)
        except StoreError as e:
            raise CliError(str(e)) from None
    spans = [(w.chrom, w.start, w.end) for w in windows]
    check_sequences(genome, spans, strict=args.strict_bases, stream=stream)

    if args.part is None and part[1] > 1:  # jax.distributed: process 0 creates the store first
        opened = _open_store(args, model, genome, windows, output_names, part, key) if part[0] == 0 else None
        _sync("jaxmotif.mutmap.created")
        if opened is None:
            opened = _open_store(args, model, genome, windows, output_names, part, key)
    else:
        opened = _open_store(args, model, genome, windows, output_names, part, key)
    store, swap_to = opened
    bar = None

    def plan(total, already):
        nonlocal bar
        bar = _progress_bar(total, args.quiet, stream, initial=already)

    try:
        summary = scan_windows(
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
            progress=lambda n: bar.update(n),
            plan=plan,
            iupac="error" if args.strict_bases else "n",
        )
    except BaseException:
        if swap_to is not None:  # --overwrite: the old store stays as it was
            shutil.rmtree(store.path, ignore_errors=True)
        raise
    finally:
        if bar is not None:
            bar.close()
    if args.part is None:
        _sync("jaxmotif.mutmap.scanned")
    print(
        f"scored {summary.windows} windows ({summary.bases:,} bp) into {summary.chunks} chunks of {args.out} "
        f"in {summary.seconds:.1f} s",
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
        _swap_in(store.path, swap_to)
    return Path(args.out)


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
    n_snvs, skipped, dnase_chroms = 0, 0, set()
    spans: list[tuple[str, int, int]] = []
    iupac = 0
    for v in iter_vcf_snvs(args.vcf, genome):
        if v is None:
            skipped += 1
            continue
        n_snvs += 1
        if v.chrom not in dnase_chroms:
            _check_dnase_chroms(inputs.dnase_reader, {v.chrom})
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

    windows_per_step = args.batch_size or max(8, jax.local_device_count())
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
    _check_dnase_chroms(inputs.dnase_reader, {region.chrom})
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
    try:
        if not argv:
            run_demo()
        elif args.vcf:
            run_vcf(args)
        elif args.plot:
            run_plot(args)
        else:
            run_scan(args)
    except KeyboardInterrupt:
        print(
            "error: interrupted; finished chunks are kept, rerun with --resume to continue", file=sys.stderr
        )
        return 130
    except (CliError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
