"""MEME minimal motif format: read, write, and information content of PWMs.

A :class:`Motif` holds a position probability matrix ``pwm`` of shape ``(w, 4)`` whose rows are
positions and whose columns are the letters A, C, G, T (the model alphabet's default order); each
row sums to 1. :func:`write_meme` writes the MEME "minimal" format that MEME-suite tools
(TomTom, FIMO) and memelite read; :func:`read_meme` reads that format back, including files
written by MEME, JASPAR and HOCOMOCO (``URL`` lines, log-odds blocks and blank lines are skipped).
"""

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxmotif.io.atomic import atomic_write_text

# Rows of written and read matrices must sum to 1 within this; MEME files round probabilities to
# 6 decimals or fewer, so a row of 4 rounded values can be off by a few 1e-6 (JASPAR's own MEME
# downloads are off by up to ~1e-3).
_ROW_SUM_ATOL = 1e-3
# Read rows are renormalized only when they are this close to 1, so that a count matrix put in a
# letter-probability block is reported rather than silently turned into probabilities.
_READ_ROW_SUM_ATOL = 2e-2

# Numbers as MEME tools write them; nan/inf are accepted here so that validation can name them.
_FLOAT = r"[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|(?i:nan|inf(?:inity)?))"
_KEY_VALUE = re.compile(r"(\w+)\s*=\s*(\S+)")


class MemeFormatError(ValueError):
    """Malformed MEME input; the message names the file and the line."""


class Motif(NamedTuple):
    """One motif as a position probability matrix.

    Attributes
    ----------
    name : str
        Identifier (the first word after ``MOTIF``), e.g. ``"MA0139.2"`` or ``"filter17"``.
    pwm : np.ndarray, shape=(w, 4)
        Letter probabilities per position in A, C, G, T order; each row sums to 1.
    nsites : int or None
        Number of sites the matrix was built from, when known.
    alt_name : str or None
        Alternative name (the second word after ``MOTIF``, one word as in the MEME format; further
        words on the line are ignored), e.g. the TF name ``"CTCF"``.
    """

    name: str
    pwm: np.ndarray
    nsites: int | None = None
    alt_name: str | None = None


class InformationWindow(NamedTuple):
    """A half-open window ``[start, end)`` of motif positions."""

    start: int
    end: int


def validate_pwm(pwm: np.ndarray, name: str, atol: float = _ROW_SUM_ATOL) -> np.ndarray:
    """Check a position probability matrix and return it as float64.

    Parameters
    ----------
    pwm : array-like, shape=(w, 4)
        Letter probabilities per position, A, C, G, T order.
    name : str
        Motif name used in error messages.
    atol : float
        Allowed deviation of each row sum from 1.

    Returns
    -------
    np.ndarray, shape=(w, 4), dtype float64

    Raises
    ------
    ValueError
        Wrong shape, NaN/inf or negative entries, or a row not summing to 1; the message names the
        motif and the first offending position.
    """
    arr = np.asarray(pwm, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 4 or arr.shape[0] == 0:
        raise ValueError(f"motif {name!r}: pwm must have shape (w, 4) with w >= 1, got {arr.shape}")
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        pos = int(np.argmax(bad))
        raise ValueError(f"motif {name!r}: pwm has NaN or inf at position {pos}: {arr[pos].tolist()}")
    bad = (arr < 0).any(axis=1)
    if bad.any():
        pos = int(np.argmax(bad))
        raise ValueError(
            f"motif {name!r}: pwm has a negative probability at position {pos}: {arr[pos].tolist()}"
        )
    sums = arr.sum(axis=1)
    bad = np.abs(sums - 1.0) > atol
    if bad.any():
        pos = int(np.argmax(bad))
        raise ValueError(
            f"motif {name!r}: pwm row {pos} sums to {sums[pos]:.6g}, not 1 (rows must be probabilities)"
        )
    return arr


def _validate_background(background: Sequence[float]) -> np.ndarray:
    bg = np.asarray(background, dtype=np.float64)
    if bg.shape != (4,) or not np.isfinite(bg).all() or (bg < 0).any() or abs(bg.sum() - 1.0) > _ROW_SUM_ATOL:
        raise ValueError(
            f"background must be 4 non-negative frequencies (A, C, G, T) summing to 1, got {background}"
        )
    return bg


def write_meme(
    path: str | os.PathLike,
    motifs: Sequence[Motif],
    background: Sequence[float] = (0.25, 0.25, 0.25, 0.25),
    version: str = "5.0.4",
) -> None:
    """Write motifs to a MEME minimal-format file, atomically.

    The layout matches the seed's ``matrix2meme`` (``MEME version``, ``ALPHABET= ACGT``,
    ``strands: + -``, background) plus ``nsites=`` and ``E= 0`` on each matrix line, which MEME
    tools expect when they weight motifs by their number of sites.

    Parameters
    ----------
    path : str or os.PathLike
        Output file; replaced in one rename after the whole file is written.
    motifs : sequence of Motif
        ``pwm`` of shape ``(w, 4)`` each, rows summing to 1. Names must be unique and contain no
        whitespace (MEME identifiers are one word), and so must ``alt_name`` (MEME readers keep only
        the first word after the name). ``nsites=None`` leaves ``nsites=`` out.
    background : sequence of 4 floats
        A, C, G, T background frequencies.
    version : str
        Value of the ``MEME version`` line.

    Raises
    ------
    ValueError
        A NaN, negative or non-normalized row (the message names the motif and the position), a bad
        name, or a duplicate name.
    """
    bg = _validate_background(background)
    lines = [
        f"MEME version {version}",
        "",
        "ALPHABET= ACGT",
        "",
        "strands: + -",
        "",
        "Background letter frequencies",
        " ".join(f"{letter} {freq:.6g}" for letter, freq in zip("ACGT", bg, strict=True)),
        "",
    ]
    seen: set[str] = set()
    for index, motif in enumerate(motifs):
        name = motif.name
        if not isinstance(name, str) or not name or re.search(r"\s", name):
            raise ValueError(f"motif {index}: name must be a non-empty word without whitespace, got {name!r}")
        if name in seen:
            raise ValueError(f"motif {index}: duplicate motif name {name!r}")
        seen.add(name)
        alt = motif.alt_name
        if alt is not None and (not isinstance(alt, str) or not alt or re.search(r"\s", alt)):
            # MEME readers (MEME suite, read_meme) take only the first word after the name as alt name.
            raise ValueError(
                f"motif {name!r}: alt_name must be a non-empty word without whitespace, got {alt!r}"
            )
        if motif.nsites is not None and (int(motif.nsites) != motif.nsites or motif.nsites < 0):
            raise ValueError(f"motif {name!r}: nsites must be a non-negative integer, got {motif.nsites!r}")
        pwm = validate_pwm(motif.pwm, name)
        # Renormalize so the written (rounded) rows sum to 1 as closely as 6 decimals allow.
        pwm = pwm / pwm.sum(axis=1, keepdims=True)
        header = f"MOTIF {name}" if alt is None else f"MOTIF {name} {alt}"
        # An unknown nsites is left out rather than invented, so read_meme gives None back (MEME tools
        # then assume their default of 20 sites when they need pseudocounts).
        nsites = "" if motif.nsites is None else f" nsites= {int(motif.nsites)}"
        lines.append(header)
        lines.append(f"letter-probability matrix: alength= 4 w= {pwm.shape[0]}{nsites} E= 0")
        lines.extend(" ".join(f"{value:.6f}" for value in row) for row in pwm)
        lines.append("")
    atomic_write_text(path, "\n".join(lines) + "\n")


def _check_alphabet(letters: str, where: str) -> None:
    if letters.upper() != "ACGT":
        raise MemeFormatError(f"{where}: only the DNA alphabet ACGT is supported, got ALPHABET= {letters}")


def read_meme(path: str | os.PathLike) -> list[Motif]:
    """Read every letter-probability matrix of a MEME-format file.

    Reads MEME minimal files (as written by MEME-suite tools, JASPAR, HOCOMOCO, CIS-BP converters) and
    MEME's ``meme.txt``. Tolerates blank lines, ``URL`` lines, comments, log-odds matrices (skipped),
    tabs or several spaces between fields, CRLF or CR line ends, a UTF-8 byte-order mark, a
    background spanning several lines (not read) and a missing ``w=`` (rows are then read up to the
    first non-numeric line). Rows summing to 1 within 0.02 are renormalized, since MEME files round
    probabilities (memelite's reader keeps them as written, so TomTom p-values on such files can
    differ slightly from memelite's run on the raw file).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    list of Motif
        In file order; ``pwm`` has shape ``(w, 4)``, A, C, G, T columns.

    Raises
    ------
    MemeFormatError
        A malformed or incomplete matrix (wrong number of values on a row, fewer or more rows than
        ``w=``, a non-number, a row not summing to 1), an alphabet other than ACGT (RNA, protein),
        text that is not UTF-8, or a file with no motif. The message names the file and the line.
    """
    path = Path(path)
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        raise MemeFormatError(f"{path}: is gzip-compressed; decompress it first (gunzip)")
    try:
        # utf-8-sig drops a byte-order mark, which would otherwise glue itself to the first word.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise MemeFormatError(f"{path}:{line}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    # splitlines() also ends lines at a lone CR (old Mac files) and at CRLF.
    text_lines = text.splitlines()

    motifs: list[Motif] = []
    # Parser state: the MOTIF line being filled, the matrix's declared width and rows read so far.
    name: str | None = None
    alt_name: str | None = None
    width: int | None = None
    nsites: int | None = None
    rows: list[list[float]] | None = None
    matrix_line = 0
    skip_numeric = False  # inside a log-odds block, whose numeric rows are not probabilities
    in_alphabet_block = False
    block_letters: list[str] = []
    # (name, w) of a matrix that just reached its declared width, to report extra rows after it.
    just_closed: tuple[str | None, int] | None = None

    def where(lineno: int) -> str:
        return f"{path}:{lineno}"

    def finish(lineno_after: int) -> None:
        """Store the open matrix; called when something other than a matrix row comes next."""
        nonlocal rows, width, nsites, name, alt_name, just_closed
        if rows is None:
            return
        if width is not None and len(rows) != width:
            raise MemeFormatError(
                f"{where(matrix_line)}: motif {name!r} declares w= {width} but has {len(rows)} rows "
                f"(matrix ended before line {lineno_after})"
            )
        if not rows:
            raise MemeFormatError(f"{where(matrix_line)}: motif {name!r} has an empty matrix")
        pwm = np.asarray(rows, dtype=np.float64)
        try:
            pwm = validate_pwm(pwm, name or "", atol=_READ_ROW_SUM_ATOL)
        except ValueError as err:
            raise MemeFormatError(f"{where(matrix_line)}: {err}") from None
        pwm = pwm / pwm.sum(axis=1, keepdims=True)
        motifs.append(Motif(name=name or "", pwm=pwm, nsites=nsites, alt_name=alt_name))
        just_closed = (name, width) if width is not None else None
        rows, width, nsites, name, alt_name = None, None, None, None, None

    def is_number(token: str) -> bool:
        return re.fullmatch(_FLOAT, token) is not None

    for lineno, raw in enumerate(text_lines, start=1):
        line = raw.strip()
        if in_alphabet_block:
            if line.upper().startswith("END ALPHABET"):
                in_alphabet_block = False
                _check_alphabet("".join(sorted(block_letters)), where(lineno))
            elif line and not line.startswith("#") and "=" not in line:
                # Core symbols are declared alone ('A "Adenine" CC0000') or as complementary pairs
                # ('A ~ T'); lines with '=' declare ambiguity codes, which do not add matrix columns.
                tokens = line.split()
                block_letters.append(tokens[0])
                if "~" in tokens:
                    block_letters.append(tokens[tokens.index("~") + 1])
            continue

        if rows is not None and width is not None and len(rows) == width:
            finish(lineno)

        if not line or line.startswith("#"):
            if rows is not None and width is None:
                finish(lineno)
            continue
        fields = line.split()

        if rows is not None:
            if is_number(fields[0]):
                if len(fields) != 4 or not all(is_number(v) for v in fields):
                    raise MemeFormatError(
                        f"{where(lineno)}: motif {name!r} row {len(rows) + 1} must be 4 numbers "
                        f"(A C G T), got {line!r}"
                    )
                rows.append([float(v) for v in fields])
                continue
            finish(lineno)

        if just_closed is not None:
            if is_number(fields[0]) and not skip_numeric:
                raise MemeFormatError(
                    f"{where(lineno)}: motif {just_closed[0]!r} declares w= {just_closed[1]} "
                    f"but has more rows"
                )
            just_closed = None

        if skip_numeric:
            if is_number(fields[0]):
                continue
            skip_numeric = False

        upper = line.upper()
        if upper.startswith("ALPHABET"):
            if "=" in line:
                _check_alphabet(line.split("=", 1)[1].strip(), where(lineno))
            else:
                in_alphabet_block, block_letters = True, []
        elif fields[0] == "MOTIF":
            # A previous MOTIF without a letter-probability block (e.g. log-odds only) yields nothing.
            if len(fields) < 2:
                raise MemeFormatError(f"{where(lineno)}: MOTIF line without a name")
            name = fields[1]
            # The MEME format's alternate name is one word; MEME's own meme.txt follows it with statistics
            # on the same line ('MOTIF GGGAGGCA MEME-1 width =   8  sites = ...', and MEME 4 had no
            # alternate name: 'MOTIF 1 width =  21 ...'), which are not part of it.
            statistics = len(fields) > 2 and ("=" in fields[2] or (len(fields) > 3 and fields[3][0] == "="))
            alt_name = fields[2] if len(fields) > 2 and not statistics else None
            nsites = None
        elif upper.startswith("LETTER-PROBABILITY MATRIX"):
            if name is None:
                raise MemeFormatError(
                    f"{where(lineno)}: letter-probability matrix without a preceding MOTIF line"
                )
            params = dict(_KEY_VALUE.findall(line.split(":", 1)[1] if ":" in line else ""))
            try:
                alength = int(params.get("alength", "4"))
                width = int(params["w"]) if "w" in params else None
                nsites = int(round(float(params["nsites"]))) if "nsites" in params else None
            except ValueError:
                raise MemeFormatError(f"{where(lineno)}: cannot parse matrix parameters: {line!r}") from None
            if alength != 4:
                raise MemeFormatError(
                    f"{where(lineno)}: motif {name!r} has alength= {alength}, expected 4 (ACGT)"
                )
            if width is not None and width < 1:
                raise MemeFormatError(f"{where(lineno)}: motif {name!r} has w= {width}")
            rows = []
            matrix_line = lineno
        elif upper.startswith("LOG-ODDS MATRIX"):
            skip_numeric = True
        # Everything else (MEME version, strands, background, URL, E-value lines, text) is not needed.

    if rows is not None:
        finish(len(text_lines) + 1)
    if in_alphabet_block:
        raise MemeFormatError(f"{where(len(text_lines))}: ALPHABET block without END ALPHABET")
    if not motifs:
        raise MemeFormatError(f"{path}: no letter-probability matrix found (not a MEME motif file?)")
    return motifs


def information_content(pwm: np.ndarray, background: float | Sequence[float] = 0.25) -> float:
    """Total information content of a PWM in bits, relative to a background.

    ``sum_i sum_b p_ib * log2(p_ib / q_b)`` with ``0 * log 0 = 0``; 2 bits per fully conserved
    position against a uniform background.

    Parameters
    ----------
    pwm : array-like, shape=(w, 4)
        Letter probabilities per position (rows sum to 1).
    background : float or sequence of 4 floats
        Background frequency of each letter (a scalar means the same for all).

    Returns
    -------
    float
    """
    return float(_column_information(pwm, background).sum())


def _column_information(pwm: np.ndarray, background: float | Sequence[float]) -> np.ndarray:
    """Information content per position, shape ``(w,)``."""
    p = np.asarray(pwm, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 4:
        raise ValueError(f"pwm must have shape (w, 4), got {p.shape}")
    q = np.broadcast_to(np.asarray(background, dtype=np.float64), (4,))
    if (q <= 0).any() or not np.isfinite(q).all():
        raise ValueError(f"background frequencies must be positive, got {background}")
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log2(p / q), 0.0)
    return terms.sum(axis=1)


def trim_by_information(
    pwm: np.ndarray,
    min_width: int = 9,
    max_width: int = 20,
    *,
    background: float | Sequence[float] = 0.25,
    column_penalty: float = 0.0,
) -> InformationWindow:
    """Window ``[start, end)`` of highest total information content with width in ``[min_width, max_width]``.

    Used to cut a motif out of a long optimized input (class optimization). Each window's score is
    ``sum(ic_i - column_penalty)`` over its positions. Since information content is never negative,
    with the default ``column_penalty=0`` the widest allowed window wins (ties go to the narrower, then
    the leftmost window, so exactly uninformative flanks are still trimmed); a penalty of e.g. 0.5 bit
    drops weak flanking positions down to ``min_width``.

    Parameters
    ----------
    pwm : array-like, shape=(w, 4)
    min_width, max_width : int
        Window width bounds, ``1 <= min_width <= max_width``. A PWM narrower than ``min_width`` is
        returned whole, ``(0, w)``.
    background : float or sequence of 4 floats
    column_penalty : float
        Bits subtracted per position, a price for widening the window.

    Returns
    -------
    InformationWindow
        ``(start, end)``; the motif is ``pwm[start:end]``.
    """
    if not 1 <= min_width <= max_width:
        raise ValueError(f"need 1 <= min_width <= max_width, got {min_width=} {max_width=}")
    ic = _column_information(pwm, background)
    if not np.isfinite(ic).all():
        raise ValueError(f"pwm has NaN or inf at position {int(np.argmax(~np.isfinite(ic)))}")
    w = ic.shape[0]
    if w <= min_width:
        return InformationWindow(0, w)
    csum = np.concatenate([[0.0], np.cumsum(ic - column_penalty)])
    best: tuple[float, int, int] | None = None
    # w * (max_width - min_width + 1) windows: tiny next to the optimization that produced the PWM.
    for width in range(min_width, min(max_width, w) + 1):
        scores = csum[width:] - csum[: w - width + 1]
        start = int(np.argmax(scores))
        score = float(scores[start])
        # Strictly better only (beyond rounding), so ties keep the narrower window found first.
        if best is None or score > best[0] + 1e-9 * max(1.0, abs(best[0])):
            best = (score, start, start + width)
    assert best is not None
    return InformationWindow(best[1], best[2])
