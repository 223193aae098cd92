"""Zarr (v3) stores of genome-scale mutation maps.

Layout (``format`` attribute ``jaxmotif-mutmap/1``)::

    OUT.zarr/                     attrs: format, version, config, output_names, score, alphabet,
                                         chunk_len, scan (what defines the result: config, weights
                                         digest, precision, method, score, outputs, windows, FASTA
                                         and DNase identities; a resume must match it), args
      <chrom>/                    one group per scanned chromosome; attrs: chrom_len
        scores  (chrom_len, 4, T) float32 (float16 with --store-dtype float16), genome coordinates,
                                  alphabet order; NaN where not
                                  scanned or the reference is N; 0 at the reference base
                                  (``raw``: p(s) there)
        ref     (chrom_len,)      int8 base index in the alphabet, -1 for N, -2 where not scanned
        done    (n_chunks,)       uint8, 1 once chunk k (positions k*chunk_len ...) is written

``scores`` and ``ref`` are chunked along positions (``chunk_len`` bases per chunk) and a chunk is
written whole, exactly once, when every window touching it has been scored; ``done[k]`` is set
after both writes. Unscanned chunks are never written (they read as the fill values). Zarr's
local store writes each chunk file atomically, so a killed run leaves finished chunks intact and
``done`` tells a resumed run which ones to skip. ``done`` has one chunk per flag so processes of a
multi-host run, which own disjoint chunks, never write the same file.
"""

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

FORMAT = "jaxmotif-mutmap/1"
REF_N = -1
REF_UNSCANNED = -2
DEFAULT_CHUNK_LEN = 65536


class StoreError(ValueError):
    """A mutation-map store that is missing, of another format, or incompatible with a resume."""


def _zarr():
    try:
        import zarr
    except ImportError as err:
        raise ImportError(
            "mutation-map stores need zarr>=3; install with: pip install 'jaxmotif[genome]'"
        ) from err
    return zarr


def _check_chrom_name(chrom: str) -> None:
    if not chrom or "/" in chrom or chrom.startswith("__") or chrom in (".", ".."):
        raise StoreError(f"chromosome name {chrom!r} cannot be a Zarr group name")


class MutmapStore:
    """A mutation-map store opened for reading or writing; see the module docstring for the layout."""

    def __init__(self, path: str | os.PathLike, mode: str = "r"):
        zarr = _zarr()
        self.path = Path(path)
        if not (self.path / "zarr.json").is_file():
            raise StoreError(f"{self.path} is not a Zarr v3 store")
        self.root = zarr.open_group(str(self.path), mode=mode, zarr_format=3)
        if self.root.attrs.get("format") != FORMAT:
            raise StoreError(f"{self.path} is not a {FORMAT} store")
        self.chunk_len = int(self.root.attrs["chunk_len"])

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        chrom_sizes: Mapping[str, int],
        output_names: Sequence[str],
        attrs: Mapping,
        *,
        chunk_len: int = DEFAULT_CHUNK_LEN,
        store_dtype: str = "float32",
    ) -> "MutmapStore":
        """Creates the store's metadata (no chunk data), atomically: built beside ``path``, then renamed.

        chrom_sizes: the chromosomes to hold (one group each) and their lengths.
        output_names: names of the T stored outputs.
        attrs: extra root attributes (JSON-serialisable): config, score, scan, args, ...
        store_dtype: ``float32`` | ``float16`` | ``bfloat16`` (values rounded by the writer,
            :func:`jaxmotif.scan.round_to_store`; bfloat16 is held in float32 arrays).
        """
        from jaxmotif.scan import store_array_dtype, store_compressors

        zarr = _zarr()
        path = Path(path).absolute()
        if path.exists():
            raise StoreError(f"{path} exists; remove it or resume into it")
        if chunk_len < 1:
            raise ValueError(f"chunk_len={chunk_len} must be positive")
        for chrom in chrom_sizes:
            _check_chrom_name(chrom)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
        try:
            root = zarr.open_group(str(tmp), mode="w", zarr_format=3)
            n_out = len(output_names)
            for chrom, size in chrom_sizes.items():
                size = int(size)
                group = root.create_group(chrom)
                group.attrs["chrom_len"] = size
                rows = min(chunk_len, size)
                group.create_array(
                    "scores",
                    shape=(size, 4, n_out),
                    chunks=(rows, 4, n_out),
                    dtype=store_array_dtype(store_dtype),
                    fill_value=np.nan,
                    compressors=store_compressors(store_dtype),
                )
                group.create_array(
                    "ref", shape=(size,), chunks=(rows,), dtype="int8", fill_value=REF_UNSCANNED
                )
                group.create_array(
                    "done", shape=(-(-size // chunk_len),), chunks=(1,), dtype="uint8", fill_value=0
                )
            from jaxmotif import __version__

            root.attrs.update(
                {
                    **dict(attrs),
                    "format": FORMAT,
                    "version": __version__,
                    "output_names": list(output_names),
                    "chunk_len": int(chunk_len),
                    "chroms": list(chrom_sizes),
                    "store_dtype": store_dtype,
                }
            )
            tmp.rename(path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return cls(path, mode="r+")

    @property
    def attrs(self) -> dict:
        return dict(self.root.attrs)

    @property
    def chroms(self) -> list[str]:
        return sorted(name for name, _ in self.root.groups())

    def chroms_in_order(self) -> list[str]:
        """Chromosome groups in the order they were created (the FASTA's order)."""
        return list(self.root.attrs.get("chroms", self.chroms))

    @property
    def output_names(self) -> list[str]:
        return list(self.root.attrs["output_names"])

    def chrom_len(self, chrom: str) -> int:
        return int(self._group(chrom).attrs["chrom_len"])

    def _group(self, chrom: str):
        if chrom not in self.root:
            raise StoreError(f"chromosome {chrom!r} is not in {self.path} (has {self.chroms[:5]})")
        return self.root[chrom]

    def scores(self, chrom: str):
        """The ``scores`` Zarr array of ``chrom``, (chrom_len, 4, T)."""
        return self._group(chrom)["scores"]

    def ref(self, chrom: str):
        return self._group(chrom)["ref"]

    def n_chunks(self, chrom: str) -> int:
        return -(-self.chrom_len(chrom) // self.chunk_len)

    def done_mask(self, chrom: str) -> np.ndarray:
        """shape=(n_chunks,) bool: chunks already written."""
        return np.asarray(self._group(chrom)["done"][:]).astype(bool)

    def chunk_span(self, chrom: str, chunk: int) -> tuple[int, int]:
        start = chunk * self.chunk_len
        return start, min(start + self.chunk_len, self.chrom_len(chrom))

    def write_chunk(self, chrom: str, chunk: int, scores: np.ndarray, ref: np.ndarray) -> None:
        """Writes one whole chunk: scores (n, 4, T) float32 and ref (n,) int8, n = the chunk's length."""
        start, end = self.chunk_span(chrom, chunk)
        group = self._group(chrom)
        array = group["scores"]
        group["scores"][start:end] = np.asarray(scores, dtype=array.dtype)
        group["ref"][start:end] = np.asarray(ref, dtype=np.int8)

    def mark_done(self, chrom: str, chunks: Sequence[int]) -> None:
        """Records chunks as written (call only after :meth:`write_chunk` returned for each)."""
        done = self._group(chrom)["done"]
        for chunk in chunks:
            done[int(chunk)] = 1

    def read(self, chrom: str, start: int, end: int) -> "MutmapSlice":
        """Scores and reference of ``[start, end)`` on ``chrom``."""
        size = self.chrom_len(chrom)
        if not 0 <= start < end <= size:
            raise StoreError(f"range {chrom}:{start}-{end} is outside {chrom} (length {size})")
        group = self._group(chrom)
        scores = np.asarray(group["scores"][start:end], dtype=np.float32)
        return MutmapSlice(scores, np.asarray(group["ref"][start:end]))


class MutmapSlice(NamedTuple):
    """scores shape=(n, 4, T) float32; ref shape=(n,) int8 (-1 N, -2 not scanned)."""

    scores: np.ndarray
    ref: np.ndarray


def open_mutmap(path: str | os.PathLike) -> MutmapStore:
    """Opens a store written by ``python -m jaxmotif.mutmap`` for reading.

    Examples
    --------
    >>> store = open_mutmap("out.zarr")                      # doctest: +SKIP
    >>> store.read("chr1", 1000, 2000).scores.shape           # (1000, 4, T)
    """
    path = Path(path)
    if not path.exists():
        raise StoreError(f"store {path} does not exist")
    return MutmapStore(path, mode="r")
