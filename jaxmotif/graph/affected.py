"""Exact fast ISM for any graph: carry only the change a single-base substitution makes.

A substitution at position ``p`` changes, in each map, only the positions whose receptive field
contains ``p``. One reference pass keeps every layer's map; then, per position, the graph is walked
on the *change* ``Δ = mutant - reference`` of its 3 substitutions (bases ``(b + 1..3) % 4`` of the
reference base ``b``; at an N row, an all-zero one-hot, bases 1, 2 and 3), held on the affected
*window* of each map (zero outside it):

    Conv 'same' (half-width h = dilation * (K // 2))   conv(Δ) without bias: window grows by h each
                                                       side (Δ read with 2h zeros each side)
    Conv 'valid' (span e = dilation * (K - 1))         conv(Δ) without bias: window grows by e on
                                                       the left
      (a window no wider than the span: one GEMM for all K taps, each tap's product added at its
      shift, instead of a convolution mostly over zeros)
    BatchNorm (eval)                                   Δ times its scale (the shift cancels)
    activations                                        f(r + Δ) - f(r), r the reference window
    Dropout, Tap                                       Δ
    MaxPool(w)                                         maxpool(r + Δ) - maxpool(r) on the pool
                                                       windows Δ meets: start a -> a // w,
                                                       size A -> (A + w - 2) // w + 1
    Crop(t)                                            start shifts by -t
    Residual add, Concat, Add                          the Δs placed in the widest window
    LogSumExp                                          as an activation of its inputs
    DenseBlock                                         each layer's Δ, concatenated
    Flatten -> Linear                                  low-rank: Δ @ (the kernel rows of the window;
                                                       a step of consecutive positions gathers the
                                                       rows all its windows span once: one GEMM)
    MeanPositions, SumAll                              Σ window Δ (/ W)
    Linear (on a vector)                               Δ @ kernel, without bias

Window sizes are static (they depend on the graph only); window starts follow ``p``. The change
at positions outside a map is zeroed after every layer that can move or widen the window (the
zero padding of 'same' convolutions is the same in both). The reference never goes through the
convolutions again: only the nonlinearities read it, from the kept maps.

The outputs: the target view (final activation, BPNet's profile softmax, ...) runs in float32 on
``reference + Δ`` for every substitution, in one batch with a row of ``reference + 0``, which
gives the reference output ``ref`` and every reference entry of the map.

Rounding invariants (what makes a delta exact where nothing changed, at any precision):

1. Where Δ is 0 over a value's receptive field, its change is an exact 0: convolutions and
   Linears of zeros without bias are 0; ``f(r + 0) - f(r)`` is 0 (and an elementwise change is
   forced to 0 where its input change is 0, so the two evaluations of ``f`` never need to agree
   bit for bit); a max-pool picks the same element from the same values.
2. The reference output comes from the same head computation as the mutants, with Δ = 0: a
   substitution whose change rounds away on the way gets exactly ``ref``, and
   :func:`jaxmotif.ism.score_mutations` gives an exact 0.
3. Δ is float32 (float64 when the model runs in it) between layers; each convolution reads it
   in the kernel's dtype (bf16: the tensor-core path; the difference is rounded relative to its
   own size, not to the activation's) and sums in float32 (``preferred_element_type``). The
   vectors' changes and the low-rank update are carried like Δ; the target view is float32.
"""

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxmotif.graph import layers as L
from jaxmotif.graph.build import MULTI_INPUT, depends_on, lookup, needed_nodes

MUTANTS = 3  # substitutions per position (the reference base is not recomputed)


def _wide(dtype):
    """The dtype a change is carried in: float32, or float64 when the model runs in it."""
    return jnp.promote_types(dtype, jnp.float32)


@dataclasses.dataclass
class Win:
    """The change of a map on its affected window, for the 3 substitutions of one position.

    start = base + off (base: a traced int shared by maps of one resolution lineage; off: static).
    data: shape=(3, A, C) the change (zero at positions outside the map). length: W, the map's
    positions. stride: input positions per map position (the product of the pools so far): the
    start of consecutive positions' windows moves by at most 1 per ``stride`` positions.
    """

    base: object
    off: int
    data: object
    length: int
    stride: int

    @property
    def size(self) -> int:
        return self.data.shape[1]

    @property
    def start(self):
        return self.base + self.off


@dataclasses.dataclass
class Vec:
    """The change of a vector for the 3 substitutions. delta: shape=(3, F), float32."""

    delta: object


@dataclasses.dataclass
class Flat:
    """A flattened window (``Flatten`` of a :class:`Win`): rows ``[offset, offset + W C)`` of a
    vector of ``size`` rows change, the others do not."""

    size: int
    win: Win
    offset: int


def _data(x):
    """The change array of a window or a flattened window."""
    return x.win.data if isinstance(x, Flat) else x.data


def _rows_at(rows, start, size: int, length: int):
    """rows[start : start + size] of a (W, ...) array, zero outside [0, W)."""
    index = start + jnp.arange(size)
    inside = (index >= 0) & (index < length)
    out = jnp.take(rows, jnp.clip(index, 0, length - 1), axis=0)
    return jnp.where(inside.reshape((-1,) + (1,) * (rows.ndim - 1)), out, jnp.zeros((), out.dtype))


class Counter:
    """Multiply-accumulates counted while tracing: the reference pass, and one position (3 bases)."""

    def __init__(self):
        self.forward = 0
        self.side_forward = 0  # the part of ``forward`` that does not depend on the sequence
        self.position = 0


def _changed(f, r, d):
    """``f(r + d) - f(r)`` for an elementwise ``f``; r (..., C) the reference, d (3, ..., C).

    Forced to an exact 0 where ``d`` is 0, whatever the two evaluations of ``f`` round to.
    """
    r = r.astype(d.dtype)[None]
    out = f(r + d) - f(r)
    return jnp.where(d == 0, jnp.zeros((), out.dtype), out)


class _Walk:
    """Runs a graph either on the reference (record: full maps, kept in ``tape``) or on changes
    (replay: reads the reference maps from ``tape`` in the same order)."""

    def __init__(self, module, ops, margin: int, counter: Counter | None = None):
        self.module, self.ops, self.margin = module, ops, margin
        self.tape: list = []
        self.pos = 0
        self.replay = False
        self.counter = counter
        self.seq_dependent = True  # whether the node being walked reads the sequence (counting)
        self.probe = None  # a list: record where each low-rank update's window starts, compute nothing
        self.shared = []  # per low-rank update, in walk order: (first row, rows a step shares)

    # ---- tape -----------------------------------------------------------------------------------
    def keep(self, ref):
        """Record mode: store ``ref`` (padded by ``margin`` zeros if a map); replay: read it back."""
        if self.replay:
            out = self.tape[self.pos]
            self.pos += 1
            return out
        stored = ref
        if ref.ndim == 2:  # a map (W, C): pad so windows near the ends slice without clamping
            stored = jnp.pad(ref, ((self.margin, self.margin), (0, 0)))
        self.tape.append(stored)
        return stored

    def count(self, macs):
        if self.counter is not None:
            if self.replay:
                self.counter.position += int(macs)
            else:
                self.counter.forward += int(macs)
                if not self.seq_dependent:
                    self.counter.side_forward += int(macs)

    # ---- window helpers -------------------------------------------------------------------------
    def ref_window(self, ref_padded, base, off: int, size: int):
        """The reference map on [base + off, base + off + size): shape=(size, C)."""
        return jax.lax.dynamic_slice_in_dim(ref_padded, base + off + self.margin, size, axis=0)

    @staticmethod
    def place(win: Win, base, off: int, size: int):
        """``win``'s change on the wider window [base + off, base + off + size) (zeros elsewhere)."""
        if win.base is not base:
            raise ValueError("combining windows of different resolutions (a pooled and an unpooled map)")
        at = win.off - off
        if at < 0 or at + win.size > size:
            raise ValueError(f"window [{win.off}, {win.off + win.size}) outside [{off}, {off + size})")
        return jnp.pad(win.data, ((0, 0), (at, size - at - win.size), (0, 0)))

    @staticmethod
    def mask(data, base, off: int, length: int):
        positions = base + off + jnp.arange(data.shape[1])
        valid = (positions >= 0) & (positions < length)
        return jnp.where(valid[None, :, None], data, jnp.zeros((), data.dtype))

    def unpadded(self, ref_padded):
        return ref_padded[self.margin : ref_padded.shape[0] - self.margin]

    # ---- layers ---------------------------------------------------------------------------------
    def layer(self, block, op, ref, x):
        """(ref_out, x_out): ``ref`` the stored reference input, ``x`` its change (window / vector)
        or None (unchanged)."""
        if isinstance(op, L.Seq):
            inner = block if op.name is None else getattr(block, op.name)
            for child in op.body:
                ref, x = self.layer(inner, child, ref, x)
            return ref, x
        if isinstance(op, L.Residual):
            ref_b, x_b = ref, x
            for child in op.body:
                ref_b, x_b = self.layer(block, child, ref_b, x_b)
            ref_out = self.keep(self.ref_map(ref) + self.ref_map(ref_b) if not self.replay else None)
            if x is None:
                return ref_out, None
            if isinstance(x, Win):  # the body's window holds the input's (it only grows)
                data = self.place(x, x_b.base, x_b.off, x_b.size) + x_b.data
                return ref_out, Win(x_b.base, x_b.off, data, x.length, x.stride)
            return ref_out, Vec(self.vector(x) + self.vector(x_b))
        if isinstance(op, L.DenseBlock):
            inner = getattr(block, op.name)
            for layer, sub in zip(op.layers, inner.layers, strict=True):
                ref_y, y = ref, x
                for child in layer.body:
                    ref_y, y = self.layer(sub, child, ref_y, y)
                ref, x = self.multi(L.Concat(), [ref, ref_y], [x, y])
            return ref, x
        if self.replay and x is None:  # unaffected by the sequence: the reference only
            return self.keep(None), None
        if not self.replay:
            out = self.apply_full(block, op, self.ref_map(ref))
            return self.keep(out), None
        stored = self.keep(None)
        return stored, self.apply_change(block, op, ref, x)

    def ref_map(self, stored):
        return self.unpadded(stored) if stored.ndim == 2 else stored

    def apply_full(self, block, op, ref):
        """One layer on the reference (a map (W, C) or a vector (F,)), counting its work."""
        x = ref[None]
        if isinstance(op, L.Conv):
            out = lookup(block, op.name)(x)
            self.count(out.shape[1] * op.width * x.shape[-1] * op.out)
            return out[0]
        if isinstance(op, L.Linear):
            self.count(x.shape[-1] * op.out)
            return lookup(block, op.name)(x.astype(jnp.float32))[0]
        if isinstance(op, L.Flatten):
            return ref.reshape(-1).astype(jnp.float32)
        if isinstance(op, L.MeanPositions):
            return jnp.mean(ref.astype(jnp.float32), axis=0)
        if isinstance(op, L.SumAll):
            return jnp.sum(ref.astype(jnp.float32), keepdims=True).reshape(1)
        if isinstance(op, L.BatchNorm):
            return lookup(block, op.name)(x)[0]
        if isinstance(op, L.Act):
            return L.activation(x, op, self.ops)[0]
        if isinstance(op, L.MaxPool):
            return self.ops.maxpool(x, op.width)[0]
        if isinstance(op, L.Crop):
            return L.crop(x, op.trim)[0]
        if isinstance(op, L.Dropout | L.Tap):
            return ref
        raise TypeError(f"fast ISM does not handle {op!r}")

    def conv_change(self, kernel, data, dilation: int):
        """conv(mutant) - conv(reference) = conv(Δ), the bias cancelling: data (3, A, Cin) ->
        (3, A + span, out), every output position that reads the window (span = dilation (K - 1)).

        Operands in the kernel's dtype, sums in float32. A window no wider than the kernel's
        span (the first layer's single position, the classics' pooled windows) runs as one GEMM
        for all taps, each tap's product placed at its shift and summed: a convolution of the
        padded window would spend most of its work on zeros. A wider one runs as a convolution of
        the zero-padded window. (On the 2-core CPU, taps also for BPNet's dilated layers, whose
        windows are just wider than their span, cut the counted FLOPs by a third but ran slower.)
        """
        k = kernel.shape[0]
        span = dilation * (k - 1)
        size = data.shape[1]
        wide = _wide(kernel.dtype)
        x = data.astype(kernel.dtype)
        if span >= size:
            cout = kernel.shape[-1]
            rows = jnp.transpose(kernel, (1, 0, 2)).reshape(kernel.shape[1], k * cout)  # (Cin, K out)
            taps = jnp.matmul(x, rows, preferred_element_type=wide)  # (3, A, K out): one GEMM
            self.count(MUTANTS * k * size * data.shape[-1] * cout)
            # tap j reads input i at output i + (K - 1 - j) dilation
            out = 0
            for j in range(k):
                before = (k - 1 - j) * dilation
                tap = taps[..., j * cout : (j + 1) * cout]
                out = out + jnp.pad(tap, ((0, 0), (before, span - before), (0, 0)))
            return out
        # Padded here and kept apart from the convolution (the barrier): folded into the
        # convolution's padding, a window narrower than the kernel can make XLA swap the operands
        # into a far slower form.
        x = jax.lax.optimization_barrier(jnp.pad(x, ((0, 0), (span, span), (0, 0))))
        out = jax.lax.conv_general_dilated(
            x,
            kernel,
            window_strides=(1,),
            padding="VALID",
            rhs_dilation=(dilation,),
            dimension_numbers=("NWC", "WIO", "NWC"),
            preferred_element_type=wide,
        )
        self.count(MUTANTS * out.shape[1] * k * data.shape[-1] * kernel.shape[-1])
        return out

    def bn_scale(self, block, op, dtype):
        """The per-channel scale of an eval BatchNorm (its shift cancels in a change)."""
        bn = lookup(block, op.name)
        inv = jax.lax.rsqrt(bn.var[...].astype(dtype) + L.BN_EPS) * bn.scale[...].astype(dtype)
        return inv

    def apply_change(self, block, op, ref, x):
        """One layer on a change ``x`` (window or vector); ``ref``: the stored reference input."""
        if isinstance(x, Vec | Flat):
            return self.apply_vector(block, op, ref, x)
        w = x
        if isinstance(op, L.Conv):
            kernel = lookup(block, op.name).kernel[...]
            span = op.dilation * (op.width - 1)  # 2h ('same') or e ('valid'): the window grows by it
            off = w.off - (op.half if op.padding == "same" else span)
            length = w.length if op.padding == "same" else w.length - span
            out = self.conv_change(kernel, w.data, op.dilation)  # (3, A + span, out)
            return Win(w.base, off, self.mask(out, w.base, off, length), length, w.stride)
        if isinstance(op, L.BatchNorm):
            inv = self.bn_scale(block, op, w.data.dtype)
            return Win(w.base, w.off, w.data * L.along_channels(inv, w.data.ndim), w.length, w.stride)
        if isinstance(op, L.Act):
            r = self.ref_window(ref, w.base, w.off, w.size)
            data = _changed(lambda v: L.activation(v, op, self.ops), r, w.data)
            return Win(w.base, w.off, data, w.length, w.stride)
        if isinstance(op, L.MaxPool):
            k = op.width
            base = jnp.floor_divide(w.start, k)
            size = (w.size + k - 2) // k + 1
            start = base * k  # the pool windows' inputs: [k base, k (base + size))
            r = jax.lax.dynamic_slice_in_dim(ref, start + self.margin, k * size, axis=0)
            r = r.astype(w.data.dtype)[None]
            d = jnp.zeros((MUTANTS, k * size, w.data.shape[-1]), w.data.dtype)
            d = jax.lax.dynamic_update_slice_in_dim(d, w.data, w.start - start, axis=1)
            # a max of the same values is the same element: unchanged pool windows give exactly 0
            out = self.ops.maxpool(r + d, k) - self.ops.maxpool(r, k)
            length = w.length // k
            return Win(base, 0, self.mask(out, base, 0, length), length, w.stride * k)
        if isinstance(op, L.Crop):
            length = w.length - 2 * op.trim
            data = self.mask(w.data, w.base, w.off - op.trim, length)
            return Win(w.base, w.off - op.trim, data, length, w.stride)
        if isinstance(op, L.Flatten):
            return Flat(w.length * w.data.shape[-1], w, 0)
        if isinstance(op, L.MeanPositions):
            return Vec(jnp.sum(w.data, axis=1) / w.length)
        if isinstance(op, L.SumAll):
            return Vec(jnp.sum(w.data, axis=(1, 2))[:, None])
        if isinstance(op, L.Dropout | L.Tap):
            return w
        raise TypeError(f"fast ISM does not handle {op!r} on a map")

    def apply_vector(self, block, op, ref, x):
        if isinstance(x, Flat) and isinstance(op, L.Linear):
            return Vec(self.lowrank_linear(block, op, x))
        d = self.vector(x)
        if isinstance(op, L.Linear):
            kernel = lookup(block, op.name).kernel[...]
            self.count(MUTANTS * d.shape[-1] * op.out)
            return Vec(jnp.matmul(d, kernel.astype(d.dtype), preferred_element_type=d.dtype))
        if isinstance(op, L.BatchNorm):
            return Vec(d * self.bn_scale(block, op, d.dtype)[None])
        if isinstance(op, L.Act):
            return Vec(_changed(lambda v: L.activation(v, op, self.ops), ref, d))
        if isinstance(op, L.Dropout | L.Tap):
            return Vec(d)
        raise TypeError(f"fast ISM does not handle {op!r} on a vector")

    def vector(self, x):
        """The change of the whole vector (3, F)."""
        return self.densify(x) if isinstance(x, Flat) else x.delta

    def densify(self, f: Flat):
        """A flattened window's change as the whole vector's (only for heads that are not a Linear
        right after the Flatten)."""
        upd = self.spread(f.win).reshape(MUTANTS, -1)
        return jnp.pad(upd, ((0, 0), (f.offset, f.size - f.offset - upd.shape[1])))

    @staticmethod
    def spread(w: Win):
        """The change of the whole map (3, W, C), zero outside the window.

        Placed in a map padded by the window's size on each side: a window that overlaps the map
        then fits without clamping; one that does not is all zeros (masked), wherever it lands.
        """
        full = jnp.zeros((MUTANTS, w.length + 2 * w.size, w.data.shape[-1]), w.data.dtype)
        full = jax.lax.dynamic_update_slice_in_dim(full, w.data, w.start + w.size, axis=1)
        return full[:, w.size : w.size + w.length]

    def lowrank_linear(self, block, op, f: Flat):
        """Linear(ref + Δ) - Linear(ref) = Δ @ (the kernel rows of the window).

        With ``shared`` rows (a step of consecutive positions, see :func:`mutant_outputs`) the
        window is placed inside the rows the whole step reads, so that the step's positions make
        one GEMM over rows gathered once; otherwise each position gathers its own rows.
        """
        kernel = lookup(block, op.name).kernel[...]
        w = f.win
        c = w.data.shape[-1]
        rows = kernel[f.offset : f.offset + w.length * c].reshape(w.length, c, -1)
        if self.probe is not None:  # only where the windows start (the rest is never computed)
            self.probe.append((w.start, w.size, w.stride, w.length, rows))
            return jnp.zeros((MUTANTS, op.out), w.data.dtype)
        if self.shared:
            first, shared_rows = self.shared.pop(0)  # (U, C, out), rows [first, first + U)
            d = jnp.zeros((MUTANTS, shared_rows.shape[0], c), w.data.dtype)
            d = jax.lax.dynamic_update_slice_in_dim(d, w.data, w.start - first, axis=1)
            self.count(MUTANTS * shared_rows.shape[0] * c * op.out)
            return jnp.einsum("muc,uco->mo", d, shared_rows.astype(d.dtype), preferred_element_type=d.dtype)
        window_rows = _rows_at(rows, w.start, w.size, w.length).astype(w.data.dtype)  # (A, C, out)
        self.count(MUTANTS * w.size * c * op.out)
        return jnp.einsum("mac,aco->mo", w.data, window_rows, preferred_element_type=w.data.dtype)

    # ---- multi-input operations -----------------------------------------------------------------
    def multi(self, op, refs, xs):
        if not self.replay:
            vals = [self.ref_map(r) for r in refs]
            if isinstance(op, L.Concat):
                out = jnp.concatenate([v.astype(vals[0].dtype) for v in vals], axis=-1)
            elif isinstance(op, L.Add):
                out = sum(vals[1:], vals[0])
            else:
                out = self.logsumexp(vals)
            return self.keep(out), None
        stored = self.keep(None)
        live = [x for x in xs if x is not None]
        if not live:
            return stored, None
        dtype = jnp.result_type(*[x.delta if isinstance(x, Vec) else _data(x) for x in live])
        if isinstance(live[0], Win):
            base = live[0].base
            lo = min(x.off for x in live)
            hi = max(x.off + x.size for x in live)
            length = live[0].length
            parts = [
                jnp.zeros((MUTANTS, hi - lo, r.shape[-1]), dtype)
                if x is None
                else self.place(x, base, lo, hi - lo).astype(dtype)
                for r, x in zip(refs, xs, strict=True)
            ]
            if isinstance(op, L.Concat):
                data = jnp.concatenate(parts, axis=-1)
            elif isinstance(op, L.Add):
                data = sum(parts[1:], parts[0])
            else:
                data = self.logsumexp_change([self.ref_window(r, base, lo, hi - lo) for r in refs], parts)
            return stored, Win(base, lo, data, length, live[0].stride)
        if isinstance(op, L.Concat) and stored.ndim == 1:
            flats = [x for x in xs if isinstance(x, Flat)]
            if len(flats) == 1 and all(isinstance(x, Flat) or x is None for x in xs):
                offset = 0
                for r, x in zip(refs, xs, strict=True):
                    if x is not None:
                        return stored, Flat(stored.shape[0], x.win, offset + x.offset)
                    offset += r.shape[0]
        dense = [
            jnp.zeros((MUTANTS, r.shape[0]), dtype) if x is None else self.vector(x).astype(dtype)
            for r, x in zip(refs, xs, strict=True)
        ]
        if isinstance(op, L.Concat):
            return stored, Vec(jnp.concatenate(dense, axis=-1))
        if isinstance(op, L.Add):
            return stored, Vec(sum(dense[1:], dense[0]))
        return stored, Vec(self.logsumexp_change(refs, dense))

    def logsumexp(self, vals):
        total = self.ops.exp(vals[0])
        for v in vals[1:]:
            total = total + self.ops.exp(v)
        return self.ops.log(total)

    def logsumexp_change(self, refs, deltas):
        """``lse(r + Δ) - lse(r)``, an exact 0 where every input's change is 0."""
        rs = [r.astype(deltas[0].dtype)[None] for r in refs]
        out = self.logsumexp([r + d for r, d in zip(rs, deltas, strict=True)]) - self.logsumexp(rs)
        unchanged = deltas[0] == 0
        for d in deltas[1:]:
            unchanged = unchanged & (d == 0)
        return jnp.where(unchanged, jnp.zeros((), out.dtype), out)


def _margin(graph, length: int) -> int:
    """Zero padding of every stored map: more than any window can reach beyond either end."""
    reach = 1

    def walk(op):
        nonlocal reach
        if isinstance(op, L.Conv):
            reach += 4 * op.half + 2 * op.dilation * (op.width - 1)
        elif isinstance(op, L.MaxPool):
            reach += 2 * op.width
        elif isinstance(op, L.Crop):
            reach += 2 * op.trim
        for child in getattr(op, "body", ()) or ():
            walk(child)
        for child in getattr(op, "layers", ()) or ():
            walk(child)

    for node in graph.nodes:
        walk(node.op)
    return reach + length


def _run_graph(walk: _Walk, graph, inputs: dict, windows: dict, want):
    """Walks the nodes ``want`` needs; returns {name: (stored ref, change or None)}."""
    values = {}
    for name, ref in inputs.items():
        values[name] = (walk.keep(ref), windows.get(name))
    deps = depends_on(graph, "seq")
    for node in needed_nodes(graph, want):
        walk.seq_dependent = node.out in deps
        refs = [values[n][0] for n in node.inputs]
        xs = [values[n][1] for n in node.inputs]
        if isinstance(node.op, MULTI_INPUT):
            values[node.out] = walk.multi(node.op, refs, xs)
        else:
            values[node.out] = walk.layer(walk.module, node.op, refs[0], xs[0])
    return values


def mutant_outputs(
    module,
    graph,
    targets_fn: Callable,
    seq,
    side: dict | None = None,
    *,
    ops,
    position_chunk: int = 32,
    positions=None,
    counter: Counter | None = None,
):
    """Target-view outputs for every base at every position of one window, and the reference's.

    Parameters
    ----------
    module: the built :class:`jaxmotif.graph.GraphModule` (with the params to use).
    graph: its :class:`jaxmotif.graph.Graph`.
    targets_fn: ``f(outputs dict (M, ...)) -> (M, T)``, the model's attribution-target view.
    seq: shape=(L, 4) one-hot reference window (an N row is all zero).
    side: the other graph inputs, name -> (L, C) (held fixed), or None.
    position_chunk: positions evaluated together per step (static).
    positions: shape=(P,) int, evaluate only these positions (default: all L); a Python ``range``
        (step 1) lets each step of consecutive positions share the kernel rows a Flatten -> Linear
        head reads, as the default does.

    Returns (preds, ref): preds shape=(L, 4, T) (or (P, 4, T)), entry [p, b] the outputs with base
    b at p; the reference base's entry is ``ref`` (at N rows base 0 holds ``ref``: callers mask
    those); ref shape=(T,) the reference outputs, from the same target-view computation as the
    mutants (with a zero change).
    """
    length = seq.shape[0]
    margin = _margin(graph, length)
    walk = _Walk(module, ops, margin, counter)
    inputs = {"seq": seq, **(side or {})}
    want = graph.outputs
    record = _run_graph(walk, graph, inputs, {}, want)
    tape = walk.tape
    ref_outputs = {name: walk.ref_map(record[name][0]) for name in want}
    ref_idx = jnp.argmax(seq, axis=-1)  # (L,); 0 at N rows
    wide = _wide(seq.dtype)
    steps_ahead = jnp.arange(1, MUTANTS + 1)

    def replay(p, shared=(), probe=None):
        """The walk of the changes at ``p``: (its values, the walk)."""
        rw = _Walk(module, ops, margin, None if probe is not None else counter)
        rw.tape, rw.replay, rw.shared, rw.probe = tape, True, list(shared), probe
        # Δ of the input: one-hot of the substituted base minus the reference row (0 at an N)
        bases = (ref_idx[p] + steps_ahead) % 4
        delta = jax.nn.one_hot(bases, 4, dtype=wide) - seq[p].astype(wide)[None]
        win = Win(p, 0, delta[:, None, :], length, 1)
        return _run_graph(rw, graph, inputs, {"seq": win}, want), rw

    def position(p, shared=()):
        """The change of every output for the 3 substitutions at ``p``: name -> (3, ...)."""
        values, rw = replay(p, shared)
        outs = {}
        for name in want:
            _, x = values[name]
            if x is None:
                outs[name] = jnp.zeros((MUTANTS, *ref_outputs[name].shape), wide)
            elif isinstance(x, Win):
                outs[name] = rw.spread(x)
            else:
                outs[name] = rw.vector(x)
        return outs

    def step(chunk_positions):
        """(ref (T,), mutants (chunk, 3, T)): the target view of reference + Δ, in one batch with
        a zero Δ (the reference row, so a change that rounds away gives exactly ``ref``)."""
        shared = []
        if consecutive:
            # The low-rank updates' windows of consecutive positions start within a few rows of
            # each other (window starts are floor((p + const) / stride)): gather the rows the
            # whole step reads once, [first position's start, + size + ceil((chunk - 1) / stride)),
            # instead of each position's rows apart (Beluga: 100 MB per position).
            probe = []
            replay(chunk_positions[0], probe=probe)  # only the starts are used (the rest is dead code)
            n = chunk_positions.shape[0]
            for start, size, stride, map_length, rows in probe:
                span = size + -(-(n - 1) // stride)
                shared.append((start, _rows_at(rows, start, span, map_length)))
        changes = jax.vmap(lambda p: position(p, shared))(chunk_positions)
        batch = {}
        for name, d in changes.items():
            d = d.reshape(-1, *d.shape[2:])
            d = jnp.concatenate([jnp.zeros_like(d[:1]), d]).astype(jnp.float32)
            batch[name] = ref_outputs[name].astype(jnp.float32)[None] + d
        out = targets_fn(batch).astype(jnp.float32)  # (1 + 3 chunk, T)
        return out[0], out[1:].reshape(chunk_positions.shape[0], MUTANTS, -1)

    # each step's positions are p0, p0 + 1, ... (the tail repeats the last): all, or a range
    consecutive = positions is None or (isinstance(positions, range) and positions.step == 1)
    if isinstance(positions, range):
        positions = jnp.arange(positions.start, positions.stop, positions.step)
    positions = jnp.arange(length) if positions is None else jnp.asarray(positions)
    count = positions.shape[0]
    # Every step evaluates the same number of positions (the tail repeats the last one and is
    # dropped): a differently sized last step would round differently.
    chunk = min(position_chunk, count)
    steps = -(-count // chunk)
    padded = jnp.concatenate([positions, jnp.full((steps * chunk - count,), positions[-1], positions.dtype)])
    refs, muts = jax.lax.map(step, padded.reshape(steps, chunk))  # (steps, T), (steps, chunk, 3, T)
    ref = refs[0]  # every step's reference row is the same computation
    muts = muts.reshape(steps * chunk, MUTANTS, -1)[:count]  # (P, 3, T)
    # entry j of [ref, mutants] holds base (reference base + j) % 4
    rows = jnp.concatenate([jnp.broadcast_to(ref, (count, 1, ref.shape[0])), muts], axis=1)
    order = (jnp.arange(4)[None, :] - ref_idx[positions][:, None]) % 4  # (P, 4): base b -> entry
    preds = jnp.take_along_axis(rows, order[:, :, None], axis=1)
    return preds, ref
