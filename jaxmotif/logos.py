"""Sequence logos (logomaker): PWM information logos, signed attribution logos, motif-match panels.

Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas directly, never through
pyplot, so plotting needs no display, leaves no global figure state and works in worker threads.
Rows of every matrix are positions; columns follow the ``alphabet`` argument, which is also where
the letter labels come from (the seed's script labelled rows A, T, G, C over an a, c, g, t encoding).
"""

import math
import os
import warnings
from collections.abc import Mapping, Sequence

import logomaker
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from jaxmotif.io.atomic import atomic_path
from jaxmotif.io.meme import Motif

# Width (inches) per motif position and the bounds of one logo panel, so short and long motifs
# both stay legible in the match grid.
_INCH_PER_POSITION = 0.22
_MIN_PANEL_WIDTH = 2.0
_PANEL_HEIGHT = 1.7


def _letters(alphabet: str, n_columns: int) -> list[str]:
    letters = list(alphabet.upper())
    if len(set(letters)) != len(letters):
        raise ValueError(f"alphabet letters must be distinct, got {alphabet=}")
    if len(letters) != n_columns:
        raise ValueError(f"{alphabet=} has {len(letters)} letters but the matrix has {n_columns} columns")
    return letters


def _logo(ax: Axes, heights: np.ndarray, letters: list[str], start: int = 0) -> logomaker.Logo:
    frame = pd.DataFrame(heights, columns=letters, index=np.arange(start, start + len(heights)))
    # logomaker's 'classic' colours know the nucleotides only; other alphabets get its default.
    scheme = "classic" if set(letters) <= set("ACGTU") else None
    kwargs = {"color_scheme": scheme} if scheme else {}
    if np.any(heights):
        logo = logomaker.Logo(frame, ax=ax, **kwargs)
    else:
        # All-zero heights (a uniform PWM, a zero gradient) make logomaker set ylim (0, 0), which
        # matplotlib warns about; the callers set their own limits right after.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Attempting to set identical low and high ylims")
            logo = logomaker.Logo(frame, ax=ax, **kwargs)
        ax.set_ylim(-1, 1)
    logo.style_spines(visible=False)
    logo.style_spines(spines=("left", "bottom"), visible=True)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return logo


def plot_pwm_logo(
    ax: Axes,
    pwm: np.ndarray,
    alphabet: str = "ACGT",
    information: bool = True,
    title: str | None = None,
) -> logomaker.Logo:
    """Draw a position probability matrix as a sequence logo.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
    pwm : array-like, shape=(w, k)
        Letter probabilities per position, columns in ``alphabet`` order, rows summing to 1.
    alphabet : str
        The ``k`` letters of the columns, e.g. ``"ACGT"``.
    information : bool
        Letter heights ``p * IC`` in bits against a uniform background (0 to log2 k); otherwise the
        probabilities themselves (0 to 1).
    title : str or None

    Returns
    -------
    logomaker.Logo
    """
    p = np.asarray(pwm, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"pwm must have shape (w, {len(alphabet)}), got {p.shape}")
    letters = _letters(alphabet, p.shape[1])
    if not np.isfinite(p).all() or (p < 0).any() or not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError(f"pwm {title or ''!s} must hold probabilities: finite, >= 0, rows summing to 1")
    if information:
        # Relative entropy to a uniform background, log2(k) bits for a fully conserved position.
        with np.errstate(divide="ignore", invalid="ignore"):
            ic = np.where(p > 0, p * np.log2(p * p.shape[1]), 0.0).sum(axis=1)
        logo = _logo(ax, p * ic[:, None], letters)
        # A fixed scale (after logomaker, which sets its own limits) makes logos comparable side by side.
        ax.set_ylim(0, math.log2(p.shape[1]))
        ax.set_ylabel("bits")
    else:
        logo = _logo(ax, p, letters)
        ax.set_ylim(0, 1)
        ax.set_ylabel("probability")
    if title is not None:
        ax.set_title(title, fontsize=9)
    return logo


def plot_attribution_logo(
    ax: Axes,
    values: np.ndarray,
    alphabet: str = "ACGT",
    title: str | None = None,
    *,
    start: int = 0,
    xlabel: str | None = None,
) -> logomaker.Logo:
    """Draw signed per-base attributions (e.g. gradient × input) as letters scaled by their value.

    Positive values stand above the axis, negative ones below it (flipped). For gradient × input
    only the observed base is non-zero, so the logo reads as the sequence weighted by importance.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
    values : array-like, shape=(L, k)
        Attribution per position and letter, columns in ``alphabet`` order (channels-last, as the
        one-hot encoding).
    alphabet : str
        The ``k`` letters of the columns; the labels come from here.
    title : str or None
    start : int
        The x coordinate of the first row (e.g. its genome position), so the axis shows real
        positions; 0 by default (window offsets).
    xlabel : str or None
        The x-axis label (e.g. ``"chr1 (1-based)"``).

    Returns
    -------
    logomaker.Logo
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2:
        raise ValueError(f"values must have shape (L, {len(alphabet)}), got {v.shape}")
    letters = _letters(alphabet, v.shape[1])
    if not np.isfinite(v).all():
        pos = int(np.argmax(~np.isfinite(v).all(axis=1)))
        raise ValueError(f"values have NaN or inf at position {pos}")
    logo = _logo(ax, v, letters, start)
    ax.axhline(0.0, color="0.5", linewidth=0.5)
    ax.set_ylabel("attribution")
    if xlabel is not None:
        ax.set_xlabel(xlabel, fontsize=8)
    if title is not None:
        ax.set_title(title, fontsize=9)
    return logo


def _motif_title(motif: Motif) -> str:
    return motif.name if motif.alt_name is None else f"{motif.name} {motif.alt_name}"


def plot_motif_matches(
    path: str | os.PathLike,
    queries: Sequence[Motif],
    best_matches: Mapping[str, Motif | None],
    p_values: Mapping[str, float] | None = None,
    *,
    orientations: Mapping[str, str] | None = None,
    ncols: int = 2,
    dpi: int = 120,
) -> None:
    """Save a PNG in which each query logo sits beside the logo of its best match.

    Parameters
    ----------
    path : str or os.PathLike
        PNG output, written to a temporary file and renamed into place.
    queries : sequence of Motif
        ``pwm`` of shape ``(w, 4)``, A, C, G, T columns.
    best_matches : mapping of str to Motif or None
        Best match per query name; None (or a missing name) draws "no match".
    p_values : mapping of str to float, optional
        TomTom p-value per query name, shown in the match title.
    orientations : mapping of str to str, optional
        ``"+"`` or ``"-"`` per query name (TomTom's orientation); for ``"-"`` the match is drawn
        reverse-complemented, so that it lines up with the query.
    ncols : int
        Query–match pairs per row.
    dpi : int
    """
    if not queries:
        raise ValueError("no query motifs to plot")
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols=}")
    p_values = p_values or {}
    orientations = orientations or {}
    ncols = min(ncols, len(queries))
    nrows = math.ceil(len(queries) / ncols)
    longest = max(
        [q.pwm.shape[0] for q in queries] + [m.pwm.shape[0] for m in best_matches.values() if m is not None]
    )
    panel_width = max(_MIN_PANEL_WIDTH, _INCH_PER_POSITION * longest)

    fig = Figure(figsize=(2 * ncols * panel_width, nrows * _PANEL_HEIGHT), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, 2 * ncols, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()

    for index, query in enumerate(queries):
        row, pair = divmod(index, ncols)
        q_ax, m_ax = axes[row, 2 * pair], axes[row, 2 * pair + 1]
        q_ax.set_axis_on()
        plot_pwm_logo(q_ax, query.pwm, title=_motif_title(query))
        match = best_matches.get(query.name)
        if match is None:
            m_ax.text(0.5, 0.5, "no match", ha="center", va="center", transform=m_ax.transAxes, color="0.4")
            continue
        m_ax.set_axis_on()
        pwm = np.asarray(match.pwm)
        title = _motif_title(match)
        if orientations.get(query.name, "+") == "-":
            # Reverse complement of an A, C, G, T matrix: reverse positions and letters.
            pwm = pwm[::-1, ::-1]
            title += " (rc)"
        if query.name in p_values:
            title += f"  p={p_values[query.name]:.2g}"
        plot_pwm_logo(m_ax, pwm, title=title)
        m_ax.set_ylabel("")

    with atomic_path(path) as tmp:
        # The temporary name has no .png suffix, so the format is given explicitly.
        fig.savefig(tmp, format="png", dpi=dpi)


# Imported here, not at the top, so this addition stays one block at the end of the module.
from typing import NamedTuple  # noqa: E402, I001


_MAX_FIGURE_WIDTH = 16.0  # inches


class AlignedMatch(NamedTuple):
    """A query's TomTom match, placed for drawing (see :func:`aligned_match_figure`).

    Attributes
    ----------
    motif : Motif
        The matched database motif, as stored (forward strand).
    offset : int
        TomTom's (memelite's) ``offset`` column: query column ``i`` aligns with column ``i + offset``
        of the match (of its reverse complement when ``orientation`` is ``"-"``).
    orientation : str
        ``"+"``, or ``"-"`` when the reverse complement of the match aligned.
    p_value : float or None
    """

    motif: Motif
    offset: int
    orientation: str
    p_value: float | None = None


def aligned_match_matrices(query_pwm: np.ndarray, match: AlignedMatch) -> tuple[np.ndarray, np.ndarray, int]:
    """The query and its (oriented) match padded onto one shared span of positions.

    Parameters
    ----------
    query_pwm : array-like, shape=(wq, 4)
    match : AlignedMatch

    Returns
    -------
    (query, target, first) : padded (W, 4) arrays whose padding rows are all zero, and the index of
    the query's first column in the shared span.
    """
    q = np.asarray(query_pwm, dtype=np.float64)
    t = np.asarray(match.motif.pwm, dtype=np.float64)
    if match.orientation not in ("+", "-"):
        raise ValueError(f"orientation={match.orientation!r} must be '+' or '-'")
    if match.orientation == "-":
        t = t[::-1, ::-1]  # reverse complement of A, C, G, T columns: reverse positions and letters
    shift = -int(match.offset)  # the match's first column, in query positions
    lo = min(0, shift)
    hi = max(q.shape[0], shift + t.shape[0])
    qp = np.zeros((hi - lo, q.shape[1]))
    tp = np.zeros((hi - lo, t.shape[1]))
    qp[-lo : -lo + q.shape[0]] = q
    tp[shift - lo : shift - lo + t.shape[0]] = t
    return qp, tp, -lo


def _information_heights(p: np.ndarray) -> np.ndarray:
    """Letter heights ``p * IC`` (bits); all-zero rows (padding) stay zero."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ic = np.where(p > 0, p * np.log2(p * p.shape[1]), 0.0).sum(axis=1)
    return p * ic[:, None]


def aligned_match_figure(
    queries: Sequence[Motif],
    matches: Mapping[str, AlignedMatch | None],
    *,
    ncols: int = 2,
    query_titles: Mapping[str, str] | None = None,
    alphabet: str = "ACGT",
) -> Figure:
    """A figure of query logos, each above its best match drawn in register with it.

    TomTom reports how the match lines up with the query (``offset``, ``orientation``); the match
    is reverse-complemented when its reverse strand aligned and shifted by the offset, so the
    columns TomTom compared sit above one another. Positions on the x axis are the query's.

    Parameters
    ----------
    queries : sequence of Motif
        ``pwm`` of shape ``(w, 4)`` each.
    matches : mapping of str to AlignedMatch or None
        Best match per query name; None or a missing name draws "no match".
    ncols : int
        Query–match pairs per row of the grid.
    query_titles : mapping of str to str, optional
        Title per query name (default: the motif's name and alt name).
    alphabet : str

    Returns
    -------
    matplotlib.figure.Figure (Agg canvas; save it with ``fig.savefig``).
    """
    if not queries:
        raise ValueError("no query motifs to plot")
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols=}")
    query_titles = query_titles or {}
    ncols = min(ncols, len(queries))
    nrows = math.ceil(len(queries) / ncols)
    panels = []
    for query in queries:
        match = matches.get(query.name)
        if match is None:
            q = np.asarray(query.pwm, dtype=np.float64)
            panels.append((q, None, 0))
        else:
            panels.append(aligned_match_matrices(query.pwm, match))
    span = max(p[0].shape[0] for p in panels)
    # Long patterns (TF-MoDISco's can span 40+ positions) would make a figure too wide to read
    # when shrunk onto a page, so the width per panel is capped.
    panel_width = min(max(_MIN_PANEL_WIDTH, _INCH_PER_POSITION * span), _MAX_FIGURE_WIDTH / ncols)
    fig = Figure(figsize=(ncols * panel_width, nrows * 2 * _PANEL_HEIGHT * 0.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2 * nrows, ncols, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    letters = _letters(alphabet, 4)
    for index, (query, (qp, tp, first)) in enumerate(zip(queries, panels, strict=True)):
        row, col = divmod(index, ncols)
        q_ax, m_ax = axes[2 * row, col], axes[2 * row + 1, col]
        for ax, matrix in ((q_ax, qp), (m_ax, tp)):
            if matrix is None:
                continue
            ax.set_axis_on()
            _logo(ax, _information_heights(matrix), letters)
            ax.set_ylim(0, math.log2(matrix.shape[1]))
            ax.set_xlim(-0.5, span - 0.5)
            ax.set_ylabel("bits", fontsize=7)
            ax.tick_params(labelsize=6)
            # Tick labels in query positions (1-based), so both logos read on one scale.
            ax.set_xticks(range(0, matrix.shape[0], 5))
            ax.set_xticklabels([str(i - first + 1) for i in range(0, matrix.shape[0], 5)])
        q_ax.set_title(query_titles.get(query.name, _motif_title(query)), fontsize=8)
        match = matches.get(query.name)
        if match is None:
            m_ax.text(0.5, 0.5, "no match", ha="center", va="center", transform=m_ax.transAxes, color="0.4")
            continue
        title = _motif_title(match.motif) + (" (rc)" if match.orientation == "-" else "")
        if match.p_value is not None:
            title += f"  p={match.p_value:.2g}"
        m_ax.set_title(title, fontsize=8)
    return fig


def aligned_matches_from_rows(rows: Sequence[Mapping], database: Sequence[Motif]) -> dict[str, AlignedMatch]:
    """Query name -> :class:`AlignedMatch` of its rank-1 row of :func:`jaxmotif.motifs.tomtom_matches`."""
    by_id = {m.name: m for m in database}
    return {
        r["filter"]: AlignedMatch(by_id[r["target_id"]], int(r["offset"]), r["orientation"], r["p_value"])
        for r in rows
        if r["rank"] == 1 and r["target_id"] in by_id
    }


def plot_aligned_matches(
    path: str | os.PathLike,
    queries: Sequence[Motif],
    matches: Mapping[str, AlignedMatch | None],
    *,
    ncols: int = 2,
    dpi: int = 110,
) -> None:
    """Save :func:`aligned_match_figure` as a PNG (written to a temporary file, renamed into place)."""
    fig = aligned_match_figure(queries, matches, ncols=ncols)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
