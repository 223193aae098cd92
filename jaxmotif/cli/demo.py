"""``python -m jaxmotif.demo``: every method of jaxmotif on the bundled demo model and data.

The demo is a list of steps, :data:`STEPS`; each ``step_x(out_dir, model, paths) -> list[Path]``
writes into ``out_dir`` and returns the files it wrote, which :func:`main` prints.
"""

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from jaxmotif.demo import (
    DEMO_MOTIFS,
    DEMO_PLANTED,
    DEMO_SINGLE_MOTIF_OUTPUTS,
    DemoPaths,
    demo_model,
    demo_paths,
)

EPILOG = """\
example:
  python -m jaxmotif.demo --out demo_out
  python -m jaxmotif.demo --out demo_out --steps saliency
"""

SALIENCY_SEQUENCES = 3  # demo sequences shown in the saliency step
LOGO_HALF_WIDTH = 30  # bases either side of the most salient position in each logo


def read_demo_sequences(paths: DemoPaths, alphabet: str = "ACGT"):
    """(one-hot (N, L, 4), DNase (N, L), FASTA records) of the bundled held-out demo sequences."""
    from jaxmotif.io.fasta import read_fasta
    from jaxmotif.sequence import one_hot

    records = read_fasta(paths.seqs)
    seqs = np.stack([one_hot(r.sequence, alphabet, name=r.name) for r in records])
    dnase = np.load(paths.seqs_dnase)
    return seqs, dnase, records


def _headers(paths: DemoPaths) -> list[str]:
    return [line[1:].strip() for line in paths.seqs.read_text().splitlines() if line.startswith(">")]


def planted_sites(header: str) -> list[tuple[str, int, str]]:
    """(motif name, start, strand) of each planted site in a demo FASTA header (``sites=...`` field)."""
    field = next((f for f in header.split() if f.startswith("sites=")), "sites=none")[len("sites=") :]
    if field == "none":
        return []
    out = []
    for item in field.split(";"):
        name, rest = item.split("@")
        out.append((name, int(rest[:-1]), rest[-1]))
    return out


def step_metrics(out_dir: Path, model, paths: DemoPaths) -> list[Path]:
    """Print the model's held-out AUROC and what drives each output (from metrics.json)."""
    metrics = json.loads(paths.metrics.read_text())
    for name, value in metrics["auroc_heldout"].items():
        print(f"  {name:9s} AUROC {value:.3f}   {DEMO_PLANTED.get(name, '')}")
    return []


def step_saliency(out_dir: Path, model, paths: DemoPaths) -> list[Path]:
    """Gradient x input of a single-motif output on demo sequences that carry its motif; logos as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxmotif.attribution import saliency
    from jaxmotif.logos import plot_attribution_logo

    target = next(iter(DEMO_SINGLE_MOTIF_OUTPUTS))
    motif_name = dict(DEMO_MOTIFS)[DEMO_SINGLE_MOTIF_OUTPUTS[target]]
    seqs, dnase, records = read_demo_sequences(paths, model.config.alphabet)
    headers = _headers(paths)
    chosen = [i for i, h in enumerate(headers) if any(s[0] == motif_name for s in planted_sites(h))]
    chosen = chosen[:SALIENCY_SEQUENCES]
    values = saliency(model, seqs[chosen], dnase[chosen], target=target, method="grad_x_input")  # (n, L, 4)
    npz = out_dir / "saliency.npz"
    np.savez(npz, saliency=values, names=np.array([records[i].name for i in chosen]), target=np.array(target))

    fig, axes = plt.subplots(len(chosen), 1, figsize=(10, 1.8 * len(chosen)), squeeze=False)
    for ax, i, v in zip(axes[:, 0], chosen, values, strict=True):
        peak = int(np.argmax(np.abs(v).sum(axis=1)))
        lo = max(0, min(peak - LOGO_HALF_WIDTH, v.shape[0] - 2 * LOGO_HALF_WIDTH))
        hi = lo + 2 * LOGO_HALF_WIDTH
        sites = ", ".join(f"{n}@{s}{st}" for n, s, st in planted_sites(headers[i]))
        plot_attribution_logo(
            ax, v[lo:hi], model.config.alphabet, title=f"{records[i].name} [{lo}, {hi})  planted: {sites}"
        )
    fig.suptitle(f"gradient x input of {target} (driven by {motif_name})", fontsize=10)
    fig.tight_layout()
    png = out_dir / "saliency_logos.png"
    fig.savefig(png, dpi=110)
    plt.close(fig)
    print(f"  {target}: {len(chosen)} sequences with a planted {motif_name} site")
    return [npz, png]


#: The demo's steps in order: name -> step function.
STEPS: dict[str, Callable[[Path, object, DemoPaths], list[Path]]] = {
    "metrics": step_metrics,
    "saliency": step_saliency,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m jaxmotif.demo",
        description="Run jaxmotif end to end on the bundled demo model (a small two-branch DeepHistone "
        "trained on synthetic data with planted JASPAR motifs) and print where every output went.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", default="demo_out", help="output folder (default: %(default)s)")
    parser.add_argument(
        "--steps",
        nargs="+",
        choices=list(STEPS),
        default=None,
        metavar="STEP",
        help=f"run only these steps, of: {' '.join(STEPS)} (default: all)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        print(f"error: --out {out} exists and is not a folder", file=sys.stderr)
        return 1
    try:
        out.mkdir(parents=True, exist_ok=True)
        paths = demo_paths()
        model = demo_model()
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"demo model: {model}")
    names = args.steps or list(STEPS)
    written: list[Path] = []
    for k, name in enumerate(names, start=1):
        print(f"[{k}/{len(names)}] {name} ...")
        t0 = time.perf_counter()
        files = STEPS[name](out, model, paths)
        for f in files:
            print(f"  wrote {f}")
        print(f"  ({time.perf_counter() - t0:.1f} s)")
        written.extend(files)
    print(f"done: {len(written)} files in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
