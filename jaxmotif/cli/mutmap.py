"""``python -m jaxmotif.mutmap``: genome-scale mutation maps into a Zarr store.

Regions (BED or whole chromosomes) are tiled with windows of the model's length
(:mod:`jaxmotif.tiling`), every window's 3·L substitutions are scored by
:func:`jaxmotif.ism.compiled_mutation_map` on all local devices, and each base's scores land in
``OUT.zarr/<chrom>/scores`` at its genome coordinate (:mod:`jaxmotif.io.zarr_store`). Other modes:
``--vcf`` scores listed SNVs into a TSV, ``--plot`` draws one window's DeepBind view.

Work is split by store chunk: a chunk is written whole once every window touching it is scored,
then marked done, so a killed run loses at most the chunks in flight and ``--resume`` redoes
exactly those. For several processes (``jax.distributed`` on a multi-host TPU/GPU slice, or
``--part I/N`` for cluster array jobs) process ``i`` owns chunks ``i::N`` of the store and scores
the windows touching them; windows straddling two processes' chunks are scored by both (a
fraction of about window/chunk_len extra work), and no two processes ever write the same file.
"""

import argparse
import contextlib
import gzip
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxmotif.io.atomic import atomic_write_text

EPILOG = """\
examples:
  # every base of the BED regions, all outputs, delta scores, bigWig summaries for a browser
  python -m jaxmotif.mutmap --checkpoint ckpt/ --fasta hg38.fa --regions peaks.bed \\
      --dnase dnase.bw --out peaks_mutmap.zarr --bigwig tracks/peaks.
  # whole chromosomes, two outputs, DeepBind's score, fast ISM in bf16; resume after a crash
  python -m jaxmotif.mutmap --checkpoint ckpt/ --fasta hg38.fa --chrom chr21 chr22 \\
      --dnase dnase.bw --out chr21_22.zarr --targets H3K27ac,H3K4me3 --score deepbind \\
      --method fast --precision bf16 --resume
  # just some SNVs, into a TSV
  python -m jaxmotif.mutmap --checkpoint ckpt/ --fasta hg38.fa --dnase dnase.bw --vcf snvs.vcf --out snvs.tsv
  # the DeepBind figure of one window
  python -m jaxmotif.mutmap --checkpoint ckpt/ --fasta hg38.fa --dnase dnase.bw \\
      --plot chr1:1000500-1000560 --out site.png
  # no arguments: the bundled demo model, genome, regions and DNase
  python -m jaxmotif.mutmap

Read the store with zarr or jaxmotif.io.zarr_store.open_mutmap(path).read(chrom, start, end).
Several hosts: start every process with jax.distributed.initialize() (or use --part I/N in an
array job); all write into the same --out store, each its own chunks.
"""

SUMMARIES = ("mean", "maxabs")
DEMO_DIR_PREFIX = "jaxmotif-mutmap-demo-"


class CliError(Exception):
    """Bad input detected before any device work; printed as one ``error: ...`` line."""


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
    p.add_argument("--checkpoint", metavar="DIR", help="jaxmotif checkpoint folder (python -m convert)")
    p.add_argument("--fasta", metavar="GENOME.fa", help="reference genome FASTA (plain or bgzip)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--regions", metavar="BED", help="regions to scan (BED, 0-based half-open)")
    where.add_argument("--chrom", nargs="+", metavar="CHROM", help="scan these whole chromosomes")
    where.add_argument("--vcf", metavar="FILE", help="score only these SNVs (VCF, plain or gzip) into a TSV")
    where.add_argument("--plot", metavar="CHROM:START-END", help="draw the DeepBind view of one window")
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
    p.add_argument(
        "--score", choices=("raw", "delta", "deepbind"), default="delta", help="default: %(default)s"
    )
    p.add_argument("--targets", help="comma-separated output names or indices (default: all outputs)")
    p.add_argument("--stride", type=int, help="window stride in bp (default: the window length)")
    p.add_argument(
        "--precision", choices=("fp32", "tf32", "bf16"), default="fp32", help="default: %(default)s"
    )
    p.add_argument(
        "--method",
        choices=("full", "fast"),
        default="fast",
        help="ISM kernel: fast recomputes only what a substitution reaches, exact (default: %(default)s)",
    )
    p.add_argument("--bigwig", metavar="PREFIX", help="also write PREFIX<target>.{mean,maxabs}.bw summaries")
    p.add_argument(
        "--resume", action="store_true", help="continue an interrupted scan into an existing --out"
    )
    p.add_argument("--batch-size", type=int, help="windows per device step (default: one per local device)")
    p.add_argument("--mutant-chunk", type=int, help="mutants evaluated at once per window (default: 512)")
    p.add_argument(
        "--chunk-len", type=int, default=65536, help="store chunk length in bp (default: %(default)s)"
    )
    p.add_argument(
        "--part",
        metavar="I/N",
        help="process I (0-based) of N writing into one store (array jobs; set by jax.distributed otherwise)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _targets(model, text: str | None):
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise CliError(f"--targets {text!r} names no output")
    out = []
    for item in items:
        out.append(int(item) if item.lstrip("-").isdigit() else item)
    from jaxmotif.ism import resolve_target_list

    try:
        return resolve_target_list(model, out)
    except ValueError as e:
        raise CliError(f"--targets: {e}") from None


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
    windows, genome, alphabet: str, dnase_reader=None, dnase_transform: str = "none"
) -> WindowInputs:
    """One-hot, reference indices and DNase of windows (N- and zero-padded past chromosome ends)."""
    from jaxmotif.sequence import encode_indices, one_hot_from_indices

    ref = np.stack(
        [
            encode_indices(
                genome.fetch(w.chrom, w.start, w.end), alphabet, name=f"{w.chrom}:{w.start}-{w.end}"
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
) -> ScanSummary:
    """Scores ``windows`` (from :func:`jaxmotif.tiling.tile_regions`) into ``store``.

    Skips chunks already marked done and chunks owned by other parts; writes each remaining chunk
    whole once all its windows are scored, then marks it done. ``progress`` gets assigned bases.
    """
    import jax
    from jax.sharding import NamedSharding, PartitionSpec

    from jaxmotif.batching import BATCH_AXIS, batch_mesh
    from jaxmotif.ism import compiled_mutation_map

    t0 = time.perf_counter()
    part_index, part_count = part
    chunk_len = store.chunk_len
    chroms = list(dict.fromkeys(w.chrom for w in windows))
    # Global chunk numbers, so parts are balanced across chromosomes.
    todo: dict[str, set[int]] = {}
    base = 0
    for chrom in store.chroms_in_order():
        n = store.n_chunks(chrom)
        if chrom in chroms:
            done = store.done_mask(chrom)
            todo[chrom] = {c for c in range(n) if (base + c) % part_count == part_index and not done[c]}
        base += n
    pending: dict[tuple[str, int], int] = {}
    needed = []
    for w in windows:
        first, last = w.assign_start // chunk_len, (w.assign_end - 1) // chunk_len
        touched = [c for c in range(first, last + 1) if c in todo[w.chrom]]
        if touched:
            needed.append((w, touched))
            for c in touched:
                pending[w.chrom, c] = pending.get((w.chrom, c), 0) + 1
    if not needed:
        return ScanSummary(0, 0, 0, time.perf_counter() - t0)

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
        inputs = read_windows(ws, genome, model.config.alphabet, dnase_reader, dnase_transform)
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


class Variant(NamedTuple):
    chrom: str
    pos: int  # 1-based, as in VCF
    id: str
    ref: str
    alt: str


def read_vcf_snvs(path, genome) -> tuple[list[Variant], int]:
    """SNVs of a VCF (plain or gzip), REF checked against the genome; (variants, skipped non-SNVs)."""
    path = Path(path)
    if not path.is_file():
        raise CliError(f"VCF file not found: {path}")
    with open(path, "rb") as probe:
        opener = gzip.open if probe.read(2) == b"\x1f\x8b" else open
    variants, skipped = [], 0
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
                    skipped += 1
                    continue
                genome_base = genome.fetch(chrom, pos - 1, pos).upper()
                if genome_base != ref.upper():
                    raise CliError(
                        f"{where}: REF {ref!r} does not match the genome's {genome_base!r} at {chrom}:{pos}"
                    )
                variants.append(Variant(chrom, pos, vid, ref.upper(), alt.upper()))
    return variants, skipped


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------


class Inputs(NamedTuple):
    model: object
    genome: object
    dnase_reader: object
    targets: tuple[int, ...] | None


def _open_inputs(args) -> Inputs:
    """Loads and checks checkpoint, FASTA, DNase and targets (no device work)."""
    from jaxmotif.io.bigwig import BigWigReader
    from jaxmotif.io.fasta import Genome
    from jaxmotif.models.checkpoint import load_model

    if not args.checkpoint:
        raise CliError("--checkpoint is required (or run without arguments for the demo)")
    if not args.fasta:
        raise CliError("--fasta is required")
    if not Path(args.checkpoint).is_dir():
        raise CliError(f"checkpoint folder {args.checkpoint} does not exist")
    if not Path(args.fasta).is_file():
        raise CliError(f"genome FASTA not found: {args.fasta}")
    model = load_model(args.checkpoint)
    if model.config.has_dnase and not args.dnase:
        raise CliError(f"the model in {args.checkpoint} has a DNase branch: pass --dnase BW")
    if not model.config.has_dnase and args.dnase:
        raise CliError(f"the model in {args.checkpoint} is DNA-only: drop --dnase")
    if args.stride is not None and not 1 <= args.stride <= model.config.seq_len:
        raise CliError(
            f"--stride {args.stride} must be between 1 and the window length {model.config.seq_len}"
        )
    for name in ("batch_size", "mutant_chunk", "chunk_len"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise CliError(f"--{name.replace('_', '-')} {value} must be positive")
    targets = _targets(model, args.targets)
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


def _scan_key(model, windows, args, output_names) -> dict:
    """What defines the store's content; a resume must match it exactly."""
    digest = hashlib.sha256(json.dumps([list(w) for w in windows]).encode()).hexdigest()
    return {
        "config": json.loads(model.config.to_json()),
        "score": args.score,
        "outputs": list(output_names),
        "window": model.config.seq_len,
        "stride": args.stride or model.config.seq_len,
        "windows_sha256": digest,
        "dnase_transform": args.dnase_transform,
    }


def _open_store(args, model, genome, windows, output_names, part):
    from jaxmotif.io.zarr_store import MutmapStore, StoreError

    out = Path(args.out)
    key = _scan_key(model, windows, args, output_names)
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
        raise CliError(f"{out} exists; pass --resume to continue it, or choose another --out")
    if not out.exists():
        if not out.parent.is_dir():
            raise CliError(f"output folder {out.parent} does not exist")
        try:
            return MutmapStore.create(out, sizes, output_names, attrs, chunk_len=args.chunk_len)
        except OSError:
            if not out.exists():  # another part created it between our check and rename
                raise
    try:
        store = MutmapStore(out, mode="r+")
    except StoreError as e:
        raise CliError(str(e)) from None
    old = store.attrs.get("scan", {})
    for k, v in key.items():
        if old.get(k) != v:
            raise CliError(f"{out} was written by a different scan ({k} differs); choose another --out")
    return store


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
    inputs = _open_inputs(args)
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
    if args.bigwig and not Path(args.bigwig + "x").parent.is_dir():
        raise CliError(f"--bigwig folder {Path(args.bigwig + 'x').parent} does not exist")

    if args.part is None and part[1] > 1:  # jax.distributed: process 0 creates the store first
        store = _open_store(args, model, genome, windows, output_names, part) if part[0] == 0 else None
        _sync("jaxmotif.mutmap.created")
        if store is None:
            store = _open_store(args, model, genome, windows, output_names, part)
    else:
        store = _open_store(args, model, genome, windows, output_names, part)
    total = sum(w.assign_end - w.assign_start for w in windows)
    bar = _progress_bar(total, args.quiet, stream)
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
            progress=bar.update,
        )
    finally:
        bar.close()
    if args.part is None:
        _sync("jaxmotif.mutmap.scanned")
    print(
        f"scored {summary.windows} windows ({summary.bases:,} bp) into {summary.chunks} chunks of {args.out} "
        f"in {summary.seconds:.1f} s",
        file=stream,
    )
    if args.bigwig and part[0] == 0 and (part[1] == 1 or args.part is None):
        paths = write_summary_bigwigs(store, args.bigwig, args.score, genome.chrom_sizes)
        print(f"wrote {len(paths)} bigWig summaries: {paths[0]} ...", file=stream)
    return Path(args.out)


def _progress_bar(total: int, quiet: bool, stream):
    from tqdm.auto import tqdm

    return tqdm(
        total=total, unit="bp", unit_scale=True, desc="mutmap", disable=quiet, file=stream, smoothing=0.1
    )


def run_vcf(args, *, stream=None) -> Path:
    stream = sys.stderr if stream is None else stream
    from jaxmotif.ism import mutation_map, score_mutations
    from jaxmotif.tiling import tile_region

    if not args.out:
        raise CliError("--out is required (the TSV to write)")
    out = Path(args.out)
    if not out.parent.is_dir():
        raise CliError(f"output folder {out.parent} does not exist")
    inputs = _open_inputs(args)
    model, genome = inputs.model, inputs.genome
    variants, skipped = read_vcf_snvs(args.vcf, genome)
    _check_dnase_chroms(inputs.dnase_reader, {v.chrom for v in variants})
    targets = inputs.targets or tuple(range(model.config.num_outputs))
    length = model.config.seq_len
    sites = list(dict.fromkeys((v.chrom, v.pos - 1) for v in variants))
    windows = [tile_region(c, p, p + 1, length)[0] for c, p in sites]
    rows = []
    header = ["chrom", "pos", "id", "ref", "alt"]
    for t in targets:
        name = model.output_names[t]
        header += [f"{name}:p_ref", f"{name}:p_alt", f"{name}:{args.score}"]
    if windows:
        data = read_windows(windows, genome, model.config.alphabet, inputs.dnase_reader, args.dnase_transform)
        bar = _progress_bar(len(windows) * length, args.quiet, stream)
        try:
            raw = mutation_map(
                model,
                data.seq,
                data.dnase,
                score="raw",
                targets=targets,
                precision=args.precision,
                method=args.method,
                batch_size=args.batch_size,
                mutant_chunk=args.mutant_chunk,
                progress=lambda n: bar.update(n * length),
            )
        finally:
            bar.close()
        site_index = {s: i for i, s in enumerate(sites)}
        alphabet = model.config.alphabet
        for v in variants:
            i = site_index[(v.chrom, v.pos - 1)]
            w = windows[i]
            at = v.pos - 1 - w.start
            p_ref = raw[i, at, alphabet.index(v.ref)]  # (T',)
            scored = np.asarray(
                score_mutations(raw[i, at : at + 1], p_ref, data.seq[i, at : at + 1], args.score)
            )
            row = [v.chrom, str(v.pos), v.id, v.ref, v.alt]
            p_alt = raw[i, at, alphabet.index(v.alt)]
            s_alt = scored[0, alphabet.index(v.alt)]
            for k in range(len(targets)):
                row += [f"{p_ref[k]:.6g}", f"{p_alt[k]:.6g}", f"{s_alt[k]:.6g}"]
            rows.append(row)
    atomic_write_text(out, "\n".join("\t".join(r) for r in [header, *rows]) + "\n")
    note = f" ({skipped} non-SNV alleles skipped)" if skipped else ""
    print(f"scored {len(rows)} SNVs into {out}{note}", file=stream)
    return out


def run_plot(args, *, stream=None) -> Path:
    stream = sys.stderr if stream is None else stream
    from jaxmotif import plot
    from jaxmotif.io.bed import BedError, parse_region, validate_regions
    from jaxmotif.ism import mutation_map
    from jaxmotif.tiling import tile_region

    if not args.out:
        raise CliError("--out is required (the figure to write: .png, .pdf or .svg)")
    out = Path(args.out)
    if out.suffix.lower() not in plot.FIGURE_SUFFIXES:
        raise CliError(f"--out {out} must end with one of {plot.FIGURE_SUFFIXES} with --plot")
    if not out.parent.is_dir():
        raise CliError(f"output folder {out.parent} does not exist")
    try:
        region = parse_region(args.plot)
    except BedError as e:
        raise CliError(str(e)) from None
    inputs = _open_inputs(args)
    model, genome = inputs.model, inputs.genome
    try:
        validate_regions([region], genome.chrom_sizes)
    except BedError as e:
        raise CliError(str(e)) from None
    length = model.config.seq_len
    if region.end - region.start > length:
        raise CliError(f"--plot {args.plot} is longer than one window ({length} bp)")
    _check_dnase_chroms(inputs.dnase_reader, {region.chrom})
    (window,) = tile_region(region.chrom, region.start, region.end, length)
    data = read_windows([window], genome, model.config.alphabet, inputs.dnase_reader, args.dnase_transform)
    targets = inputs.targets or tuple(range(model.config.num_outputs))
    scores = mutation_map(
        model,
        data.seq,
        data.dnase,
        score=args.score,
        targets=targets,
        precision=args.precision,
        method=args.method,
    )[0]
    a, b = region.start - window.start, region.end - window.start
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        len(targets), 1, figsize=(max(6.0, min(0.15 * (b - a) + 2, 40.0)), 3.0 * len(targets)), squeeze=False
    )
    try:
        for k, t in enumerate(targets):
            plot.mutation_map(
                axes[k, 0],
                scores[a:b, :, k],
                data.seq[0, a:b],
                model.config.alphabet,
                title=f"{model.output_names[t]}  {region}",
                start=region.start,
                label=args.score,
            )
        fig.tight_layout()
        tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp{out.suffix}")
        fig.savefig(tmp, dpi=150, bbox_inches="tight")
        os.replace(tmp, out)
    finally:
        plt.close(fig)
    print(f"wrote {out}", file=stream)
    return out


def _demo_view(paths, read_bed) -> tuple[str, str]:
    """A planted site, inside a demo region, of a motif that alone drives an output, and that output;
    else a region's middle and output 0."""
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
            return f"{site.chrom}:{max(middle - 25, 0)}-{middle + 25}", wanted[site.name]
    first = regions[0]
    middle = (first.start + first.end) // 2
    return f"{first.chrom}:{max(middle - 25, 0)}-{middle + 25}", "0"


def run_demo(stream=None) -> Path:
    """The bundled demo: scan the demo regions, bigWig summaries and one figure, in a new temp folder."""
    stream = sys.stdout if stream is None else stream
    from jaxmotif.demo import demo_paths, writable_genome
    from jaxmotif.io.bed import read_bed

    paths = demo_paths()
    out_dir = Path(tempfile.mkdtemp(prefix=DEMO_DIR_PREFIX))
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
        ]
    )
    run_scan(scan)
    view, target = _demo_view(paths, read_bed)
    run_plot(
        parser.parse_args(
            [*common, "--plot", view, "--targets", target, "--out", str(out_dir / "mutmap.png")]
        )
    )
    print(f"demo outputs in {out_dir}:", file=stream)
    for p in sorted(out_dir.iterdir()):
        if p.name != "genome":
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
