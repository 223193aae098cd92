"""PyTorch DeepHistone ``state_dict`` -> jaxmotif checkpoint, as a chain of small pure steps.

    load_state_dict(path)           file -> {key: np.ndarray}  (convert.readers: nothing in the file is run)
    strip_prefix(sd)                drops DataParallel's "module."
    infer_config(sd, ...)           variant, widths, hidden, outputs, L from the keys and shapes
    check_keys(sd, config)          every missing / unexpected / mis-shaped key, by name
    to_params(sd, config)           the explicit name map + layout changes -> NNX pure dict
    write_checkpoint(...)           Orbax + config.json, atomically (jaxmotif.models.checkpoint)

Layout changes: PyTorch convolutions are ``(out, in, rows, 9)`` over ``(N, C, rows, L)``; ours are
``(9, in, out)`` over channels-last ``(N, L, C)``. The first Linear layer reads PyTorch's flatten
of ``(N, C, 1, W)`` (index ``c * W + w`` per branch); ours flattens ``(N, W, C)`` (``w * C + c``),
so its weight columns are permuted once here instead of transposing activations at run time.
"""

import dataclasses
import os

import numpy as np

from convert.classic import fold_alphabet
from convert.readers import ConversionError, key_mismatches, read_torch, strip_prefix
from jaxmotif.models.checkpoint import write_checkpoint
from jaxmotif.models.deephistone import DENSE_LAYERS, DeepHistoneConfig, default_output_names

BN_TORCH_TO_JAX = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}
# Lengths users actually train at; preferred when the Linear layer leaves L ambiguous (L // 16 = W).
KNOWN_LENGTHS = (1000, 500)


# ---- loading ------------------------------------------------------------------------------------


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a state_dict without running code from the file (see :mod:`convert.readers`).

    ``.safetensors`` through safetensors; torch's zip format through the restricted unpickler;
    legacy pickles through ``torch.load(..., weights_only=True)``. A training wrapper
    (``{"state_dict": ...}``, ``{"model_state_dict": ...}``, ... : ``convert.readers.WRAPPER_KEYS``)
    is unwrapped.
    """
    return read_torch(path).tensors


# ---- inference and checks -----------------------------------------------------------------------


def _shape(sd, key):
    if key not in sd:
        raise ConversionError(f"missing key {key!r}: not a DeepHistone state_dict")
    return tuple(np.shape(sd[key]))


def infer_config(
    sd: dict,
    *,
    seq_len: int | None = None,
    final_activation: str = "sigmoid",
    alphabet: str = "ACGT",
    output_names=None,
) -> DeepHistoneConfig:
    """The model config implied by the tensors (``seq_len`` only where the shapes leave it open)."""
    variant = "full" if any(k.startswith("dns_map.") for k in sd) else "dna"
    w1 = _shape(sd, "seq_map.conv1.0.weight")[0]
    w2 = _shape(sd, "seq_map.trans1.2.weight")[0]
    w3 = _shape(sd, "seq_map.trans2.2.weight")[0]
    hidden, features = _shape(sd, "linear_map.1.weight")
    outputs = _shape(sd, "linear_map.4.weight")[0]
    branches = 2 if variant == "full" else 1
    pooled, rest = divmod(features, branches * w3)
    if rest or pooled < 1:
        raise ConversionError(
            f"linear_map.1.weight has {features} inputs, "
            f"not a multiple of {branches} branch(es) x {w3} channels"
        )
    candidates = range(16 * pooled, 16 * pooled + 16)  # floor pooling: any of these gives `pooled`
    if seq_len is None:
        seq_len = next((n for n in KNOWN_LENGTHS if n in candidates), 16 * pooled)
    elif seq_len not in candidates:
        raise ConversionError(
            f"--seq-len {seq_len} gives {seq_len // 16} pooled positions but linear_map.1.weight expects "
            f"{pooled} (L from {candidates.start} to {candidates.stop - 1})"
        )
    names = tuple(output_names) if output_names else default_output_names(outputs)
    if len(names) != outputs:
        raise ConversionError(f"{len(names)} output names given for a model with {outputs} outputs")
    return DeepHistoneConfig(
        variant=variant,
        seq_len=seq_len,
        num_outputs=outputs,
        widths=(w1, w2, w3),
        hidden=hidden,
        final_activation=final_activation,
        alphabet=alphabet,
        output_names=names,
    )


def _bn_keys(prefix: str, channels: int) -> dict:
    keys = {f"{prefix}.{name}": (channels,) for name in BN_TORCH_TO_JAX}
    keys[f"{prefix}.num_batches_tracked"] = ()
    return keys


def expected_shapes(config: DeepHistoneConfig) -> dict[str, tuple]:
    """Every key of the PyTorch state_dict for ``config``, with its shape."""
    w1, w2, w3 = config.widths
    keys = {}
    branches = [("seq_map", 4)] + ([("dns_map", 1)] if config.has_dnase else [])
    for branch, rows in branches:
        keys[f"{branch}.conv1.0.weight"] = (w1, 1, rows, 9)
        keys[f"{branch}.conv1.0.bias"] = (w1,)
        for b, (cin, growth) in ((1, (w1, w1)), (2, (w2, w2))):
            for i in range(DENSE_LAYERS):
                c = cin + i * growth
                prefix = f"{branch}.block{b}.layer.{i}.block"
                keys.update(_bn_keys(f"{prefix}.0", c))
                keys[f"{prefix}.2.weight"] = (growth, c, 1, 9)
                keys[f"{prefix}.2.bias"] = (growth,)
        for t, (cin, cout) in ((1, (4 * w1, w2)), (2, (4 * w2, w3))):
            keys.update(_bn_keys(f"{branch}.trans{t}.0", cin))
            keys[f"{branch}.trans{t}.2.weight"] = (cout, cin, 1, 1)
            keys[f"{branch}.trans{t}.2.bias"] = (cout,)
    features = len(branches) * w3 * config.pooled_len
    keys["linear_map.1.weight"] = (config.hidden, features)
    keys["linear_map.1.bias"] = (config.hidden,)
    keys.update(_bn_keys("linear_map.2", config.hidden))
    keys["linear_map.4.weight"] = (config.num_outputs, config.hidden)
    keys["linear_map.4.bias"] = (config.num_outputs,)
    return keys


def check_keys(sd: dict, config: DeepHistoneConfig) -> None:
    """Raises one ConversionError listing every missing, unexpected and mis-shaped key."""
    problems = key_mismatches(sd, expected_shapes(config))
    if problems:
        raise ConversionError(
            f"state_dict does not match DeepHistone ({config.variant}): " + "; ".join(problems)
        )


# ---- the name map ---------------------------------------------------------------------------------


def _conv_kernel(w: np.ndarray) -> np.ndarray:
    """(out, in, rows, K) -> (K, in * rows, out): rows become input channels (rows = 4 one-hot bases)."""
    out, cin, rows, k = w.shape
    return np.ascontiguousarray(w.reshape(out, cin * rows, k).transpose(2, 1, 0))


def _bn(sd, prefix):
    return {jax_name: sd[f"{prefix}.{torch_name}"] for torch_name, jax_name in BN_TORCH_TO_JAX.items()}


def _conv(sd, prefix):
    return {"kernel": _conv_kernel(sd[f"{prefix}.weight"]), "bias": sd[f"{prefix}.bias"]}


def _branch(sd, branch):
    out = {"conv1": _conv(sd, f"{branch}.conv1.0")}
    for b in (1, 2):
        out[f"block{b}"] = {
            "layers": {
                i: {
                    "norm": _bn(sd, f"{branch}.block{b}.layer.{i}.block.0"),
                    "conv": _conv(sd, f"{branch}.block{b}.layer.{i}.block.2"),
                }
                for i in range(DENSE_LAYERS)
            }
        }
    for t in (1, 2):
        out[f"trans{t}"] = {
            "norm": _bn(sd, f"{branch}.trans{t}.0"),
            "conv": _conv(sd, f"{branch}.trans{t}.2"),
        }
    return out


def dense_kernel_from_torch(w: np.ndarray, branches: int, channels: int, pooled: int) -> np.ndarray:
    """Linear weight (H, branches*C*W) in PyTorch's flatten order -> kernel (branches*W*C, H) in ours."""
    hidden = w.shape[0]
    return np.ascontiguousarray(
        w.reshape(hidden, branches, channels, pooled)
        .transpose(1, 3, 2, 0)
        .reshape(branches * pooled * channels, hidden)
    )


def to_params(sd: dict, config: DeepHistoneConfig) -> dict:
    """The explicit map from PyTorch keys to the NNX pure-dict layout of jaxmotif's DeepHistone."""
    branches = 2 if config.has_dnase else 1
    params = {"seq_map": _branch(sd, "seq_map")}
    if config.has_dnase:
        params["dns_map"] = _branch(sd, "dns_map")
    params["head"] = {
        "dense": {
            "kernel": dense_kernel_from_torch(
                sd["linear_map.1.weight"], branches, config.widths[2], config.pooled_len
            ),
            "bias": sd["linear_map.1.bias"],
        },
        "norm": _bn(sd, "linear_map.2"),
        "out": {"kernel": np.ascontiguousarray(sd["linear_map.4.weight"].T), "bias": sd["linear_map.4.bias"]},
    }
    return params


def convert_state_dict(sd: dict, **config_options) -> tuple[DeepHistoneConfig, dict]:
    """state_dict (NumPy) -> (config, params): every check happens here, before anything is written."""
    sd = strip_prefix(dict(sd))
    config = infer_config(sd, **config_options)
    check_keys(sd, config)
    params = to_params(sd, config)
    if config.alphabet != "ACGT":
        # fold the checkpoint's one-hot order into conv1 (its 4 rows are the bases): the model reads ACGT
        conv1 = params["seq_map"]["conv1"]
        conv1["kernel"] = fold_alphabet(conv1["kernel"], config.alphabet)
        config = dataclasses.replace(config, alphabet="ACGT")
    return config, params


def convert_file(path, out_dir, *, overwrite: bool = False, **config_options) -> DeepHistoneConfig:
    """``python -m convert`` as a function: reads, checks, converts and writes atomically."""
    config, params = convert_state_dict(load_state_dict(path), **config_options)
    write_checkpoint(out_dir, config, params, overwrite=overwrite)
    return config
