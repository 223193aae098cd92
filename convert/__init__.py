"""Checkpoints -> jaxmotif: safe readers, architecture detection, key maps (torch: tests, legacy files)."""

from convert.classic import convert_classic, model_config
from convert.convert import (
    ConversionError,
    check_keys,
    convert_file,
    convert_state_dict,
    expected_shapes,
    infer_config,
    load_state_dict,
    strip_prefix,
    to_params,
)
from convert.detect import bpnet_family_hyperparameters, detect_arch
from convert.readers import Checkpoint, read_checkpoint

__all__ = [
    "Checkpoint",
    "bpnet_family_hyperparameters",
    "convert_classic",
    "detect_arch",
    "model_config",
    "read_checkpoint",
    "ConversionError",
    "check_keys",
    "convert_file",
    "convert_state_dict",
    "expected_shapes",
    "infer_config",
    "load_state_dict",
    "strip_prefix",
    "to_params",
]
