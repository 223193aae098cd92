"""Compile for a GPU that is not here, and read what the compiled program moves from its HLO text.

XLA compiles ahead of time for a GPU it cannot see ("deviceless" compilation): a PJRT topology
built from a target description (the GPU's SM count, shared memory, L2, clock, memory bandwidth,
compute capability) gives compile-only devices, and ``jax.jit(f).lower(specs).compile()`` for
arguments placed on them runs XLA's whole GPU pipeline (fusion, cuDNN/cuBLAS rewrites, layouts)
except autotuning, which needs the device. The optimized HLO is then the GPU program's structure,
which is what the memory-traffic floor needs; the kernel timings still need the GPU.

It needs the CUDA build of jaxlib's plugin and the CUDA libraries from PyPI (no GPU, no driver):
``pip install "jax[cuda12]==<your jax version>"`` into a separate environment (about 5 GB).
``JAX_SKIP_CUDA_CONSTRAINTS_CHECK=1`` is set here because the plugin's start-up check asks the
(absent) driver for its version. The compiled program's ``cost_analysis()`` is empty on these
compile-only devices, so :func:`program_traffic` counts the bytes from the HLO text itself.

Traffic model (:func:`program_traffic`): every top-level instruction that launches a kernel (a
fusion, a library call such as a cuDNN convolution, a copy) reads each of its operands once and
writes its result once; parameters, constants, bitcasts, tuples and tuple elements move nothing;
a fusion whose root is a ``dynamic-update-slice`` updates its buffer in place (reads the update
and indices, writes the update); a ``while`` loop counts its body times its known trip count. The same counter
applied to a CPU program gives a like-for-like figure (XLA's CPU "bytes accessed" counts inside
fusions, and is larger).
"""

import os
import re
from dataclasses import dataclass, field

# Minimal GpuTargetConfig text protos (stream_executor/device_description.proto) with the published
# figures of each part: 132 SMs, 228 KiB shared memory per SM, 50 MiB L2, 1.98 GHz boost, compute
# capability 9.0; HBM3 3.35 TB/s (H100 SXM, 80 GB) and HBM3e 4.8 TB/s (H200, 141 GB).
_HOPPER = """gpu_device_info {{
  threads_per_block_limit: 1024
  threads_per_warp: 32
  shared_memory_per_block: 49152
  shared_memory_per_core: 233472
  threads_per_core_limit: 2048
  core_count: 132
  fpus_per_core: 128
  block_dim_limit_x: 2147483647
  block_dim_limit_y: 65535
  block_dim_limit_z: 65535
  memory_bandwidth: {bandwidth}
  l2_cache_size: 52428800
  clock_rate_ghz: 1.98
  device_memory_size: {memory}
  shared_memory_per_block_optin: 232448
  cuda_compute_capability {{ major: 9 }}
  registers_per_core_limit: 65536
  registers_per_block_limit: 65536
}}
platform_name: "CUDA"
dnn_version_info {{ major: 9 minor: 10 }}
runtime_version {{ major: 12 minor: 8 }}
device_description_str: "{name}"
"""
GPU_TARGETS = {
    "h100": _HOPPER.format(bandwidth=3352320000000, memory=84929347584, name="NVIDIA H100 80GB HBM3"),
    "h200": _HOPPER.format(bandwidth=4800000000000, memory=151397597184, name="NVIDIA H200 141GB HBM3e"),
}


def prepare() -> None:
    """Call before JAX starts its backends (before the first array): the CUDA plugin's start-up
    version check asks the absent driver and would fail, and nothing runs on a GPU here."""
    os.environ.setdefault("JAX_SKIP_CUDA_CONSTRAINTS_CHECK", "1")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")  # executes on the CPU; the GPU is only compiled for


def gpu_sharding(target: str):
    """A sharding onto one compile-only device of GPU ``target`` (``h100`` or ``h200``).

    Needs :func:`prepare` before JAX's first array (else the plugin did not register).
    """
    if target not in GPU_TARGETS:
        raise ValueError(f"unknown GPU target {target!r}; choose from {sorted(GPU_TARGETS)}")
    import jax
    from jax.experimental import topologies

    try:
        topology = topologies.get_topology_desc(
            target, "cuda", topology="1x1x1", target_config=GPU_TARGETS[target]
        )
    except Exception as e:  # no CUDA plugin: NotImplementedError / RuntimeError, depending on jax
        raise RuntimeError(
            f"cannot compile for {target} without the device ({type(e).__name__}: {e}); install the CUDA "
            f'plugin and libraries (no GPU needed): pip install "jax[cuda12]=={jax.__version__}"'
        ) from e
    mesh = jax.sharding.Mesh(topology.devices, ("x",))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def abstract_args(args, sharding):
    """``args`` (a pytree of arrays and Nones) as ShapeDtypeStructs placed by ``sharding``."""
    import jax
    import numpy as np

    def spec(a):  # None leaves are empty pytrees: they stay None
        dtype = a.dtype if hasattr(a, "dtype") else np.asarray(a).dtype
        return jax.ShapeDtypeStruct(np.shape(a), dtype, sharding=sharding)

    return jax.tree.map(spec, args)


# ---- traffic of a compiled program, from its HLO text -------------------------------------------

_DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2, "s32": 4, "u32": 4,
                "f32": 4, "s64": 8, "u64": 8, "f64": 8}  # fmt: skip
_ARRAY = re.compile(r"\b(" + "|".join(_DTYPE_BYTES) + r")\[([0-9,]*)\]")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*?)\s([a-z][a-z0-9\-]*)\((.*)$")
_HEADER = re.compile(r"^(ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$")
# instructions that launch no kernel and move no bytes of their own
_FREE = {"parameter", "constant", "bitcast", "tuple", "get-tuple-element", "after-all", "opt-barrier",
         "copy-start", "copy-done", "partition-id", "replica-id"}  # fmt: skip


def array_bytes(type_text: str, drop_workspace: bool = False) -> int:
    """Bytes of every array in an HLO type (``f32[8,16]{1,0}`` or a tuple of them).

    ``drop_workspace``: leave out a library call's trailing ``u8[N]`` scratch buffer (cuDNN/cuBLAS
    return ``(result, u8[workspace])``), which is not data the program moves.
    """
    arrays = _ARRAY.findall(type_text)
    if drop_workspace and len(arrays) > 1 and arrays[-1][0] == "u8":
        arrays = arrays[:-1]
    total = 0
    for dtype, dims in arrays:
        n = 1
        for d in dims.split(","):
            if d:
                n *= int(d)
        total += _DTYPE_BYTES[dtype] * n
    return total


@dataclass
class Instruction:
    name: str
    op: str  # opcode; fusions as "fusion:kLoop", library calls as "custom-call:<target>"
    operands: list[str]
    out_bytes: int
    calls: list[str]  # computations it calls (a fusion's body, a call's or conditional's computations)
    body: str | None = None  # a while loop's body
    trip_count: int | None = None  # a while loop's known trip count


@dataclass
class Traffic:
    """What a compiled program moves: total bytes, kernels launched, and the largest movers."""

    bytes: int = 0
    kernels: int = 0
    by_op: dict[str, int] = field(default_factory=dict)  # bytes per opcode / fusion kind / library call
    largest: list[tuple[int, str, str]] = field(default_factory=list)  # (bytes, name, op), the top movers


def _split_operands(rest: str) -> tuple[str, str]:
    """The text inside the instruction's parentheses, and what follows them."""
    depth = 1
    for i, ch in enumerate(rest):
        depth += (ch == "(") - (ch == ")")
        if depth == 0:
            return rest[:i], rest[i + 1 :]
    return rest, ""


def parse_computations(hlo_text: str) -> tuple[dict[str, list[Instruction]], dict[str, str], str]:
    """{computation: instructions}, {computation: its ROOT opcode}, and the ENTRY computation's name."""
    computations, roots, entry, current = {}, {}, "", None
    for line in hlo_text.splitlines():
        header = _HEADER.match(line)
        if header and "=" not in line.split("(", 1)[0]:
            current = header.group(2)
            computations[current] = []
            if header.group(1):
                entry = current
            continue
        if current is None:
            continue
        if line.startswith("}"):
            current = None
            continue
        m = _INSTRUCTION.match(line)
        if not m:
            continue
        name, type_text, op, rest = m.groups()
        inside, attributes = _split_operands(rest)
        if op == "fusion":
            kind = re.search(r"kind=(k\w+)", attributes)
            op = f"fusion:{kind.group(1) if kind else '?'}"
        elif op == "custom-call":
            target = re.search(r'custom_call_target="([^"]+)"', attributes)
            op = f"custom-call:{target.group(1) if target else '?'}"
        trip = re.search(r'known_trip_count"\s*:\s*\{\s*"n"\s*:\s*"(\d+)"', attributes)
        instruction = Instruction(
            name=name,
            op=op,
            operands=re.findall(r"%([\w.\-]+)", inside),
            out_bytes=array_bytes(type_text, drop_workspace=op.startswith("custom-call")),
            calls=re.findall(
                r"(?:calls|to_apply|branch_computations=\{|true_computation|false_computation)=?%([\w.\-]+)",
                attributes,
            ),
            body=body.group(1) if (body := re.search(r"body=%([\w.\-]+)", attributes)) else None,
            trip_count=int(trip.group(1)) if trip else None,
        )
        computations[current].append(instruction)
        if line.lstrip().startswith("ROOT"):
            roots[current] = op
    return computations, roots, entry


def program_traffic(hlo_text: str, top: int = 10) -> Traffic:
    """Bytes moved and kernels launched by the optimized program (the module docstring's model)."""
    computations, roots, entry = parse_computations(hlo_text)
    if not entry:
        raise ValueError("no ENTRY computation in this HLO text")
    traffic = Traffic()
    movers: list[tuple[int, str, str]] = []

    def walk(name: str, times: int) -> None:
        instructions = computations[name]
        sizes = {i.name: i.out_bytes for i in instructions}
        for ins in instructions:
            if ins.op in _FREE:
                continue
            if ins.op == "while":  # an unknown trip count is counted once (and said so by the caller)
                walk(ins.body, times * (ins.trip_count or 1))
                continue
            if ins.op in ("call", "conditional"):
                for c in ins.calls:
                    walk(c, times)
                continue
            reads = [sizes.get(o, 0) for o in ins.operands]
            in_place = ins.op.startswith("fusion") and any(
                roots.get(c) == "dynamic-update-slice" for c in ins.calls
            )
            if in_place and len(reads) > 1:  # the buffer (operand 0) stays put: the update is written in
                moved = sum(reads[1:]) + reads[1]
            else:
                moved = sum(reads) + ins.out_bytes
            traffic.bytes += moved * times
            traffic.kernels += times
            traffic.by_op[ins.op] = traffic.by_op.get(ins.op, 0) + moved * times
            movers.append((moved * times, ins.name, ins.op))

    walk(entry, 1)
    traffic.largest = sorted(movers, reverse=True)[:top]
    return traffic
