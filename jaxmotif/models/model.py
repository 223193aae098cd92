"""The thin shell around a model: its graph, parameters, config and compiled pure functions.

Kernels (saliency, mutation maps, filters, class optimization) never name an architecture: they
take ``model.apply`` -- a pure ``f(params, seq (N, L, 4), dnase | None, *, ops) -> (N, T)``, the
*attribution-target view* -- and ``model.params``. Any model offering that signature works with them.

The target view per architecture:

- DeepHistone-style: the T outputs after the final activation (``apply_logits``: before it).
- BPNet family (``bpnet``, ``chrombpnet``): T = 2 columns ``("profile", "counts")``: bpnet-lite's
  ProfileWrapper scalar (profile logits flattened over strands and positions, mean-subtracted,
  then ``Σ ops.profile_scale(y)``) and the log-count. ``apply_logits`` is the same (no final
  activation). ``model(seq)`` returns the raw heads ``{"profile": (N, out_len, strands),
  "counts": (N, 1)}`` for these.

The second input (the ``dnase`` argument everywhere) is the architecture's side track, held fixed
by every attribution method: DeepHistone's DNase ``(N, L)``; BPNet's control tracks ``(N, L,
n_control_tracks)`` (channels-last; bpnet-lite's ``X_ctl`` is ``(N, n_control_tracks, L)``).
"""

import importlib
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxmotif.batching import map_batches
from jaxmotif.graph import GraphModule, abstract_module, build, context_values, geometry, run
from jaxmotif.nonlinear import DEFAULT_OPS
from jaxmotif.precision import with_precision

ARCH_MODULES = {
    "deephistone": "jaxmotif.models.deephistone",
    "bpnet": "jaxmotif.models.bpnet",
    "chrombpnet": "jaxmotif.models.bpnet",
}
MULTI_HEAD_ARCHS = ("bpnet", "chrombpnet")


def arch_module(config):
    """The module defining ``config``'s architecture (its ``targets`` view)."""
    arch = config.arch
    if arch not in ARCH_MODULES:
        raise ValueError(f"unknown architecture {arch!r}; known: {sorted(ARCH_MODULES)}")
    return importlib.import_module(ARCH_MODULES[arch])


class Model:
    """A model ready for attribution.

    Attributes
    ----------
    config: the architecture's config (``arch``, ``seq_len``, ``alphabet``, ``output_names``,
        ``has_dnase`` and its own hyperparameters).
    graph: the :class:`jaxmotif.graph.Graph` the module is built from.
    params: the model's state as a pytree (trained parameters and BatchNorm running statistics).
    apply: pure ``apply(params, seq, dnase, *, ops) -> (N, T)``, the attribution-target view.
    apply_logits: the same before any final activation.
    """

    def __init__(self, module: GraphModule, config=None):
        self.config = module.config if config is None else config
        self.graph = module.graph
        self._targets = arch_module(self.config).targets
        self.graphdef, self.params = nnx.split(module)
        self._compiled: dict[tuple, Callable] = {}  # see compiled_fn

    @classmethod
    def from_params(cls, config, params: dict) -> "Model":
        """A model from a params tree in NNX pure-dict layout (what the converter produces)."""
        module = abstract_module(config.graph(), config.seq_len, config)
        graphdef, state = nnx.split(module)
        nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, params))
        return cls(nnx.merge(graphdef, state), config)

    @classmethod
    def random(cls, config, *, key: jax.Array) -> "Model":
        return cls(build(config.graph(), config.seq_len, key=key, config=config), config)

    # ---- pure functions ---------------------------------------------------------------------
    def module(self, params=None) -> GraphModule:
        """The NNX module rebuilt from ``params`` (default: this model's)."""
        return nnx.merge(self.graphdef, self.params if params is None else params)

    def graph_inputs(self, seq, dnase=None) -> dict:
        """The graph's input dict: ``seq`` and the side track (reshaped to (N, L, C)) under its name."""
        inputs = {"seq": seq}
        side = self.config.side_input
        if side is not None:
            inputs[side] = None if dnase is None else dnase.reshape(*dnase.shape[:2], -1)
        return inputs

    def outputs(self, params, seq, dnase=None, *, ops=DEFAULT_OPS) -> dict:
        """The graph's raw outputs (DeepHistone: ``logits``; BPNet: ``profile``, ``counts``)."""
        return run(self.module(params), self.graph_inputs(seq, dnase), ops=ops)

    def apply_logits(self, params, seq, dnase=None, *, ops=DEFAULT_OPS):
        return self._targets(self.outputs(params, seq, dnase, ops=ops), self.config, ops, logits=True)

    def apply(self, params, seq, dnase=None, *, ops=DEFAULT_OPS):
        return self._targets(self.outputs(params, seq, dnase, ops=ops), self.config, ops, logits=False)

    def layers(self) -> tuple[str, ...]:
        """Named layer maps that depend on the sequence, input to output (projection targets)."""
        return tuple(self.layer_shapes())

    def layer_shapes(self) -> dict:
        """Layer name -> :class:`jaxmotif.graph.LayerShape` (fields measured on the sequence)."""
        return geometry(self.graph, self.config.seq_len, "seq")[1]

    def layer_output(self, params, seq, dnase, layer: str, *, ops=DEFAULT_OPS):
        """The map of ``layer``: ``(N, W, C)``, or ``(N, F)`` past the last map. Runs only what it needs."""
        node = self._tap_node(layer)
        taps = {}
        run(self.module(params), self.graph_inputs(seq, dnase), ops=ops, want=(node,), taps=taps)
        return taps[layer]

    def _tap_node(self, layer):
        for node in self.graph.nodes:
            if layer in geometry_taps_of(node):
                return node.out
        raise ValueError(f"layer={layer!r} is not a layer of this model; layers: {list(self.layers())}")

    def dnase_features(self, params, dnase):
        """What the forward pass computes without the sequence (DNase branch, control tracks).

        A dict of arrays with a leading N (or None when there is none); pass it to
        :meth:`apply_with_dnase_features` to run only the sequence-dependent rest.
        """
        names = context_values(self.graph, "seq")
        if not names or dnase is None:
            return None
        return run(self.module(params), self.graph_inputs(None, dnase), want=names)

    def apply_with_dnase_features(self, params, seq, dns_feat, logits: bool = False, *, ops=DEFAULT_OPS):
        """``apply`` with the sequence-independent values precomputed by :meth:`dnase_features`."""
        inputs = {"seq": seq, **(dns_feat or {})}
        return self._targets(run(self.module(params), inputs, ops=ops), self.config, ops, logits=logits)

    # ---- conveniences -----------------------------------------------------------------------
    @property
    def output_names(self) -> tuple[str, ...]:
        return self.config.output_names

    @property
    def multi_head(self) -> bool:
        """BPNet-family: ``model(seq)`` returns the raw heads, not the target view."""
        return self.config.arch in MULTI_HEAD_ARCHS

    def target_index(self, target: int | str) -> int:
        """Output index of ``target`` (an int or an output name)."""
        names = self.config.output_names
        if isinstance(target, str):
            if target not in names:
                raise ValueError(f"target={target!r} is not an output of this model; outputs: {list(names)}")
            return names.index(target)
        index = int(target)
        if not 0 <= index < len(names):
            raise ValueError(f"target={target} out of range for {len(names)} outputs")
        return index

    def target_indices(self, targets) -> tuple[int, ...]:
        """Output indices for ``targets``: None -> every output; an index or name, or a list of them."""
        if targets is None:
            return tuple(range(len(self.config.output_names)))
        if isinstance(targets, str | int | np.integer):
            targets = [targets]
        indices = tuple(self.target_index(t) for t in targets)
        if not indices:
            raise ValueError("targets is empty; pass None for every output")
        return indices

    def check_inputs(self, seq, dnase=None) -> tuple[np.ndarray, np.ndarray | None]:
        """Validates shapes before any device work; returns float32 NumPy arrays."""
        seq = np.asarray(seq, dtype=np.float32)
        if seq.ndim == 2:
            seq = seq[None]
        cfg = self.config
        if seq.ndim != 3 or seq.shape[1:] != (cfg.seq_len, 4):
            raise ValueError(f"seq shape {seq.shape} must be (N, {cfg.seq_len}, 4) (channels-last one-hot)")
        side = cfg.side_shape  # (L,) DNase, (L, C) control tracks, or None
        what = cfg.side_name
        if side is None:
            if dnase is not None:
                raise ValueError(f"this model takes no {what} input")
            return seq, None
        if dnase is None:
            raise ValueError(f"this model needs a {what} input of shape (N, {', '.join(map(str, side))})")
        dnase = np.asarray(dnase, dtype=np.float32)
        if dnase.ndim == len(side):
            dnase = dnase[None]
        if dnase.shape != (seq.shape[0], *side):
            raise ValueError(f"{what} shape {dnase.shape} must be {(seq.shape[0], *side)}")
        return seq, dnase

    def compiled_fn(self, key: tuple, make: Callable[[], Callable]) -> Callable:
        """The compiled closure stored under ``key``, made by ``make()`` on first use.

        Kernels keep their jitted wrappers here so repeated calls on one model do not recompile.
        """
        if key not in self._compiled:
            self._compiled[key] = make()
        return self._compiled[key]

    def compiled(self, precision: str | None = None, logits: bool = False) -> Callable:
        """``jit(apply)`` under ``precision``, made once per (precision, logits)."""
        fn = self.apply_logits if logits else self.apply
        return self.compiled_fn(("apply", precision, logits), lambda: jax.jit(with_precision(fn, precision)))

    def __call__(self, seq, dnase=None, *, batch_size: int = 256, precision: str | None = None):
        """Predictions for one-hot ``seq (N, L, 4)`` and the side track (DNase / control), if any.

        DeepHistone-style: ``(N, T)``. BPNet family: ``{"profile": (N, out_len, strands) logits,
        "counts": (N, 1) log-counts}``.
        """
        seq, dnase = self.check_inputs(seq, dnase)
        if self.multi_head:
            fn = self.compiled_fn(
                ("outputs", precision), lambda: jax.jit(with_precision(self.outputs, precision))
            )
        else:
            fn = self.compiled(precision)
        params = self.params
        return map_batches(lambda s, d: fn(params, s, d), [seq, dnase], batch_size=batch_size)

    def __repr__(self) -> str:
        return f"Model({self.config!r})"


def geometry_taps_of(node) -> set:
    """Names of the Taps inside one graph node's operation."""
    from jaxmotif.graph import layers as L

    found = set()

    def walk(op):
        if isinstance(op, L.Tap):
            found.add(op.name)
        for child in getattr(op, "body", ()) or ():
            walk(child)
        for child in getattr(op, "layers", ()) or ():
            walk(child)

    walk(node.op)
    return found
