"""PyTorch -> jaxmotif checkpoint conversion (the only place, besides tests, that imports torch)."""

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

__all__ = [
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
