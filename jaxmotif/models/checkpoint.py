"""Checkpoints: an Orbax checkpoint of the parameters plus ``config.json``, in one folder.

    OUT_DIR/
      config.json   the model config as JSON (+ "format": "jaxmotif-checkpoint/1", "arch"); files
                    without "arch" (written before BPNet) are DeepHistone checkpoints
      params/       Orbax StandardCheckpointer output (nested dict of arrays)

Writes go to a temporary sibling folder that is renamed into place at the end, so a failure
never leaves a half-written checkpoint behind.
"""

import json
import os
import shutil
import tempfile
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from jaxmotif.graph import abstract_module
from jaxmotif.models.deephistone import DeepHistoneConfig
from jaxmotif.models.model import Model

FORMAT = "jaxmotif-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint folder that is missing, incomplete or inconsistent."""


def _orbax():
    import orbax.checkpoint as ocp  # imported lazily: it pulls in tensorstore, slow to import

    return ocp


def write_checkpoint(out_dir: str | os.PathLike, config, params: dict, *, overwrite=False):
    """Writes ``params`` (a nested dict of arrays, NNX pure-dict layout) and ``config`` atomically.

    ``params`` must match the structure and shapes of a model built from ``config``; this is
    checked before anything is written.
    """
    out_dir = Path(out_dir).absolute()
    expected = abstract_params(config)
    _check_tree(params, expected)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise CheckpointError(f"{out_dir} exists and is not empty; choose another folder")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes the folder private; the checkpoint should not be
    try:
        ocp = _orbax()
        # an empty subtree (a BPNet with n_layers = 0 has ``rconvs: {}``) has no place in the
        # abstract tree load_model restores into, so Orbax must not record it
        arrays = jax.tree.map(lambda x: np.asarray(x, np.float32), _drop_empty(params))
        with ocp.StandardCheckpointer() as ckpt:
            ckpt.save(tmp / "params", arrays)
            ckpt.wait_until_finished()
        meta = json.loads(config.to_json())
        meta["format"] = FORMAT
        meta["arch"] = config.arch
        (tmp / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def save_model(model: Model, out_dir, *, overwrite=False):
    """Saves a :class:`Model` so that :func:`load_model` returns an identical one."""
    return write_checkpoint(out_dir, model.config, nnx.to_pure_dict(model.params), overwrite=overwrite)


def config_classes() -> dict:
    """arch -> config class (the others are imported here: they are not needed to load DeepHistone)."""
    from jaxmotif.models.basset import BassetConfig
    from jaxmotif.models.beluga import BelugaConfig
    from jaxmotif.models.bpnet import BPNetConfig, ChromBPNetConfig
    from jaxmotif.models.deepsea import DeepSEAConfig

    return {
        "deephistone": DeepHistoneConfig,
        "bpnet": BPNetConfig,
        "chrombpnet": ChromBPNetConfig,
        "basset": BassetConfig,
        "deepsea": DeepSEAConfig,
        "beluga": BelugaConfig,
    }


def config_from_dict(meta: dict):
    """The config object of a ``config.json`` dict (without "format"); ``arch`` picks the class."""
    meta = dict(meta)
    arch = meta.pop("arch", None) or meta.get("model_type", "deephistone")
    classes = config_classes()
    if arch not in classes:
        raise CheckpointError(f"unknown architecture arch={arch!r}; known: {sorted(classes)}")
    return classes[arch].from_dict(meta)


def read_config(ckpt_dir):
    ckpt_dir = Path(ckpt_dir)
    cfg_path = ckpt_dir / "config.json"
    if not ckpt_dir.is_dir():
        raise CheckpointError(f"checkpoint folder {ckpt_dir} does not exist")
    if not cfg_path.is_file():
        raise CheckpointError(f"{ckpt_dir} has no config.json: not a jaxmotif checkpoint (convert it first)")
    try:
        meta = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{cfg_path} is not valid JSON: {e}") from None
    if meta.pop("format", None) != FORMAT:
        raise CheckpointError(f"{cfg_path} is not a {FORMAT} config")
    try:
        return config_from_dict(meta)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{cfg_path}: {e}") from None


def abstract_params(config) -> dict:
    """The params tree of a model built from ``config``, as ShapeDtypeStructs (no allocation)."""
    module = abstract_module(config.graph(), config.seq_len)
    return nnx.to_pure_dict(nnx.state(module))


def load_model(ckpt_dir) -> Model:
    """Loads a checkpoint written by ``python -m convert`` or :func:`save_model`."""
    ckpt_dir = Path(ckpt_dir).absolute()
    config = read_config(ckpt_dir)
    if not (ckpt_dir / "params").is_dir():
        raise CheckpointError(f"{ckpt_dir} has no params/ folder")
    ocp = _orbax()
    target = abstract_params(config)
    try:
        with ocp.StandardCheckpointer() as ckpt:
            restored = ckpt.restore(ckpt_dir / "params", target)
    except Exception as e:  # orbax raises a variety of types for truncated or mismatched files
        raise CheckpointError(f"cannot restore {ckpt_dir / 'params'}: {type(e).__name__}: {e}") from None
    _check_tree(restored, target)
    return Model.from_params(config, restored)


def _drop_empty(tree):
    """``tree`` without its empty dicts, recursively (NNX's pure dicts have none)."""
    if not isinstance(tree, dict):
        return tree
    out = {k: _drop_empty(v) for k, v in tree.items()}
    return {k: v for k, v in out.items() if not (isinstance(v, dict) and not v)}


def _check_tree(params, expected):
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    flat_expected, _ = jax.tree_util.tree_flatten_with_path(expected)
    got = {jax.tree_util.keystr(k): np.shape(v) for k, v in flat}
    want = {jax.tree_util.keystr(k): tuple(v.shape) for k, v in flat_expected}
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    wrong = sorted(k for k in set(want) & set(got) if got[k] != want[k])
    if missing or extra or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}")
        if extra:
            parts.append(f"unexpected {extra[:5]}")
        if wrong:
            parts.append("wrong shapes " + ", ".join(f"{k}: {got[k]} != {want[k]}" for k in wrong[:5]))
        raise CheckpointError("params do not match the config: " + "; ".join(parts))
