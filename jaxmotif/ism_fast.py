"""Exact fast in-silico mutagenesis for DeepHistone: recompute only what a substitution reaches.

A full mutation map runs the model on all 3 L single-base mutants of a window. Everything before
DeepHistone's dense head is local (convolutions, eval-mode BatchNorm, ReLU, concatenation,
max-pooling), so a substitution at position ``p`` changes each feature map only on a short range
around ``p``. This module runs the reference once, keeps every layer's activations, and for each
mutant computes each layer's *change* (mutant minus reference) only where it can be non-zero: a
convolution of a change needs no reference halo and no bias (it is linear), a BN/ReLU or a
max-pool takes the reference values at hand, ``f(ref + change) - f(ref)``. The head is applied as
the reference pre-activation hidden vector plus a low-rank update from the few pooled positions
that changed. The result equals the full recomputation up to floating-point rounding (tests:
1e-5 relative in fp32). Same idea as fastISM (Nair et al. 2022, Keras only); this is the exact
JAX version for DeepHistone, in changes rather than recomputed windows.

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
    channel group changes on its own affected range only, so each group's change goes through
    its own rows of the kernel on its own range, and only the reference window [c-20, c+20] of
    the block output is read, for the BN/ReLU of the changed positions.)
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
sequence branch), so ``h_mut = h_ref + sum_{k in [r-4, r+4]} dF[k] @ W[rows of k]`` with ``dF`` the
pooled features' change (9 x w3 rows of the 925-wide layer instead of all L/16 x w3 x 2 rows);
each row block k is read once for the 9 groups of 16 positions that reach it
(:meth:`_Window.banded_updates`); then BN -> ReLU -> out -> final activation as usual. The DNase
branch never sees the mutation: it only enters ``h_ref``.

Edges: 'same' padding means positions outside [0, L) (stage 1) or [0, L // 4) (stage 2) are zero
in every convolution *input*, which is post-BN/ReLU, for the mutant and the reference alike: their
change is 0 there. Shapes must be static, so every position uses the maximal (mid-sequence) ranges
above; the reference maps are padded and sliced with a dynamic start, and each change after
BN/ReLU is masked to zero outside the valid range, right before each convolution. A convolution of
a change has no bias, so a change is never created where none came in; a pooled position outside
[0, L // 16) has no head rows and is skipped. Floor-mode pooling drops the ragged tail, so a valid
pooled position only ever reads valid positions.

Cost per mutant at the published size (widths 128/256/512, L = 1000): about 0.23 GFLOP against
4.2 GFLOP for the sequence branch and head (see :func:`flops_per_window`; counted with the zero
padding of the convolutions of changes, which XLA's own count leaves out: 0.17).

Rounding: why a delta is exact zero where nothing changed, at any precision
===========================================================================
A delta p(ŝ) − p(s) is a small difference of two large numbers, so p(s) must be computed the same
way as p(ŝ), or the difference of the two roundings becomes an offset on every substitution. The
invariants (tests: ``test_ism.py::test_bf16_delta_has_no_offset_and_is_zero_where_the_head_is_blind``):

1. Changes, not values. Every mutant carries its change from the reference: a convolution maps a
   change to ``conv(change)`` (no bias), a nonlinearity to ``f(ref + change) - f(ref)`` with the
   very same ``ref`` in both terms (:func:`_relu_change`, the max-pool in :func:`_dense_stage`).
   Where a change is 0 on a layer's whole input, its output change is an exact 0, at any
   precision: a feature a substitution does not reach is never perturbed by rounding. (Before,
   the reference was recomputed beside the mutants as a fourth variant of each position, at 4/3
   of the work; a change of exactly 0 needs no reference row.)
2. Head in float32. ``h_ref`` (the first dense layer on the reference's flat features), the
   low-rank update ``dF @ W``, BN/ReLU/out and the final activation run in float32 with matmul
   precision ``highest``, whatever the dtype of the branches. The reference's hidden vector is
   exactly ``h_ref`` and goes through the head in the same call as the mutants'
   (:meth:`_Window.head_outputs`); a mutant whose update is 0 gets the very same output, and the
   subtraction (in :func:`jaxmotif.ism.score_mutations`, float32) gives 0.
3. Wide accumulation. The changes are float32 between layers; each convolution's operands are
   in the working dtype (bf16: the tensor-core path), so a change is rounded relative to its own
   size, not to the activations' (in bf16 a mutant's effect is often far below 8 bits of an
   activation), and the sums are float32 (``preferred_element_type``).
4. The head's params stay float32 under ``precision="bf16"``
   (:func:`jaxmotif.ism.with_precision_fp32_head`); only the branches are cast.

Adding an architecture: write its table as above (each k-wide convolution grows the affected
half-width by k // 2, each pool maps [a, b] to [floor(a / P), floor(b / P)], pointwise layers
keep it), pick the window half-width of each resolution stage from the widest input any layer
needs, and reuse ``_dense_stage``'s pattern: slice the reference window, carry each channel
group's change on its own range, "full" convolutions of changes, mask outside the sequence.
"""

import dataclasses

import jax
import jax.numpy as jnp

from jaxmotif.models.deephistone import (
    BN_EPS,
    DENSE_LAYERS,
    KERNEL_WIDTH,
    POOL,
    DeepHistoneConfig,
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


def _bn_affine(norm):
    """Eval BatchNorm as ``x * inv + shift`` in float32 (the same formula as the model's BatchNorm)."""
    dtype = jnp.promote_types(norm.var[...].dtype, jnp.float32)  # float64 when the model runs in it
    inv = jax.lax.rsqrt(norm.var[...].astype(dtype) + BN_EPS) * norm.scale[...].astype(dtype)
    shift = norm.bias[...].astype(dtype) - norm.mean[...].astype(dtype) * inv
    return inv, shift


def _relu_change(ref, delta, inv, shift):
    """``relu(bn(ref + delta)) - relu(bn(ref))``, float32: exactly 0 wherever ``delta`` is 0."""
    ref = ref.astype(delta.dtype)[None]
    inv, shift = inv.reshape(1, 1, -1), shift.reshape(1, 1, -1)
    return jax.nn.relu((ref + delta) * inv + shift) - jax.nn.relu(ref * inv + shift)


def _conv_change(z, kernel, dtype, pad: int):
    """The change of a convolution's output from the change ``z`` of its input: ``conv(z)``, no bias.

    Operands in ``dtype`` (bf16: the tensor-core path; ``z`` is rounded relative to its own size,
    not to the activations'), sums in float32. ``pad``: zero positions each side, the kernel width
    minus 1, so the output covers every position the change reaches (a "full" convolution: the
    change is 0 outside ``z``'s range).
    """
    return jax.lax.conv_general_dilated(
        z.astype(dtype),
        kernel.astype(dtype),
        window_strides=(1,),
        padding=((pad, pad),),
        dimension_numbers=("NWC", "WIO", "NWC"),
        preferred_element_type=jnp.float32,
    )


def _centred(x, half: int):
    """Zero-pad ``x (M, 2 h + 1, C)`` along positions to ``(M, 2 half + 1, C)``, same centre."""
    extra = half - x.shape[1] // 2
    return jnp.pad(x, ((0, 0), (extra, extra), (0, 0)))


def _dense_stage(block, trans, ref, pre_ref, group0, valid, prepool_start, dtype):
    """One resolution stage for the M mutants of one position, in changes: dense block, transition, pool.

    Every array of mutants holds the change ``mutant - reference`` (float32) on its affected range
    only; the reference values come from the one reference pass. Channel group j of the block
    (j = 0: the block input; j >= 1: dense layer j's output) changes on [c - r_j, c + r_j],
    r_j = 4 + 4 j. Dense layer k reads groups 0..k: each group's change through BN/ReLU
    (:func:`_relu_change`, on its own range) and through its rows of the kernel, padded to the
    range it reaches (r_j + 4), summed over the groups: range r_{k+1}. Only the positions a group's
    change can reach are multiplied (a group that changed on 9 positions is not convolved over 41).

    Parameters
    ----------
    block, trans: the NNX ``DenseBlock`` and ``Transition`` of this stage.
    ref: shape=(2 * WINDOW + 1, C), the reference block output on [c - 20, c + 20].
    pre_ref: shape=(PREPOOL, cout), the reference transition output before the pool, on the 36
        positions [4 (c // 4 - 4), 4 (c // 4 + 4) + 3] of the 9 affected pool windows.
    group0: shape=(M, 2 * GROUP0 + 1, c0) float32, the change of the block input on [c - 4, c + 4].
    valid: shape=(2 * WINDOW + 1,) bool, window positions inside the sequence at this resolution.
    prepool_start: index in the window of the first pre-pool position, 4 (c // 4 - 4) - (c - 20).
    dtype: the convolutions' operand dtype (the working precision).

    Returns shape=(M, 2 * POOLED + 1, cout) float32: the change of the pooled output on
    [c // 4 - 4, c // 4 + 4]; exactly 0 where no pre-pool value changed.
    """
    groups = [group0]  # the changes of channel groups 0..k, group j on half-width GROUP0 + j HALO
    starts = [0]  # each group's first channel in the block output

    def relu_changes(norm):
        """Each group's change after ``norm`` and ReLU, masked outside the sequence."""
        inv, shift = _bn_affine(norm)
        out = []
        for j, (delta, c0) in enumerate(zip(groups, starts, strict=True)):
            half = GROUP0 + j * HALO
            lo, hi, c1 = WINDOW - half, WINDOW + half + 1, c0 + delta.shape[-1]
            z = _relu_change(ref[lo:hi, c0:c1], delta, inv[c0:c1], shift[c0:c1])
            out.append(_masked(z, valid[lo:hi]))
        return out

    for k, layer in enumerate(block.layers):
        kernel = layer.conv.kernel[...]
        half = GROUP0 + (k + 1) * HALO  # this layer's affected output half-width
        change = None
        for z, c0 in zip(relu_changes(layer.norm), starts, strict=True):
            part = _centred(_conv_change(z, kernel[:, c0 : c0 + z.shape[-1]], dtype, 2 * HALO), half)
            change = part if change is None else change + part
        starts.append(starts[-1] + groups[-1].shape[-1])
        groups.append(change)
    # Transition: pointwise BN/ReLU and a 1x1 convolution, then the 9 affected pool windows. Each
    # group's change goes through its rows of the 1x1 kernel on its own range; the sum is laid out
    # on the whole window, then cut to the 36 pre-pool positions (a change of exactly 0 where no
    # group reaches). Measured in the compiled CPU program against one convolution of all groups
    # padded to the widest range (benchmarks.hlo, published widths): 9 % fewer FLOPs, 15 % fewer
    # bytes moved in bf16; against concatenated groups in the dense layers too: 45 % / 34 % fewer.
    kernel = trans.conv.kernel[...]
    pre = None
    for z, c0 in zip(relu_changes(trans.norm), starts, strict=True):
        part = _centred(_conv_change(z, kernel[:, c0 : c0 + z.shape[-1]], dtype, 0), WINDOW)
        pre = part if pre is None else pre + part
    pre = jax.lax.dynamic_slice_in_dim(pre, prepool_start, PREPOOL, axis=1)
    pre_ref = pre_ref.astype(jnp.float32)[None]
    return maxpool(pre_ref + pre) - maxpool(pre_ref)


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
    """The reference pass of one window and the two sliced computations every substitution goes through.

    ``changes(p, bases)``: the change of the pooled sequence features on [p // 16 - 4, p // 16 + 4]
    for each base of ``bases (M,)`` put at ``p`` (float32; exactly 0 where nothing changed).
    ``outputs(changes (P, M, 9, w3), r)``: fp32 logits ``(P, 1 + M, T)`` of the reference (row 0,
    a change of 0) and of the substitutions, all of whose positions lie in 16-position group ``r``:
    ``hidden_ref + change @ W`` and the head, all in fp32.
    """

    def __init__(self, model, params, seq, dnase):
        cfg: DeepHistoneConfig = model.config
        self.cfg, self.seq, self.length = cfg, seq, cfg.seq_len
        module = model.module(params)
        self.branch, self.head = module.seq_map, module.head
        branch, head = self.branch, self.head
        self.pooled1, self.pooled2 = self.length // POOL, self.length // POOL // POOL
        w3 = cfg.widths[2]
        # Reference pass: every stage's block output (it holds every layer's output) and its
        # transition output before the pool (the max-pool of the changes needs it). In float32
        # whatever the precision (the same weights, upcast): it is one forward per window, and the
        # changes' BN/ReLU and max-pools read it, so bf16 rounding here would move where they
        # switch. Measured (benchmarks.mutmap --accuracy, published widths, random weights): bf16
        # delta correlation with fp32 0.9964 with a bf16 reference pass, 0.9987 with a float32
        # pass stored as bf16, 0.9998 stored as float32 (kept: +13 % bytes moved in the CPU program).
        ref_module = model.module(jax.tree.map(_upcast, params))
        ref_branch = ref_module.seq_map
        seq32 = seq.astype(jnp.float32)[None]
        block1_ref = ref_branch.block1(ref_branch.conv1(seq32))  # (1, L, 4 w1)
        pre1_ref = _prepool(ref_branch.trans1, block1_ref)  # (1, L, w2)
        block2_ref = ref_branch.block2(maxpool(pre1_ref))  # (1, L/4, 4 w2)
        pre2_ref = _prepool(ref_branch.trans2, block2_ref)  # (1, L/4, w3)
        flat = [maxpool(pre2_ref).reshape(1, -1)]  # (1, L/16 * w3)
        if cfg.has_dnase:  # the DNase branch never sees the mutation: run once, enters h_ref only
            flat.append(ref_module.dns_map(dnase.astype(jnp.float32)[None, :, None]).reshape(1, -1))
        flat = jnp.concatenate(flat, axis=-1).astype(jnp.float32)
        with jax.default_matmul_precision("highest"):  # the head runs in fp32 whatever the precision
            self.hidden_ref = head.hidden_pre(flat)[0]  # (hidden,) float32
        # Padding so every fixed-width window has a valid start: WINDOW on the left; on the right
        # one more, because with L % 4 != 0 the last centre q = (L - 1) // 4 can equal L // 4.
        self.block1_pad = _pad_rows(block1_ref[0], WINDOW, WINDOW + 1)
        self.block2_pad = _pad_rows(block2_ref[0], WINDOW, WINDOW + 1)
        # Pre-pool windows start at 4 (c // 4 - 4) >= -16 and end before 4 (c // 4) + 20.
        self.pre1_pad = _pad_rows(pre1_ref[0], BLOCK_OUT, WINDOW)
        self.pre2_pad = _pad_rows(pre2_ref[0], BLOCK_OUT, WINDOW)
        # conv1's kernel taps in the order of the positions they reach: a change at p moves
        # conv1's output at p + i by change @ kernel[4 - i] (i in [-4, 4]).
        self.conv1_taps = branch.conv1.kernel[...][::-1]  # (9, 4, w1)
        dense_kernel = head.dense.kernel[...].astype(jnp.float32)
        # (L/16, w3, hidden): the rows of the sequence branch's pooled positions
        self.seq_rows = dense_kernel[: self.pooled2 * w3].reshape(self.pooled2, w3, dense_kernel.shape[-1])
        self.rows_pad = _pad_rows(self.seq_rows, POOLED, POOLED + 1)

    def changes(self, p, bases):
        branch, dtype = self.branch, self.seq.dtype
        onehot = jnp.eye(BASES, dtype=jnp.float32)[bases] - self.seq[p].astype(jnp.float32)[None]  # (M, 4)
        conv1 = jnp.einsum(  # conv1's change on [p - 4, p + 4]
            "mb,kbo->mko",
            onehot.astype(dtype),
            self.conv1_taps.astype(dtype),
            preferred_element_type=jnp.float32,
        )
        q = p // POOL
        pooled = _dense_stage(
            branch.block1,
            branch.trans1,
            jax.lax.dynamic_slice_in_dim(self.block1_pad, p, 2 * WINDOW + 1),
            jax.lax.dynamic_slice_in_dim(self.pre1_pad, POOL * q, PREPOOL),
            conv1,
            _window_valid(p, self.length),
            WINDOW - BLOCK_OUT - p % POOL,
            dtype,
        )  # trans1 output's change on [q - 4, q + 4]
        return _dense_stage(
            branch.block2,
            branch.trans2,
            jax.lax.dynamic_slice_in_dim(self.block2_pad, q, 2 * WINDOW + 1),
            jax.lax.dynamic_slice_in_dim(self.pre2_pad, POOL * (q // POOL), PREPOOL),
            pooled,
            _window_valid(q, self.pooled1),
            WINDOW - BLOCK_OUT - q % POOL,
            dtype,
        )

    def head_outputs(self, updates):
        """Logits of the reference and of each variant: ((T,), (R, T)) float32.

        ``updates (R, hidden)``: each variant's change of the head's first dense layer. One call of
        the head on [hidden_ref; hidden_ref + updates]: the reference (a change of exactly 0) goes
        through the same ops in the same batch, so a variant whose update is 0 gets the very same
        output and its delta is an exact 0.
        """
        hidden = jnp.concatenate([self.hidden_ref[None], self.hidden_ref[None] + updates])
        with jax.default_matmul_precision("highest"):
            out = self.head.from_hidden(hidden).astype(jnp.float32)
        return out[0], out[1:]

    def banded_updates(self, changes):
        """The first dense layer's change for every variant of the window, reading each row block once.

        ``changes (G, N, 9, w3)``: for 16-position group r, its N variants' change of the pooled
        features on [r - 4, r + 4] (9 x w3 rows of the dense kernel). Returns (G, N, hidden) float32.

        Pooled position k's kernel rows (w3 x hidden) are read by the 9 groups r = k - 4 .. k + 4
        (offset o = k - r + 4 in their change windows). Slicing 9 row blocks per group would read
        every block 9 times (1.07 GB per window at the published size, the largest traffic of the
        kernel); here the 9 groups' rows for block k are stacked and multiplied by it in one batched
        matmul ``(K, 9 N, w3) @ (K, w3, hidden)``, then added back to their groups. Pooled positions
        outside [0, L // 16) have no kernel rows (the sequence's features end there): skipped.
        """
        groups, n = changes.shape[:2]
        blocks = self.pooled2
        right = max(0, blocks + POOLED - groups)
        padded = jnp.pad(changes, ((POOLED, right), (0, 0), (0, 0), (0, 0)))  # group r at r + 4
        offsets = range(2 * POOLED + 1)
        # block k, offset o: group r = k + 4 - o, padded index k + 8 - o
        stacked = jnp.stack([padded[2 * POOLED - o : 2 * POOLED - o + blocks, :, o] for o in offsets], axis=1)
        with jax.default_matmul_precision("highest"):
            per_block = jnp.einsum(
                "komc,kch->komh", stacked, self.seq_rows, precision=jax.lax.Precision.HIGHEST
            )  # (K, 9, N, hidden)
        update = jnp.zeros((POOLED + groups + right, n, per_block.shape[-1]), jnp.float32)
        for o in offsets:
            update = update.at[2 * POOLED - o : 2 * POOLED - o + blocks].add(per_block[:, o])
        return update[POOLED : POOLED + groups]

    def update_at(self, changes, r):
        """``changes (N, 9, w3)`` of variants in group ``r`` -> (N, hidden): a few variants (listed ones)."""
        rows = jax.lax.dynamic_slice_in_dim(self.rows_pad, r, 2 * POOLED + 1)  # (9, w3, hidden)
        k = r - POOLED + jnp.arange(2 * POOLED + 1)
        changes = jnp.where(((k >= 0) & (k < self.pooled2))[None, :, None], changes, 0.0)
        with jax.default_matmul_precision("highest"):
            return jnp.einsum("nkc,kch->nh", changes, rows, precision=jax.lax.Precision.HIGHEST)

    def activate(self, logits):
        return final_activation(logits.astype(jnp.float32), self.cfg.final_activation)


def _upcast(x):
    """bf16/f16 params to float32 (float32/float64 and integer leaves unchanged)."""
    if jnp.issubdtype(x.dtype, jnp.floating) and jnp.finfo(x.dtype).bits < 32:
        return x.astype(jnp.float32)
    return x


def _prepool(trans, x):
    """A transition's output before its max-pool: BN -> ReLU -> 1x1 convolution."""
    return trans.conv(jax.nn.relu(trans.norm(x)))


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
        memory grows with it (the head's update runs once per window, after the steps: at the
        published size, XLA's temporaries per window are 297 MB at 32 and 590 MB at 256).
        Static. Default: 32 on CPU (measured best on 2 cores), 256 on accelerators, where small
        steps would leave the device idle.

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
    n_mut = BASES if all_bases else BASES - 1

    def mutant_bases(p):
        if all_bases:
            return jnp.arange(BASES)
        ref_base = jnp.argmax(seq[p])  # 0 at an N row
        return (ref_base + jnp.arange(1, BASES)) % BASES

    def group_changes(positions):
        """Pooled-feature changes (16 M, 9, w3) of 16 consecutive positions (same head rows)."""
        changes = jax.vmap(lambda p: win.changes(p, mutant_bases(p)))(positions)  # (16, M, 9, w3)
        return changes.reshape(-1, *changes.shape[2:])

    groups = -(-length // GROUP)
    # Padded tail positions repeat position L-1 (same group, valid inputs) and are dropped below.
    positions = jnp.minimum(jnp.arange(groups * GROUP), length - 1).reshape(groups, GROUP)
    per_step = max(1, -(-position_chunk // GROUP))
    changes = jax.lax.map(group_changes, positions, batch_size=min(per_step, groups))  # (G, 16 M, 9, w3)
    updates = win.banded_updates(changes)  # (G, 16 M, hidden)
    ref, out = win.head_outputs(updates.reshape(-1, updates.shape[-1]))
    out = out.reshape(groups * GROUP, n_mut, -1)[:length]  # (L, M, T)
    ref = ref[None, None]  # (1, 1, T)

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

    def update(args):
        p, b = args
        return win.update_at(win.changes(p, b[None]), p // GROUP)[0]  # (hidden,)

    updates = jax.lax.map(update, (jnp.asarray(positions), jnp.asarray(bases)))  # (K, hidden)
    ref, out = win.head_outputs(updates)  # (T,), (K, T)
    out = jnp.stack([jnp.broadcast_to(ref, out.shape), out], axis=1)  # (K, 2, T)
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
    """What ``_dense_stage`` computes for one substitution: each channel group on its own range.

    Group j (j = 0: the block input, c0 channels; else a layer's output, ``growth``) changes on
    2 r_j + 1 positions, r_j = 4 + 4 j; a dense layer convolves it onto 2 r_j + 9 positions, the
    transition's 1x1 convolution on its 2 r_j + 1.
    """
    width = [w.c0] + [w.growth] * DENSE_LAYERS
    span = [2 * (GROUP0 + j * HALO) + 1 for j in range(DENSE_LAYERS + 1)]
    block = sum(
        (span[j] + 2 * HALO) * KERNEL_WIDTH * width[j] * w.growth
        for k in range(DENSE_LAYERS)
        for j in range(k + 1)
    )
    return block + sum(span[j] * width[j] * w.cout for j in range(DENSE_LAYERS + 1))


def _fast_mutant_macs(cfg: DeepHistoneConfig) -> int:
    w1, w2, w3 = cfg.widths
    conv1 = KERNEL_WIDTH * BASES * w1  # the one-hot change through conv1's 9 taps
    head = (2 * POOLED + 1) * w3 * cfg.hidden + cfg.hidden * cfg.num_outputs
    return conv1 + _fast_stage_macs(_Widths(w1, w1, w2)) + _fast_stage_macs(_Widths(w2, w2, w3)) + head


def flops_per_window(config: DeepHistoneConfig, method: str, *, all_bases: bool = False) -> float:
    """Counted FLOPs of a mutation map of one window (3 L mutants, or 4 L with ``all_bases``).

    ``full``: the reference and every mutant through the sequence branch and the head, the DNase
    branch once. ``fast``: one reference forward (both branches and the head) plus, per mutant,
    what :func:`mutant_predictions_fast` computes of its changes (fixed mid-sequence ranges, also
    at the edges); the reference is not recomputed (its change is 0), only its head row.
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
        macs = seq_pass + dnase_pass + mutants * _fast_mutant_macs(cfg)
    return 2.0 * macs
