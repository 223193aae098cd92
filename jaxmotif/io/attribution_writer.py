"""Writing an attribution store chunk by chunk (``python -m jaxmotif.attribute``).

Produces the layout read by :mod:`jaxmotif.io.attribution_store` (format ``jaxmotif.attributions``,
version 1; N windows of L bases, T targets)::

    one_hot          (N, L, 4)     uint8, channels-last A, C, G, T; N bases all zero
    attributions     (N, L, 4, T)  float32 (float16 with store_dtype float16; bfloat16 values are
                                   held in float32, their zero low bytes removed by the compressor)
    regions/chrom    (N,)          str;  regions/start, regions/end (N,) int64, 0-based half-open
                                   window coordinates (start may be < 0 or end > the chromosome
                                   length at its ends: those bases are N)
    done             (n_chunks,)   uint8, 1 once rows [k*chunk_rows, (k+1)*chunk_rows) are written

    attrs: format, version, target_names, method, hypothetical, model, alphabet, complete, plus
           chunk_rows, store_dtype, values (what the stored numbers are), scan (what defines the
           content; a resume or another part must match it), args

Rows are written one whole chunk at a time and the chunk is marked done after its writes returned
(Zarr's local store writes each chunk file atomically), so a killed scan keeps its finished chunks
and a resume redoes the others. ``complete`` turns True once every chunk is done.
"""

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from jaxmotif.io.attribution_store import DEFAULT_CHUNK_ROWS, FORMAT, VERSION

__all__ = ["DEFAULT_CHUNK_ROWS", "FORMAT", "VERSION", "AttributionStoreWriter", "AttributionWriterError"]


class AttributionWriterError(ValueError):
    """A store that cannot be created or continued; the message names the path."""


class AttributionStoreWriter:
    """An attribution store opened for writing rows (see the module docstring)."""

    def __init__(self, path: str | os.PathLike):
        import zarr

        self.path = Path(path)
        if not (self.path / "zarr.json").is_file():
            raise AttributionWriterError(f"{self.path} is not a Zarr v3 store")
        self.root = zarr.open_group(str(self.path), mode="r+", zarr_format=3)
        if self.root.attrs.get("format") != FORMAT or "done" not in self.root:
            raise AttributionWriterError(f"{self.path} is not a resumable jaxmotif attribution store")
        self.chunk_rows = int(self.root.attrs["chunk_rows"])
        self.n, self.length = (int(x) for x in self.root["one_hot"].shape[:2])

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        regions: Sequence[tuple[str, int, int]],
        length: int,
        target_names: Sequence[str],
        attrs: Mapping,
        *,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        store_dtype: str = "float32",
    ) -> "AttributionStoreWriter":
        """The store's metadata and regions (no rows), atomically: built beside ``path``, then renamed.

        regions: (chrom, start, end) of the N windows, each ``end - start == length``.
        attrs: method, hypothetical, model, values, scan, args, ... (JSON-serialisable).
        """
        import zarr

        from jaxmotif.scan import store_array_dtype, store_compressors

        path = Path(path).absolute()
        if path.exists():
            raise AttributionWriterError(f"{path} exists; remove it or resume into it")
        n, t = len(regions), len(target_names)
        rows = max(1, min(chunk_rows, n))
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
        try:
            root = zarr.open_group(str(tmp), mode="w", zarr_format=3)
            root.create_array("one_hot", shape=(n, length, 4), chunks=(rows, length, 4), dtype="uint8")
            root.create_array(
                "attributions",
                shape=(n, length, 4, t),
                chunks=(rows, length, 4, t),
                dtype=store_array_dtype(store_dtype),
                compressors=store_compressors(store_dtype),
            )
            reg = root.create_group("regions")
            chrom = reg.create_array("chrom", shape=(n,), dtype=str, chunks=(max(n, 1),))
            chrom[:] = np.array([str(r[0]) for r in regions], dtype=str)
            for i, field in ((1, "start"), (2, "end")):
                arr = reg.create_array(field, shape=(n,), dtype="int64", chunks=(max(n, 1),))
                arr[:] = np.array([int(r[i]) for r in regions], dtype=np.int64)
            root.create_array("done", shape=(-(-n // rows),), chunks=(1,), dtype="uint8", fill_value=0)
            from jaxmotif import __version__

            root.attrs.update(
                {
                    **dict(attrs),
                    "format": FORMAT,
                    "version": VERSION,
                    "jaxmotif_version": __version__,
                    "target_names": [str(x) for x in target_names],
                    "alphabet": "ACGT",
                    "complete": False,
                    "chunk_rows": rows,
                    "store_dtype": store_dtype,
                }
            )
            tmp.rename(path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return cls(path)

    @property
    def attrs(self) -> dict:
        return dict(self.root.attrs)

    @property
    def n_chunks(self) -> int:
        return -(-self.n // self.chunk_rows)

    def chunk_span(self, chunk: int) -> tuple[int, int]:
        start = chunk * self.chunk_rows
        return start, min(start + self.chunk_rows, self.n)

    def done_mask(self) -> np.ndarray:
        """shape=(n_chunks,) bool: chunks already written."""
        return np.asarray(self.root["done"][:]).astype(bool)

    def write_chunk(self, chunk: int, one_hot: np.ndarray, attributions: np.ndarray) -> None:
        """One whole chunk: one_hot (n, L, 4) uint8, attributions (n, L, 4, T), n its rows."""
        a, b = self.chunk_span(chunk)
        self.root["one_hot"][a:b] = np.asarray(one_hot, np.uint8)
        array = self.root["attributions"]
        array[a:b] = np.asarray(attributions, dtype=array.dtype)

    def mark_done(self, chunk: int) -> None:
        """Records a chunk as written (call only after :meth:`write_chunk` returned)."""
        self.root["done"][int(chunk)] = 1

    def mark_complete(self) -> None:
        self.root.attrs["complete"] = True

    def read_rows(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        """(one_hot (n, L, 4) uint8, attributions (n, L, 4, T) float32) of rows [a, b)."""
        return (
            np.asarray(self.root["one_hot"][a:b]),
            np.asarray(self.root["attributions"][a:b], dtype=np.float32),
        )

    def regions(self) -> list[tuple[str, int, int]]:
        g = self.root["regions"]
        return [
            (str(c), int(s), int(e))
            for c, s, e in zip(g["chrom"][:], g["start"][:], g["end"][:], strict=True)
        ]
