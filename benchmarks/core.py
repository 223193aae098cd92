"""Forward throughput and saliency: jaxmotif vs PyTorch eager / autograd on the same weights."""

import jax
import numpy as np

from benchmarks.common import (
    Result,
    forward_flops,
    jax_sync,
    time_call,
    torch_device,
    torch_precision,
    torch_sync_result,
)
from jaxmotif.gradients import saliency_kernel
from jaxmotif.precision import with_precision


def _throughput(task, impl, precision, n, timing, flops) -> Result:
    """A sequences-per-second row from a timing of ``n`` sequences worth ``flops``."""
    return Result(
        task,
        impl,
        precision,
        n / timing.median_s,
        "seq/s",
        n,
        timing.compile_s,
        flops / timing.median_s / 1e12,
    )


def _torch_inputs(seq, dnase, device):
    import torch

    dev = torch_device(device)
    x = torch.tensor(np.ascontiguousarray(seq.transpose(0, 2, 1)), device=dev)
    d = torch.tensor(dnase[:, None], device=dev) if dnase is not None else None
    return x, d


def torch_forward_call(net, x, dt, precision: str):
    """PyTorch's eager forward of ``x`` (and DNase ``dt``) under ``precision``, as a callable."""
    import torch

    def call():
        with torch.inference_mode(), torch_precision(precision):
            return net(x, dt) if dt is not None else net(x)

    return call


def torch_saliency_call(net, x, dt, precision: str, targets):
    """PyTorch autograd saliency as a callable: one backward pass per target, a list of
    ``d out[:, t].sum() / d x`` (N, 4, L), as users compute it."""
    import torch

    def call():
        xg = x.detach().clone().requires_grad_(True)
        with torch_precision(precision):
            out = net(xg, dt) if dt is not None else net(xg)
        grads = []
        for i, target in enumerate(targets):
            (g,) = torch.autograd.grad(out[:, target].sum(), xg, retain_graph=i < len(targets) - 1)
            grads.append(g)
        return grads

    return call


def bench_forward(net, model, seq, dnase, *, precision, device, repeats) -> list[Result]:
    n = seq.shape[0]
    flops = forward_flops(model.config) * n
    fn = model.compiled(precision)
    s, d = jax.device_put(seq), None if dnase is None else jax.device_put(dnase)
    t = time_call(lambda: fn(model.params, s, d), repeats=repeats, sync=jax_sync)
    results = [_throughput("forward", "jaxmotif", precision, n, t, flops)]
    net = net.to(torch_device(device))
    x, dt = _torch_inputs(seq, dnase, device)
    torch_forward = torch_forward_call(net, x, dt, precision)
    t = time_call(torch_forward, repeats=repeats, sync=torch_sync_result)
    if precision == "fp32":  # the two frameworks must agree before their speeds mean anything
        ours, theirs = np.asarray(fn(model.params, s, d)), torch_forward().float().cpu().numpy()
        results[0].note = f"max |jaxmotif - pytorch| = {np.max(np.abs(ours - theirs)):.1e}"
    results.append(_throughput("forward", "pytorch eager", precision, n, t, flops))
    return results


def bench_saliency(net, model, seq, dnase, *, precision, device, repeats) -> list[Result]:
    n = seq.shape[0]
    targets_all = tuple(range(model.config.num_outputs))
    apply_fn = with_precision(model.apply, precision)
    s, d = jax.device_put(seq), None if dnase is None else jax.device_put(dnase)
    x, dt = _torch_inputs(seq, dnase, device)
    net = net.to(torch_device(device))
    results = []
    for label, targets in (
        ("saliency, 1 target", (0,)),
        (f"saliency, all {len(targets_all)} targets", targets_all),
    ):
        # forward + backward per target ~ 3 forward passes of work each (backward ~ 2x forward)
        flops = forward_flops(model.config) * n * (1 + 2 * len(targets))
        kernel = jax.jit(
            lambda p, a, b, targets=targets: saliency_kernel(apply_fn, p, a, b, targets, "gradient")
        )
        t = time_call(lambda kernel=kernel: kernel(model.params, s, d), repeats=repeats, sync=jax_sync)
        results.append(_throughput(label, "jaxmotif", precision, n, t, flops))
        torch_saliency = torch_saliency_call(net, x, dt, precision, targets)
        t = time_call(torch_saliency, repeats=repeats, sync=torch_sync_result)
        results.append(_throughput(label, "pytorch autograd", precision, n, t, flops))
    return results
