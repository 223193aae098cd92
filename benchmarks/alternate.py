"""fp32 forward and saliency, jaxmotif beside PyTorch, calls alternating in one run (issue 14 item 2).

    python -m benchmarks.alternate --batch 32 --rounds 7          # published DeepHistone, this device

On a shared machine the load changes between two back-to-back medians, so one jaxmotif call and
one PyTorch call alternate in every round and the ratio is taken per round (same load for both),
beside the wall and process CPU time of each. True fp32 on both sides: jaxmotif under matmul
precision ``highest`` (``jaxmotif.precision``), PyTorch with TF32 off (``torch_precision``).
Saliency: one target, ``d out[:, 0] / d seq``. The outputs are compared before anything is timed.
"""

import argparse
import json
import statistics
import sys
import time

import jax
import numpy as np

from benchmarks import common
from benchmarks.core import _torch_inputs, torch_forward_call, torch_saliency_call
from jaxmotif.gradients import saliency_kernel
from jaxmotif.precision import with_precision


def _kernels(net, model, seq, dnase, device: str) -> dict:
    """name -> (jaxmotif call, PyTorch call), each returning a host array (synchronised)."""
    apply_fn = with_precision(model.apply, "fp32")
    forward = jax.jit(apply_fn)
    saliency = jax.jit(lambda p, a, b: saliency_kernel(apply_fn, p, a, b, (0,), "gradient")[:, 0])
    s, d = jax.device_put(seq), None if dnase is None else jax.device_put(dnase)
    net = net.to(common.torch_device(device))
    x, dt = _torch_inputs(seq, dnase, device)
    forward_call = torch_forward_call(net, x, dt, "fp32")
    saliency_call = torch_saliency_call(net, x, dt, "fp32", (0,))

    def torch_forward():
        return forward_call().cpu().numpy()

    def torch_saliency():
        return saliency_call()[0].cpu().numpy().transpose(0, 2, 1)  # (N, 4, L) -> (N, L, 4)

    return {
        "forward": (lambda: np.asarray(forward(model.params, s, d)), torch_forward),
        "saliency": (lambda: np.asarray(saliency(model.params, s, d)), torch_saliency),
    }


def _timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def run(net, model, seq, dnase, *, device: str, rounds: int, tasks=("forward", "saliency")) -> dict:
    """Per task: max |jaxmotif - PyTorch|, then ``rounds`` alternating (jaxmotif, PyTorch) timings."""
    kernels = _kernels(net, model, seq, dnase, device)
    out = {}
    for task in tasks:
        ours, theirs = kernels[task]
        diff = float(np.max(np.abs(ours() - theirs())))  # also the warm-up (compile) call of each
        wall = {"jaxmotif": [], "pytorch": []}
        cpu = {"jaxmotif": [], "pytorch": []}
        for i in range(rounds):
            # alternate which goes first, so neither always follows the other's cache state
            order = (
                (("jaxmotif", ours), ("pytorch", theirs))
                if i % 2 == 0
                else (("pytorch", theirs), ("jaxmotif", ours))
            )
            for impl, fn in order:
                w, c = _timed(fn)
                wall[impl].append(w)
                cpu[impl].append(c)
        ratios = [t / j for j, t in zip(wall["jaxmotif"], wall["pytorch"], strict=True)]
        cpu_ratios = [t / j for j, t in zip(cpu["jaxmotif"], cpu["pytorch"], strict=True)]
        out[task] = {
            "max_abs_diff": diff,
            "wall_s": wall,
            "cpu_s": cpu,
            "speed_vs_pytorch_per_round": ratios,  # PyTorch time / jaxmotif time: > 1 = jaxmotif faster
            "speed_vs_pytorch_median": statistics.median(ratios),
            "cpu_speed_vs_pytorch_median": statistics.median(cpu_ratios),
        }
        n = seq.shape[0]
        ours_rate, theirs_rate = (n / statistics.median(wall[k]) for k in ("jaxmotif", "pytorch"))
        print(
            f"{task}: max|diff| {diff:.1e}; seq/s median jaxmotif {ours_rate:.1f}"
            f" pytorch {theirs_rate:.1f}; jaxmotif speed vs PyTorch per round"
            f" {min(ratios):.3f}-{max(ratios):.3f} (median {statistics.median(ratios):.3f}; CPU time"
            f" {statistics.median(cpu_ratios):.3f})",
            flush=True,
        )
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.alternate",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--device", choices=("cpu", "gpu"), default=None, help="default: gpu if JAX sees one")
    p.add_argument("--batch", type=int, default=32, help="sequences per call")
    p.add_argument("--rounds", type=int, default=7, help="alternating (jaxmotif, PyTorch) rounds per task")
    p.add_argument("--tasks", default="forward,saliency", help="comma-separated: forward,saliency")
    p.add_argument("--json", default=None, help="write the timings here")
    args = p.parse_args(argv)
    tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip())
    if not set(tasks) <= {"forward", "saliency"} or args.batch < 1 or args.rounds < 1:
        print(f"error: --tasks {args.tasks!r} (forward,saliency), --batch and --rounds >= 1", file=sys.stderr)
        return 1
    device = args.device or ("gpu" if jax.default_backend() == "gpu" else "cpu")
    env = common.environment(device)
    import torch

    env["torch_threads"] = torch.get_num_threads()
    print("environment:", env)
    net, model = common.published_pair()
    seq, dnase = common.random_inputs(args.batch, model.config)
    out = run(net, model, seq, dnase, device=device, rounds=args.rounds, tasks=tasks)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env, "batch": args.batch, "tasks": out}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
