"""bigWig tracks through pyBigWig: per-base reads with zero padding, and atomic per-base writes.

Reads return one ``float32`` per base as stored, with 0 where the file has no value (pyBigWig's
NaN) and where the requested range runs past either chromosome end, matching the ``N``-padded
windows of :meth:`jaxmotif.io.fasta.Genome.fetch`. Writes skip NaN runs, because bigWig has no
missing-value marker and a NaN entry corrupts summaries in genome browsers.
"""

import os
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxmotif.io.fasta import naming_hint

# bigWig magic number 0x888FFC26, as stored by little- and big-endian writers.
_BIGWIG_MAGIC = (b"\x26\xfc\x8f\x88", b"\x88\x8f\xfc\x26")
_REMOTE_PREFIXES = ("http://", "https://", "ftp://")


class BigWigError(ValueError):
    """A bigWig file cannot be read or written; the message names the file, chromosome or track."""


def _import_pybigwig():
    try:
        import pyBigWig
    except ImportError as err:
        raise ImportError(
            "reading and writing bigWig files needs pyBigWig; install it with: pip install 'jaxmotif[genome]'"
        ) from err
    return pyBigWig


def _known_chroms(chrom_sizes: Mapping[str, int]) -> str:
    known = list(chrom_sizes)
    shown = ", ".join(repr(c) for c in known[:5]) + (", ..." if len(known) > 5 else "")
    return f"{len(known)} known: {shown}"


class BigWigReader:
    """An open bigWig file for repeated per-base reads; use as a context manager.

    Parameters
    ----------
    path : str or os.PathLike
        Local file, or an ``http(s)://`` / ``ftp://`` URL (pyBigWig reads those remotely).

    Raises
    ------
    FileNotFoundError
        If a local file does not exist.
    BigWigError
        If the file is not a bigWig (e.g. bedGraph text or bigBed) or cannot be opened.

    Examples
    --------
    >>> with BigWigReader("dnase.bw") as bw:                    # doctest: +SKIP
    ...     signal = bw.read("chr1", 0, 1000)                  # shape (1000,), float32
    """

    def __init__(self, path: str | os.PathLike):
        pyBigWig = _import_pybigwig()
        self.path = os.fspath(path)
        if not self.path.lower().startswith(_REMOTE_PREFIXES):
            if not os.path.isfile(self.path):
                raise FileNotFoundError(f"bigWig file not found: {self.path}")
            # Checking the magic number ourselves gives a clear message instead of libBigWig's
            # generic "error during file opening" (and its stderr noise).
            with open(self.path, "rb") as probe:
                if probe.read(4) not in _BIGWIG_MAGIC:
                    raise BigWigError(f"{self.path} is not a bigWig file (no bigWig magic number)")
        try:
            handle = pyBigWig.open(self.path)
        except RuntimeError as err:
            raise BigWigError(f"cannot open bigWig {self.path}: {err}") from None
        if handle is None:
            raise BigWigError(f"cannot open bigWig {self.path}")
        if not handle.isBigWig():
            handle.close()
            raise BigWigError(f"{self.path} is a bigBed file, not a bigWig")
        self._handle = handle
        self._sizes = dict(handle.chroms())

    @property
    def chrom_sizes(self) -> dict[str, int]:
        """Chromosome name -> length, as in the file header (a copy)."""
        return dict(self._sizes)

    def read(self, chrom: str, start: int, end: int) -> np.ndarray:
        """Per-base values of ``[start, end)`` on ``chrom`` (0-based, half-open).

        Parameters
        ----------
        chrom : str
        start, end : int
            May run past either end of the chromosome; those positions read as 0.

        Returns
        -------
        np.ndarray, shape=(end - start,), dtype=float32
            Values as stored; 0 where the file has no value.

        Raises
        ------
        BigWigError
            For an unknown chromosome (naming it and the file) or ``end < start``.
        """
        if self._handle is None:
            raise ValueError(f"BigWigReader for {self.path} is closed")
        size = self._sizes.get(chrom)
        if size is None:
            raise BigWigError(
                f"unknown chromosome {chrom!r} in bigWig {self.path} ({_known_chroms(self._sizes)})"
                f"{naming_hint(chrom, self._sizes)}"
            )
        start, end = int(start), int(end)
        if end < start:
            raise BigWigError(f"invalid range {chrom}:{start}-{end} for bigWig {self.path}: end < start")
        out = np.zeros(end - start, dtype=np.float32)
        inner_start, inner_end = max(start, 0), min(end, size)
        # libBigWig rejects empty or out-of-bounds ranges, so only the overlap is requested.
        if inner_start < inner_end:
            values = np.asarray(
                self._handle.values(chrom, inner_start, inner_end, numpy=True), dtype=np.float32
            )
            if values.size == 0:
                # libBigWig returns nothing at all, not NaNs, for a file without any data.
                return out
            out[inner_start - start : inner_end - start] = np.where(np.isnan(values), 0.0, values)
        return out

    def close(self) -> None:
        """Release the file (safe to call twice)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> "BigWigReader":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._handle is None else f"{len(self._sizes)} chromosomes"
        return f"BigWigReader({self.path!r}, {state})"


class StackedBigWigReader:
    """C bigWig files read together as one ``(L, C)`` track per range; use as a context manager.

    BPNet's control tracks: bpnet-lite feeds them as raw per-strand counts, ``(N, C, L)`` in its
    torch layout, from bigWigs listed plus strand first, then minus (or one unstranded track).
    Here they come channels-last, channel ``c`` being ``paths[c]``, each read as
    :meth:`BigWigReader.read` does (0 for no data and past chromosome ends).

    Parameters
    ----------
    paths : sequence of str or os.PathLike
        One file per channel, in the model's channel order; at least one.

    Raises
    ------
    FileNotFoundError, BigWigError
        As :class:`BigWigReader`, naming the file; files opened before the failing one are closed.
    """

    def __init__(self, paths: Iterable[str | os.PathLike]):
        paths = [os.fspath(p) for p in paths]
        if not paths:
            raise BigWigError("StackedBigWigReader needs at least one bigWig file")
        self.readers: list[BigWigReader] = []
        try:
            for path in paths:
                self.readers.append(BigWigReader(path))
        except BaseException:
            self.close()
            raise
        self.paths = paths
        self.path = ",".join(paths)  # as given on a command line, for messages

    @property
    def chrom_sizes(self) -> dict[str, int]:
        """The chromosomes every file has (in the first file's order), each with its smallest length."""
        sizes = [r.chrom_sizes for r in self.readers]
        return {c: min(s[c] for s in sizes) for c in sizes[0] if all(c in s for s in sizes)}

    def missing(self, chrom: str) -> str | None:
        """The first file without ``chrom``, or None when every file has it."""
        for r in self.readers:
            if chrom not in r.chrom_sizes:
                return r.path
        return None

    def read(self, chrom: str, start: int, end: int) -> np.ndarray:
        """Per-base values of ``[start, end)`` on ``chrom`` from every file.

        Returns
        -------
        np.ndarray, shape=(end - start, C), dtype=float32
            Column ``c`` is file ``c``'s :meth:`BigWigReader.read`.

        Raises
        ------
        BigWigError
            For a chromosome some file lacks (naming that file) or ``end < start``.
        """
        return np.stack([r.read(chrom, start, end) for r in self.readers], axis=-1)

    def close(self) -> None:
        """Release every file (safe to call twice)."""
        for r in self.readers:
            r.close()

    def __enter__(self) -> "StackedBigWigReader":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"StackedBigWigReader({self.paths!r})"


def read_bigwig(path: str | os.PathLike, chrom: str, start: int, end: int) -> np.ndarray:
    """Per-base values of one range of a bigWig file; see :meth:`BigWigReader.read`.

    Opens and closes the file; use :class:`BigWigReader` for many ranges.

    Returns
    -------
    np.ndarray, shape=(end - start,), dtype=float32
        Values as stored; 0 for missing values and for positions past either chromosome end.
    """
    with BigWigReader(path) as reader:
        return reader.read(chrom, start, end)


class _Entry(NamedTuple):
    chrom_index: int
    start: int
    end: int
    track_index: int
    values: np.ndarray


def _non_nan_runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and ends (half-open) of the maximal runs of non-NaN values, each ``shape=(R,)``."""
    present = np.concatenate(([False], ~np.isnan(values), [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(present))
    return edges[0::2], edges[1::2]


def _collect_entries(chrom_sizes: Mapping[str, int], tracks: Iterable) -> list[_Entry]:
    """Validate, clip to the chromosomes and sort the tracks; reject overlaps."""
    order = {chrom: i for i, chrom in enumerate(chrom_sizes)}
    entries = []
    for track_index, track in enumerate(tracks):
        chrom, start, values = track
        start = int(start)
        label = f"track {track_index} ({chrom}:{start})"
        if chrom not in order:
            raise BigWigError(f"{label}: unknown chromosome {chrom!r} ({_known_chroms(chrom_sizes)})")
        values = np.asarray(values, dtype=np.float32)
        if values.ndim != 1:
            raise BigWigError(f"{label}: values must have shape (L,), got {values.shape}")
        infinite = np.isinf(values)
        if infinite.any():
            position = start + int(np.argmax(infinite))
            raise BigWigError(f"{label}: infinite value at {chrom}:{position}; bigWig values must be finite")
        # Positions outside the chromosome are dropped, mirroring the padding on read, so windows
        # fetched N-padded at chromosome ends can be written back as they are.
        size = chrom_sizes[chrom]
        inner_start, inner_end = max(start, 0), min(start + values.shape[0], size)
        if inner_start >= inner_end:
            continue
        values = values[inner_start - start : inner_end - start]
        entries.append(_Entry(order[chrom], inner_start, inner_end, track_index, values))
    entries.sort(key=lambda e: (e.chrom_index, e.start))
    for previous, entry in zip(entries, entries[1:], strict=False):
        if entry.chrom_index == previous.chrom_index and entry.start < previous.end:
            chrom = list(chrom_sizes)[entry.chrom_index]
            raise BigWigError(
                f"track {entry.track_index} ({chrom}:{entry.start}-{entry.end}) overlaps track "
                f"{previous.track_index} ({chrom}:{previous.start}-{previous.end}); bigWig intervals must "
                "not overlap (merge or average overlapping windows first)"
            )
    return entries


def write_bigwig(
    path: str | os.PathLike,
    chrom_sizes: Mapping[str, int],
    tracks: Iterable[tuple[str, int, np.ndarray]],
    *,
    zoom_levels: int = 10,
) -> None:
    """Write per-base tracks to a bigWig file, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Output file; replaced only once the new file is complete (written to a temporary file in
        the same folder, then renamed), so a failure leaves no half-written file behind.
    chrom_sizes : mapping of str to int
        Header chromosomes and lengths, in the order they are written.
    tracks : iterable of (chrom, start, values)
        ``values`` has ``shape=(L,)`` and covers ``[start, start + L)``. NaN values are skipped
        (written as no data); positions outside the chromosome are dropped. Tracks may come in any
        order (they are held in memory and sorted) but must not overlap.
    zoom_levels : int
        Maximum number of zoom (summary) levels, used by genome browsers at low resolution.

    Raises
    ------
    BigWigError
        For an unknown chromosome, overlapping tracks, infinite or non-1-D values, or a write failure.
    """
    pyBigWig = _import_pybigwig()
    path = Path(path)
    if not chrom_sizes:
        raise BigWigError(f"cannot write {path}: chrom_sizes is empty")
    header = []
    for chrom, size in chrom_sizes.items():
        if int(size) <= 0:
            raise BigWigError(f"cannot write {path}: chromosome {chrom!r} has length {size}")
        header.append((str(chrom), int(size)))
    entries = _collect_entries(chrom_sizes, tracks)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"output folder does not exist: {path.parent}")
    chrom_names = [name for name, _ in header]
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    handle = None
    try:
        try:
            handle = pyBigWig.open(str(temporary), "w")
        except RuntimeError:
            handle = None
        if handle is None:
            raise BigWigError(f"cannot open {temporary} for writing")
        try:
            handle.addHeader(header, maxZooms=int(zoom_levels))
            for entry in entries:
                run_starts, run_ends = _non_nan_runs(entry.values)
                for run_start, run_end in zip(run_starts.tolist(), run_ends.tolist(), strict=True):
                    handle.addEntries(
                        chrom_names[entry.chrom_index],
                        entry.start + run_start,
                        values=entry.values[run_start:run_end],
                        span=1,
                        step=1,
                    )
        except RuntimeError as err:
            raise BigWigError(f"writing bigWig {path} failed: {err}") from None
        finally:
            handle.close()
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
