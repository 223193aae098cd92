"""Figures of attribution results: the DeepBind mutation-map view (Alipanahi et al. 2015, Figure 4).

:func:`mutation_map` draws, for one window and one output, a 4 x L heat map of the substitution
scores (rows in the alphabet's order, diverging colours centred on 0) under the reference sequence
written as letters whose height is the position's importance: by default the largest loss any
substitution causes there, ``max(0, -min_b score[i, b])``, DeepBind's choice.
"""

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

IMPORTANCE = ("max_loss", "max_abs", "mean_abs")
FIGURE_SUFFIXES = (".png", ".pdf", ".svg")


class MutationMapAxes(NamedTuple):
    """The axes :func:`mutation_map` drew on: heat map, letters above it, colour bar beside it."""

    heatmap: object
    letters: object
    colorbar: object


def position_importance(scores: np.ndarray, importance: str = "max_loss") -> np.ndarray:
    """Per-position importance from scores shape=(L, 4) -> shape=(L,), NaN-safe (NaN -> 0)."""
    if importance not in IMPORTANCE:
        raise ValueError(f"importance={importance!r} must be one of {IMPORTANCE}")
    s = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=0.0)
    if importance == "max_loss":
        return np.maximum(0.0, -s.min(axis=1))
    if importance == "max_abs":
        return np.abs(s).max(axis=1)
    return np.abs(s).sum(axis=1) / 3.0


def mutation_map(
    ax_or_path,
    scores,
    ref_onehot,
    alphabet: str = "ACGT",
    *,
    title: str | None = None,
    start: int = 0,
    importance: str = "max_loss",
    cmap: str = "RdBu_r",
    vmax: float | None = None,
    label: str = "score",
):
    """Draws the DeepBind mutation-map view of one window.

    Parameters
    ----------
    ax_or_path: a matplotlib Axes (the heat map goes there; letters and colour bar are added next
        to it) or a file path (.png, .pdf, .svg) to save a new figure to.
    scores: shape=(L, 4), one output's scores (e.g. a slice of :func:`jaxmotif.mutation_map`);
        NaN (N positions) is drawn grey.
    ref_onehot: shape=(L, 4) reference one-hot in ``alphabet`` order (all-zero row = N, no letter).
    alphabet: row order of ``scores`` and columns of ``ref_onehot``.
    title: figure title.
    start: coordinate of the first position, for the x axis labels.
    importance: letter height rule: ``max_loss`` (DeepBind), ``max_abs`` or ``mean_abs``.
    cmap, vmax: heat-map colours; ``vmax`` defaults to the largest |score|.
    label: colour-bar label.

    Returns :class:`MutationMapAxes` for an Axes, or the saved file's ``Path`` for a path.
    """
    scores = np.asarray(scores, dtype=np.float64)
    ref_onehot = np.asarray(ref_onehot, dtype=np.float64)
    length = scores.shape[0]
    if scores.shape != (length, 4) or ref_onehot.shape != (length, 4):
        raise ValueError(f"scores {scores.shape} and ref_onehot {ref_onehot.shape} must both be (L, 4)")
    if sorted(alphabet.upper()) != sorted("ACGT"):
        raise ValueError(f"alphabet={alphabet!r} must be a permutation of ACGT")
    if isinstance(ax_or_path, str | os.PathLike):
        path = Path(ax_or_path)
        if path.suffix.lower() not in FIGURE_SUFFIXES:
            raise ValueError(f"figure path {path} must end with one of {FIGURE_SUFFIXES}")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(max(6.0, min(0.12 * length + 2, 40.0)), 3.2))
        try:
            _draw(ax, scores, ref_onehot, alphabet, title, start, importance, cmap, vmax, label)
            tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
            fig.savefig(tmp, dpi=150, bbox_inches="tight")
            os.replace(tmp, path)
        finally:
            plt.close(fig)
        return path
    return _draw(ax_or_path, scores, ref_onehot, alphabet, title, start, importance, cmap, vmax, label)


def _draw(ax, scores, ref_onehot, alphabet, title, start, importance, cmap, vmax, label):
    import logomaker
    import pandas as pd
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    alphabet = alphabet.upper()
    length = scores.shape[0]
    finite = np.abs(scores[np.isfinite(scores)])
    if vmax is None:
        vmax = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    masked = np.ma.masked_invalid(scores.T)  # (4, L), rows in alphabet order
    colormap = _colormap(cmap)
    image = ax.imshow(
        masked,
        aspect="auto",
        cmap=colormap,
        vmin=-vmax,
        vmax=vmax,
        interpolation="nearest",
        extent=(start - 0.5, start + length - 0.5, 3.5, -0.5),
    )
    ax.set_yticks(range(4), list(alphabet))
    ax.set_xlabel("position")
    divider = make_axes_locatable(ax)
    letters = divider.append_axes("top", size="60%", pad=0.05, sharex=ax)
    cbar_ax = divider.append_axes("right", size="1.5%", pad=0.1)
    colorbar = ax.figure.colorbar(image, cax=cbar_ax)
    # Matplotlib would print a small-valued scale's multiplier (1e-7) above the colour bar, on top
    # of the letters; put it in the label instead.
    exponent = int(np.floor(np.log10(vmax))) if vmax > 0 else 0
    if not -2 <= exponent <= 3:
        from matplotlib.ticker import FuncFormatter

        colorbar.formatter = FuncFormatter(lambda v, _: f"{v / 10.0**exponent:g}")
        colorbar.update_ticks()
        label = f"{label} (×1e{exponent})"
    colorbar.set_label(label)

    heights = position_importance(scores, importance)[:, None] * (ref_onehot > 0)  # (L, 4)
    frame = pd.DataFrame(heights, columns=list(alphabet), index=np.arange(start, start + length))
    logomaker.Logo(frame, ax=letters, color_scheme="classic", font_name="DejaVu Sans Mono")
    letters.set_ylabel("importance")
    letters.tick_params(labelbottom=False)
    for side in ("top", "right"):
        letters.spines[side].set_visible(False)
    if title:
        letters.set_title(title)
    return MutationMapAxes(ax, letters, cbar_ax)


def _colormap(name: str):
    import matplotlib

    return matplotlib.colormaps[name].with_extremes(bad="lightgrey")
