"""``python -m jaxmotif.attribute``: attributions of genome regions, streamed into a Zarr store.

For each BED region one window of the model's input length (centred on the region, or with
``--summit-centred`` on its narrowPeak summit, column 10) is attributed by the scan engine
(:mod:`jaxmotif.scan`: FASTA/bigWig reads in a prefetch thread, int8 bases to the devices, chunk
writes in a writer thread) into the attribution store (layout: :mod:`jaxmotif.io.attribution_writer`,
read by :mod:`jaxmotif.io.attribution_store`, ``python -m jaxmotif.modisco`` and the report).
Host memory is constant in the number of regions; a killed run continues with ``--resume``;
``--part I/N`` or ``jax.distributed`` split the store's chunks between processes.
"""

import argparse
import os
import shutil
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxmotif.cli.common import (
    CliError,
    add_max_memory_arg,
    add_overwrite_arg,
    add_targets_arg,
    check_output,
    check_output_parent,
    memory_budget,
    resolve_cli_targets,
    run_cli,
)
from jaxmotif.cli.mutmap import (
    RESUME_HINT,
    add_side_args,
    check_side_args,
    check_side_chroms,
    open_side_reader,
    open_store_once,
    scan_with_bar,
    side_key,
    store_dtype_help,
)
from jaxmotif.scan import (
    ATTRIBUTE_METHODS,
    ATTRIBUTE_VALUES,
    STORE_DTYPES,
    ScanError,
    check_key,
    check_sequences,
    file_identity,
    params_digest,
    process_part,
    scan_attributions,
    stored_bytes,
    swap_in,
    sync,
    windows_digest,
)

EPILOG = """\
examples:
  # DeepSHAP hypothetical contributions of every peak's 1000-bp window, all outputs
  python -m jaxmotif.attribute --checkpoint ckpt/ --fasta hg38.fa --regions peaks.narrowPeak \\
      --summit-centred --dnase dnase.bw --method deep_lift_shap --out contribs.zarr \\
      --bigwig tracks/contrib. --modisco-npz modisco/peaks.
  # a bpnet-lite BPNet with 2 control tracks (raw-count bigWigs, plus strand then minus), gradients
  python -m jaxmotif.attribute --checkpoint bpnet_ckpt/ --fasta hg38.fa --regions peaks.narrowPeak \\
      --summit-centred --control ctl.plus.bw,ctl.minus.bw --method gradient --out bpnet.zarr
  # then TF-MoDISco on one output (or: python -m jaxmotif.modisco --attributions contribs.zarr)
  modisco motifs -s modisco/peaks.ohe.npz -a modisco/peaks.H3K27ac.hyp.npz -n 2000 -o h3k27ac.h5
  # SmoothGrad (mean-centred, hypothetical: --modisco-npz works), reproducible by --seed
  python -m jaxmotif.attribute ... --method smoothgrad --samples 50 --sigma 0.15 --seed 0 --out sg.zarr
  # resume after a crash; array job of 4 parts writing one store
  python -m jaxmotif.attribute ... --out contribs.zarr --resume
  python -m jaxmotif.attribute ... --out contribs.zarr --part 2/4
  # no arguments: the bundled demo model, genome, regions and DNase, into ./jaxmotif_attribute_demo/
  python -m jaxmotif.attribute

Store: one_hot (N, L, 4) uint8, attributions (N, L, 4, T), regions/{chrom,start,end} (the windows),
attrs method, hypothetical, values (what the numbers are), target_names, complete. The contribution
of the base present is attributions * one_hot[..., None]. gradient, grad_x_input, guided_backprop,
deconvnet, smoothgrad and ism store mean-centred values (hypothetical; ism's delta map is stored -
stored at the reference base); integrated_gradients stores contributions of the bases present.
"""

DEMO_DIR = "jaxmotif_attribute_demo"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m jaxmotif.attribute",
        description="Attributions (DeepSHAP, gradients, integrated gradients, SmoothGrad, ISM) of one "
        "model-length window per BED region, streamed into a Zarr store; bigWig and TF-MoDISco exports.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", metavar="DIR", help="jaxmotif checkpoint folder (default: the demo model)")
    p.add_argument("--fasta", metavar="GENOME.fa", help="reference genome FASTA, plain or bgzip")
    p.add_argument("--regions", metavar="BED", help="regions (BED or narrowPeak, 0-based half-open)")
    p.add_argument(
        "--summit-centred",
        action="store_true",
        help="centre each window on the region's summit (narrowPeak column 10, an offset from start; "
        "-1 or missing: the region's middle)",
    )
    add_side_args(p)
    p.add_argument(
        "--method", choices=ATTRIBUTE_METHODS, default="deep_lift_shap", help="default: %(default)s"
    )
    add_targets_arg(p)
    p.add_argument("--out", metavar="OUT.zarr", help="the attribution store to write")
    add_overwrite_arg(p)
    p.add_argument(
        "--resume", action="store_true", help="continue an interrupted scan into an existing --out"
    )
    p.add_argument("--part", metavar="I/N", help="process I (0-based) of N writing into one store")
    p.add_argument(
        "--n-shuffles", type=int, default=20, help="deep_lift_shap references (default %(default)s)"
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="deep_lift_shap shuffles' / smoothgrad noise's seed (default %(default)s; window i draws "
        "from fold_in(key(seed), i): the same numbers whatever --batch-size, --part or devices)",
    )
    p.add_argument("--steps", type=int, help="integrated_gradients path points (default 64)")
    p.add_argument("--samples", type=int, help="smoothgrad: noisy copies per window (default 50)")
    p.add_argument(
        "--sigma",
        type=float,
        help="smoothgrad: the noise's standard deviation (default 0.15; a one-hot input spans 0..1)",
    )
    p.add_argument("--logits", action="store_true", help="attribute the output before its final activation")
    p.add_argument(
        "--precision", choices=("fp32", "tf32", "bf16"), default="fp32", help="default: %(default)s"
    )
    p.add_argument(
        "--batch-size",
        type=int,
        help="windows per device step (default: from --max-memory); an input with fewer regions runs "
        "them all in one step of that many",
    )
    add_max_memory_arg(p)
    p.add_argument("--chunk-rows", type=int, default=64, help="windows per store chunk (default %(default)s)")
    p.add_argument(
        "--store-dtype",
        choices=STORE_DTYPES,
        default="float32",
        help=store_dtype_help(
            "demo model's DeepSHAP values, measured: median |value| 7e-6, 99th percentile 4e-3, largest 0.12"
        ),
    )
    p.add_argument(
        "--bigwig",
        metavar="PREFIX",
        help="also write PREFIX<target>.bw: the attribution at the reference base, per base (where "
        "windows overlap, each base from its most central window)",
    )
    p.add_argument(
        "--modisco-npz",
        metavar="PREFIX",
        help="also write PREFIXohe.npz and PREFIX<target>.hyp.npz, (N, 4, L) arrays under arr_0: the "
        "inputs of `modisco motifs -s ... -a ...` (hypothetical methods only)",
    )
    p.add_argument(
        "--strict-bases", action="store_true", help="refuse IUPAC codes instead of reading them as N"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------


class Window(NamedTuple):
    chrom: str
    start: int
    end: int


def read_peaks(path, summits: bool = True) -> list[tuple]:
    """(Region, summit offset or None) per BED line, in file order (narrowPeak column 10).

    ``summits=False`` (no ``--summit-centred``) leaves column 10 unread: in a BED that is not a
    narrowPeak (BED12, annotation columns) it means something else.
    """
    from jaxmotif.io.bed import _HEADER_PREFIXES, BedError, read_bed
    from jaxmotif.io.fasta import _open_text

    try:
        regions = read_bed(path)
    except BedError as e:
        raise CliError(str(e)) from None
    if not summits:
        return [(region, None) for region in regions]
    summits = []
    with _open_text(path) as handle:
        for line_no, raw in enumerate(handle, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip() or line.startswith(_HEADER_PREFIXES):
                continue
            fields = line.split("\t") if "\t" in line else line.split()
            summit = None
            if len(fields) >= 10:
                try:
                    summit = int(fields[9])
                except ValueError:
                    raise CliError(
                        f"{path}:{line_no}: summit (column 10) {fields[9]!r} is not an integer"
                    ) from None
                span = int(fields[2]) - int(fields[1])  # read_bed has checked both
                if summit >= span:
                    raise CliError(
                        f"{path}:{line_no}: summit (column 10) {summit} lies outside the region "
                        f"({span} bp; narrowPeak summits are offsets from the start)"
                    )
            summits.append(None if summit is None or summit < 0 else summit)
    return list(zip(regions, summits, strict=True))


def region_windows(peaks, length: int, summit_centred: bool) -> list[Window]:
    """One window of ``length`` per region: centred on its middle, or on its summit when asked."""
    out = []
    for region, summit in peaks:
        if summit_centred and summit is not None:
            centre = region.start + summit
        else:
            centre = (region.start + region.end) // 2
        start = centre - length // 2
        out.append(Window(region.chrom, start, start + length))
    return out


def _load(args, stream):
    from jaxmotif.io.fasta import Genome
    from jaxmotif.models.checkpoint import load_model

    if args.checkpoint:
        if not Path(args.checkpoint).is_dir():
            raise CliError(f"checkpoint folder {args.checkpoint} does not exist")
        model = load_model(args.checkpoint)
        if not args.fasta:
            raise CliError("--fasta is required")
    else:
        from jaxmotif.cli.mutmap import demo_genome_dir
        from jaxmotif.demo import demo_model, demo_paths, writable_genome

        model = demo_model()
        args.checkpoint = str(demo_paths().model)
        if not args.fasta:
            args.fasta = str(writable_genome(demo_genome_dir()))
            args.dnase = args.dnase or str(demo_paths().dnase)
            args.regions = args.regions or str(demo_paths().regions)
        print(f"note: no --checkpoint: using the bundled demo model ({args.checkpoint})", file=stream)
    if not args.regions:
        raise CliError("--regions is required")
    for flag, path in (("--fasta", args.fasta), ("--regions", args.regions)):
        if not Path(path).is_file():
            raise CliError(f"{flag} {path}: no such file")
    check_side_args(model, args)
    for name in ("batch_size", "chunk_rows", "n_shuffles", "steps", "samples"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise CliError(f"--{name.replace('_', '-')} {value} must be positive")
    if args.sigma is not None and not 0 <= args.sigma < float("inf"):
        raise CliError(f"--sigma {args.sigma} must be a finite number >= 0")
    targets = (
        resolve_cli_targets(model, args.targets) if args.targets else tuple(range(model.config.num_outputs))
    )
    genome = Genome(args.fasta)
    return model, genome, open_side_reader(args), tuple(targets)


def default_batch(model, method: str, n_targets: int, n_shuffles: int, args) -> int:
    """Windows per device step: --batch-size, else what --max-memory allows (at most 64)."""
    from jaxmotif.attribution import gradient_chunks

    if args.batch_size:
        return args.batch_size
    rows, _ = gradient_chunks(model, 64, n_targets, memory_budget(args), None)
    if method == "deep_lift_shap":  # 2R model rows (inputs and references) per window
        return max(1, min(rows, 64) // (2 * n_shuffles)) or 1
    if method == "ism":
        return 1
    if method == "integrated_gradients":
        return max(1, min(rows, 8))
    if method == "smoothgrad":  # windows per step holding their noisy copies
        from jaxmotif.integrated import SMOOTHGRAD_SAMPLES, smoothgrad_plan

        n, _, _ = smoothgrad_plan(
            model,
            memory_budget(args),
            sequences=64,
            samples=args.samples or SMOOTHGRAD_SAMPLES,
            targets=n_targets,
            length=model.config.seq_len,
        )
        return n
    return max(1, min(rows, 64))


KEY_MEANING = {
    "config": "the model's config",
    "params_sha256": "the model's weights (another checkpoint)",
    "method": "--method",
    "targets": "--targets",
    "precision": "--precision",
    "logits": "--logits",
    "n_shuffles": "--n-shuffles",
    "seed": "--seed",
    "steps": "--steps",
    "samples": "--samples",
    "sigma": "--sigma",
    "windows_sha256": "the regions (--regions/--summit-centred)",
    "dnase_transform": "--dnase-transform",
    "fasta": "the FASTA file (path, size or modification time)",
    "dnase": "the DNase bigWig (path, size or modification time)",
    "control": "the control bigWigs (--control: paths, order, sizes or modification times)",
    "strict_bases": "--strict-bases",
    "store_dtype": "--store-dtype",
    "chunk_rows": "--chunk-rows",
}


def scan_key(model, windows, args, target_names) -> dict:
    import json

    from jaxmotif.integrated import SMOOTHGRAD_SAMPLES, SMOOTHGRAD_SIGMA

    dls = args.method == "deep_lift_shap"
    sg = args.method == "smoothgrad"
    return {
        "config": json.loads(model.config.to_json()),
        "params_sha256": params_digest(model.params),
        "method": args.method,
        "targets": list(target_names),
        "precision": args.precision,
        "logits": bool(args.logits),
        "n_shuffles": args.n_shuffles if dls else None,
        "seed": args.seed if dls or sg else None,
        "steps": (args.steps or 64) if args.method == "integrated_gradients" else None,
        "samples": (args.samples or SMOOTHGRAD_SAMPLES) if sg else None,
        "sigma": (SMOOTHGRAD_SIGMA if args.sigma is None else args.sigma) if sg else None,
        "windows_sha256": windows_digest(windows),
        "dnase_transform": args.dnase_transform,
        "fasta": file_identity(args.fasta),
        **side_key(args),
        "strict_bases": bool(args.strict_bases),
        "store_dtype": args.store_dtype,
        "chunk_rows": args.chunk_rows,
    }


def export_paths(args, target_names) -> list[Path]:
    paths = []
    if args.bigwig:
        paths += [Path(f"{args.bigwig}{name}.bw") for name in target_names]
    if args.modisco_npz:
        paths += [Path(f"{args.modisco_npz}ohe.npz")]
        paths += [Path(f"{args.modisco_npz}{name}.hyp.npz") for name in target_names]
    return paths


def _open_store(args, windows, target_names, part, key, attrs):
    from jaxmotif.io.attribution_writer import AttributionStoreWriter, AttributionWriterError

    out = Path(args.out)
    length = windows[0].end - windows[0].start
    create = {"chunk_rows": args.chunk_rows, "store_dtype": args.store_dtype}
    shared = args.resume or part[1] > 1
    if out.exists() and not shared:
        if not args.overwrite:
            raise CliError(
                f"{out} exists; pass --resume to continue it, --overwrite to replace it, "
                "or choose another --out"
            )
        tmp = out.with_name(f".{out.name}.new-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        return AttributionStoreWriter.create(tmp, windows, length, target_names, attrs, **create), out
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            return AttributionStoreWriter.create(out, windows, length, target_names, attrs, **create), None
        except (OSError, AttributionWriterError):
            if not out.exists():  # another part created it between our check and rename
                raise
    try:
        store = AttributionStoreWriter(out)
    except AttributionWriterError as e:
        raise CliError(str(e)) from None
    _check_key(out, store.attrs.get("scan", {}), key)
    return store, None


def _check_key(out, old, key):
    try:
        check_key(out, old, key, KEY_MEANING)
    except ScanError as e:
        raise CliError(str(e)) from None


# ---------------------------------------------------------------------------------------------
# Exports
# ---------------------------------------------------------------------------------------------


def assigned_spans(windows: Sequence[Window], chrom_sizes) -> list[tuple[int, int]]:
    """Per window, the bases it reports in a track: where windows overlap, each base goes to the
    window whose centre is nearest (ties: the earlier); clipped to the chromosome; maybe empty."""
    spans = [(0, 0)] * len(windows)
    by_chrom: dict[str, list[int]] = {}
    for i, w in enumerate(windows):
        by_chrom.setdefault(w.chrom, []).append(i)
    for chrom, rows in by_chrom.items():
        rows.sort(key=lambda i: (windows[i].start, i))
        lo = 0
        for j, i in enumerate(rows):
            w = windows[i]
            hi = min(w.end, chrom_sizes[chrom])
            if j + 1 < len(rows):
                nxt = windows[rows[j + 1]]
                hi = min(hi, (w.start + w.end + nxt.start + nxt.end) // 4 + 1)  # midpoint of centres
            a = max(lo, w.start, 0)
            spans[i] = (a, max(a, hi))
            lo = max(lo, hi)
    return spans


def write_bigwigs(store, prefix: str, chrom_sizes) -> list[Path]:
    """``{prefix}{target}.bw``: the attribution at the reference base of every window's assigned bases."""
    from jaxmotif.io.bigwig import write_bigwig

    windows = [Window(*r) for r in store.regions()]
    spans = assigned_spans(windows, chrom_sizes)
    names = store.attrs["target_names"]
    tracks: list[list] = [[] for _ in names]
    for k in range(store.n_chunks):
        a, b = store.chunk_span(k)
        one_hot, attr = store.read_rows(a, b)
        at_ref = np.einsum("nlbt,nlb->nlt", attr, one_hot.astype(np.float32))  # (n, L, T)
        n_base = one_hot.sum(axis=-1) == 0
        at_ref[n_base] = np.nan  # N: no data
        for i in range(b - a):
            w = windows[a + i]
            s0, s1 = spans[a + i]
            if s1 <= s0:
                continue
            for t in range(len(names)):
                tracks[t].append((w.chrom, s0, at_ref[i, s0 - w.start : s1 - w.start, t]))
    paths = []
    for t, name in enumerate(names):
        path = Path(f"{prefix}{name}.bw")
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bigwig(path, chrom_sizes, tracks[t])
        paths.append(path)
    return paths


def _npz_stream(path: Path, shape: tuple[int, ...], blocks) -> None:
    """An .npz holding one float32/uint8 array ``arr_0`` of ``shape``, written block by block
    (constant memory), atomically."""
    from jaxmotif.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        with (
            zipfile.ZipFile(tmp, "w", allowZip64=True) as zf,
            zf.open("arr_0.npy", "w", force_zip64=True) as f,
        ):
            header_written = False
            for block in blocks:
                if not header_written:
                    np.lib.format.write_array_header_2_0(
                        f,
                        {
                            "descr": np.lib.format.dtype_to_descr(block.dtype),
                            "fortran_order": False,
                            "shape": shape,
                        },
                    )
                    header_written = True
                f.write(np.ascontiguousarray(block).tobytes())


def write_modisco_npz(store, prefix: str) -> list[Path]:
    """``{prefix}ohe.npz`` and ``{prefix}{target}.hyp.npz``: (N, 4, L) float32 under ``arr_0``."""
    names = store.attrs["target_names"]
    n, length = store.n, store.length
    shape = (n, 4, length)

    def blocks(t):
        for k in range(store.n_chunks):
            one_hot, attr = store.read_rows(*store.chunk_span(k))
            yield (one_hot if t is None else attr[..., t]).transpose(0, 2, 1).astype(np.float32)

    paths = [Path(f"{prefix}ohe.npz")] + [Path(f"{prefix}{name}.hyp.npz") for name in names]
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    _npz_stream(paths[0], shape, blocks(None))
    for t in range(len(names)):
        _npz_stream(paths[t + 1], shape, blocks(t))
    return paths


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------


def run_scan(args, *, stream=None) -> Path:
    stream = sys.stderr if stream is None else stream
    from jaxmotif.io.bed import BedError, validate_regions

    if not args.out and args.checkpoint:
        raise CliError("--out is required")
    part_spec = args.part
    try:
        part = process_part(part_spec)
    except ScanError as e:
        raise CliError(str(e)) from None
    model, genome, dnase_reader, targets = _load(args, stream)
    if not args.out:
        raise CliError("--out is required")
    peaks = read_peaks(args.regions, args.summit_centred)
    if not peaks:
        raise CliError(f"{args.regions} holds no regions")
    try:
        validate_regions([r for r, _ in peaks], genome.chrom_sizes)
    except BedError as e:
        raise CliError(str(e)) from None
    length = model.config.seq_len
    windows = region_windows(peaks, length, args.summit_centred)
    check_side_chroms(dnase_reader, {w.chrom for w in windows}, genome.chrom_sizes, stream)
    target_names = [model.output_names[t] for t in targets]
    hypothetical = args.method != "integrated_gradients"
    if args.modisco_npz and not hypothetical:
        raise CliError(f"--modisco-npz needs hypothetical contributions; --method {args.method} gives none")
    for path in export_paths(args, target_names):
        check_output(
            path,
            args.overwrite,
            "--bigwig" if args.bigwig and str(path).startswith(args.bigwig) else "--modisco-npz",
        )
    out = Path(args.out)
    check_output_parent(out)
    if out.exists() and not (args.resume or part[1] > 1 or args.overwrite):  # before any slow work
        raise CliError(
            f"{out} exists; pass --resume to continue it, --overwrite to replace it, or choose another --out"
        )
    key = scan_key(model, windows, args, target_names)
    if out.exists() and (args.resume or part[1] > 1):  # refuse a mismatch before the slow check
        from jaxmotif.io.attribution_writer import AttributionStoreWriter, AttributionWriterError

        try:
            _check_key(out, AttributionStoreWriter(out).attrs.get("scan", {}), key)
        except AttributionWriterError as e:
            raise CliError(str(e)) from None
    try:
        check_sequences(
            genome, [(w.chrom, w.start, w.end) for w in windows], strict=args.strict_bases, stream=stream
        )
    except ScanError as e:
        raise CliError(str(e)) from None
    attrs = {
        "method": args.method,
        "hypothetical": hypothetical,
        "values": ATTRIBUTE_VALUES[args.method],
        "model": str(Path(args.checkpoint).absolute()),
        "params_sha256": key["params_sha256"],
        "scan": key,
        "args": {k: v for k, v in vars(args).items() if v is not None},
    }
    store, swap_to = open_store_once(
        lambda: _open_store(args, windows, target_names, part, key, attrs),
        part,
        part_spec is None,
        "jaxmotif.attribute.created",
    )

    def progress_bar(total, already):
        from tqdm.auto import tqdm

        return tqdm(
            total=total, initial=already, unit="region", desc="attribute", disable=args.quiet, file=stream
        )

    summary = scan_with_bar(
        store,
        swap_to,
        progress_bar,
        lambda progress, plan: scan_attributions(
            model,
            genome,
            windows,
            store,
            method=args.method,
            targets=targets,
            dnase_reader=dnase_reader,
            dnase_transform=args.dnase_transform,
            precision=args.precision,
            logits=args.logits,
            batch_size=default_batch(model, args.method, len(targets), args.n_shuffles, args),
            n_shuffles=args.n_shuffles,
            seed=args.seed,
            steps=args.steps,
            samples=args.samples,
            sigma=args.sigma,
            max_memory=memory_budget(args),
            part=part,
            progress=progress,
            plan=plan,
            iupac="error" if args.strict_bases else "n",
            store_dtype=args.store_dtype,
        ),
    )
    if part_spec is None:
        sync("jaxmotif.attribute.scanned")
    print(
        f"attributed {summary.rows} regions into {summary.chunks} chunks of {args.out} "
        f"in {summary.seconds:.1f} s",
        file=stream,
    )
    lead = part_spec is not None or part[0] == 0
    if not lead:
        return out
    missing = int((~store.done_mask()).sum())
    if missing:
        print(
            f"store not complete yet: {missing} chunks are left to other parts; once every part has "
            "finished, run the same command with --resume (and any --bigwig/--modisco-npz) and no --part",
            file=stream,
        )
    else:
        store.mark_complete()
        n_bases = store.n * store.length
        print(
            f"store: {stored_bytes(store.path) / n_bases:.1f} bytes per base ({len(target_names)} "
            f"targets x 4 bases, {args.store_dtype}, Zarr-compressed)",
            file=stream,
        )
        if args.bigwig:
            paths = write_bigwigs(store, args.bigwig, genome.chrom_sizes)
            print(f"wrote {len(paths)} bigWig tracks: {paths[0]} ...", file=stream)
        if args.modisco_npz:
            paths = write_modisco_npz(store, args.modisco_npz)
            print(f"wrote TF-MoDISco inputs: {paths[0]}, {paths[1]} ...", file=stream)
    if swap_to is not None:
        swap_in(store.path, swap_to)
    return out


def run_demo(stream=None, out_dir: str | os.PathLike = DEMO_DIR) -> Path:
    """The bundled demo: DeepSHAP of the demo regions, bigWig tracks and TF-MoDISco inputs,
    into ``out_dir``."""
    stream = sys.stdout if stream is None else stream
    from jaxmotif.demo import demo_paths, writable_genome

    paths = demo_paths()
    out_dir = Path(out_dir)
    genome = writable_genome(out_dir / "genome")
    argv = ["--checkpoint", str(paths.model), "--fasta", str(genome), "--dnase", str(paths.dnase)]
    argv += ["--regions", str(paths.regions), "--out", str(out_dir / "contribs.zarr"), "--overwrite"]
    argv += [
        "--bigwig",
        str(out_dir / "tracks" / "contrib."),
        "--modisco-npz",
        str(out_dir / "modisco" / "demo."),
    ]
    run_scan(build_parser().parse_args(argv))
    print(f"demo outputs in {out_dir}:", file=stream)
    for p in sorted(out_dir.iterdir()):
        if p.name != "genome" and not p.name.startswith("."):
            print(f"  {p}", file=stream)
    return out_dir


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)

    def body():
        if not argv:
            run_demo()
        else:
            run_scan(args)

    return run_cli(body, catch=(ValueError, FileNotFoundError), interrupted=RESUME_HINT)


if __name__ == "__main__":
    sys.exit(main())
