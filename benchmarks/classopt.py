"""Class optimization: jaxmotif (every target x restart in one lax.scan) vs PyTorch loops.

The PyTorch baselines are DeepMotif's procedure, rmsprop lr 0.05, l2 0.009 on the logit:
batched (all targets x restarts as one batch, one backward per step) and the original style,
one target and one restart at a time. Long runs are timed on a prefix of the steps (and, for the
one-at-a-time loop, one row) and extrapolated linearly; such rows say "extrapolated".
"""

import time

import jax

from benchmarks.common import Result, forward_flops, torch_device, torch_precision, torch_sync
from jaxmotif.optimize import class_inputs

L2 = 0.009
LR = 0.05


def _torch_rows(net, model, rows_targets, steps, device, precision):
    """Optimizes len(rows_targets) inputs together for ``steps`` steps; returns seconds."""
    import torch

    dev = torch_device(device)
    net = net.to(dev)
    for p in net.parameters():
        p.requires_grad_(False)
    logits_net = torch.nn.Sequential(*list(net.linear_map.children())[:-1])  # drop the Sigmoid
    n = len(rows_targets)
    length = model.config.seq_len
    x = (0.01 * torch.randn(n, 4, length, device=dev)).requires_grad_(True)
    dnase = torch.zeros(n, 1, length, device=dev)
    idx = torch.tensor(rows_targets, device=dev)
    opt = torch.optim.RMSprop([x], lr=LR)
    torch_sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        with torch_precision(precision):
            feats = (
                torch.cat((net.seq_map(x), net.dns_map(dnase)), 1)
                if model.config.has_dnase
                else net.seq_map(x)
            )
            score = logits_net(feats).gather(1, idx[:, None]).squeeze(1)
        loss = -(score.float() - L2 * (x * x).sum(dim=(1, 2))).sum()
        loss.backward()
        opt.step()
    torch_sync()
    return time.perf_counter() - t0


def bench_classopt(net, model, *, precision, device, quick) -> list[Result]:
    targets = model.config.num_outputs
    restarts = 1 if quick else 32
    steps = 3 if quick else 1000
    rows = targets * restarts
    flops_per_step = forward_flops(model.config) * rows * 3  # forward + backward
    # jaxmotif: the full run (first call compiles; the second is steady state)
    t0 = time.perf_counter()
    jax.block_until_ready(
        class_inputs(model, None, restarts, steps, key=jax.random.key(0), precision=precision).inputs
    )
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(
        class_inputs(model, None, restarts, steps, key=jax.random.key(1), precision=precision).inputs
    )
    steady = time.perf_counter() - t0
    label = f"class opt {targets}x{restarts}x{steps}"
    results = [
        Result(
            label,
            "jaxmotif (one lax.scan)",
            precision,
            steady,
            "s",
            rows,
            first - steady,
            flops_per_step * steps / steady / 1e12,
        )
    ]
    # PyTorch batched: time a prefix of the steps (after a warm-up step) and scale
    sample_steps = min(steps, 2 if quick else (50 if device == "gpu" else 3))
    rows_targets = [t for t in range(targets) for _ in range(restarts)]
    warm = _torch_rows(net, model, rows_targets, 1, device, precision)
    t = _torch_rows(net, model, rows_targets, sample_steps, device, precision) * steps / sample_steps
    note = f"extrapolated from {sample_steps} steps" if sample_steps < steps else ""
    results.append(
        Result(
            label,
            "pytorch rmsprop, batched",
            precision,
            t,
            "s",
            rows,
            warm,
            flops_per_step * steps / t / 1e12,
            note,
        )
    )
    # DeepMotif style: one target, one restart at a time
    single_steps = min(steps, 2 if quick else 20)
    t1 = _torch_rows(net, model, [0], single_steps, device, precision) * (steps / single_steps) * rows
    results.append(
        Result(
            label,
            "pytorch rmsprop, one row at a time",
            precision,
            t1,
            "s",
            1,
            0.0,
            flops_per_step * steps / t1 / 1e12,
            f"extrapolated from 1 row x {single_steps} steps",
        )
    )
    return results
