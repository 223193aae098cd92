"""The thin shell around a model: parameters, config and compiled pure functions.

Kernels (saliency, mutation maps, filters, class optimization) never import the DeepHistone
module: they take ``model.apply`` -- a pure ``f(params, seq (N, L, 4), dnase (N, L) | None) -> (N, T)``
-- and ``model.params``. Any model offering that signature works with them.
"""

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxmotif.batching import map_batches
from jaxmotif.models.deephistone import (
    POOL,
    DeepHistone,
    DeepHistoneConfig,
    final_activation,
    init_deephistone,
)
from jaxmotif.nonlinear import DEFAULT_OPS, Ops
from jaxmotif.precision import with_precision


class Model:
    """A DeepHistone model ready for attribution.

    Attributes
    ----------
    config: the :class:`DeepHistoneConfig` (alphabet order, output names, L, variant).
    params: the model's state as a pytree (trained parameters and BatchNorm running statistics).
    apply: pure ``apply(params, seq, dnase) -> (N, T)`` with the final activation.
    apply_logits: the same before the final activation.
    """

    def __init__(self, module: DeepHistone):
        self.config: DeepHistoneConfig = module.config
        self.graphdef, self.params = nnx.split(module)
        self._compiled: dict[tuple, Callable] = {}  # see compiled_fn

    @classmethod
    def from_params(cls, config: DeepHistoneConfig, params: dict) -> "Model":
        """A model from a params tree in NNX pure-dict layout (what the converter produces)."""
        module = nnx.eval_shape(lambda: DeepHistone(config, rngs=nnx.Rngs(0)))
        graphdef, state = nnx.split(module)
        nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, params))
        return cls(nnx.merge(graphdef, state))

    @classmethod
    def random(cls, config: DeepHistoneConfig, *, key: jax.Array) -> "Model":
        return cls(init_deephistone(config, key=key))

    # ---- pure functions ---------------------------------------------------------------------
    def module(self, params=None) -> DeepHistone:
        """The NNX module rebuilt from ``params`` (default: this model's)."""
        return nnx.merge(self.graphdef, self.params if params is None else params)

    def apply_logits(self, params, seq, dnase=None, *, ops: Ops = DEFAULT_OPS):
        """``ops`` replaces every nonlinearity (DeepLIFT passes its rules here)."""
        pool = functools.partial(ops.maxpool, width=POOL)
        return self.module(params).logits(seq, dnase, relu=ops.relu, pool=pool)

    def apply(self, params, seq, dnase=None, *, ops: Ops = DEFAULT_OPS):
        logits = self.apply_logits(params, seq, dnase, ops=ops)
        if self.config.final_activation == "sigmoid":
            return ops.sigmoid(logits)
        return final_activation(logits, self.config.final_activation)

    def dnase_features(self, params, dnase):
        """DNase-branch features ``(N, F)`` of ``dnase (N, L)``; None for DNA-only models."""
        return None if dnase is None else self.module(params).dnase_features(dnase)

    def apply_with_dnase_features(self, params, seq, dns_feat, logits: bool = False):
        """``apply`` with the DNase branch precomputed by :meth:`dnase_features` (``(N, F)`` or None)."""
        module = self.module(params)
        out = module.head_from_features(module.seq_features(seq), dns_feat)
        return out if logits else final_activation(out, self.config.final_activation)

    # ---- conveniences -----------------------------------------------------------------------
    @property
    def output_names(self) -> tuple[str, ...]:
        return self.config.output_names

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
            return tuple(range(self.config.num_outputs))
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
        if not cfg.has_dnase:
            if dnase is not None:
                raise ValueError("this DNA-only model takes no dnase input")
            return seq, None
        if dnase is None:
            raise ValueError(f"this model needs a DNase input of shape (N, {cfg.seq_len})")
        dnase = np.asarray(dnase, dtype=np.float32)
        if dnase.ndim == 1:
            dnase = dnase[None]
        if dnase.shape != (seq.shape[0], cfg.seq_len):
            raise ValueError(f"dnase shape {dnase.shape} must be ({seq.shape[0]}, {cfg.seq_len})")
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

    def __call__(self, seq, dnase=None, *, batch_size: int = 256, precision: str | None = None) -> np.ndarray:
        """Predictions ``(N, T)`` for one-hot ``seq (N, L, 4)`` and ``dnase (N, L)`` (full models)."""
        seq, dnase = self.check_inputs(seq, dnase)
        fn = self.compiled(precision)
        params = self.params
        return map_batches(lambda s, d: fn(params, s, d), [seq, dnase], batch_size=batch_size)

    def __repr__(self) -> str:
        c = self.config
        return (
            f"Model(variant={c.variant!r}, seq_len={c.seq_len}, outputs={list(c.output_names)}, "
            f"widths={c.widths}, hidden={c.hidden}, final_activation={c.final_activation!r})"
        )
