"""First-layer filters as motifs (the seed's method 7): thresholded conv1 PWMs.

Each conv1 filter ``i`` (kernel ``W_i`` of shape (K, 4), bias ``b_i``) becomes a position weight
matrix built from the input windows where it fires. Two rules say where it fires:

- ``mode="seed"`` (the seed's get_PWM.py, after TSPTFBS): a window is a site when the filter's
  pre-bias score ``activation - b_i`` is at least ``threshold_i = F * (sum_k max_b W_i[k, b] + b_i)``,
  ``F = threshold_factor`` (0.9 as in the seed; the seed notes 0.5-1.0, TSPTFBS ships 0.5).
  ``sum_k max_b W_i[k, b]`` is the best score any K-mer can reach. The seed's script actually takes
  ``np.max`` along the other axis of its (4, K) weight matrix (per base the max over positions,
  summed over the 4 bases), which is not the best attainable score; ``max_over="positions"``
  reproduces that, the default ``max_over="bases"`` is the rule as described.
- ``mode="max-activation"`` (Basset, Kelley et al. 2016): a window is a site when the activation
  (bias included) exceeds half of that filter's maximum activation over the data set. That maximum
  is taken over the windows lying wholly inside the sequences, in a first pass.

Which input window belongs to a site: the input span the output position saw, from the first
convolution's geometry in the model's graph (:func:`jaxmotif.graph.first_conv`). A ``K``-wide
'same'-padded conv1 (odd ``K``, ``h = K // 2`` zero rows each side: DeepHistone's K = 9, BPNet's
K = 21) computes output position ``j`` from input rows ``j - h .. j + h``; a 'valid' (unpadded) one
(Basset's K = 19, DeepSEA's and Beluga's K = 8, any parity) computes output ``j`` (of ``L - K + 1``)
from rows ``j .. j + K - 1``:

- ``alignment="filter"`` (default, correct): the window is exactly what the filter saw, ``X[j - h :
  j + h + 1]`` ('same'; a site counts when ``h <= j <= L - 1 - h``) or ``X[j : j + K]`` ('valid';
  every output position lies wholly inside).
- ``alignment="seed"``: the seed's script slices ``X[j : j + K]`` for output ``j``. On DeepHistone's
  'same' conv1 that is four positions to the right of what the filter saw, so its PWMs are the true
  motif shifted by 4 (half of it is flank); offered for exact reproduction of the seed's PWMs (a
  site counts when ``j <= L - K``). On a 'valid' conv1 it is the same window as ``"filter"``.

Sites whose window is not wholly inside the sequence are not counted but tallied in
``edge_sites_excluded``. (The seed's script kept zero rows for sites within 8 bp of the right end and
averaged them in, and a filter without sites became a NaN matrix; here such filters are reported in
``sites == 0`` and left out of ``filters_with_sites``.) PWM rows are the counts normalized per
position (N bases, all-zero one-hot rows, add nothing), as the seed's per-column normalization.

Everything happens on the device in one jit-compiled pass per chunk of sequences: a site mask
(B, L', F) is contracted with the K shifted views of the one-hot input into counts (F, K, 4); no
Python loop over filters or sites. Chunks are sharded over all local devices on the ``"batch"`` mesh
axis and their partial counts summed. The sequences may travel as int8 base indices (N, L), one byte
per base; the one-hot is then built on the device inside the compiled kernel.
"""

import sys
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from jaxmotif.batching import BATCH_AXIS, batch_mesh, chunk_size_for
from jaxmotif.memory import ITEMSIZE, filter_sites_elements, resolve_budget
from jaxmotif.sequence import one_hot_from_indices

THRESHOLD_MODES = ("seed", "max-activation")
ALIGNMENTS = ("filter", "seed")
MAX_OVER = ("bases", "positions")
PADDINGS = ("same", "valid")
_EXACT_FLOAT32 = 2**24


class Conv1PWMs(NamedTuple):
    """conv1 filters as position weight matrices.

    Attributes
    ----------
    pwms: shape=(F, K, 4) letter probabilities per window position (the K input rows conv1 saw),
        columns in ``alphabet`` order;
        finite exactly for the filters in ``filters_with_sites``, NaN rows for the others.
    counts: shape=(F, K, 4) int64, how often each base occurs at each window position over all sites.
    sites: shape=(F,) int64, sites counted (windows wholly inside the sequence).
    thresholds: shape=(F,) float32, the site threshold of each filter: on the pre-bias score
        (``mode="seed"``) or on the activation (``mode="max-activation"``, 0.5 x the maximum).
    edge_sites_excluded: shape=(F,) int64, sites left out because their window crosses an end
        (always 0 for a 'valid' conv1).
    filters_with_sites: shape=(F',) int64, indices (0-based) of the filters with ``sites > 0``.
    alphabet: column order of ``pwms`` and ``counts`` (the model's alphabet: ACGT for converted models).
    """

    pwms: np.ndarray
    counts: np.ndarray
    sites: np.ndarray
    thresholds: np.ndarray
    edge_sites_excluded: np.ndarray
    filters_with_sites: np.ndarray
    alphabet: str


# ---------------------------------------------------------------------------------------------
# Pure kernels
# ---------------------------------------------------------------------------------------------


def seed_thresholds(kernel, bias, threshold_factor: float, max_over: str = "bases"):
    """The seed's thresholds ``F * (best score + b_i)`` on the pre-bias score, shape=(F,).

    kernel: shape=(K, 4, F) conv1 weights, channels-last; bias: shape=(F,).
    max_over: ``"bases"`` -- ``sum_k max_b W[k, b]``, the best score a K-mer can reach (default);
        ``"positions"`` -- ``sum_b max_k W[k, b]``, what the seed's ``np.max(W, 1)`` on its (4, K)
        matrix computes.
    """
    if max_over not in MAX_OVER:
        raise ValueError(f"max_over={max_over!r} must be one of {MAX_OVER}")
    axis = 1 if max_over == "bases" else 0
    best = jnp.sum(jnp.max(kernel, axis=axis), axis=0)  # (F,)
    return threshold_factor * (best + bias)


def conv1_scores(kernel, seq, padding: str = "same"):
    """Pre-bias conv1 scores with the model's padding: seq (B, L, 4) -> (B, L', F).

    ``padding="same"`` (odd K): L' = L, position ``j`` holds ``sum_{k, b} W[k, b] * X[j - K // 2 + k, b]``
    (zero outside the sequence). ``"valid"``: L' = L - K + 1, position ``j`` holds
    ``sum_{k, b} W[k, b] * X[j + k, b]``.
    """
    if padding not in PADDINGS:
        raise ValueError(f"padding={padding!r} must be one of {PADDINGS}")
    half = kernel.shape[0] // 2
    pad = ((half, half),) if padding == "same" else ((0, 0),)
    with jax.default_matmul_precision("highest"):  # exact fp32: sites are decided by >= on these
        return jax.lax.conv_general_dilated(
            seq,
            kernel.astype(seq.dtype),
            window_strides=(1,),
            padding=pad,
            dimension_numbers=("NWC", "WIO", "NWC"),
        )


def _inside_positions(length: int, width: int, alignment: str, padding: str) -> tuple[np.ndarray, int]:
    """(mask (L',) of output positions whose window lies wholly inside, window start offset).

    Output position ``j``'s window is input rows ``j + offset .. j + offset + width - 1``.
    """
    if padding == "valid":  # every output position saw K real rows; the seed's slice is that window
        return np.ones(length - width + 1, bool), 0
    half = width // 2
    j = np.arange(length)
    if alignment == "filter":
        return (j >= half) & (j <= length - 1 - half), -half
    return j <= length - width, 0


def _float_one_hot(seq):
    """(B, L, 4) one-hot of any dtype, or (B, L) int8 base indices (outside 0..3 = N) -> float32 one-hot."""
    if seq.ndim == 2:  # indices: expanded here, on the device, so the host sends 1 byte per base
        return one_hot_from_indices(seq, 4, jnp.float32)
    return seq.astype(jnp.float32)  # uint8 one-hot travels 4x lighter than float32


def max_activation_kernel(kernel, bias, seq, valid, padding: str = "same"):
    """Per-filter maximum activation over real rows and windows wholly inside, shape=(F,).

    seq: shape=(B, L, 4) one-hot or (B, L) int8 base indices (see :func:`site_counts_kernel`);
    valid: shape=(B,) bool, False for padding rows; padding: static, conv1's.
    """
    seq = _float_one_hot(seq)
    act = conv1_scores(kernel, seq, padding) + bias.reshape(1, 1, -1)
    inside, _ = _inside_positions(seq.shape[1], kernel.shape[0], "filter", padding)
    keep = valid.reshape(-1, 1, 1) & jnp.asarray(inside).reshape(1, -1, 1)
    return jnp.max(jnp.where(keep, act, -jnp.inf), axis=(0, 1))


def site_counts_kernel(
    kernel, bias, seq, valid, thresholds, *, mode: str, alignment: str, padding: str = "same"
):
    """Base counts of all site windows in one chunk.

    Parameters
    ----------
    kernel: shape=(K, 4, F) conv1 weights; bias: shape=(F,).
    seq: shape=(B, L, 4) one-hot (N = all-zero row), any dtype; or shape=(B, L) int8 base indices
        (0..3 = alphabet column, any other value such as -1 = N), expanded to one-hot here.
    valid: shape=(B,) bool, False for rows that only pad the chunk.
    thresholds: shape=(F,), on the pre-bias score (``mode="seed"``, site when ``>=``) or on the
        activation (``mode="max-activation"``, site when ``>``).
    mode, alignment: static, see the module docstring.
    padding: static, conv1's padding (``"same"`` | ``"valid"``).

    Returns (counts (F, K, 4) float32, sites (F,) int32, edge_sites (F,) int32).
    """
    width = kernel.shape[0]
    length = seq.shape[1]
    seq = _float_one_hot(seq)
    scores = conv1_scores(kernel, seq, padding)  # (B, L', F)
    thr = thresholds.reshape(1, 1, -1).astype(scores.dtype)
    if mode == "seed":
        site = scores >= thr
    else:
        site = scores + bias.reshape(1, 1, -1).astype(scores.dtype) > thr
    site = site & valid.reshape(-1, 1, 1)
    inside_np, offset = _inside_positions(length, width, alignment, padding)
    out_len = inside_np.shape[0]
    inside = jnp.asarray(inside_np).reshape(1, -1, 1)
    counted = site & inside
    edge = jnp.sum(site & ~inside, axis=(0, 1), dtype=jnp.int32)
    # Zero rows around the sequence so that every shifted view has length L'; only windows wholly
    # inside are counted, so the padding itself never reaches the counts.
    pad_left = max(0, -offset)
    pad_right = max(0, out_len + offset + width - 1 - length)
    padded = jnp.pad(seq, ((0, 0), (pad_left, pad_right), (0, 0)))
    start = offset + pad_left
    # (B, L', K, 4): view k holds row j + offset + k at output position j
    views = jnp.stack([padded[:, start + k : start + k + out_len] for k in range(width)], axis=2)
    with jax.default_matmul_precision("highest"):
        counts = jnp.einsum("blf,blkc->fkc", counted.astype(seq.dtype), views)
    return counts, jnp.sum(counted, axis=(0, 1), dtype=jnp.int32), edge


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------


def conv1_weights(model) -> tuple[np.ndarray, np.ndarray]:
    """The first convolution on the sequence: kernel, shape=(K, 4, F), and bias, shape=(F,), float32 NumPy.

    Found from the model's graph: DeepHistone's ``seq_map.conv1`` (K = 9), BPNet's ``iconv`` (K = 21),
    the classics' ``conv1`` (Basset K = 19, DeepSEA/Beluga K = 8). A convolution without bias gets
    zeros. Only dilation 1 is a plain position weight matrix. Its padding: :func:`conv1_padding`.
    """
    from jaxmotif.graph import lookup

    path, _ = _first_conv(model)
    conv = lookup(model.module(), path)
    kernel = np.asarray(conv.kernel[...], np.float32)
    bias = conv.bias_value()
    bias = np.zeros(kernel.shape[-1], np.float32) if bias is None else np.asarray(bias, np.float32)
    return kernel, bias


def conv1_padding(model) -> str:
    """The first convolution's padding from the model's graph: ``"same"`` or ``"valid"``."""
    return _first_conv(model)[1].padding


def _first_conv(model):
    from jaxmotif.graph import first_conv

    path, spec = first_conv(model.graph, "seq")
    if spec.dilation != 1:
        raise ValueError(
            f"the first convolution {path!r} is dilated ({spec.dilation}); its filters are no PWMs"
        )
    return path, spec


def _reduce_over_chunks(
    fn: Callable, seq: np.ndarray, batch_size: int, combine: Callable, progress: Callable[[int], None] | None
):
    """Reduces ``fn(params, seq_chunk, valid_chunk)`` over fixed-size chunks sharded on all devices.

    Unlike :func:`jaxmotif.batching.map_batches` (which pads by repeating rows and keeps per-row
    results), the results here are reductions over a chunk, so the tail is padded with N rows
    (all-zero one-hot, or -1 base indices) that ``valid`` masks out. Each chunk's result (a
    pytree) is fetched as float64 NumPy and merged with ``combine``; the next chunk is dispatched
    before the previous result is fetched.
    """
    mesh = batch_mesh()
    n = seq.shape[0]
    chunk = chunk_size_for(n, batch_size, mesh.size)
    sharding = NamedSharding(mesh, PartitionSpec(BATCH_AXIS))
    total = None
    pending = None

    def merge(result, rows):
        nonlocal total
        part = jax.tree.map(lambda r: np.asarray(r).astype(np.float64), result)
        total = part if total is None else jax.tree.map(combine, total, part)
        if progress is not None:
            progress(rows)

    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        # padding rows are masked by ``valid``; as indices they are N (-1), as one-hot all zero
        block = np.full((chunk, *seq.shape[1:]), -1 if seq.ndim == 2 else 0, seq.dtype)
        block[: stop - start] = seq[start:stop]
        valid = np.arange(chunk) < stop - start
        result = fn(jax.device_put(block, sharding), jax.device_put(valid, sharding))
        if pending is not None:
            merge(*pending)
        pending = (result, stop - start)
    merge(*pending)
    return total


# Module-level jitted pure kernels: jax caches their compilations by shapes and static arguments,
# so repeated calls (any model of the same conv1 shape) do not recompile.
_max_activation = jax.jit(max_activation_kernel, static_argnames=("padding",))
_site_counts = jax.jit(site_counts_kernel, static_argnames=("mode", "alignment", "padding"))


def _check_seqs(seqs, width: int) -> np.ndarray:
    """(N, L) int8 base indices as they are; one-hot (N, L, 4) (or one (L, 4)) as uint8 or float32."""
    seqs = np.asarray(seqs)
    if seqs.dtype == np.int8:  # base indices: 1 byte per base, the one-hot is built on the device
        if seqs.ndim != 2:
            raise ValueError(f"int8 seqs shape {seqs.shape} must be (N, L) base indices")
    elif seqs.dtype.kind not in "biuf":
        raise ValueError(
            f"seqs dtype {seqs.dtype} must be int8 (base indices), or bool, integer or float (one-hot)"
        )
    else:
        dtype = seqs.dtype
        # uint8/bool one-hot stays uint8 (exact, a quarter of the bytes to move); the rest float32
        seqs = seqs.astype(np.uint8 if seqs.dtype in (np.uint8, np.bool_) else np.float32, copy=False)
        if seqs.ndim == 2 and seqs.shape[1] == 4:
            seqs = seqs[None]
        if seqs.ndim != 3 or seqs.shape[2] != 4:
            raise ValueError(
                f"seqs shape {seqs.shape} must be (N, L, 4) (channels-last one-hot), or (N, L) int8 "
                f"base indices (got {dtype})"
            )
    if seqs.shape[0] == 0:
        raise ValueError("seqs holds no sequences")
    if seqs.shape[1] < width:
        raise ValueError(f"sequence length {seqs.shape[1]} is shorter than the conv1 width {width}")
    return seqs


def conv1_pwms(
    model,
    seqs,
    *,
    threshold_factor: float = 0.9,
    mode: str = "seed",
    alignment: str = "filter",
    max_over: str = "bases",
    batch_size: int = 256,
    max_memory: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> Conv1PWMs:
    """Position weight matrices of the model's conv1 filters from the windows where they fire.

    Parameters
    ----------
    model: a :class:`jaxmotif.Model` (the first convolution on its sequence input is used, with its
        padding from the graph), or a tuple ``(kernel (K, 4, F), bias (F,))`` of weights of a
        'same'-padded conv1 (odd K), or ``(kernel, bias, padding)``, with the alphabet ACGT.
    seqs: shape=(N, L, 4) channels-last one-hot in the model's alphabet order (ACGT for every
        converted model); any L >= K (conv1 does not need the model's window length). Pass it as
        uint8 or bool to move a quarter of the bytes from host to device (float32 otherwise), or as
        shape=(N, L) int8 base indices (:func:`jaxmotif.sequence.encode_indices_batch`: 0..3 the
        alphabet column, -1 or any other value N) to move a sixteenth, the one-hot then built on the
        device; the results are the same.
    threshold_factor: F of the seed rule (``mode="seed"``); ignored by ``max-activation``, whose
        factor is Basset's 0.5.
    mode: ``"seed"`` | ``"max-activation"``, see the module docstring.
    alignment: ``"filter"`` (the window the filter saw, default) | ``"seed"`` (the seed script's
        window ``X[j : j + K]``: K // 2 positions to the right on a 'same' conv1, the same on 'valid').
    max_over: how the seed rule's best score is taken, ``"bases"`` (default) | ``"positions"``
        (the seed script's axis).
    batch_size: at most this many sequences per compiled chunk.
    max_memory: bytes one compiled call may hold (default
        :func:`jaxmotif.memory.default_memory_budget`); the chunk is cut to fit
        (:func:`jaxmotif.memory.filter_sites_elements` per sequence).
    progress: called with the number of sequences after each chunk (and pass, for max-activation).

    Returns a :class:`Conv1PWMs`.
    """
    if mode not in THRESHOLD_MODES:
        raise ValueError(f"mode={mode!r} must be one of {THRESHOLD_MODES}")
    if alignment not in ALIGNMENTS:
        raise ValueError(f"alignment={alignment!r} must be one of {ALIGNMENTS}")
    if max_over not in MAX_OVER:
        raise ValueError(f"max_over={max_over!r} must be one of {MAX_OVER}")
    if not np.isfinite(threshold_factor):
        raise ValueError(f"threshold_factor={threshold_factor} must be finite")
    if isinstance(model, tuple):
        if len(model) not in (2, 3):
            raise ValueError(f"conv1 weights tuple has {len(model)} items; must be (kernel, bias[, padding])")
        kernel, bias = (np.asarray(a, np.float32) for a in model[:2])
        padding = model[2] if len(model) == 3 else "same"
        alphabet = "ACGT"
    else:
        kernel, bias = conv1_weights(model)
        padding = conv1_padding(model)
        alphabet = model.config.alphabet
    if padding not in PADDINGS:
        raise ValueError(f"conv1 padding={padding!r} must be one of {PADDINGS}")
    if kernel.ndim != 3 or kernel.shape[1] != 4 or bias.shape != (kernel.shape[2],):
        raise ValueError(f"conv1 kernel {kernel.shape} / bias {bias.shape} must be (K, 4, F) / (F,)")
    if padding == "same" and kernel.shape[0] % 2 == 0:
        raise ValueError(f"conv1 kernel width {kernel.shape[0]} is even: 'same' padding needs an odd width")
    seqs = _check_seqs(seqs, kernel.shape[0])
    # Per-chunk counts are float32 sums of 0/1 terms, exact while a chunk has < 2**24 positions.
    batch_size = max(1, min(batch_size, _EXACT_FLOAT32 // seqs.shape[1]))
    per_sequence = filter_sites_elements(1, seqs.shape[1], kernel.shape[2], kernel.shape[0])
    fit = (resolve_budget(max_memory) - kernel.nbytes - bias.nbytes) // (ITEMSIZE * per_sequence)
    batch_size = max(1, min(batch_size, fit))
    k_dev, b_dev = jnp.asarray(kernel), jnp.asarray(bias)

    if mode == "seed":
        thresholds = np.asarray(seed_thresholds(k_dev, b_dev, float(threshold_factor), max_over), np.float32)
    else:
        # Basset's rule needs each filter's maximum over the whole data set first: a pass of its own.
        maxima = _reduce_over_chunks(
            lambda s, v: _max_activation(k_dev, b_dev, s, v, padding), seqs, batch_size, np.maximum, progress
        )
        thresholds = (0.5 * maxima).astype(np.float32)
    thr_dev = jnp.asarray(thresholds)
    counts, sites, edge = _reduce_over_chunks(
        lambda s, v: _site_counts(
            k_dev, b_dev, s, v, thr_dev, mode=mode, alignment=alignment, padding=padding
        ),
        seqs,
        batch_size,
        np.add,
        progress,
    )
    counts = np.rint(counts).astype(np.int64)
    sites = np.rint(sites).astype(np.int64)
    edge = np.rint(edge).astype(np.int64)
    return Conv1PWMs(
        pwms=pwms_from_counts(counts, sites),
        counts=counts,
        sites=sites,
        thresholds=thresholds,
        edge_sites_excluded=edge,
        filters_with_sites=np.flatnonzero(sites > 0).astype(np.int64),
        alphabet=alphabet,
    )


def pwms_from_counts(counts: np.ndarray, sites: np.ndarray) -> np.ndarray:
    """Counts (F, K, 4) -> probabilities per position; NaN for filters without sites.

    A position where every site had an N (no base counted) gets the uniform row.
    """
    counts = np.asarray(counts, np.float64)
    totals = counts.sum(axis=2, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        pwms = np.where(totals > 0, counts / totals, 0.25)
    pwms[np.asarray(sites) == 0] = np.nan
    return pwms


def filter_motifs(result: Conv1PWMs, names: Sequence[str] | None = None) -> list:
    """:class:`jaxmotif.io.meme.Motif` per filter with sites, columns reordered to A, C, G, T.

    Names default to ``filter{i}`` with the 1-based filter index, as the seed's MEME files.
    """
    from jaxmotif.io.meme import Motif

    order = [result.alphabet.index(c) for c in "ACGT"]
    motifs = []
    for i in result.filters_with_sites:
        name = f"filter{i + 1}" if names is None else names[i]
        motifs.append(Motif(name=name, pwm=result.pwms[i][:, order], nsites=int(result.sites[i])))
    return motifs


if __name__ == "__main__":
    from jaxmotif.cli.filters import main

    sys.exit(main())
