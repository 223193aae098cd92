"""``python -m jaxmotif.optimize``: class optimization -> PWMs -> MEME -> TomTom -> logos."""

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxmotif.cli.common import (
    CliError,
    add_max_memory_arg,
    add_overwrite_arg,
    add_targets_arg,
    check_output,
    memory_budget,
    new_output,
    resolve_cli_targets,
)
from jaxmotif.cli.filters import (
    add_motif_db_arguments,
    load_model_or_demo,
    load_motif_database,
    run_reporting_errors,
    write_logos_only,
    write_match_report,
)

EPILOG = """\
example:
  python -m jaxmotif.optimize --checkpoint ckpt/ --out optimized/ --targets H3K4me3,H3K27ac \\
      --restarts 32 --steps 1000 --seed 0 --dnase const:1.0

  Without --checkpoint the bundled demo model is used. An existing --out folder is refused unless
  --overwrite (then replaced whole). Progress (steps, best score so far) is shown as the scan runs.

writes OUT/optimized.npz (inputs, scores reached, DeepMotif PWMs, windows), OUT/optimized.meme (each
target's DeepMotif PWM over its highest-information 9-20 bp window, chosen on the magnitude-weighted
PWM of the best restart), OUT/tomtom.tsv (top matches per target) and OUT/logos.png.
"""


def parse_dnase(text: str):
    """``zeros`` | ``const:V`` | a ``.npy`` file with the profile of shape (L,)."""
    if text == "zeros":
        return "zeros"
    if text.startswith("const:"):
        try:
            return float(text[len("const:") :])
        except ValueError:
            raise CliError(f"--dnase {text}: the constant must be a number, e.g. const:1.5") from None
    if re.search(r"\.(bw|bigwig)$", text, flags=re.IGNORECASE):
        raise CliError(
            f"--dnase {text}: a bigWig track has no single profile for an optimized input (it is not a "
            "genome window); give zeros, const:V or a .npy file with the profile of shape (L,)"
        )
    path = Path(text)
    if not path.is_file():
        raise CliError(f"--dnase {text}: expected zeros, const:V or an existing .npy file")
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic != b"\x93NUMPY":
        raise CliError(f"--dnase {text}: not a .npy file (expected zeros, const:V or a .npy of shape (L,))")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise CliError(f"--dnase {text}: not a .npy array ({err})") from None


def motif_name(output_name: str) -> str:
    """A MEME identifier (one word) for an output name."""
    return re.sub(r"\s+", "_", output_name.strip()) or "output"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m jaxmotif.optimize",
        description="Class optimization (the seed's method 6, DeepMotif): the input each output likes best, "
        "as PWMs, MEME and TomTom matches.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint", help="jaxmotif checkpoint folder (default: the bundled demo model)")
    parser.add_argument("--out", required=True, help="output folder (created with its parents)")
    add_overwrite_arg(parser)
    add_targets_arg(parser)
    parser.add_argument(
        "--restarts", type=int, default=32, help="random starts per target (default: %(default)s)"
    )
    parser.add_argument("--steps", type=int, default=1000, help="optimizer steps (default: %(default)s)")
    parser.add_argument(
        "--seed", type=int, default=0, help="PRNG seed of the starting points (default: %(default)s)"
    )
    parser.add_argument("--learning-rate", type=float, default=0.05, help="(default: %(default)s)")
    parser.add_argument(
        "--l2", type=float, default=0.009, help="L2 penalty weight lambda (default: %(default)s)"
    )
    parser.add_argument("--optimizer", choices=("rmsprop", "adam", "sgd"), default="rmsprop")
    parser.add_argument(
        "--parameterization",
        choices=("direct", "softmax"),
        default="direct",
        help="optimize X itself (DeepMotif) or X = softmax(Z) per position (default: %(default)s)",
    )
    parser.add_argument(
        "--score",
        choices=("logit", "output"),
        default="logit",
        help="maximize the logit (Simonyan's unnormalized score) or the activated output "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--dnase",
        default="zeros",
        help="DNase input of two-branch models: zeros, const:V or FILE.npy of shape (L,) "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--min-width", type=int, default=9, help="narrowest motif window (default: %(default)s)"
    )
    parser.add_argument(
        "--max-width", type=int, default=20, help="widest motif window (default: %(default)s)"
    )
    parser.add_argument(
        "--steps-per-call",
        type=int,
        default=None,
        help="steps per compiled call, i.e. how often progress is shown "
        "(default: 2%% of --steps, at least 10)",
    )
    add_max_memory_arg(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_motif_db_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_reporting_errors(_run, _parser().parse_args(argv))


def _run(args) -> int:
    import jax
    from tqdm import tqdm

    from jaxmotif.io.meme import Motif, write_meme
    from jaxmotif.optimize import class_inputs, motif_window

    for name in ("restarts", "steps"):
        if getattr(args, name) < 1:
            raise CliError(f"--{name} {getattr(args, name)} must be positive")
    if args.steps_per_call is not None and args.steps_per_call < 1:
        raise CliError(f"--steps-per-call {args.steps_per_call} must be positive")
    if not 1 <= args.min_width <= args.max_width:
        raise CliError(f"need 1 <= --min-width <= --max-width, got {args.min_width} and {args.max_width}")
    out = check_output(args.out, args.overwrite)
    budget = memory_budget(args)
    dnase = parse_dnase(args.dnase)
    database = None if args.no_tomtom else load_motif_database(args.motif_db, args.tax_group)
    model, _ = load_model_or_demo(args.checkpoint)
    targets = list(resolve_cli_targets(model, args.targets))  # checked before any device work
    if len(set(targets)) != len(targets):
        raise CliError(f"--targets {' '.join(args.targets)} names an output twice")

    desc = f"optimizing {len(targets)} x {args.restarts} inputs"
    with tqdm(total=args.steps, unit="step", desc=desc, file=sys.stderr, disable=args.quiet) as bar:

        def progress(steps_done: float, best: float) -> None:
            bar.set_postfix_str(f"best score {best:.4g}", refresh=False)
            bar.update(steps_done)

        result = class_inputs(
            model,
            targets,
            args.restarts,
            args.steps,
            key=jax.random.key(args.seed),
            learning_rate=args.learning_rate,
            l2=args.l2,
            optimizer=args.optimizer,
            parameterization=args.parameterization,
            dnase=dnase,
            logits=args.score == "logit",
            max_memory=budget,
            steps_per_call=args.steps_per_call,
            progress=progress,
        )

    names = [model.config.output_names[t] for t in result.targets]
    order = [result.alphabet.index(c) for c in "ACGT"]
    best_inputs = result.inputs[np.arange(len(names)), result.best_restart]
    motifs, windows = [], []
    for name, pwm, x in zip(names, result.pwms, best_inputs, strict=True):
        pwm = pwm[:, order]
        start, end = motif_window(x, args.min_width, args.max_width)
        windows.append((start, end))
        motifs.append(Motif(name=motif_name(name), pwm=pwm[start:end], alt_name=f"{start}-{end}"))

    with new_output(out, args.overwrite, folder=True) as tmp:
        np.savez(
            tmp / "optimized.npz",
            inputs=result.inputs,
            scores=result.scores,
            initial_scores=result.initial_scores,
            score_trace=result.score_trace,
            pwms=result.pwms,
            best_restart=result.best_restart,
            targets=result.targets,
            target_names=np.array(names),
            windows=np.array(windows, dtype=np.int64).reshape(-1, 2),
            alphabet=np.array(result.alphabet),
            seed=np.int64(args.seed),
            parameterization=np.array(args.parameterization),
            score=np.array(args.score),
        )
        write_meme(tmp / "optimized.meme", motifs)
        if database is None:
            write_logos_only(tmp, motifs)
            rows = []
        else:
            rows = write_match_report(tmp, motifs, database)
    tail = ", tomtom.tsv, logos.png" if database is not None else ", logos.png"
    files = f"{out}/optimized.npz, optimized.meme{tail}"
    print(f"optimized {len(names)} targets x {args.restarts} restarts; wrote {files}")
    best = result.scores[np.arange(len(names)), result.best_restart]
    for name, (start, end), score in zip(names, windows, best, strict=True):
        matches = [f"{r['target_id']} {r['target_name']}" for r in rows if r["filter"] == motif_name(name)][
            :3
        ]
        print(f"  {name}\tscore {score:.3g}\twindow {start}-{end}\t" + "; ".join(matches))
    return 0


if __name__ == "__main__":
    sys.exit(main())
