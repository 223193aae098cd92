"""python -m benchmarks: jaxmotif beside the PyTorch baselines, same device, same weights, one table.

example:
  python -m benchmarks --quick                          # 2-core CPU, under 2 minutes
  python -m benchmarks --device gpu --precision fp32,tf32,bf16 --out results.json
  python -m benchmarks --tasks bpnet,classic --quick     # BPNet 64x8, Basset, Beluga (fp32)
"""

import argparse
import sys

from benchmarks import common

TASKS = ("forward", "saliency", "mutmap", "classopt", "pwms", "deeplift", "bpnet", "classic", "scan")
GRAPH_TASKS = ("bpnet", "classic", "scan")  # build their own models (bpnet-lite BPNet; Basset, Beluga; demo)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="small batches and samples (2-core CPU: < 2 min)")
    p.add_argument("--device", choices=("cpu", "gpu"), default=None, help="default: gpu if JAX sees one")
    p.add_argument("--precision", default="fp32", help="comma-separated: fp32,tf32,bf16")
    p.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated subset of {','.join(TASKS)}")
    p.add_argument("--batch", type=int, default=None, help="sequences per forward/saliency call")
    p.add_argument("--skip-torch-compile", action="store_true", help="leave out the torch.compile ISM line")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)

    import jax

    device = args.device or ("gpu" if jax.default_backend() == "gpu" else "cpu")
    if device == "cpu":
        jax.config.update("jax_platforms", "cpu")
    precisions = [x.strip() for x in args.precision.split(",") if x.strip()]
    tasks = [x.strip() for x in args.tasks.split(",") if x.strip()]
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        print(f"error: unknown task(s) {unknown}; choose from {TASKS}", file=sys.stderr)
        return 1
    env = common.environment(device)
    print("environment:", env)
    results = []
    if any(t not in GRAPH_TASKS for t in tasks):
        net, model = common.published_pair()
        batch = args.batch or (4 if args.quick else (256 if device == "gpu" else 16))
        repeats = 2 if args.quick else 5
        seq, dnase = common.random_inputs(batch, model.config)
    for precision in precisions:
        if "forward" in tasks:
            from benchmarks.core import bench_forward

            results += bench_forward(
                net, model, seq, dnase, precision=precision, device=device, repeats=repeats
            )
        if "saliency" in tasks:
            from benchmarks.core import bench_saliency

            results += bench_saliency(
                net, model, seq, dnase, precision=precision, device=device, repeats=repeats
            )
        if "mutmap" in tasks:
            from benchmarks.mutmap import bench_mutmap

            results += bench_mutmap(
                net,
                model,
                precision=precision,
                device=device,
                quick=args.quick,
                torch_compile=not args.skip_torch_compile,
            )
        if "classopt" in tasks:
            from benchmarks.classopt import bench_classopt

            results += bench_classopt(net, model, precision=precision, device=device, quick=args.quick)
        if "pwms" in tasks:
            from benchmarks.pwms import bench_pwms

            results += bench_pwms(model, precision=precision, device=device, quick=args.quick)
        if "deeplift" in tasks:
            from benchmarks.deeplift import bench_deeplift

            results += bench_deeplift(net, model, precision=precision, device=device, quick=args.quick)
        if "bpnet" in tasks:
            from benchmarks.bpnet import bench_bpnet

            results += bench_bpnet(precision=precision, device=device, quick=args.quick, batch=args.batch)
        if "classic" in tasks:
            from benchmarks.classic import bench_classic

            results += bench_classic(precision=precision, device=device, quick=args.quick)
        if args.out:  # the rows so far, so that a run cut short (a device timeout) keeps them
            common.write_json(args.out, env, results)
    if "scan" in tasks:  # the demo model, fp32: the scan pipeline against its kernel alone
        from benchmarks.scan import bench_scan_results

        results += bench_scan_results(quick=args.quick, device=device)
    common.print_table(results)
    if args.out:
        common.write_json(args.out, env, results)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
