"""Numerical precision as an explicit option.

``fp32`` is the exact default: float32 everywhere and matmul/conv precision ``highest`` (on GPUs
JAX would otherwise use TF32 for float32 matmuls). ``tf32`` keeps float32 storage but lets the
tensor cores round operands to TF32. ``bf16`` casts parameters and inputs to bfloat16 and returns
float32 outputs. The fast modes are checked against fp32 in the tests.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp

PRECISIONS = ("fp32", "tf32", "bf16")
_MATMUL = {"fp32": "highest", "tf32": "tensorfloat32", "bf16": "default"}


def check_precision(precision: str | None) -> str:
    precision = "fp32" if precision is None else precision
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} must be one of {PRECISIONS}")
    return precision


def cast_floats(tree, dtype):
    """Casts every floating leaf of a pytree to ``dtype`` (integer leaves are left alone)."""
    return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def with_precision(fn: Callable, precision: str | None) -> Callable:
    """Wraps ``fn(params, *arrays)`` so it traces under the given precision.

    The matmul-precision context is entered while tracing, so it must wrap the function that
    ``jax.jit`` traces, not a call site outside it.
    """
    precision = check_precision(precision)

    def wrapped(params, *arrays):
        with jax.default_matmul_precision(_MATMUL[precision]):
            if precision == "bf16":
                params = cast_floats(params, jnp.bfloat16)
                arrays = tuple(None if a is None else cast_floats(a, jnp.bfloat16) for a in arrays)
                return cast_floats(fn(params, *arrays), jnp.float32)
            return fn(params, *arrays)

    return wrapped
