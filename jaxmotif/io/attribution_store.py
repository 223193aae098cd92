"""The attribution store: per-region one-hot windows and their attributions in one Zarr v3 group.

Written by ``python -m jaxmotif.attribute`` (and by :func:`write_attribution_store`), read by
``python -m jaxmotif.modisco`` and the report. Layout (N windows of L bases, T targets)::

    one_hot          (N, L, 4)     uint8 (or float32), channels-last A, C, G, T; N bases all zero
    attributions     (N, L, 4, T)  float32; hypothetical contributions when attrs["hypothetical"]
    regions/chrom    (N,)          str, the window's chromosome (or a FASTA record name)
    regions/start    (N,)          int64, 0-based
    regions/end      (N,)          int64, exclusive (end - start == L for genome windows)

    attrs: format="jaxmotif.attributions", version=1, target_names (list of T str), method (str),
           hypothetical (bool), model (checkpoint path or digest), complete (bool), alphabet="ACGT"

``complete`` is False while a scan is still writing; readers refuse an incomplete store unless
asked not to. The contribution of the observed base is ``attributions * one_hot[..., None]``.
"""

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

FORMAT = "jaxmotif.attributions"
VERSION = 1
# Windows per chunk along N: small enough that reading one target's rows stays cheap, large enough
# that a 100k-region store is not millions of files.
DEFAULT_CHUNK_ROWS = 64


class AttributionStoreError(ValueError):
    """A store that is missing, malformed or incomplete; the message names the path and the field."""


def _zarr():
    try:
        import zarr
    except ImportError as err:  # pragma: no cover - zarr is in the genome extra of the dev install
        raise ImportError("attribution stores need zarr; pip install 'jaxmotif[genome]'") from err
    return zarr


class Region(NamedTuple):
    chrom: str
    start: int
    end: int


def write_attribution_store(
    path: str | os.PathLike,
    one_hot: np.ndarray,
    attributions: np.ndarray,
    regions: Sequence[Sequence] | None,
    target_names: Sequence[str],
    method: str,
    hypothetical: bool,
    *,
    model: str = "",
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> Path:
    """Write a complete attribution store at ``path`` (which must not exist).

    Parameters
    ----------
    path : str or os.PathLike
        The Zarr v3 group folder to create.
    one_hot : np.ndarray, shape=(N, L, 4)
        Windows, A, C, G, T; stored as uint8 when every value is 0 or 1, else float32.
    attributions : np.ndarray, shape=(N, L, 4, T)
        Attributions per window, base and target (hypothetical when ``hypothetical``).
    regions : sequence of (chrom, start, end), length N, or None
        Genome coordinates of the windows, 0-based half-open; None names window ``i`` ``"seq{i}"``
        spanning ``[0, L)``.
    target_names : sequence of str, length T
    method : str
        The attribution method, e.g. ``"deep_lift_shap"``.
    hypothetical : bool
        Whether ``attributions`` are hypothetical contributions (every base, not only the observed).
    model : str
        Checkpoint path or digest the attributions came from.
    chunk_rows : int
        Windows per chunk.

    Returns
    -------
    Path
    """
    zarr = _zarr()
    path = Path(path)
    one_hot = np.asarray(one_hot)
    attributions = np.asarray(attributions, dtype=np.float32)
    if one_hot.ndim != 3 or one_hot.shape[2] != 4:
        raise AttributionStoreError(f"one_hot shape {one_hot.shape} must be (N, L, 4)")
    n, length = one_hot.shape[:2]
    if attributions.ndim != 4 or attributions.shape[:3] != (n, length, 4):
        raise AttributionStoreError(f"attributions shape {attributions.shape} must be ({n}, {length}, 4, T)")
    names = [str(t) for t in target_names]
    if len(names) != attributions.shape[3]:
        raise AttributionStoreError(
            f"{len(names)} target_names for {attributions.shape[3]} attribution targets"
        )
    if regions is None:
        regions = [(f"seq{i}", 0, length) for i in range(n)]
    regions = [Region(str(r[0]), int(r[1]), int(r[2])) for r in regions]
    if len(regions) != n:
        raise AttributionStoreError(f"{len(regions)} regions for {n} windows")
    for i, r in enumerate(regions):
        if r.end <= r.start:
            raise AttributionStoreError(f"region {i} {r.chrom}:{r.start}-{r.end} is empty")
    if path.exists():
        raise AttributionStoreError(f"{path} exists")
    binary = np.isin(one_hot, (0, 1)).all()
    rows = max(1, min(chunk_rows, n))
    group = zarr.open_group(str(path), mode="w-")
    group.attrs.update(
        {
            "format": FORMAT,
            "version": VERSION,
            "target_names": names,
            "method": str(method),
            "hypothetical": bool(hypothetical),
            "model": str(model),
            "alphabet": "ACGT",
            "complete": False,
        }
    )
    oh = group.create_array(
        "one_hot", shape=one_hot.shape, dtype="uint8" if binary else "float32", chunks=(rows, length, 4)
    )
    oh[:] = one_hot.astype(np.uint8 if binary else np.float32)
    attr = group.create_array(
        "attributions", shape=attributions.shape, dtype="float32", chunks=(rows, length, 4, len(names))
    )
    attr[:] = attributions
    reg = group.create_group("regions")
    chrom = reg.create_array("chrom", shape=(n,), dtype=str, chunks=(max(n, 1),))
    chrom[:] = np.array([r.chrom for r in regions], dtype=str)
    for field in ("start", "end"):
        arr = reg.create_array(field, shape=(n,), dtype="int64", chunks=(max(n, 1),))
        arr[:] = np.array([getattr(r, field) for r in regions], dtype=np.int64)
    group.attrs["complete"] = True
    return path


class AttributionData(NamedTuple):
    """One target's data read from a store.

    one_hot : np.ndarray, shape=(N, L, 4), float32
    attributions : np.ndarray, shape=(N, L, 4), float32 (hypothetical when the store's are)
    regions : list of Region, length N
    """

    one_hot: np.ndarray
    attributions: np.ndarray
    regions: list[Region]


class AttributionStore:
    """An attribution store opened for reading (see the module docstring for the layout).

    Parameters
    ----------
    path : str or os.PathLike
    allow_incomplete : bool
        Open a store whose scan has not finished (its unwritten rows read as zeros).

    Raises
    ------
    AttributionStoreError
        Missing path, not a jaxmotif attribution store, inconsistent shapes, or incomplete.
    """

    def __init__(self, path: str | os.PathLike, *, allow_incomplete: bool = False):
        zarr = _zarr()
        self.path = Path(path)
        if not self.path.exists():
            raise AttributionStoreError(f"attribution store {self.path} does not exist")
        try:
            self._group = zarr.open_group(str(self.path), mode="r")
        except Exception as err:  # zarr raises several types for a folder that is not a group
            raise AttributionStoreError(f"{self.path} is not a Zarr group ({type(err).__name__})") from None
        attrs = dict(self._group.attrs)
        if attrs.get("format") != FORMAT:
            raise AttributionStoreError(f"{self.path} is not a jaxmotif attribution store (format attr)")
        for key in ("target_names", "method", "hypothetical", "complete"):
            if key not in attrs:
                raise AttributionStoreError(f"{self.path} lacks the attribute {key!r}")
        self.attrs: dict[str, Any] = attrs
        for name in ("one_hot", "attributions", "regions/chrom", "regions/start", "regions/end"):
            if name not in self._group:
                raise AttributionStoreError(f"{self.path} lacks the array {name!r}")
        n, length = self._group["one_hot"].shape[:2]
        expected = (n, length, 4, len(self.target_names))
        if tuple(self._group["attributions"].shape) != expected:
            raise AttributionStoreError(
                f"{self.path}: attributions shape {self._group['attributions'].shape} != {expected}"
            )
        if not attrs["complete"] and not allow_incomplete:
            raise AttributionStoreError(f"{self.path} is incomplete (its scan has not finished)")

    @property
    def target_names(self) -> list[str]:
        return list(self.attrs["target_names"])

    @property
    def method(self) -> str:
        return str(self.attrs["method"])

    @property
    def hypothetical(self) -> bool:
        return bool(self.attrs["hypothetical"])

    @property
    def model(self) -> str:
        return str(self.attrs.get("model", ""))

    @property
    def shape(self) -> tuple[int, int]:
        """(N, L): windows and their length."""
        n, length = self._group["one_hot"].shape[:2]
        return int(n), int(length)

    def target_index(self, target: str | int | None) -> int:
        """Index of ``target`` (a name or index); None is allowed when the store holds one target."""
        names = self.target_names
        if target is None:
            if len(names) != 1:
                raise AttributionStoreError(
                    f"{self.path} holds {len(names)} targets ({', '.join(names)}); choose one"
                )
            return 0
        if isinstance(target, int | np.integer) or str(target).isdigit():
            index = int(target)
            if not 0 <= index < len(names):
                raise AttributionStoreError(f"target index {index} is out of range 0..{len(names) - 1}")
            return index
        if target not in names:
            raise AttributionStoreError(f"target {target!r} is not in {self.path}: {', '.join(names)}")
        return names.index(target)

    def regions(self) -> list[Region]:
        g = self._group["regions"]
        return [
            Region(str(c), int(s), int(e))
            for c, s, e in zip(g["chrom"][:], g["start"][:], g["end"][:], strict=True)
        ]

    def read(self, target: str | int | None = None, rows: slice | None = None) -> AttributionData:
        """One target's one-hot and attributions (float32), rows ``rows`` (default: all)."""
        index = self.target_index(target)
        rows = slice(None) if rows is None else rows
        one_hot = np.asarray(self._group["one_hot"][rows], dtype=np.float32)
        attributions = np.asarray(self._group["attributions"][rows, :, :, index], dtype=np.float32)
        return AttributionData(one_hot, attributions, self.regions()[rows])


def open_attribution_store(path: str | os.PathLike, *, allow_incomplete: bool = False) -> AttributionStore:
    """:class:`AttributionStore` at ``path``."""
    return AttributionStore(path, allow_incomplete=allow_incomplete)
