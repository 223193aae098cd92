"""Shared benchmark plumbing: the published model in both frameworks, timing, FLOPs, the table.

Every benchmark times jaxmotif and its PyTorch baseline on the same device, in the same run, on
the same converted weights. Times are medians of repeats after a warm-up call whose duration is
reported apart as compile time (jit compile for JAX; first call, cuDNN autotune or
torch.compile for PyTorch). Devices: ``cpu`` or ``gpu`` (CUDA for PyTorch, the default JAX backend).
"""

import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import jax
import numpy as np

from jaxmotif.models.deephistone import DENSE_LAYERS, KERNEL_WIDTH, POOL, DeepHistoneConfig

PUBLISHED = DeepHistoneConfig()  # two branches, widths 128/256/512, hidden 925, L = 1000, 7 outputs


# ---- FLOPs, counted once from the architecture ---------------------------------------------------


def branch_flops(config: DeepHistoneConfig, in_rows: int) -> float:
    """Multiply-adds x 2 of one branch (convolutions only; BN/ReLU/pool are negligible)."""
    w1, w2, w3 = config.widths
    length = config.seq_len
    flops = 2 * length * KERNEL_WIDTH * in_rows * w1  # conv1
    for i in range(DENSE_LAYERS):
        flops += 2 * length * KERNEL_WIDTH * (w1 + i * w1) * w1  # block1
    flops += 2 * length * (DENSE_LAYERS + 1) * w1 * w2  # trans1 1x1
    quarter = length // POOL
    for i in range(DENSE_LAYERS):
        flops += 2 * quarter * KERNEL_WIDTH * (w2 + i * w2) * w2  # block2
    flops += 2 * quarter * (DENSE_LAYERS + 1) * w2 * w3  # trans2 1x1
    return float(flops)


def head_flops(config: DeepHistoneConfig) -> float:
    branches = 2 if config.has_dnase else 1
    features = branches * config.pooled_len * config.widths[2]
    return float(2 * features * config.hidden + 2 * config.hidden * config.num_outputs)


def forward_flops(config: DeepHistoneConfig) -> float:
    """FLOPs of one forward pass of one sequence (published model at L = 1000: about 8.25 GFLOP)."""
    total = branch_flops(config, 4) + head_flops(config)
    if config.has_dnase:
        total += branch_flops(config, 1)
    return total


# ---- models ---------------------------------------------------------------------------------------


def published_pair(config: DeepHistoneConfig = PUBLISHED, *, seed: int = 0):
    """(torch net in eval mode, jaxmotif Model) with the same random weights (BatchNorm stats randomised)."""
    import torch

    from convert import convert_state_dict
    from convert.torch_reference import NetDeepHistone, NetDeepHistoneDNA, randomize_batchnorm
    from jaxmotif.models.model import Model

    torch.manual_seed(seed)
    args = (config.seq_len, config.widths, config.hidden, config.num_outputs, config.final_activation)
    net = NetDeepHistone(*args) if config.has_dnase else NetDeepHistoneDNA(*args)
    randomize_batchnorm(net, seed=seed)
    net.eval()
    sd = {k: v.numpy() for k, v in net.state_dict().items()}
    cfg, params = convert_state_dict(sd, seq_len=config.seq_len, final_activation=config.final_activation)
    return net, Model.from_params(cfg, params)


def random_inputs(n: int, config: DeepHistoneConfig, *, seed: int = 0):
    rng = np.random.default_rng(seed)
    seq = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (n, config.seq_len))]
    dnase = rng.gamma(1.0, 1.0, (n, config.seq_len)).astype(np.float32) if config.has_dnase else None
    return seq, dnase


def torch_device(device: str):
    import torch

    return torch.device("cuda" if device == "gpu" else "cpu")


def torch_precision(precision: str):
    """A context for PyTorch matching jaxmotif's precision names (tf32 flags / bf16 autocast)."""
    import contextlib

    import torch

    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    torch.backends.cudnn.benchmark = True
    if precision == "bf16":
        device_type = "cuda" if torch.cuda.is_available() else "cpu"
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def torch_sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


# ---- timing -----------------------------------------------------------------------------------------


@dataclass
class Timing:
    compile_s: float
    median_s: float
    repeats: int
    times: list[float] = field(default_factory=list)  # wall seconds of each timed call
    cpu_times: list[float] = field(default_factory=list)  # process CPU seconds (all threads) of each

    @property
    def cpu_median_s(self) -> float:
        return statistics.median(self.cpu_times)


def time_call(fn: Callable[[], object], *, repeats: int, sync: Callable[[object], None]) -> Timing:
    """Warm-up (compile) call timed apart, then the median of ``repeats`` synchronised calls.

    Each call's process CPU time is kept beside its wall time: on a shared CPU, wall time grows
    with other jobs' load while CPU time mostly does not.
    """
    t0 = time.perf_counter()
    sync(fn())
    compile_s = time.perf_counter() - t0
    times, cpu_times = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        sync(fn())
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    return Timing(compile_s, statistics.median(times), repeats, times, cpu_times)


def jax_sync(x):
    jax.block_until_ready(x)


def torch_sync_result(_):
    torch_sync()


# ---- results ------------------------------------------------------------------------------------------


@dataclass
class Result:
    """One line of the table: ``value`` in ``unit`` (higher is better for /s units, lower for s)."""

    task: str
    impl: str
    precision: str
    value: float
    unit: str
    batch: int
    compile_s: float
    tflops: float | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)


def environment(device: str) -> dict:
    import torch

    env = {
        "date": time.strftime("%Y-%m-%d"),
        "device_arg": device,
        "jax_devices": [str(d) for d in jax.devices()],
        "jax": jax.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    if device == "gpu" and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


def better_is_lower(unit: str) -> bool:
    return not unit.endswith("/s")


def is_baseline(r: "Result") -> bool:
    return not r.impl.startswith("jaxmotif")


def print_table(results: list[Result]) -> str:
    """One table. ``vs baseline`` = how many times faster than the first non-jaxmotif row (the
    PyTorch baseline) of the same task and precision; below 1 means slower."""
    lines = [
        f"{'task':<40} {'impl':<34} {'prec':<5} {'value':>11} {'unit':<6} {'batch':>6} "
        f"{'compile s':>9} {'TFLOP/s':>8} {'vs baseline':>11}  note"
    ]
    for r in results:
        base = next(
            (o for o in results if o.task == r.task and o.precision == r.precision and is_baseline(o)), None
        )
        ratio = ""
        if base is not None and r is not base and r.value > 0 and base.value > 0:
            speedup = base.value / r.value if better_is_lower(r.unit) else r.value / base.value
            ratio = f"{speedup:.3g}x"
        tf = f"{r.tflops:.2f}" if r.tflops is not None else ""
        lines.append(
            f"{r.task:<40} {r.impl:<34} {r.precision:<5} {r.value:>11.4g} {r.unit:<6} {r.batch:>6} "
            f"{r.compile_s:>9.2f} {tf:>8} {ratio:>11}  {r.note}"
        )
    text = "\n".join(lines)
    print(text)
    return text


def write_json(path, env: dict, results: list[Result]):
    with open(path, "w") as f:
        json.dump({"environment": env, "results": [asdict(r) for r in results]}, f, indent=2)
