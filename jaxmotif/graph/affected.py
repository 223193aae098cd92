"""Exact fast ISM for any graph: recompute only what a single-base substitution affects.

A substitution at position ``p`` changes, in each map, only the positions whose receptive field
contains ``p``. Walking the graph, each layer turns the affected *window* of its input into the
affected window of its output, and the reference values supply everything outside it:

    Conv 'same' (half-width h = dilation * (K // 2))   window grows by h each side; input read with
                                                       a 2h halo (reference outside the window)
    Conv 'valid' (span e = dilation * (K - 1))         window grows by e on the left
    BatchNorm, activations, Dropout, Tap               same window
    MaxPool(w)                                         start a -> a // w, size A -> (A + w - 2) // w + 1
    Crop(t)                                            start shifts by -t
    Residual add, Concat, Add                          the widest window of their inputs
    DenseBlock                                         each layer's window, concatenated
    Flatten -> Linear                                  low-rank update of the Linear's output: only
                                                       the kernel rows of the window are read
    MeanPositions                                      the mean's change: Σ window change / W
    map outputs (BPNet profile)                        the window pasted into the reference map;
                                                       the target view then reads all of it

Window sizes are static (they depend on the graph only); window starts follow ``p``. Positions
outside the map are masked to zero after every layer (the zero padding of 'same' convolutions).

Rounding invariants: for each position the four bases are evaluated together and every change is
taken against the *same sliced computation* for the reference base, so unchanged inputs give
bit-identical windows (changes exactly zero); the updates from windows to vectors (means, the
low-rank Linear update) and everything after them run in float32, as does the target view.
"""

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxmotif.graph import layers as L
from jaxmotif.graph.build import MULTI_INPUT, depends_on, lookup, needed_nodes

BASES = 4


@dataclasses.dataclass
class Win:
    """The affected window of a map for the 4 variants of one position.

    start = base + off (base: a traced int shared by maps of one resolution lineage; off: static).
    data: shape=(4, A, C). length: W, the map's positions.
    """

    base: object
    off: int
    data: object
    length: int

    @property
    def size(self) -> int:
        return self.data.shape[1]

    @property
    def start(self):
        return self.base + self.off


@dataclasses.dataclass
class Delta:
    """A vector for the 4 variants: ``ref`` (F,) plus a change. dense: (4, F) float32."""

    dense: object


@dataclasses.dataclass
class Flat:
    """A flattened window (``Flatten`` of a :class:`Win`), rows ``[offset, offset + W C)`` of a vector.

    ref: shape=(F,) the whole reference vector; delta: the window's change (4, A, C).
    """

    ref: object
    win: Win
    delta: object
    offset: int


class Counter:
    """Multiply-accumulates counted while tracing: the reference pass, and one position (4 bases)."""

    def __init__(self):
        self.forward = 0
        self.side_forward = 0  # the part of ``forward`` that does not depend on the sequence
        self.position = 0


class _Walk:
    """Runs a graph either on the reference (record: full maps, kept in ``tape``) or on windows
    (replay: reads the reference maps from ``tape`` in the same order)."""

    def __init__(self, module, ops, margin: int, counter: Counter | None = None):
        self.module, self.ops, self.margin = module, ops, margin
        self.tape: list = []
        self.pos = 0
        self.replay = False
        self.counter = counter
        self.ref_index = None  # (traced) which of the 4 variants is the reference base
        self.seq_dependent = True  # whether the node being walked reads the sequence (counting)

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
    def align(self, ref_padded, win: Win | None, base, off: int, size: int):
        """The map on [base + off, base + off + size): the reference, with ``win`` pasted in."""
        start = base + off + self.margin
        out = jax.lax.dynamic_slice_in_dim(ref_padded, start, size, axis=0)
        out = jnp.broadcast_to(out[None], (BASES, *out.shape))
        if win is None:
            return out
        if win.base is not base:
            raise ValueError("combining windows of different resolutions (a pooled and an unpooled map)")
        at = win.off - off
        if at < 0 or at + win.size > size:
            raise ValueError(f"window [{win.off}, {win.off + win.size}) outside [{off}, {off + size})")
        return out.at[:, at : at + win.size].set(win.data.astype(out.dtype))

    @staticmethod
    def mask(data, base, off: int, length: int):
        positions = base + off + jnp.arange(data.shape[1])
        valid = (positions >= 0) & (positions < length)
        return jnp.where(valid[None, :, None], data, jnp.zeros((), data.dtype))

    def unpadded(self, ref_padded):
        return ref_padded[self.margin : ref_padded.shape[0] - self.margin]

    # ---- layers ---------------------------------------------------------------------------------
    def layer(self, block, op, ref, x):
        """(ref_out, x_out): ``ref`` the stored reference input, ``x`` its window / vector / None."""
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
            if isinstance(x, Win):
                data = self.align(ref, x, x_b.base, x_b.off, x_b.size) + x_b.data
                return ref_out, Win(x_b.base, x_b.off, self.mask(data, x_b.base, x_b.off, x.length), x.length)
            return ref_out, Delta(x.dense + x_b.dense)
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
            out = self.apply_full(block, op, self.ref_value(ref))
            return self.keep(out), None
        stored = self.keep(None)
        return stored, self.apply_window(block, op, ref, x, stored)

    def ref_map(self, stored):
        return self.unpadded(stored) if stored.ndim == 2 else stored

    def ref_value(self, stored):
        return self.ref_map(stored)

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
        return self.simple(block, op, x)[0]

    def simple(self, block, op, x):
        """Layers that act position-wise (or on vectors) identically on any batch of rows."""
        if isinstance(op, L.BatchNorm):
            return lookup(block, op.name)(x)
        if isinstance(op, L.Act):
            return L.activation(x, op, self.ops)
        if isinstance(op, L.MaxPool):
            return self.ops.maxpool(x, op.width)
        if isinstance(op, L.Crop):
            return L.crop(x, op.trim)
        if isinstance(op, L.Dropout | L.Tap):
            return x
        raise TypeError(f"fast ISM does not handle {op!r} here")

    def apply_window(self, block, op, ref, x, ref_out):
        """One layer on a window (or vector) ``x``; ``ref`` / ``ref_out``: its stored input / output."""
        if isinstance(x, Delta | Flat):
            return self.apply_vector(block, op, x, ref_out)
        w = x
        if isinstance(op, L.Conv):
            conv = lookup(block, op.name)
            if op.padding == "same":
                h = op.half
                data = self.align(ref, w, w.base, w.off - 2 * h, w.size + 4 * h)
                off, length = w.off - h, w.length
            else:
                e = op.dilation * (op.width - 1)
                data = self.align(ref, w, w.base, w.off - e, w.size + 2 * e)
                off, length = w.off - e, w.length - e
            out = conv(data, "VALID")
            self.count(BASES * out.shape[1] * op.width * data.shape[-1] * op.out)
            return Win(w.base, off, self.mask(out, w.base, off, length), length)
        if isinstance(op, L.MaxPool):
            k = op.width
            base = jnp.floor_divide(w.start, k)
            size = (w.size + k - 2) // k + 1
            start = base * k  # the pool windows' inputs: [k base, k (base + size))
            data = jax.lax.dynamic_slice_in_dim(ref, start + self.margin, k * size, axis=0)
            data = jnp.broadcast_to(data[None], (BASES, *data.shape))
            data = jax.lax.dynamic_update_slice_in_dim(
                data, w.data.astype(data.dtype), w.start - start, axis=1
            )
            out = self.ops.maxpool(data, k)
            length = w.length // k
            return Win(base, 0, self.mask(out, base, 0, length), length)
        if isinstance(op, L.Crop):
            length = w.length - 2 * op.trim
            return Win(w.base, w.off - op.trim, self.mask(w.data, w.base, w.off - op.trim, length), length)
        if isinstance(op, L.Flatten):
            delta = w.data.astype(jnp.float32) - w.data[self.ref_index].astype(jnp.float32)[None]
            return Flat(self.unpadded_vec(ref), w, delta, 0)
        if isinstance(op, L.MeanPositions):
            delta = w.data.astype(jnp.float32) - w.data[self.ref_index].astype(jnp.float32)[None]
            return Delta(ref_out[None] + jnp.sum(delta, axis=1) / w.length)
        if isinstance(op, L.SumAll):
            delta = w.data.astype(jnp.float32) - w.data[self.ref_index].astype(jnp.float32)[None]
            return Delta(ref_out[None] + jnp.sum(delta, axis=(1, 2))[:, None])
        out = self.simple(block, op, w.data)
        return Win(w.base, w.off, self.mask(out, w.base, w.off, w.length), w.length)

    def unpadded_vec(self, ref):
        return self.ref_map(ref).reshape(-1).astype(jnp.float32)

    def apply_vector(self, block, op, x, ref_out):
        if isinstance(x, Flat):
            if not isinstance(op, L.Linear):
                x = Delta(self.densify(x))
            else:
                return Delta(self.lowrank_linear(block, op, x, ref_out))
        v = x.dense
        if isinstance(op, L.Linear):
            self.count(BASES * v.shape[-1] * op.out)
            return Delta(lookup(block, op.name)(v))
        return Delta(self.simple(block, op, v))

    def densify(self, f: Flat):
        """The whole vector per variant (only for heads that are not a Linear right after Flatten)."""
        w = f.win
        c = w.data.shape[-1]
        rows = f.ref.reshape(-1)
        dense = jnp.broadcast_to(rows[None], (BASES, rows.shape[0]))
        # positions of the window inside the map, as rows of the flat vector (masked ones add 0)
        upd = jnp.zeros((BASES, (w.length + 2 * self.margin) * c), jnp.float32)
        upd = jax.lax.dynamic_update_slice_in_dim(
            upd, f.delta.reshape(BASES, -1), (w.start + self.margin) * c, axis=1
        )
        upd = upd[:, self.margin * c : (self.margin + w.length) * c]
        return dense.at[:, f.offset : f.offset + w.length * c].add(upd)

    def lowrank_linear(self, block, op, f: Flat, ref_out):
        """Linear(ref + change) = Linear(ref) + change @ (the kernel rows of the window)."""
        kernel = lookup(block, op.name).kernel[...]
        w = f.win
        c = w.data.shape[-1]
        rows = kernel[f.offset : f.offset + w.length * c].reshape(w.length, c, -1)
        index = w.start + jnp.arange(w.size)
        inside = (index >= 0) & (index < w.length)
        window_rows = jnp.take(rows, jnp.clip(index, 0, w.length - 1), axis=0).astype(
            jnp.float32
        )  # (A, C, out)
        window_rows = jnp.where(inside[:, None, None], window_rows, 0.0)
        update = jnp.einsum("mac,aco->mo", f.delta, window_rows, preferred_element_type=jnp.float32)
        self.count(BASES * w.size * c * op.out)
        return ref_out[None] + update

    # ---- multi-input operations -----------------------------------------------------------------
    def multi(self, op, refs, xs):
        if not self.replay:
            vals = [self.ref_value(r) for r in refs]
            if isinstance(op, L.Concat):
                out = jnp.concatenate([v.astype(vals[0].dtype) for v in vals], axis=-1)
            elif isinstance(op, L.Add):
                out = sum(vals[1:], vals[0])
            else:
                total = self.ops.exp(vals[0])
                for v in vals[1:]:
                    total = total + self.ops.exp(v)
                out = self.ops.log(total)
            return self.keep(out), None
        stored = self.keep(None)
        live = [x for x in xs if x is not None]
        if not live:
            return stored, None
        if isinstance(live[0], Win):
            base = live[0].base
            lo = min(x.off for x in live)
            hi = max(x.off + x.size for x in live)
            length = live[0].length
            parts = [self.align(r, x, base, lo, hi - lo) for r, x in zip(refs, xs, strict=True)]
            if isinstance(op, L.Concat):
                data = jnp.concatenate(parts, axis=-1)
            elif isinstance(op, L.Add):
                data = sum(parts[1:], parts[0])
            else:
                total = self.ops.exp(parts[0])
                for part in parts[1:]:
                    total = total + self.ops.exp(part)
                data = self.ops.log(total)
            return stored, Win(base, lo, self.mask(data, base, lo, length), length)
        if isinstance(op, L.Concat) and stored.ndim == 1:
            flats = [x for x in xs if isinstance(x, Flat)]
            if len(flats) == 1 and all(isinstance(x, Flat) or x is None for x in xs):
                offset = 0
                for r, x in zip(refs, xs, strict=True):
                    if x is not None:
                        return stored, Flat(stored.astype(jnp.float32), x.win, x.delta, offset + x.offset)
                    offset += r.shape[0]
        dense = []
        for r, x in zip(refs, xs, strict=True):
            if x is None:
                dense.append(jnp.broadcast_to(r.astype(jnp.float32)[None], (BASES, r.shape[0])))
            else:
                dense.append(self.densify(x) if isinstance(x, Flat) else x.dense)
        if isinstance(op, L.Concat):
            return stored, Delta(jnp.concatenate(dense, axis=-1))
        if isinstance(op, L.Add):
            return stored, Delta(sum(dense[1:], dense[0]))
        total = self.ops.exp(dense[0])
        for d in dense[1:]:
            total = total + self.ops.exp(d)
        return stored, Delta(self.ops.log(total))


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
    """Walks the nodes ``want`` needs; returns {name: (stored ref, window/vector or None)}."""
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
    positions: shape=(P,) int, evaluate only these positions (default: all L).

    Returns (preds, ref): preds shape=(L, 4, T) (or (P, 4, T)), entry [p, b] the outputs with base
    b at p (at N rows base 0 stands in for the reference: callers mask those); ref shape=(T,) the
    reference outputs, from the same sliced computation as the mutants.
    """
    length = seq.shape[0]
    margin = _margin(graph, length)
    walk = _Walk(module, ops, margin, counter)
    inputs = {"seq": seq, **(side or {})}
    want = graph.outputs
    record = _run_graph(walk, graph, inputs, {}, want)
    tape = walk.tape
    ref_outputs = {name: walk.ref_value(record[name][0])[None] for name in want}
    ref_idx = jnp.argmax(seq, axis=-1)  # (L,); 0 at N rows

    def position(p):
        rw = _Walk(module, ops, margin, counter)
        rw.tape, rw.replay, rw.ref_index = tape, True, ref_idx[p]
        win = Win(p, 0, jnp.eye(BASES, dtype=seq.dtype)[:, None, :], length)
        values = _run_graph(rw, graph, inputs, {"seq": win}, want)
        outs = {}
        for name in want:
            stored, x = values[name]
            if x is None:
                outs[name] = jnp.broadcast_to(ref_outputs[name], (BASES, *ref_outputs[name].shape[1:]))
            elif isinstance(x, Win):
                full = jnp.broadcast_to(stored[None], (BASES, *stored.shape))
                full = jax.lax.dynamic_update_slice_in_dim(
                    full, x.data.astype(full.dtype), x.start + margin, axis=1
                )
                outs[name] = full[:, margin : margin + x.length].astype(jnp.float32)
            elif isinstance(x, Flat):
                outs[name] = rw.densify(x)
            else:
                outs[name] = x.dense
        return targets_fn(outs).astype(jnp.float32)  # (4, T)

    positions = jnp.arange(length) if positions is None else jnp.asarray(positions)
    count = positions.shape[0]
    # Every step evaluates the same number of positions (the tail repeats the last one and is
    # dropped): a differently sized last step would round differently.
    chunk = min(position_chunk, count)
    steps = -(-count // chunk)
    padded = jnp.concatenate([positions, jnp.full((steps * chunk - count,), positions[-1], positions.dtype)])
    preds = jax.lax.map(jax.vmap(position), padded.reshape(steps, chunk))  # (steps, chunk, 4, T)
    preds = preds.reshape(steps * chunk, *preds.shape[2:])[:count]  # (P, 4, T)
    # The reference: the reference base's own entry (its window change is exactly zero) at the
    # first position that is not an N; scorers put it at every reference entry.
    is_base = jnp.any(seq[positions] > 0, axis=-1)
    first = jnp.argmax(is_base)
    ref = preds[first, ref_idx[positions[first]]]
    return preds, ref
