"""Chunked, sharded evaluation of a compiled function over a leading batch axis.

Shapes stay static under jit: every chunk has the same size, the tail is padded (by repeating
its last row, so padded rows are valid inputs) and the padded results are dropped, never the
data. Each chunk is placed on a 1-D mesh over all local devices (axis ``"batch"``), so one call
uses every GPU / TPU core; with one device this is a plain ``device_put``.
"""

from collections.abc import Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

BATCH_AXIS = "batch"


def batch_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh over the given (default: all local) devices, axis name ``"batch"``."""
    devices = list(jax.local_devices() if devices is None else devices)
    return Mesh(np.array(devices), (BATCH_AXIS,))


def chunk_size_for(n: int, batch_size: int, num_devices: int) -> int:
    """The fixed chunk size: at most ``batch_size``, no larger than needed, a multiple of the devices."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be positive")
    size = min(batch_size, max(n, 1))
    return -(-size // num_devices) * num_devices


def _pad_rows(x: np.ndarray, rows: int) -> np.ndarray:
    if x.shape[0] == rows:
        return x
    pad = np.repeat(x[-1:], rows - x.shape[0], axis=0)
    return np.concatenate([x, pad], axis=0)


def map_batches(
    fn: Callable,
    arrays: Sequence[np.ndarray | None],
    *,
    batch_size: int,
    mesh: Mesh | None = None,
    progress: Callable[[int], None] | None = None,
):
    """Applies ``fn(*chunks)`` to fixed-size chunks of ``arrays`` along axis 0 and concatenates.

    Parameters
    ----------
    fn: a jitted function of the chunks (``None`` entries are passed through as ``None``) that
        returns an array or a pytree of arrays with the chunk's leading axis.
    arrays: arrays with a common leading size N, or ``None``.
    batch_size: the chunk size bound; rounded up to a multiple of the mesh's devices.
    mesh: devices to shard each chunk over (default: all local devices).
    progress: called with the number of real rows after each chunk.

    Returns the concatenated results as NumPy, leading size N.
    """
    present = [a for a in arrays if a is not None]
    if not present:
        raise ValueError("map_batches needs at least one array")
    n = present[0].shape[0]
    if n == 0:
        raise ValueError("no rows to process (batch size 0)")
    for a in present:
        if a.shape[0] != n:
            raise ValueError(f"arrays disagree on the batch size: {a.shape[0]} != {n}")
    mesh = batch_mesh() if mesh is None else mesh
    chunk = chunk_size_for(n, batch_size, mesh.size)
    sharding = NamedSharding(mesh, PartitionSpec(BATCH_AXIS))
    outputs = []
    pending = None  # (device result, real rows): fetched after the next chunk is dispatched

    def fetch(result, rows):
        outputs.append(jax.tree.map(lambda r: np.asarray(r[:rows]), result))
        if progress is not None:
            progress(rows)

    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        chunks = [
            None if a is None else jax.device_put(_pad_rows(np.asarray(a[start:stop]), chunk), sharding)
            for a in arrays
        ]
        result = fn(*chunks)  # dispatched asynchronously; the device works while we fetch the last one
        if pending is not None:
            fetch(*pending)
        pending = (result, stop - start)
    fetch(*pending)
    return jax.tree.map(lambda *parts: np.concatenate(parts, axis=0), *outputs)
