"""The genome-scan engine: windows of genome sequence -> any per-window kernel -> a chunked store.

Used by ``python -m jaxmotif.mutmap`` (mutation maps at genome coordinates) and
``python -m jaxmotif.attribute`` (per-region attributions); a notebook calls the same code through
:func:`scan_mutations` and :func:`attribute_regions`.

The pipeline (:func:`pipelined`) overlaps host and device work, so a scan runs at the kernel's
speed when the host keeps up:

- a prefetch thread reads FASTA (and bigWig) for the next batches and encodes them as int8 base
  indices (``-1`` for N; 1 byte per base sent to the device instead of 16 for float one-hot: the
  one-hot is built on the device, :func:`indices_kernel`), bounded by ``prefetch`` batches;
- the main thread only dispatches: puts a batch on the devices (sharded over the local batch mesh),
  starts the kernel and the asynchronous copy of its result back to the host;
- a writer thread waits for each result and writes the store chunks it completes, bounded by
  ``pending`` batches, so host memory stays constant whatever the number of windows.

Work is split by store chunk: a chunk is written whole once every window touching it is done, then
marked done, so a killed run loses only the chunks in flight and a resume redoes exactly those.
With several processes (``jax.distributed`` or ``--part I/N``) process ``i`` owns chunks ``i::N``.
"""

import hashlib
import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

import numpy as np


class ScanError(ValueError):
    """Bad scan input or an incompatible store; the message names the culprit."""


# ---------------------------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------------------------

_END = object()


class _Failed(NamedTuple):
    error: BaseException


def pipelined(
    batches: Iterable,
    prepare: Callable,
    launch: Callable,
    finish: Callable,
    *,
    prefetch: int = 2,
    pending: int = 2,
) -> None:
    """Runs ``finish(batch, prepared, launch(prepared))`` for every batch, host and device overlapped.

    prepare(batch) -> prepared: host work (file reads, encoding), in a prefetch thread, at most
        ``prefetch`` batches ahead.
    launch(prepared) -> device result (a pytree of jax arrays): called on the calling thread; it must
        only dispatch (jax is asynchronous), and the copy back to the host is started at once.
    finish(batch, prepared, host_result): in a writer thread, batches in order, with the result as
        NumPy arrays; at most ``pending`` launched batches wait for it.

    An exception in any stage stops the others and is raised here (the writer's own first).
    """
    import jax

    stop = threading.Event()
    ready: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
    done: queue.Queue = queue.Queue(maxsize=max(1, pending))
    failures: list[BaseException] = []

    def put(q, item):  # gives up once the pipeline is stopped, so no thread hangs on a full queue
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def producer():
        try:
            for batch in batches:
                if stop.is_set():
                    return
                if not put(ready, (batch, prepare(batch))):
                    return
            put(ready, _END)
        except BaseException as err:  # handed to the main thread, which raises it
            put(ready, _Failed(err))

    def writer():
        while True:
            item = done.get()
            if item is _END:
                return
            if failures or stop.is_set():
                continue  # drain without writing: the run is being stopped
            batch, prepared, result = item
            try:
                host = jax.tree_util.tree_map(np.asarray, result)  # waits for this batch only
                finish(batch, prepared, host)
            except BaseException as err:
                failures.append(err)
                stop.set()

    threads = [threading.Thread(target=producer, daemon=True), threading.Thread(target=writer, daemon=True)]
    for t in threads:
        t.start()
    try:
        while not failures:
            try:
                item = ready.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is _END:
                break
            if isinstance(item, _Failed):
                raise item.error
            batch, prepared = item
            result = launch(prepared)
            for leaf in jax.tree_util.tree_leaves(result):
                if hasattr(leaf, "copy_to_host_async"):
                    leaf.copy_to_host_async()
            put(done, (batch, prepared, result))
    except BaseException:
        stop.set()
        raise
    finally:
        if stop.is_set():
            _drain(ready)
        # The writer finishes what was launched (or drains it when stopping), then ends.
        while threads[1].is_alive():
            try:
                done.put(_END, timeout=0.1)
                break
            except queue.Full:
                if stop.is_set():
                    _drain(done)
        threads[1].join()
        stop.set()
        _drain(ready)
        threads[0].join(timeout=5)
    if failures:
        raise failures[0]


def _drain(q: queue.Queue) -> None:
    while True:
        try:
            q.get_nowait()
        except queue.Empty:
            return


# ---------------------------------------------------------------------------------------------
# Windows: reading, encoding, one-hot on the device
# ---------------------------------------------------------------------------------------------


class WindowInputs(NamedTuple):
    seq: np.ndarray | None  # (B, L, 4) float32 one-hot, only when asked for (host-side kernels)
    ref: np.ndarray  # (B, L) int8 base index, -1 for N
    dnase: np.ndarray | None  # (B, L) float32 DNase, or (B, L, C) control tracks (a stacked reader)


def read_windows(
    windows,
    genome,
    alphabet: str,
    dnase_reader=None,
    dnase_transform: str = "none",
    *,
    iupac: str = "n",
    one_hot: bool = True,
) -> WindowInputs:
    """Base indices, DNase and (with ``one_hot``) the float one-hot of windows (anything with chrom,
    start, end), N- and zero-padded past chromosome ends.

    ``dnase_reader``: anything whose ``.read(chrom, start, end)`` gives one window's side input:
    a :class:`jaxmotif.io.bigwig.BigWigReader` (DNase, ``(L,)``, stacked to ``(B, L)``) or a
    :class:`jaxmotif.io.bigwig.StackedBigWigReader` (BPNet control tracks, ``(L, C)`` -> ``(B, L, C)``).

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
    return WindowInputs(one_hot_from_indices(ref) if one_hot else None, ref, dnase)


def device_one_hot(idx):
    """shape=(..., L) int8 base indices (-1 for N) -> (..., L, 4) float32 one-hot, on the device.

    Equal to :func:`jaxmotif.sequence.one_hot_from_indices` (an N row is all zero).
    """
    import jax
    import jax.numpy as jnp

    return jax.nn.one_hot(idx.astype(jnp.int32), 4, dtype=jnp.float32)  # out of range (-1): all zero


def indices_kernel(model, key: tuple, kernel: Callable) -> Callable:
    """``jit(f(params, idx (B, L) int8, dnase, *extra) = kernel(params, one_hot(idx), dnase, *extra))``,
    cached on ``model`` under ``key``: the device receives 1 byte per base instead of 16."""
    import jax

    def make():
        return jax.jit(lambda p, idx, d, *extra: kernel(p, device_one_hot(idx), d, *extra))

    return model.compiled_fn(("scan-indices", *key), make)


def batch_sharding():
    """(sharding, devices): windows split over the local devices along the batch axis."""
    from jax.sharding import NamedSharding, PartitionSpec

    from jaxmotif.batching import BATCH_AXIS, batch_mesh

    mesh = batch_mesh()
    return NamedSharding(mesh, PartitionSpec(BATCH_AXIS)), mesh.size


def padded(items: list, step: int) -> list:
    """``items`` padded to ``step`` by repeating the last (static shapes; the extra results are dropped)."""
    return items + [items[-1]] * (step - len(items))


def scan_step(n_windows: int, batch_size: int, n_dev: int) -> int:
    """Windows per device step of a scan: ``batch_size`` rounded up to a multiple of the devices, but
    no more than ``n_windows`` (so rounded) needs: 5 windows at ``batch_size`` 12 run as 5 rows, not
    12. One compiled shape per run; it depends only on the input (all its windows, not those still
    to do) and the flags, so a resumed run or another part makes the same choice."""
    from jaxmotif.batching import chunk_size_for

    return chunk_size_for(n_windows, batch_size, n_dev)


# ---------------------------------------------------------------------------------------------
# Sequence checks
# ---------------------------------------------------------------------------------------------

CHECK_BLOCK = 1 << 22  # bases fetched at once while checking the scanned sequence
IUPAC_NOTE = "read as N; --strict-bases refuses them"


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

    An invalid character, or with ``strict`` an IUPAC ambiguity code, is a :class:`ScanError`
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
                    raise ScanError(
                        f"{where}: IUPAC ambiguity code {err.char!r} in {genome.path} "
                        "(--strict-bases refuses IUPAC codes)"
                    ) from None
                raise ScanError(f"{where}: invalid base {err.char!r} in {genome.path}") from None
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


# ---------------------------------------------------------------------------------------------
# Identity of a scan (what a resume or another part must match)
# ---------------------------------------------------------------------------------------------


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


def windows_digest(windows) -> str:
    return hashlib.sha256(json.dumps([list(w) for w in windows]).encode()).hexdigest()


def check_key(out, old: dict, key: dict, meaning: dict) -> None:
    """Refuses a store written by a different scan, naming the first entry that differs."""
    for k, v in key.items():
        if old.get(k) != v:
            raise ScanError(
                f"{out} was written by a different scan ({k} differs: {meaning.get(k, k)} changed); "
                "nothing written: use the same inputs and options, or choose another --out"
            )


def process_part(part: str | None) -> tuple[int, int]:
    """(index, count) of this process: ``"I/N"`` from ``--part``, else jax.distributed's."""
    import jax

    if part is None:
        return jax.process_index(), jax.process_count()
    try:
        i, n = (int(x) for x in part.split("/"))
    except ValueError:
        raise ScanError(f"--part {part!r} must be I/N, e.g. 0/4") from None
    if not 0 <= i < n:
        raise ScanError(f"--part {part!r}: need 0 <= I < N")
    return i, n


def sync(name: str) -> None:
    """A barrier across jax.distributed processes (nothing with one process)."""
    import jax

    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def swap_in(tmp: Path, out: Path) -> None:
    """Replaces ``out`` by the complete store ``tmp`` (the old store is removed only afterwards)."""
    import shutil

    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Stored precision
# ---------------------------------------------------------------------------------------------

STORE_DTYPES = ("float32", "float16", "bfloat16")
# Relative rounding of one stored value (half a unit in the last place), for --help and README.
STORE_ROUNDING = {"float32": 2.0**-24, "float16": 2.0**-11, "bfloat16": 2.0**-8}


def round_to_store(x: np.ndarray, store_dtype: str) -> np.ndarray:
    """Values as stored: float32 unchanged; float16 cast; bfloat16 rounded to nearest even and kept
    in float32 whose low 16 bits are zero (zarr 3 has no bfloat16 type; the byte-shuffle compressor
    of :func:`store_compressors` stores those zero bytes for almost nothing)."""
    x = np.asarray(x, np.float32)
    if store_dtype == "float32":
        return x
    if store_dtype == "float16":
        return x.astype(np.float16)
    if store_dtype == "bfloat16":
        import ml_dtypes

        return x.astype(ml_dtypes.bfloat16).astype(np.float32)
    raise ScanError(f"--store-dtype {store_dtype!r} must be one of {STORE_DTYPES}")


def store_array_dtype(store_dtype: str) -> str:
    return "float16" if store_dtype == "float16" else "float32"


def store_compressors(store_dtype: str):
    """Zstd with byte shuffle: float scores compress better by byte plane, and bfloat16 values held in
    float32 lose their two zero low bytes."""
    from zarr.codecs import BloscCodec

    size = 2 if store_dtype == "float16" else 4
    return (BloscCodec(cname="zstd", clevel=3, shuffle="shuffle", typesize=size),)


def stored_bytes(path) -> int:
    """Bytes of every file under a store folder."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


# ---------------------------------------------------------------------------------------------
# Mutation maps: windows -> store chunks at genome coordinates
# ---------------------------------------------------------------------------------------------


class ScanSummary(NamedTuple):
    windows: int  # windows scored by this process
    chunks: int  # store chunks written by this process
    bases: int  # bases assigned to the scored windows
    seconds: float


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
    store_dtype: str = "float32",
    prefetch: int = 2,
) -> ScanSummary:
    """Mutation maps of ``windows`` (from :func:`jaxmotif.tiling.tile_regions`) into ``store``.

    ``batch_size`` windows (default: one per local device) go to the devices per step, fewer when
    ``windows`` are fewer (:func:`scan_step`).
    Skips chunks already marked done and chunks owned by other parts; writes each remaining chunk
    whole once all its windows are scored, then marks it done. ``plan(total, already)`` is called
    first with the bases of this part's windows and those already done (a resumed run's progress
    starts there); ``progress`` then gets the bases of each finished batch (from the writer thread).
    Host memory: ``prefetch`` + 3 batches and the chunks being assembled.
    """
    import jax

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

    sharding, n_dev = batch_sharding()
    step = scan_step(len(windows), batch_size or n_dev, n_dev)
    inner = compiled_mutation_map(
        model, score=score, targets=targets, precision=precision, method=method, mutant_chunk=mutant_chunk
    )
    kernel = indices_kernel(model, ("mutation_map", id(inner)), inner)
    params = model.params
    n_out = len(store.output_names)
    alphabet = model.config.alphabet
    buffers: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
    chunks_written = 0

    def prepare(batch):
        ws = padded([w for w, _ in batch], step)
        return read_windows(ws, genome, alphabet, dnase_reader, dnase_transform, iupac=iupac, one_hot=False)

    def launch(inputs):
        idx = jax.device_put(inputs.ref, sharding)
        dnase = None if inputs.dnase is None else jax.device_put(inputs.dnase, sharding)
        return kernel(params, idx, dnase)

    def finish(batch, inputs, scores):
        nonlocal chunks_written
        ready = []
        for (w, touched), s, r in zip(batch, scores, inputs.ref, strict=False):
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
            scores_, ref_ = buffers.pop(key)
            store.write_chunk(key[0], key[1], round_to_store(scores_, store_dtype), ref_)
        for key in ready:  # only after every write of the batch returned
            store.mark_done(key[0], [key[1]])
        chunks_written += len(ready)
        if progress is not None:
            progress(sum(w.assign_end - w.assign_start for w, _ in batch))

    batches = (needed[i : i + step] for i in range(0, len(needed), step))
    pipelined(batches, prepare, launch, finish, prefetch=prefetch)
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
# Python calls of the two CLIs
# ---------------------------------------------------------------------------------------------


def _argv(options: dict) -> list[str]:
    argv = []
    for name, value in options.items():
        if value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif name == "control" and isinstance(value, list | tuple):  # --control once per path: a
            argv += [x for p in value for x in (flag, str(p))]  # path may hold a comma
        elif isinstance(value, list | tuple):
            argv += [flag, *(str(v) for v in value)]
        else:
            argv += [flag, str(value)]
    return argv


def scan_mutations(out, *, fasta=None, checkpoint=None, regions=None, chrom=None, **options) -> Path:
    """``python -m jaxmotif.mutmap`` as a call: mutation maps of ``regions`` (a BED path) or whole
    chromosomes ``chrom`` (a list) into the Zarr store ``out``; returns its path.

    Every other CLI option is a keyword (``dnase=``, ``control=["plus.bw", "minus.bw"]`` (BPNet's
    control tracks, a list or a comma-separated string), ``targets="H3K27ac,H3K4me3"``, ``score=``,
    ``method=``, ``precision=``, ``store_dtype=``, ``resume=True``, ``overwrite=True``, ``part="0/4"``,
    ``bigwig=PREFIX``, ``quiet=True``, ...). Read the store with
    :func:`jaxmotif.io.zarr_store.open_mutmap`.
    """
    from jaxmotif.cli import mutmap

    stream = options.pop("stream", None)
    opts = {
        "checkpoint": checkpoint,
        "fasta": fasta,
        "regions": regions,
        "chrom": chrom,
        "out": out,
        **options,
    }
    args = mutmap.build_parser().parse_args(_argv(opts))
    from jaxmotif.cli.common import CliError

    try:
        return mutmap.run_scan(args, stream=stream)
    except CliError as err:
        raise ScanError(str(err)) from None


def attribute_regions(out, *, fasta=None, regions=None, checkpoint=None, **options) -> Path:
    """``python -m jaxmotif.attribute`` as a call: attributions of one model-length window per BED
    region into the attribution store ``out`` (layout in :mod:`jaxmotif.cli.attribute`); returns its path.

    Every other CLI option is a keyword (``dnase=``, ``control=["plus.bw", "minus.bw"]``,
    ``method="deep_lift_shap"``, ``targets=``,
    ``summit_centred=True``, ``n_shuffles=``, ``seed=``, ``samples=``, ``sigma=`` (smoothgrad),
    ``store_dtype=``, ``resume=True``,
    ``overwrite=True``, ``part="0/2"``, ``bigwig=PREFIX``, ``modisco_npz=PREFIX``, ``quiet=True``, ...).
    """
    from jaxmotif.cli import attribute

    stream = options.pop("stream", None)
    opts = {"checkpoint": checkpoint, "fasta": fasta, "regions": regions, "out": out, **options}
    args = attribute.build_parser().parse_args(_argv(opts))
    from jaxmotif.cli.common import CliError

    try:
        return attribute.run_scan(args, stream=stream)
    except CliError as err:
        raise ScanError(str(err)) from None


__all__ = [
    "STORE_DTYPES",
    "ScanError",
    "ScanSummary",
    "attribute_regions",
    "check_sequences",
    "pipelined",
    "read_windows",
    "scan_mutations",
    "scan_windows",
]


# ---------------------------------------------------------------------------------------------
# Attributions: one window per region -> rows of an attribution store
# ---------------------------------------------------------------------------------------------

ATTRIBUTE_METHODS = (
    "deep_lift_shap",
    "grad_x_input",
    "gradient",
    "guided_backprop",
    "deconvnet",
    "integrated_gradients",
    "smoothgrad",
    "ism",
)
# What the stored numbers are, per method (the store's ``values`` attribute).
ATTRIBUTE_VALUES = {
    "deep_lift_shap": "DeepSHAP hypothetical contributions (dinucleotide-shuffled references)",
    "gradient": "gradient dS/dX, mean-centred over the 4 bases at each position (hypothetical)",
    "grad_x_input": "gradient dS/dX, mean-centred over the 4 bases at each position (hypothetical; "
    "times one_hot: gradient x input of the centred gradient)",
    "guided_backprop": "guided backpropagation (Springenberg et al.: the gradient, ReLUs passing only "
    "positive signal where their input is positive), mean-centred over the 4 bases at each position "
    "(hypothetical)",
    "deconvnet": "deconvnet (Zeiler & Fergus: ReLUs pass the positive backward signal whatever their input), "
    "mean-centred over the 4 bases at each position (hypothetical)",
    "integrated_gradients": "integrated gradients (zeros baseline), contributions of the bases present",
    "smoothgrad": "SmoothGrad (Smilkov et al.: the gradient averaged over --samples copies of the input "
    "with Gaussian noise of standard deviation --sigma; window i's noise from fold_in(key(--seed), i)), "
    "mean-centred over the 4 bases at each position (hypothetical)",
    "ism": "ISM delta map p(s^)-p(s), mean-centred over the 4 bases at each position (hypothetical; "
    "delta = stored - stored at the reference base)",
}


class AttributionSummary(NamedTuple):
    rows: int  # windows attributed by this process
    chunks: int  # store chunks written by this process
    max_rows_held: int  # most window rows the writer held at once (constant in N)
    seconds: float


def _centred(x):
    """(..., 4, K) or (..., 4): minus the mean over the base axis -2 / -1 (as TF-MoDISco users do)."""
    return x - x.mean(axis=-2, keepdims=True)


def attribution_launcher(
    model,
    method: str,
    targets,
    *,
    precision=None,
    logits=False,
    steps=None,
    samples: int | None = None,
    sigma: float | None = None,
    sample_batch: int | None = None,
    key=None,
):
    """``launch(params, idx (B, L) int8, dnase | None, extra) -> (B, L, 4, K)``.

    ``extra``: deep_lift_shap's references, shape=(B, R, L) int8; smoothgrad's row indices of the
    windows in the whole scan, shape=(B,) int32 (its noise is drawn per row from ``key``, so it does
    not depend on the batch); None for the other methods. ``samples`` / ``sigma``: smoothgrad's, None
    for :func:`jaxmotif.integrated.smoothgrad`'s defaults.
    """
    import jax.numpy as jnp

    from jaxmotif.precision import with_precision

    targets = tuple(int(t) for t in targets)
    if method in ("gradient", "grad_x_input", "guided_backprop", "deconvnet"):
        from jaxmotif.attribution import saliency_kernel
        from jaxmotif.projections import rule_apply

        if method in ("guided_backprop", "deconvnet"):  # the backward pass under the method's ReLU rule
            apply_fn = with_precision(rule_apply(model, method, logits=logits), precision)
            name = method
        else:  # grad_x_input stores the same centred gradient (times one_hot when read)
            apply_fn = with_precision(model.apply_logits if logits else model.apply, precision)
            name = "gradient"

        def kernel(p, seq, d):
            grads = saliency_kernel(apply_fn, p, seq, d, targets, "gradient")  # (B, K, L, 4)
            return jnp.moveaxis(grads - grads.mean(axis=-1, keepdims=True), 1, -1)

        fn = indices_kernel(model, (name, targets, precision, logits), kernel)
        return lambda p, idx, d, refs: fn(p, idx, d)
    if method == "deep_lift_shap":
        from jaxmotif.deeplift import DEEPLIFT_OPS, deep_lift_shap_kernel

        if getattr(model.config, "final_activation", None) == "softmax" and not logits:
            raise ScanError("DeepLIFT has no rule for a softmax output; pass --logits")
        base = model.apply_logits if logits else model.apply
        apply_fn = with_precision(lambda p, s, d: base(p, s, d, ops=DEEPLIFT_OPS), precision)

        def kernel(p, seq, d, refs):
            contrib, _ = deep_lift_shap_kernel(apply_fn, p, seq, d, device_one_hot(refs), targets, True)
            return jnp.moveaxis(contrib, 1, -1)

        return indices_kernel(model, ("deep_lift_shap", targets, precision, logits), kernel)
    if method == "ism":
        from jaxmotif.ism import compiled_mutation_map

        inner = compiled_mutation_map(
            model, score="delta", targets=targets, precision=precision, method="fast"
        )
        fn = indices_kernel(model, ("ism", id(inner)), lambda p, s, d: _centred(inner(p, s, d)))
        return lambda p, idx, d, refs: fn(p, idx, d)
    if method == "smoothgrad":
        from jaxmotif.integrated import (
            SMOOTHGRAD_SAMPLES,
            SMOOTHGRAD_SIGMA,
            smoothgrad_kernel,
            smoothgrad_samples,
        )

        samples = samples or SMOOTHGRAD_SAMPLES
        sigma = SMOOTHGRAD_SIGMA if sigma is None else sigma
        if key is None:
            raise ScanError("smoothgrad needs a key (--seed)")
        # Every sample index j of every window is one value of the kernel's scan, sample_batch at a
        # time; the noise of (row i, sample j) is fold_in(fold_in(key, i), j) whatever the chunking.
        js, weights = smoothgrad_samples(samples, sample_batch or samples)
        apply_fn = with_precision(model.apply_logits if logits else model.apply, precision)
        sigma = float(sigma)

        def kernel(p, seq, d, rows, k, j, w):
            grads = smoothgrad_kernel(apply_fn, p, seq, d, rows, k, targets, sigma, j, w)  # (B, K, L, 4)
            return jnp.moveaxis(grads - grads.mean(axis=-1, keepdims=True), 1, -1)

        fn = indices_kernel(model, ("smoothgrad", targets, precision, logits, sigma), kernel)
        return lambda p, idx, d, rows: fn(p, idx, d, rows, key, js, weights)
    if method == "integrated_gradients":
        from jaxmotif.integrated import integrated_gradients

        def run(p, idx, d, refs):  # the public function: host one-hot, its own chunking
            seq = np.asarray(device_one_hot(idx))
            dn = None if d is None else np.asarray(d)
            out = integrated_gradients(model, seq, dn, list(targets), steps=steps or 64, precision=precision)
            return jnp.asarray(np.moveaxis(out, 1, -1))

        return run
    raise ScanError(f"method {method!r} must be one of {ATTRIBUTE_METHODS}")


def shuffled_reference_indices(idx: np.ndarray, rows: np.ndarray, n_shuffles: int, key) -> np.ndarray:
    """Dinucleotide shuffles of windows as int8 indices, shape=(B, R, L), -1 for N.

    Window ``rows[i]`` of the whole scan draws from ``fold_in(key, rows[i])``, exactly as
    :func:`jaxmotif.dinucleotide_shuffle` draws sequence ``i`` of one call: the references, and
    so the contributions, equal :func:`jaxmotif.deep_lift_shap` on all the windows at once.
    """
    import jax
    import jax.numpy as jnp

    from jaxmotif.integrated import _dinucleotide_shuffle_symbols

    symbols = np.where(idx < 0, 4, idx).astype(np.int64)
    seeds = np.asarray(
        jax.vmap(lambda i: jax.random.bits(jax.random.fold_in(key, i), (4,), jnp.uint32))(jnp.asarray(rows))
    )
    out = np.empty((idx.shape[0], n_shuffles, idx.shape[1]), np.int8)
    for i in range(idx.shape[0]):
        rng = np.random.default_rng(seeds[i].tolist())
        for j in range(n_shuffles):
            s = _dinucleotide_shuffle_symbols(symbols[i], rng)
            out[i, j] = np.where(s == 4, -1, s)
    return out


def scan_attributions(
    model,
    genome,
    windows,
    store,
    *,
    method: str,
    targets,
    dnase_reader=None,
    dnase_transform: str = "none",
    precision: str | None = None,
    logits: bool = False,
    batch_size: int = 8,
    n_shuffles: int = 20,
    seed: int = 0,
    steps: int | None = None,
    samples: int | None = None,
    sigma: float | None = None,
    max_memory: int | None = None,
    part: tuple[int, int] = (0, 1),
    progress: Callable[[int], None] | None = None,
    plan: Callable[[int, int], None] | None = None,
    iupac: str = "n",
    store_dtype: str = "float32",
    prefetch: int = 2,
) -> AttributionSummary:
    """Attributions of ``windows`` (row ``i`` of ``store`` is ``windows[i]``) into ``store``
    (:class:`jaxmotif.io.attribution_writer.AttributionStoreWriter`).

    The random methods draw per window row from ``jax.random.key(seed)``: deep_lift_shap's shuffles
    from ``fold_in(key, row)`` (as :func:`jaxmotif.dinucleotide_shuffle` draws sequence ``row``),
    smoothgrad's noise (``samples`` copies, standard deviation ``sigma``; None: the defaults) as
    :func:`jaxmotif.integrated.smoothgrad` draws it for sequence ``row``; so the stored values do
    not depend on ``batch_size``, the devices or ``part`` (up to float rounding), and equal the
    in-memory API on all the windows at once. At most ``batch_size`` windows go to the devices per
    step, fewer when ``windows`` are fewer (:func:`scan_step`). ``max_memory`` bounds smoothgrad's
    noisy copies per kernel step (:func:`jaxmotif.memory.path_plan`; default budget when None).

    Process ``i`` of ``N`` owns store chunks ``i::N``; chunks already done are skipped. A chunk is
    written whole once its rows are attributed, then marked done. ``plan(total, already)`` gets the
    rows of this part and those already done; ``progress`` the rows of each written batch.
    Host memory: ``prefetch`` + 3 batches and at most two chunks being assembled.
    """
    import jax

    t0 = time.perf_counter()
    part_index, part_count = part
    done = store.done_mask()
    owned = [k for k in range(store.n_chunks) if k % part_count == part_index]
    todo = [k for k in owned if not done[k]]
    total = sum(store.chunk_span(k)[1] - store.chunk_span(k)[0] for k in owned)
    rows = [r for k in todo for r in range(*store.chunk_span(k))]
    if plan is not None:
        plan(total, total - len(rows))
    if not rows:
        return AttributionSummary(0, 0, 0, time.perf_counter() - t0)
    sharding, n_dev = batch_sharding()
    step = scan_step(len(windows), batch_size, n_dev)
    key = jax.random.key(seed)
    sample_batch = None
    if method == "smoothgrad":
        from jaxmotif.integrated import SMOOTHGRAD_SAMPLES, smoothgrad_plan
        from jaxmotif.memory import resolve_budget

        _, sample_batch, _ = smoothgrad_plan(
            model,
            resolve_budget(max_memory),
            sequences=step // n_dev,
            samples=samples or SMOOTHGRAD_SAMPLES,
            targets=len(targets),
            length=store.length,
            max_sequences=step // n_dev,
        )
    launcher = attribution_launcher(
        model,
        method,
        targets,
        precision=precision,
        logits=logits,
        steps=steps,
        samples=samples,
        sigma=sigma,
        sample_batch=sample_batch,
        key=key,
    )
    params = model.params
    alphabet = model.config.alphabet
    n_targets = len(targets)
    buffers: dict[int, list] = {}  # chunk -> [one_hot, attributions, rows still missing]
    held = {"now": 0, "max": 0}
    written = 0

    def prepare(batch):
        rows_ = np.asarray(padded(batch, step))
        inputs = read_windows(
            [windows[r] for r in rows_],
            genome,
            alphabet,
            dnase_reader,
            dnase_transform,
            iupac=iupac,
            one_hot=False,
        )
        extra = None  # the launcher's per-window extra input (see attribution_launcher)
        if method == "deep_lift_shap":
            extra = shuffled_reference_indices(inputs.ref, rows_, n_shuffles, key)
        elif method == "smoothgrad":
            extra = rows_.astype(np.int32)  # padding repeats the last row: same noise, result dropped
        return inputs, extra

    def launch(prepared):
        inputs, extra = prepared
        idx = jax.device_put(inputs.ref, sharding)
        dnase = None if inputs.dnase is None else jax.device_put(inputs.dnase, sharding)
        extra = None if extra is None else jax.device_put(extra, sharding)
        return launcher(params, idx, dnase, extra)

    def finish(batch, prepared, result):
        nonlocal written
        inputs, _ = prepared
        one_hot = (inputs.ref[..., None] == np.arange(4)).astype(np.uint8)
        for i, r in enumerate(batch):
            k = r // store.chunk_rows
            a, b = store.chunk_span(k)
            if k not in buffers:
                buffers[k] = [
                    np.zeros((b - a, store.length, 4), np.uint8),
                    np.zeros((b - a, store.length, 4, n_targets), np.float32),
                    b - a,
                ]
                held["now"] += b - a
                held["max"] = max(held["max"], held["now"])
            buf = buffers[k]
            buf[0][r - a] = one_hot[i]
            buf[1][r - a] = result[i]
            buf[2] -= 1
            if buf[2] == 0:
                store.write_chunk(k, buf[0], round_to_store(buf[1], store_dtype))
                store.mark_done(k)
                del buffers[k]
                held["now"] -= b - a
                written += 1
        if progress is not None:
            progress(len(batch))

    batches = (rows[i : i + step] for i in range(0, len(rows), step))
    pipelined(batches, prepare, launch, finish, prefetch=prefetch)
    return AttributionSummary(len(rows), written, held["max"], time.perf_counter() - t0)
