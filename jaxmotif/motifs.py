"""Motif databases (JASPAR offline via pyjaspar, or MEME files) and TomTom matching (memelite).

The last step of the seed's method 7: the conv1 PWMs, written as MEME motifs, are compared with a
database of known transcription-factor motifs by TomTom. Here both sides are :class:`Motif` lists and
the comparison runs in-process with memelite's numba TomTom, so no MEME-suite install or network is
needed: JASPAR releases ship inside the pyjaspar wheel.

memelite compiles TomTom with numba on first use (about a minute); set ``NUMBA_CACHE_DIR`` to a
writable directory so later processes reuse the compiled code.
"""

import functools
import math
import os
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from jaxmotif.io.atomic import atomic_write_text
from jaxmotif.io.meme import Motif, information_content, read_meme, validate_pwm

#: Columns of :func:`tomtom_matches` rows and of :func:`write_tomtom_tsv` files, in order.
TOMTOM_COLUMNS = (
    "filter",
    "nsites",
    "information_content",
    "rank",
    "target_id",
    "target_name",
    "p_value",
    "e_value",
    "q_value",
    "offset",
    "orientation",
)

#: JASPAR 2024 CORE vertebrate matrices of ``jaxmotif/data/motifs/demo_motifs.meme``: CTCF,
#: GATA1::TAL1 (the GATA1 matrix MA0035.5 is only 7 wide), Spi1 (PU.1) and FOS::JUN (AP-1).
DEMO_MOTIF_IDS = ("MA0139.2", "MA0140.3", "MA0080.7", "MA1126.2")

_INSTALL_HINT = "install the motif extra: pip install 'jaxmotif[motifs]'"
# Queries per memelite call: its full result matrix is (queries, targets, 5) float64, so chunking
# bounds memory for many queries (class-optimization runs) without changing any p-value, since
# each query's background comes from the target columns only.
_QUERY_CHUNK = 256


def _import_pyjaspar():
    try:
        import pyjaspar
    except ImportError as err:
        raise ImportError(f"JASPAR motifs need pyjaspar (and biopython); {_INSTALL_HINT}") from err
    return pyjaspar


def _import_tomtom():
    try:
        from memelite import tomtom
    except ImportError as err:
        raise ImportError(f"TomTom matching needs memelite; {_INSTALL_HINT}") from err
    return tomtom


def jaspar_releases() -> list[str]:
    """Names of the JASPAR releases bundled with the installed pyjaspar, e.g. ``["JASPAR2024", ...]``."""
    return sorted(_import_pyjaspar().jaspar_releases)


@functools.lru_cache(maxsize=8)
def _jaspar_motifs_cached(release: str, collection: str | None, tax_group: str | None) -> tuple[Motif, ...]:
    """Read and normalize one selection of a bundled JASPAR DB; arrays are read-only (shared by callers)."""
    pyjaspar = _import_pyjaspar()
    if release not in pyjaspar.jaspar_releases:
        # pyjaspar itself only prints a message for an unknown release and fails later.
        raise ValueError(f"unknown JASPAR {release=}; bundled releases: {', '.join(jaspar_releases())}")
    db = pyjaspar.jaspardb(release=release)
    try:
        # Latest version of each matrix only (pyjaspar's default), JASPAR's non-redundant set.
        if collection is None and tax_group is None:
            # pyjaspar builds invalid SQL without any filter: ask each collection in turn
            names = sorted(row[0] for row in db.conn.execute("SELECT DISTINCT COLLECTION FROM MATRIX"))
            records = [r for name in names for r in db.fetch_motifs(collection=name)]
        else:
            records = db.fetch_motifs(collection=collection, tax_group=tax_group)
    finally:
        db.conn.close()
    motifs = []
    for record in records:
        counts = np.array([record.counts[letter] for letter in "ACGT"], dtype=np.float64).T  # (w, 4)
        totals = counts.sum(axis=1, keepdims=True)
        if (totals <= 0).any():
            raise ValueError(f"{release} matrix {record.matrix_id} has a position without counts")
        pwm = counts / totals
        pwm.setflags(write=False)
        motifs.append(
            Motif(name=record.matrix_id, pwm=pwm, nsites=int(round(totals[0, 0])), alt_name=record.name)
        )
    return tuple(motifs)


def jaspar_motifs(
    release: str = "JASPAR2024", collection: str | None = "CORE", tax_group: str | None = "vertebrates"
) -> list[Motif]:
    """Motifs of a JASPAR release, read offline from the SQLite DB bundled with pyjaspar.

    Only the latest version of each matrix is returned (e.g. CTCF ``MA0139.2``, not ``MA0139.1``).

    Parameters
    ----------
    release : str
        e.g. ``"JASPAR2024"``; see :func:`jaspar_releases`.
    collection : str or None
        JASPAR collection, ``"CORE"`` by default; None for all collections.
    tax_group : str or None
        ``"vertebrates"``, ``"plants"``, ``"insects"``, ``"nematodes"``, ``"fungi"``, ``"urochordates"``
        ...; None for all.

    Returns
    -------
    list of Motif
        ``name`` is the matrix ID (``"MA0139.2"``), ``alt_name`` the TF name (``"CTCF"``), ``pwm`` the
        counts normalized per position, shape ``(w, 4)``, read-only; ``nsites`` the first column's
        count total. Results are cached per arguments (a pure read of a bundled file).

    Raises
    ------
    ValueError
        Unknown release, or no motif matches the selection.
    ImportError
        pyjaspar is not installed.
    """
    motifs = _jaspar_motifs_cached(release, collection, tax_group)
    if not motifs:
        raise ValueError(f"no JASPAR motifs for {release=} {collection=} {tax_group=}")
    return list(motifs)


def load_motif_db(spec: str | os.PathLike) -> list[Motif]:
    """Load a motif database from a JASPAR spec or a MEME file.

    Parameters
    ----------
    spec : str or os.PathLike
        ``"JASPAR2024"`` (CORE vertebrates), ``"JASPAR2024:plants"`` (CORE of another taxonomic group),
        ``"JASPAR2024:all"`` (CORE, every group), or the path of a MEME-format file.

    Returns
    -------
    list of Motif

    Raises
    ------
    FileNotFoundError
        ``spec`` is neither a JASPAR spec nor an existing file.
    ValueError
        Unknown release or taxonomic group, a malformed MEME file
        (:class:`~jaxmotif.io.meme.MemeFormatError`), or a file naming two motifs alike (TomTom rows and
        match logos identify a target by its ID).
    """
    text = os.fspath(spec)
    match = re.fullmatch(r"(JASPAR\d{4})(?::(\w+))?", text, flags=re.IGNORECASE)
    if match and not Path(text).exists():
        release = match.group(1).upper()
        group = (match.group(2) or "vertebrates").lower()
        return jaspar_motifs(release, "CORE", None if group == "all" else group)
    path = Path(text)
    if not path.is_file():
        raise FileNotFoundError(
            f"motif database {text!r} is neither a JASPAR release spec (e.g. 'JASPAR2024' or "
            f"'JASPAR2024:plants') nor an existing MEME file"
        )
    motifs = read_meme(path)
    seen: set[str] = set()
    for motif in motifs:
        if motif.name in seen:
            raise ValueError(
                f"motif database {text}: two motifs are named {motif.name!r}; motif IDs must be unique"
            )
        seen.add(motif.name)
    return motifs


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg q-values (FDR-adjusted p-values).

    ``q_(i) = min_{j >= i} p_(j) * m / j`` over the ascending p-values ``p_(1) <= ... <= p_(m)``,
    capped at 1.

    Parameters
    ----------
    p_values : array-like, shape=(m,)
        Values in [0, 1].

    Returns
    -------
    np.ndarray, shape=(m,)
        q-values in the input order.
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p_values must be 1-D, got shape {p.shape}")
    if p.size and (np.isnan(p).any() or p.min() < 0 or p.max() > 1):
        raise ValueError("p_values must lie in [0, 1] (no NaN)")
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    # Running minimum from the largest p-value down makes q monotone in p.
    q_sorted = np.minimum.accumulate(scaled[::-1])[::-1]
    q = np.empty_like(p)
    q[order] = np.minimum(q_sorted, 1.0)
    return q


def tomtom_matches(
    queries: Sequence[Motif],
    targets: Sequence[Motif],
    top: int | None = 5,
    *,
    reverse_complement: bool = True,
) -> list[dict[str, Any]]:
    """Compare query motifs with target motifs by TomTom (memelite) and keep the best matches.

    Parameters
    ----------
    queries : sequence of Motif
        e.g. conv1 filter PWMs, ``pwm`` of shape ``(w, 4)``.
    targets : sequence of Motif
        A motif database, e.g. :func:`jaspar_motifs`. TomTom builds its null distribution from the
        target columns, so use a whole database (memelite warns below 25 targets).
    top : int or None
        Matches kept per query (rank 1..top); None keeps every target.
    reverse_complement : bool
        Also align each query with the reverse complement of each target.

    Returns
    -------
    list of dict
        Rows in query order, then rank, with keys :data:`TOMTOM_COLUMNS`: ``filter`` (query name),
        ``nsites`` and ``information_content`` (bits) of the query, ``rank`` (1 = smallest p-value,
        ties broken by the larger TomTom score), ``target_id`` and ``target_name`` (alt name, else the
        ID), ``p_value``, ``e_value`` (p × number of targets), ``q_value`` (Benjamini–Hochberg over the
        query's p-values against all targets), ``offset`` (memelite's alignment offset of the query
        relative to the target) and ``orientation`` (``"+"``, or ``"-"`` when the reverse complement
        of the target matched).

    Raises
    ------
    ValueError
        A query or target with an invalid PWM (the message names it), no targets, or ``top < 1``.
    """
    if top is not None and top < 1:
        raise ValueError(f"top must be >= 1 or None, got {top=}")
    if not targets:
        raise ValueError("no target motifs to compare with")
    if not queries:
        return []
    q_pwms = [validate_pwm(m.pwm, m.name) for m in queries]
    # memelite wants (4, w) arrays in a list (it appends reverse complements with `+`), float64.
    t_arrays = [np.ascontiguousarray(validate_pwm(m.pwm, m.name).T) for m in targets]
    tomtom = _import_tomtom()
    n_targets = len(targets)
    keep = n_targets if top is None else min(top, n_targets)

    rows: list[dict[str, Any]] = []
    for begin in range(0, len(queries), _QUERY_CHUNK):
        chunk = q_pwms[begin : begin + _QUERY_CHUNK]
        p_values, scores, offsets, _overlaps, strands = tomtom(
            [np.ascontiguousarray(pwm.T) for pwm in chunk], t_arrays, reverse_complement=reverse_complement
        )
        for i, pwm in enumerate(chunk):
            query = queries[begin + i]
            p = np.clip(p_values[i], 0.0, 1.0)
            q = benjamini_hochberg(p)
            order = np.lexsort((-scores[i], p))[:keep]
            ic = information_content(pwm)
            for rank, t in enumerate(order, start=1):
                target = targets[t]
                rows.append(
                    {
                        "filter": query.name,
                        "nsites": query.nsites,
                        "information_content": ic,
                        "rank": rank,
                        "target_id": target.name,
                        "target_name": target.alt_name if target.alt_name is not None else target.name,
                        "p_value": float(p[t]),
                        "e_value": float(p[t]) * n_targets,
                        "q_value": float(q[t]),
                        "offset": int(offsets[i, t]),
                        # Strand 1 means the target's reverse complement aligned; without reverse
                        # complements memelite leaves that field unset.
                        "orientation": "-" if reverse_complement and strands[i, t] == 1 else "+",
                    }
                )
    return rows


def _format_cell(value: Any, column: str, index: int) -> str:
    if value is None:
        return "NA"
    if isinstance(value, float | np.floating):
        value = float(value)
        if math.isnan(value):
            return "NA"
        return f"{value:.4f}" if column == "information_content" else f"{value:.6g}"
    text = str(value)
    if re.search(r"[\t\r\n]", text):
        raise ValueError(f"row {index}: {column}={text!r} contains a tab or newline")
    return text


def write_tomtom_tsv(path: str | os.PathLike, rows: Sequence[dict[str, Any]]) -> None:
    """Write TomTom rows as a tab-separated table, atomically.

    Parameters
    ----------
    path : str or os.PathLike
    rows : sequence of dict
        As returned by :func:`tomtom_matches`; every row needs the keys :data:`TOMTOM_COLUMNS`.
        None is written as ``NA``; p-, E- and q-values with 6 significant digits.
    """
    lines = ["\t".join(TOMTOM_COLUMNS)]
    for index, row in enumerate(rows):
        missing = [column for column in TOMTOM_COLUMNS if column not in row]
        if missing:
            raise ValueError(f"row {index} lacks columns {missing}")
        lines.append("\t".join(_format_cell(row[column], column, index) for column in TOMTOM_COLUMNS))
    atomic_write_text(path, "\n".join(lines) + "\n")


def demo_motifs_path() -> Path:
    """Path of the bundled ``demo_motifs.meme`` (the JASPAR 2024 matrices :data:`DEMO_MOTIF_IDS`)."""
    return Path(str(resources.files("jaxmotif") / "data" / "motifs" / "demo_motifs.meme"))


def demo_motifs_from_jaspar(release: str = "JASPAR2024") -> list[Motif]:
    """The :data:`DEMO_MOTIF_IDS` matrices read from pyjaspar, in that order (regenerates the demo file)."""
    by_id = {motif.name: motif for motif in jaspar_motifs(release, "CORE", None)}
    missing = [matrix_id for matrix_id in DEMO_MOTIF_IDS if matrix_id not in by_id]
    if missing:
        raise ValueError(f"{release} lacks the demo matrices {missing}")
    return [by_id[matrix_id] for matrix_id in DEMO_MOTIF_IDS]
