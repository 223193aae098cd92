"""Exact fast in-silico mutagenesis for DeepHistone: recompute only what a substitution reaches.

A full mutation map runs the model on all 3 L single-base mutants of a window. Everything before
DeepHistone's dense head is local (convolutions, eval-mode BatchNorm, ReLU, concatenation,
max-pooling), so a substitution at position ``p`` changes each feature map only on a short range
around ``p``. This module runs the reference once, keeps every layer's activations, and for each
mutant recomputes each layer only on its affected range, reading the halo its 9-wide convolution
needs from the reference activations. The head is applied as the reference pre-activation hidden
vector plus a low-rank update from the few pooled positions that changed (each against the reference
recomputed beside it, see "Rounding" below). The result equals the full recomputation up to
floating-point rounding (tests: 1e-5 relative in fp32). Same idea as
fastISM (Nair et al. 2022, Keras only); this is the exact JAX version for DeepHistone.

Affected ranges, derived layer by layer
=======================================
Notation: a substitution at position ``p`` (resolution 1, 0 <= p < L); ``h = 4`` is the half-width
of a 9-wide kernel; ``D = 3`` dense layers per block; pooling by ``P = 4`` (floor mode). "Affected"
is the set of output positions whose value can differ from the reference.

Stage 1, resolution 1, centred at ``c = p``:
    input one-hot       affected {p}
    conv1 (k=9)         affected [p-4, p+4]    needs one-hot on [p-8, p+8]         (9 positions)
    block1 layer 1      affected [p-8, p+8]    needs its input on [p-12, p+12]     (17)
    block1 layer 2      affected [p-12, p+12]  needs its input on [p-16, p+16]     (25)
    block1 layer 3      affected [p-16, p+16]  needs its input on [p-20, p+20]     (33)
    (a dense layer's input is the concatenation of conv1 and the earlier layers' outputs; each
    channel group is mutant on its own affected range and reference elsewhere, so one window
    [c-20, c+20] of the reference block output, overwritten group by group, holds every input.)
    trans1 BN/ReLU/1x1  pointwise: affected [p-16, p+16]
    maxpool(4)          pooled j is affected iff [4j, 4j+3] meets [p-16, p+16], i.e.
                        j in [floor((p-16)/4), floor((p+16)/4)] = [q-4, q+4] with q = p // 4
                        (9 pooled positions; a window crossing a pool boundary is included).
                        Each is recomputed from all 4 of its pre-pool values, mutant or
                        reference: the aligned range [4(q-4), 4(q+4)+3] (36 positions), which
                        lies inside [p-19, p+19], so inside the window.
Stage 2, resolution 1/4, centred at ``c = q``: its input (trans1's pooled output) is affected on
[q-4, q+4], exactly like conv1's output around ``p`` in stage 1, so the same geometry repeats:
    block2 layers 1-3   affected [q-8, q+8], [q-12, q+12], [q-16, q+16]; window [q-20, q+20]
    trans2 + maxpool    pooled k affected iff k in [r-4, r+4] with r = q // 4 = p // 16.
Head: ``hidden_pre`` is linear in the flattened features (index ``k * w3 + channel`` for the
sequence branch), so ``h_mut = h_ref + sum_{k in [r-4, r+4]} (F_mut[k] - F_ref[k]) @ W[rows of k]``,
``F_ref`` being the reference features recomputed by the same sliced computation as ``F_mut``
(9 x w3 rows of the 925-wide layer instead of all L/16 x w3 x 2 rows); then BN -> ReLU -> out ->
final activation as usual. The DNase branch never sees the mutation: it only enters ``h_ref``.

Edges: 'same' padding means positions outside [0, L) (stage 1) or [0, L // 4) (stage 2) are zero
in every convolution *input*, which is post-BN/ReLU. Shapes must be static, so every position
uses the maximal (mid-sequence) ranges above; the reference maps are padded and sliced with a
dynamic start, and positions outside the valid range are masked to zero after BN/ReLU, right
before each convolution. Mutant values computed at such positions are garbage that is never read:
they are masked before the next convolution, and a pooled position outside [0, L // 4) or
[0, L // 16) (whose delta is masked before the head) is the only place they can reach. Floor-mode
pooling drops the ragged tail, so a valid pooled position only ever reads valid positions.

Cost per mutant at the published size (widths 128/256/512, L = 1000): about 0.3 GFLOP against
4.2 GFLOP for the sequence branch and head (see :func:`flops_per_window`).

Rounding: why a delta is exact zero where nothing changed, at any precision
===========================================================================
A delta p(ŝ) − p(s) is a small difference of two large numbers, so p(s) must be computed the same
way as p(ŝ), or the difference of the two roundings becomes an offset on every substitution. The
invariants (tests: ``test_ism.py::test_bf16_delta_has_no_offset_and_is_zero_where_the_head_is_blind``):

1. Reference beside the mutants. At each position the reference window itself is variant 0 of the
   same batched sliced computation as that position's mutants (same shapes, same ops, same
   compiled program), so every feature a substitution does not reach is bit-identical in the two,
   and the feature delta ``F_v - F_0`` is an exact 0 there. The global reference pass only supplies
   the halo both read (and the DNase branch and ``h_ref``), never a subtrahend.
2. Head in float32. ``h_ref`` (the first dense layer on the reference's flat features), the
   low-rank update ``(F_v - F_0) @ W``, BN/ReLU/out and the final activation run in float32 with
   matmul precision ``highest``, whatever the dtype of the branches. The reference row's update is
   exactly 0, so its hidden vector is exactly ``h_ref``; a mutant whose update rounds to 0 gets the
   very same output, and the subtraction (in :func:`jaxmotif.ism.score_mutations`, float32, against
   the reference entry from the same batch) gives 0.
3. Delta form, wide accumulation. Each sliced convolution computes the reference row as is and
   every mutant row as ``conv(x_ref) + conv(x_mut - x_ref)`` (:func:`_conv`): the operands are in
   the working dtype (bf16: the tensor-core path), but the difference is rounded relative to its
   own size rather than to the activation's, the sums are float32 (``preferred_element_type``) and
   the activations in the affected window stay float32 between layers. Where nothing changed the
   second term is an exact 0, so invariant 1 holds. In fp32 this equals the plain computation up
   to rounding (same FLOPs: the reference row was computed anyway).
4. The head's params stay float32 under ``precision="bf16"``
   (:func:`jaxmotif.ism.with_precision_fp32_head`); only the branches are cast.

Adding an architecture: write its table as above (each k-wide convolution grows the affected
half-width by k // 2, each pool maps [a, b] to [floor(a / P), floor(b / P)], pointwise layers
keep it), pick the window half-width of each resolution stage from the widest input any layer
needs, and reuse ``_dense_stage``'s pattern: slice the reference, overwrite the affected range
layer by layer, VALID convolutions, mask outside the sequence.
"""

import dataclasses

import jax
import jax.numpy as jnp

from jaxmotif.models.deephistone import (
    DENSE_LAYERS,
    KERNEL_WIDTH,
    POOL,
    DeepHistoneConfig,
    along_channels,
    final_activation,
    maxpool,
)

HALO = KERNEL_WIDTH // 2  # 4: half-width of a 9-wide convolution
GROUP0 = HALO  # half-width of the affected range of a stage's input (conv1 out; pooled trans1 out)
BLOCK_OUT = GROUP0 + DENSE_LAYERS * HALO  # 16: half-width affected at a dense block's output
WINDOW = BLOCK_OUT + HALO  # 20: half-width of the reference window a stage reads
POOLED = BLOCK_OUT // POOL  # 4: half-width affected after the pool (9 pooled positions)
PREPOOL = (2 * POOLED + 1) * POOL  # 36: pre-pool positions of the 9 affected pool windows
GROUP = POOL * POOL  # 16 consecutive positions share their affected head rows
BASES = 4

# The stage-2 reuse of the stage-1 geometry relies on these.
assert BLOCK_OUT % POOL == 0 and POOLED == GROUP0


def _masked(z, valid):
    """Zeros outside the sequence: the 'same' padding of the next convolution's input."""
    return jnp.where(valid[None, :, None], z, jnp.zeros((), z.dtype))


def _conv(x, kernel, bias, dtype):
    """A VALID convolution of variants whose row 0 is the reference, ``dtype`` operands, float32 result.

    Row 0 is convolved as is; every other row as ``conv(x_0) + conv(x_v - x_0)``: the difference
    is rounded to ``dtype`` relative to its own size, not to the activations' (in bf16 a mutant's
    effect is often far below 8 bits of an activation), and the sums are accumulated and kept in
    float32. Where ``x_v == x_0`` over the whole receptive field the second term is an exact 0, so
    the row equals the reference's bit for bit. In fp32 this is the plain convolution up to rounding.
    """
    delta = jnp.concatenate([x[:1], x[1:] - x[:1]]).astype(dtype)
    y = jax.lax.conv_general_dilated(
        delta,
        kernel.astype(dtype),
        window_strides=(1,),
        padding="VALID",
        dimension_numbers=("NWC", "WIO", "NWC"),
        preferred_element_type=jnp.float32,
    )
    ref = y[:1] + along_channels(bias.astype(jnp.float32), y.ndim)
    return jnp.concatenate([ref, ref + y[1:]])


def _dense_stage(block, trans, ref, group0, valid, prepool_start, dtype):
    """One resolution stage for the M mutants of one position: dense block, transition, pool.

    Parameters
    ----------
    block, trans: the NNX ``DenseBlock`` and ``Transition`` of this stage.
    ref: shape=(2 * WINDOW + 1, C), the reference block output on [c - 20, c + 20] (C = all
        channels of the block output: its input group and the 3 layers' outputs).
    group0: shape=(M, 2 * GROUP0 + 1, c0) float32, the variants' block input on [c - 4, c + 4];
        row 0 is the reference (:func:`_conv` computes the other rows as differences from it).
    valid: shape=(2 * WINDOW + 1,) bool, window positions inside the sequence at this resolution.
    prepool_start: index in the window of the first pre-pool position, 4 (q - 4) - (c - 20).
    dtype: the convolutions' operand dtype (the working precision); activations stay float32.

    Returns shape=(M, 2 * POOLED + 1, cout) float32: the pooled output on [c // 4 - 4, c // 4 + 4].
    """
    m = group0.shape[0]
    x = jnp.broadcast_to(ref.astype(jnp.float32)[None], (m, *ref.shape))
    cin = group0.shape[-1]
    x = x.at[:, WINDOW - GROUP0 : WINDOW + GROUP0 + 1, :cin].set(group0)
    for k, layer in enumerate(block.layers):
        half = GROUP0 + (k + 1) * HALO  # this layer's affected output half-width
        lo, hi = WINDOW - half - HALO, WINDOW + half + HALO + 1  # its input range, with halo
        z = _masked(jax.nn.relu(layer.norm(x[:, lo:hi, :cin])), valid[lo:hi])
        out = _conv(z, layer.conv.kernel[...], layer.conv.bias[...], dtype)
        growth = out.shape[-1]
        x = x.at[:, WINDOW - half : WINDOW + half + 1, cin : cin + growth].set(out)
        cin += growth
    pre = jax.lax.dynamic_slice_in_dim(x, prepool_start, PREPOOL, axis=1)
    return maxpool(_conv(jax.nn.relu(trans.norm(pre)), trans.conv.kernel[...], trans.conv.bias[...], dtype))


def _window_valid(center, length):
    positions = center - WINDOW + jnp.arange(2 * WINDOW + 1)
    return (positions >= 0) & (positions < length)


def _pad_rows(x, before, after):
    return jnp.pad(x, ((before, after),) + ((0, 0),) * (x.ndim - 1))


def _check_window(cfg: DeepHistoneConfig, seq, dnase) -> None:
    length = cfg.seq_len
    if seq.shape != (length, BASES):
        raise ValueError(f"seq shape {seq.shape} must be ({length}, {BASES}) (one window, channels-last)")
    if cfg.has_dnase:
        if dnase is None or dnase.shape != (length,):
            got = None if dnase is None else dnase.shape
            raise ValueError(f"dnase shape {got} must be ({length},) for this two-branch model")
    elif dnase is not None:
        raise ValueError("this DNA-only model takes no dnase input")


class _Window:
    """The reference pass of one window and the two sliced computations every variant goes through.

    ``features(p, rows)``: pooled sequence features on [p // 16 - 4, p // 16 + 4] of the variants of
    the window whose base at ``p`` is each row of ``rows (V, 4)`` (row 0 is ``seq[p]``, the
    reference itself, so it goes through the very same sliced ops as its mutants).
    ``outputs(feats (P, V, 9, w3), r)``: fp32 logits ``(P, V, T)`` of variants whose positions all
    lie in 16-position group ``r``: ``hidden_ref + (F_v - F_0) @ W`` and the head, all in fp32.
    """

    def __init__(self, model, params, seq, dnase):
        cfg: DeepHistoneConfig = model.config
        self.cfg, self.seq, self.length = cfg, seq, cfg.seq_len
        module = model.module(params)
        self.branch, self.head = module.seq_map, module.head
        branch, head = self.branch, self.head
        self.pooled1, self.pooled2 = self.length // POOL, self.length // POOL // POOL
        w3 = cfg.widths[2]
        # Reference pass: keep every stage's block output (it contains every layer's output).
        block1_ref = branch.block1(branch.conv1(seq[None]))  # (1, L, 4 w1)
        block2_ref = branch.block2(branch.trans1(block1_ref))  # (1, L/4, 4 w2)
        feats_ref = branch.trans2(block2_ref)[0]  # (L/16, w3)
        flat = [feats_ref.reshape(1, -1)]
        if cfg.has_dnase:  # the DNase branch never sees the mutation: run once, enters h_ref only
            flat.append(module.dns_map(dnase[None, :, None]).reshape(1, -1))
        flat = jnp.concatenate(flat, axis=-1).astype(jnp.float32)
        with jax.default_matmul_precision("highest"):  # the head runs in fp32 whatever the precision
            self.hidden_ref = head.hidden_pre(flat)[0]  # (hidden,) float32
        # Padding so every fixed-width window has a valid start: WINDOW on the left; on the right
        # one more, because with L % 4 != 0 the last centre q = (L - 1) // 4 can equal L // 4.
        self.seq_pad = _pad_rows(seq, 2 * HALO, 2 * HALO)
        self.block1_pad = _pad_rows(block1_ref[0], WINDOW, WINDOW + 1)
        self.block2_pad = _pad_rows(block2_ref[0], WINDOW, WINDOW + 1)
        dense_kernel = head.dense.kernel[...].astype(jnp.float32)
        seq_rows = dense_kernel[: self.pooled2 * w3].reshape(self.pooled2, w3, dense_kernel.shape[-1])
        self.rows_pad = _pad_rows(seq_rows, POOLED, POOLED + 1)

    def features(self, p, rows):
        branch = self.branch
        window = jax.lax.dynamic_slice_in_dim(self.seq_pad, p, 4 * HALO + 1)  # one-hot on [p-8, p+8]
        variants = jnp.broadcast_to(window[None], (rows.shape[0], *window.shape))
        variants = variants.at[:, 2 * HALO].set(rows.astype(window.dtype))
        conv1 = branch.conv1
        conv1_mut = _conv(variants, conv1.kernel[...], conv1.bias[...], window.dtype)  # [p-4, p+4]
        q = p // POOL
        ref1 = jax.lax.dynamic_slice_in_dim(self.block1_pad, p, 2 * WINDOW + 1)
        start1 = WINDOW - BLOCK_OUT - p % POOL
        pooled_mut = _dense_stage(
            branch.block1, branch.trans1, ref1, conv1_mut, _window_valid(p, self.length), start1, window.dtype
        )  # trans1 output on [q-4, q+4]
        ref2 = jax.lax.dynamic_slice_in_dim(self.block2_pad, q, 2 * WINDOW + 1)
        start2 = WINDOW - BLOCK_OUT - q % POOL
        return _dense_stage(
            branch.block2,
            branch.trans2,
            ref2,
            pooled_mut,
            _window_valid(q, self.pooled1),
            start2,
            window.dtype,
        )

    def outputs(self, feats, r):
        rows = jax.lax.dynamic_slice_in_dim(self.rows_pad, r, 2 * POOLED + 1)  # (9, w3, hidden)
        k = r - POOLED + jnp.arange(2 * POOLED + 1)
        valid = (k >= 0) & (k < self.pooled2)
        feats = feats.astype(jnp.float32)
        # Each variant against the reference computed beside it: features the substitution does
        # not reach are bit-identical, so they contribute exactly 0 (no rounding offset).
        delta = jnp.where(valid[None, None, :, None], feats - feats[:, :1], 0.0)
        with jax.default_matmul_precision("highest"):
            update = jnp.einsum("pvkc,kch->pvh", delta, rows, precision=jax.lax.Precision.HIGHEST)
            hidden = self.hidden_ref[None, None] + update  # the reference row: hidden_ref + 0 exactly
            out = self.head.from_hidden(hidden.reshape(-1, hidden.shape[-1]))
        return out.astype(jnp.float32).reshape(*hidden.shape[:2], -1)

    def activate(self, logits):
        return final_activation(logits.astype(jnp.float32), self.cfg.final_activation)


def mutant_predictions_fast(
    model,
    params,
    seq,
    dnase=None,
    *,
    logits: bool = False,
    all_bases: bool = False,
    position_chunk: int | None = None,
):
    """Model outputs for every single-base substitution of one window, computed exactly but locally.

    A pure function of ``(params, seq, dnase)`` (``model`` only supplies the graph and config):
    jit it, vmap it over a leading window axis, or wrap it with
    :func:`jaxmotif.precision.with_precision` (bf16 params and inputs work).

    Rounding: at every position the reference window goes through the same sliced computation as
    that position's mutants (in the same batch), and the head's low-rank update, the head and the
    final activation run in float32 whatever the dtype of ``params``/``seq``. So features a
    substitution does not reach are bit-identical to the reference's, a substitution whose effect
    rounds away gives exactly the reference output, and ``out - out[ref]`` is an exact 0 there
    (no offset from a differently compiled reference pass).

    Parameters
    ----------
    model: a DeepHistone :class:`jaxmotif.Model` (its graphdef and config are used).
    params: the model's params pytree (possibly cast to bf16).
    seq: shape=(L, 4) one-hot in the model's alphabet order, L = ``config.seq_len``; an N is an
        all-zero row.
    dnase: shape=(L,) for two-branch models, else None.
    logits: return outputs before the final activation.
    all_bases: also recompute the reference base's entry (4 mutants per position instead of 3).
        Only matters at N rows: by default the entry of base 0 there holds the reference output
        like a reference base (the three others are true substitutions); with ``all_bases`` all
        four are substitutions there, at 4/3 of the cost.
    position_chunk: positions evaluated together per step (rounded up to a multiple of 16);
        memory grows with it. Static. Default: 32 on CPU (measured best on 2 cores), 256 on
        accelerators, where small steps would leave the device idle.

    Returns shape=(L, 4, T) float32: entry [p, b] is the output for ``seq`` with base b at
    position p; the reference base's entry is the reference output p(s) as computed beside the
    mutants of p (equal at every position).
    """
    cfg: DeepHistoneConfig = model.config
    length = cfg.seq_len
    _check_window(cfg, seq, dnase)
    if position_chunk is None:
        position_chunk = 32 if jax.default_backend() == "cpu" else 256
    if position_chunk < 1:
        raise ValueError(f"position_chunk={position_chunk} must be positive")
    win = _Window(model, params, seq, dnase)
    eye = jnp.eye(BASES, dtype=seq.dtype)
    n_mut = BASES if all_bases else BASES - 1

    def mutant_bases(p):
        if all_bases:
            return jnp.arange(BASES)
        ref_base = jnp.argmax(seq[p])  # 0 at an N row
        return (ref_base + jnp.arange(1, BASES)) % BASES

    def group_outputs(positions):
        """Logits (16, 1 + M, T) for 16 consecutive positions (they share the head rows they touch)."""
        rows = jax.vmap(lambda p: jnp.concatenate([seq[p][None], eye[mutant_bases(p)]]))(positions)
        feats = jax.vmap(win.features)(positions, rows)  # (16, 1 + M, 9, w3)
        return win.outputs(feats, positions[0] // GROUP)

    groups = -(-length // GROUP)
    # Padded tail positions repeat position L-1 (same group, valid inputs) and are dropped below.
    positions = jnp.minimum(jnp.arange(groups * GROUP), length - 1).reshape(groups, GROUP)
    per_step = max(1, -(-position_chunk // GROUP))
    out = jax.lax.map(group_outputs, positions, batch_size=min(per_step, groups))
    out = out.reshape(groups * GROUP, 1 + n_mut, -1)[:length]  # (L, 1 + M, T)
    ref, out = out[:, :1], out[:, 1:]

    if not all_bases:
        bases = jax.vmap(mutant_bases)(jnp.arange(length))  # (L, 3)
        full = jnp.broadcast_to(ref, (length, BASES, out.shape[-1]))
        out = full.at[jnp.arange(length)[:, None], bases].set(out)
    else:
        is_ref = seq.astype(jnp.float32) > 0.5  # (L, 4); all False at an N row
        out = jnp.where(is_ref[..., None], ref, out)
    return out if logits else win.activate(out)


def listed_predictions_fast(model, params, seq, dnase, positions, bases, *, logits: bool = False):
    """Outputs of the reference and of the listed substitutions of one window, nothing else.

    Parameters
    ----------
    model, params, seq, dnase: as for :func:`mutant_predictions_fast`.
    positions: shape=(K,) int, 0 <= position < L.
    bases: shape=(K,) int, the base (alphabet index) put at each position.

    Returns shape=(K, 2, T) float32: ``[k, 0]`` the reference output and ``[k, 1]`` the output with
    ``bases[k]`` at ``positions[k]``, both from the same sliced computation (so a substitution
    whose effect rounds away gives two equal numbers, and a reference base gives ``[k, 1] ==
    [k, 0]``). Equal to :func:`mutant_predictions_fast` at those entries up to rounding.
    """
    _check_window(model.config, seq, dnase)
    win = _Window(model, params, seq, dnase)
    eye = jnp.eye(BASES, dtype=seq.dtype)

    def one(args):
        p, b = args
        rows = jnp.stack([seq[p], eye[b]])
        feats = win.features(p, rows)[None]  # (1, 2, 9, w3)
        return win.outputs(feats, p // GROUP)[0]  # (2, T)

    out = jax.lax.map(one, (jnp.asarray(positions), jnp.asarray(bases)))
    return out if logits else win.activate(out)


# ---------------------------------------------------------------------------------------------
# Counted work, for the benchmarks: 2 FLOPs per multiply-accumulate of every convolution and
# dense layer (BatchNorm, ReLU and pooling are not counted; they are < 1 % here).
# ---------------------------------------------------------------------------------------------

FLOP_METHODS = ("full", "fast")


@dataclasses.dataclass(frozen=True)
class _Widths:
    c0: int  # block input channels
    growth: int  # each dense layer's output channels
    cout: int  # transition output channels


def _stage_macs(length: int, w: _Widths) -> int:
    """A dense block plus its transition on ``length`` positions."""
    block = sum(length * KERNEL_WIDTH * (w.c0 + k * w.growth) * w.growth for k in range(DENSE_LAYERS))
    return block + length * (w.c0 + DENSE_LAYERS * w.growth) * w.cout


def _branch_macs(cfg: DeepHistoneConfig, in_rows: int) -> int:
    w1, w2, w3 = cfg.widths
    conv1 = cfg.seq_len * KERNEL_WIDTH * in_rows * w1
    return (
        conv1
        + _stage_macs(cfg.seq_len, _Widths(w1, w1, w2))
        + _stage_macs(cfg.seq_len // POOL, _Widths(w2, w2, w3))
    )


def _fast_stage_macs(w: _Widths) -> int:
    """What ``_dense_stage`` computes for one mutant: layer k on 2 (4 + 4 (k + 1)) + 1 positions."""
    block = sum(
        (2 * (GROUP0 + (k + 1) * HALO) + 1) * KERNEL_WIDTH * (w.c0 + k * w.growth) * w.growth
        for k in range(DENSE_LAYERS)
    )
    return block + PREPOOL * (w.c0 + DENSE_LAYERS * w.growth) * w.cout


def _fast_mutant_macs(cfg: DeepHistoneConfig) -> int:
    w1, w2, w3 = cfg.widths
    conv1 = (2 * GROUP0 + 1) * KERNEL_WIDTH * BASES * w1
    head = (2 * POOLED + 1) * w3 * cfg.hidden + cfg.hidden * cfg.num_outputs
    return conv1 + _fast_stage_macs(_Widths(w1, w1, w2)) + _fast_stage_macs(_Widths(w2, w2, w3)) + head


def flops_per_window(config: DeepHistoneConfig, method: str, *, all_bases: bool = False) -> float:
    """Counted FLOPs of a mutation map of one window (3 L mutants, or 4 L with ``all_bases``).

    ``full``: the reference and every mutant through the sequence branch and the head, the DNase
    branch once. ``fast``: one reference forward (both branches and the head) plus, per variant,
    what :func:`mutant_predictions_fast` recomputes (fixed mid-sequence ranges, also at the edges);
    the variants of a position are its 3 (4) mutants and the reference itself, recomputed beside
    them so both round alike.
    """
    if method not in FLOP_METHODS:
        raise ValueError(f"method={method!r} must be one of {FLOP_METHODS}")
    cfg = config
    mutants = (BASES if all_bases else BASES - 1) * cfg.seq_len
    branches = 2 if cfg.has_dnase else 1
    head = branches * cfg.pooled_len * cfg.widths[2] * cfg.hidden + cfg.hidden * cfg.num_outputs
    seq_pass = _branch_macs(cfg, BASES) + head
    dnase_pass = _branch_macs(cfg, 1) if cfg.has_dnase else 0
    if method == "full":
        macs = (mutants + 1) * seq_pass + dnase_pass
    else:
        macs = seq_pass + dnase_pass + (mutants + cfg.seq_len) * _fast_mutant_macs(cfg)
    return 2.0 * macs
