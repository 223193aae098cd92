"""TF-MoDISco motifs from hypothetical contributions (modisco-lite), matched against JASPAR by TomTom.

TF-MoDISco (Shrikumar et al. 2018) cuts high-contribution windows ("seqlets") out of attribution
maps, clusters them and aggregates each cluster into a pattern: a contribution weight matrix (CWM),
a hypothetical CWM and the position probability matrix of its seqlets. Here it runs through
modisco-lite (``modiscolite``, the ``modisco`` extra); every pattern's PPM, trimmed as modisco-lite's
report trims it, becomes a :class:`~jaxmotif.io.meme.Motif` that TomTom compares with JASPAR like
the conv1 filters.

Hypothetical contributions are what TF-MoDISco needs: a score for every base at every position,
not only the observed one. DeepLIFT/DeepSHAP give them directly; :func:`gradient_hypothetical`
derives them from the plain gradient by centring it over the four bases at each position (the
gradient's mean over bases is what a one-hot input cannot change), the usual stand-in.
"""

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from jaxmotif.io.meme import Motif

#: modisco-lite's report trims a pattern to the positions whose summed |CWM| reaches this fraction
#: of the pattern's largest; the same rule gives the PWMs written and matched here.
TRIM_THRESHOLD = 0.3
#: Settings of :func:`run_modisco` that differ from modisco-lite's defaults, and why.
#: ``min_metacluster_size``: modisco-lite skips a sign with at most 100 seqlets; a few hundred
#: regions (the demo, a quick look at a new model) give fewer, and 20 still clusters.
#: ``target_seqlet_fdr``: 0.05 instead of 0.2, since gradient-derived contributions are noisy and
#: the looser threshold mostly adds seqlets that cluster into nothing.
MODISCO_DEFAULTS: dict[str, Any] = {
    "max_seqlets_per_metacluster": 2000,
    "target_seqlet_fdr": 0.05,
    "min_metacluster_size": 20,
    "n_leiden_runs": 50,
}
#: Quicker settings for the report and tests on a CPU: fewer seqlets per sign and Leiden restarts
#: (the clustering is quadratic in seqlets); the demo's planted motifs are still found.
MODISCO_QUICK: dict[str, Any] = {"max_seqlets_per_metacluster": 250, "n_leiden_runs": 2}

#: An attribution function for the report and the demo: ``f(model, seqs (N, L, 4), dnase (N, L) | None,
#: target) -> hypothetical contributions (N, L, 4)``. :func:`gradient_hypothetical` is one;
#: ``jaxmotif.deep_lift_shap`` (hypothetical=True) fits too.
AttributionFn = Callable[[Any, np.ndarray, np.ndarray | None, str | int], np.ndarray]


def _import_modisco():
    try:
        import modiscolite
    except ImportError as err:
        raise ImportError("TF-MoDISco needs modisco-lite; pip install 'jaxmotif[modisco]'") from err
    return modiscolite


def center_over_bases(values: np.ndarray) -> np.ndarray:
    """``values - values.mean(axis=-1)``: per position, remove what is shared by all four bases.

    Parameters
    ----------
    values : np.ndarray, shape=(..., L, 4)

    Returns
    -------
    np.ndarray, same shape, float32
    """
    v = np.asarray(values, dtype=np.float32)
    return v - v.mean(axis=-1, keepdims=True)


def gradient_hypothetical(
    model, seqs, dnase, target, *, logits: bool = True, batch_size: int = 64
) -> np.ndarray:
    """Hypothetical contributions from the gradient: ``dS/dX`` centred over the bases per position.

    S is the output's logit by default: the gradient of a saturated sigmoid output vanishes in the
    windows the model is surest about, which are the ones TF-MoDISco reads.

    Parameters
    ----------
    model : jaxmotif.Model
    seqs : np.ndarray, shape=(N, L, 4)
    dnase : np.ndarray, shape=(N, L), or None for DNA-only models
    target : str or int
        One output.
    logits : bool
        Differentiate the logit (default) or the activated output.

    Returns
    -------
    np.ndarray, shape=(N, L, 4), float32
    """
    from jaxmotif.attribution import saliency

    grads = saliency(
        model, seqs, dnase, target=target, method="gradient", logits=logits, batch_size=batch_size
    )
    return center_over_bases(grads)


class Pattern(NamedTuple):
    """One TF-MoDISco pattern, trimmed.

    Attributes
    ----------
    name : str
        ``"pos_patterns.pattern_0"`` (modisco-lite's group and pattern names).
    motif : Motif
        The trimmed PPM, shape=(w, 4), as matched by TomTom; ``nsites`` = seqlets.
    cwm : np.ndarray, shape=(w, 4)
        The trimmed contribution weight matrix.
    hypothetical_cwm : np.ndarray, shape=(w, 4)
    n_seqlets : int
    sign : str
        ``"pos"`` (raises the output) or ``"neg"``.
    """

    name: str
    motif: Motif
    cwm: np.ndarray
    hypothetical_cwm: np.ndarray
    n_seqlets: int
    sign: str


def trim_window(cwm: np.ndarray, threshold: float = TRIM_THRESHOLD) -> tuple[int, int]:
    """``[start, end)`` of the positions from the first to the last whose summed |CWM| >= threshold x max.

    modisco-lite's report rule (``tomtomlite_dataframe``): no flank is added.
    """
    score = np.abs(np.asarray(cwm, dtype=np.float64)).sum(axis=1)
    if not np.any(score > 0):
        return 0, len(score)
    passing = np.flatnonzero(score >= score.max() * threshold)
    return int(passing[0]), int(passing[-1]) + 1


def _pattern(name: str, sign: str, sequence, cwm, hcwm, n_seqlets: int, threshold: float) -> Pattern:
    start, end = trim_window(cwm, threshold)
    ppm = np.asarray(sequence, dtype=np.float64)[start:end]
    totals = ppm.sum(axis=1, keepdims=True)
    # A position where every seqlet has N sums to 0: uniform, so that the PWM stays valid.
    ppm = np.where(totals > 0, ppm / np.where(totals > 0, totals, 1.0), 0.25)
    motif = Motif(name=name, pwm=ppm, nsites=int(n_seqlets))
    return Pattern(
        name,
        motif,
        np.asarray(cwm, np.float32)[start:end],
        np.asarray(hcwm, np.float32)[start:end],
        int(n_seqlets),
        sign,
    )


class ModiscoResult(NamedTuple):
    """What :func:`run_modisco` found.

    Attributes
    ----------
    patterns : list of Pattern
        Positive patterns first, each sign in modisco-lite's order (most seqlets first).
    pos_patterns, neg_patterns : list or None
        modisco-lite's own ``SeqletSet`` objects (for :func:`save_modisco_h5`).
    window_size : int
        modisco-lite's sliding window.
    """

    patterns: list[Pattern]
    pos_patterns: list | None
    neg_patterns: list | None
    window_size: int


def _check_inputs(one_hot, hypothetical) -> tuple[np.ndarray, np.ndarray]:
    one_hot = np.asarray(one_hot, dtype=np.float32)
    hypothetical = np.asarray(hypothetical, dtype=np.float32)
    if one_hot.ndim != 3 or one_hot.shape[2] != 4:
        raise ValueError(f"one_hot shape {one_hot.shape} must be (N, L, 4)")
    if hypothetical.shape != one_hot.shape:
        raise ValueError(f"hypothetical contributions shape {hypothetical.shape} != one_hot {one_hot.shape}")
    if not np.isfinite(hypothetical).all():
        row = int(np.flatnonzero(~np.isfinite(hypothetical).reshape(len(hypothetical), -1).all(axis=1))[0])
        raise ValueError(f"hypothetical contributions of window {row} have NaN or inf")
    if not np.any(hypothetical * one_hot):
        # modisco-lite fails deep inside (a quantile of no windows) when nothing can pass.
        raise ValueError("the contributions of the observed bases are all zero: no seqlet can be found")
    return one_hot, hypothetical


def run_modisco(
    one_hot: np.ndarray,
    hypothetical: np.ndarray,
    *,
    trim_threshold: float = TRIM_THRESHOLD,
    verbose: bool = False,
    **options,
) -> ModiscoResult:
    """TF-MoDISco (modisco-lite) on hypothetical contributions of one target.

    Parameters
    ----------
    one_hot : np.ndarray, shape=(N, L, 4)
        The windows, A, C, G, T.
    hypothetical : np.ndarray, shape=(N, L, 4)
        Hypothetical contributions (the observed base's contribution is ``hypothetical * one_hot``).
    trim_threshold : float
        See :func:`trim_window`.
    verbose : bool
        modisco-lite's progress messages.
    options
        Keyword arguments of ``modiscolite.tfmodisco.TFMoDISco``, over :data:`MODISCO_DEFAULTS`
        (e.g. ``max_seqlets_per_metacluster``).

    Returns
    -------
    ModiscoResult
    """
    modiscolite = _import_modisco()
    one_hot, hypothetical = _check_inputs(one_hot, hypothetical)
    settings = {**MODISCO_DEFAULTS, **options}
    window = int(settings.get("sliding_window_size", 21))
    if one_hot.shape[1] < 2 * (window + int(settings.get("flank_size", 10))):
        raise ValueError(
            f"windows of {one_hot.shape[1]} bp are too short for TF-MoDISco's {window}-bp seqlets"
        )
    pos, neg = modiscolite.tfmodisco.TFMoDISco(
        one_hot=one_hot, hypothetical_contribs=hypothetical, verbose=verbose, **settings
    )
    patterns = []
    for group, sign, found in (("pos_patterns", "pos", pos), ("neg_patterns", "neg", neg)):
        for k, p in enumerate(found or []):
            patterns.append(
                _pattern(
                    f"{group}.pattern_{k}",
                    sign,
                    p.sequence,
                    p.contrib_scores,
                    p.hypothetical_contribs,
                    len(p.seqlets),
                    trim_threshold,
                )
            )
    return ModiscoResult(patterns, pos, neg, window)


def save_modisco_h5(path: str | os.PathLike, result: ModiscoResult) -> None:
    """``modisco_results.h5`` in modisco-lite's format (``modisco report`` and other tools read it)."""
    modiscolite = _import_modisco()
    modiscolite.io.save_hdf5(os.fspath(path), result.pos_patterns, result.neg_patterns, result.window_size)


def read_modisco_h5(path: str | os.PathLike, trim_threshold: float = TRIM_THRESHOLD) -> list[Pattern]:
    """The patterns of a modisco-lite results file, trimmed as :func:`run_modisco` trims them."""
    import h5py

    patterns = []
    with h5py.File(path, "r") as f:
        for group, sign in (("pos_patterns", "pos"), ("neg_patterns", "neg")):
            if group not in f:
                continue
            for name in sorted(f[group], key=lambda n: int(n.rsplit("_", 1)[-1])):
                g = f[group][name]
                patterns.append(
                    _pattern(
                        f"{group}.{name}",
                        sign,
                        g["sequence"][:],
                        g["contrib_scores"][:],
                        g["hypothetical_contribs"][:],
                        int(g["seqlets"]["n_seqlets"][0]),
                        trim_threshold,
                    )
                )
    return patterns


def pattern_motifs(patterns: Sequence[Pattern]) -> list[Motif]:
    """The trimmed PPMs of ``patterns`` as motifs (for MEME files and TomTom)."""
    return [p.motif for p in patterns]


def match_patterns(patterns: Sequence[Pattern], database: Sequence[Motif], top: int = 5) -> list[dict]:
    """TomTom rows (:func:`jaxmotif.motifs.tomtom_matches`) of every pattern against ``database``."""
    from jaxmotif.motifs import tomtom_matches

    return tomtom_matches(pattern_motifs(patterns), database, top=top) if patterns else []


def best_matches(rows: Sequence[dict]) -> dict[str, dict]:
    """Query name -> its rank-1 TomTom row."""
    return {r["filter"]: r for r in rows if r["rank"] == 1}


def write_patterns(out: str | os.PathLike, result: ModiscoResult, rows: Sequence[dict]) -> list[Path]:
    """``modisco_results.h5``, ``patterns.meme`` and ``tomtom.tsv`` into the folder ``out``."""
    from jaxmotif.io.meme import write_meme
    from jaxmotif.motifs import write_tomtom_tsv

    out = Path(out)
    written = [out / "modisco_results.h5", out / "patterns.meme", out / "tomtom.tsv"]
    save_modisco_h5(written[0], result)
    write_meme(written[1], pattern_motifs(result.patterns))
    write_tomtom_tsv(written[2], rows)
    return written
