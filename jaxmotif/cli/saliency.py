"""``python -m jaxmotif.saliency``: attribution maps of FASTA sequences by any saliency method.

Writes ``OUT`` (an .npz with ``saliency`` (N, T, L, 4) or (N, L, 4) for one target, ``names``,
``method``, ``targets``; or, when ``OUT`` ends in ``.zarr``, an attribution store streamed batch by
batch, the layout of ``python -m jaxmotif.attribute``: ``attributions`` (N, L, 4, T); the FASTA is
then read one batch of records at a time, after a first pass that checks every record) and, with
``--logos N``, sequence logos of the N sequences with the largest
attribution into ``OUT``'s ``_logos`` folder. Outputs follow :mod:`jaxmotif.cli.common`'s policy.
"""

import argparse
import contextlib
import itertools
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxmotif.cli.common import (
    CliError,
    IupacTally,
    add_max_memory_arg,
    add_overwrite_arg,
    add_strict_bases_arg,
    add_targets_arg,
    check_output,
    iter_fasta_records,
    memory_budget,
    new_output,
    read_fasta_records,
    resolve_cli_targets,
    run_cli,
)

EPILOG = """\
examples:
  python -m jaxmotif.saliency --checkpoint ckpt/ --fasta windows.fa --dnase dnase.bw \\
      --method integrated_gradients --baseline shuffle --num-baselines 4 --targets H3K27ac --out ig.npz
  python -m jaxmotif.saliency --checkpoint ckpt/ --fasta windows.fa --dnase-npy dnase.npy \\
      --method smoothgrad --samples 50 --sigma 0.15 --seed 0 --out sg.npz --logos 5
  python -m jaxmotif.saliency --checkpoint ckpt/ --fasta windows.fa --dnase-npy dnase.npy \\
      --method deep_lift_shap --n-shuffles 20 --hypothetical --seed 0 --out shap.npz
  # no --checkpoint: the bundled demo model and its held-out sequences
  python -m jaxmotif.saliency --method deconvnet --out demo_deconvnet.npz --logos 3

With --dnase (bigWig), FASTA record names must be regions, chrom:start-end (0-based half-open, as
bedtools getfasta writes them; NAME::chrom:start-end from -name, and a (+) or (-) suffix from -s, the
DNase of a (-) record read back to front as its sequence is). Logos (--logos N):
OUT_logos/<rank>_<record>.png for the N sequences with the largest total |attribution|, one panel
per target around the most salient base; the x axis shows genome positions (1-based, as a genome
browser) when the record name is such a region, else offsets in the window. --out OUT.zarr streams
the maps into an attribution store (the layout
`python -m jaxmotif.attribute` writes; TF-MoDISco and the report read it) instead of holding them,
and reads the FASTA twice instead of whole: a check of every record (only the names are kept),
then one batch of records at a time (--dnase-npy memory-mapped); for genome-scale inputs with
resume, run `python -m jaxmotif.attribute` on the genome FASTA and a BED file. --seed fixes the
random methods (smoothgrad, deep_lift_shap, integrated_gradients --baseline shuffle): record i draws
its noise or shuffles from fold_in(key(--seed), i), whatever --batch-size or --max-memory. An
existing OUT (or OUT_logos) is refused unless --overwrite; memory per compiled call stays under
--max-memory (chunks of sequences, path points and targets chosen from it).
"""


def build_parser() -> argparse.ArgumentParser:
    from jaxmotif.attribution import ATTRIBUTION_METHODS
    from jaxmotif.integrated import BASELINES, INTEGRATION_RULES

    p = argparse.ArgumentParser(
        prog="python -m jaxmotif.saliency",
        description="Saliency / attribution maps (gradient, gradient x input, deconvnet, guided "
        "backprop, inverse-activation, integrated gradients, SmoothGrad, DeepLIFT/DeepSHAP) of FASTA "
        "sequences.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--checkpoint", metavar="DIR", help="jaxmotif checkpoint (default: the bundled demo model)"
    )
    p.add_argument(
        "--fasta", metavar="SEQS.fa", help="sequences of the model's length (default with the demo)"
    )
    dn = p.add_mutually_exclusive_group()
    dn.add_argument(
        "--dnase", metavar="TRACK.bw", help="DNase bigWig; record names: [NAME::]chrom:start-end[(+|-)]"
    )
    dn.add_argument("--dnase-npy", metavar="F.npy", help="DNase values, shape (N, L), in FASTA order")
    add_targets_arg(p)
    p.add_argument("--target", action="append", help="deprecated: use --targets")
    methods = ATTRIBUTION_METHODS
    p.add_argument("--method", choices=methods, default="grad_x_input", help="default: %(default)s")
    p.add_argument(
        "--out",
        required=True,
        metavar="OUT.npz|OUT.zarr",
        help="output .npz, or an attribution store streamed batch by batch when it ends in .zarr "
        "(logos go to OUT_logos/)",
    )
    add_overwrite_arg(p)
    p.add_argument("--logits", action="store_true", help="attribute the output before its final activation")
    p.add_argument("--steps", type=int, help="integrated_gradients: path points (default 64)")
    p.add_argument("--baseline", choices=BASELINES, help="integrated_gradients: reference (default zeros)")
    p.add_argument("--num-baselines", type=int, help="integrated_gradients: shuffled references (default 1)")
    p.add_argument("--rule", choices=INTEGRATION_RULES, help="integrated_gradients: quadrature")
    p.add_argument("--n-shuffles", type=int, help="deep_lift_shap: shuffled references (default 20)")
    p.add_argument(
        "--hypothetical",
        action="store_true",
        default=None,
        help="deep_lift_shap: hypothetical contributions of every base (TF-MoDISco's input)",
    )
    p.add_argument("--samples", type=int, help="smoothgrad: noisy copies (default 50)")
    p.add_argument("--sigma", type=float, help="smoothgrad: noise standard deviation (default 0.15)")
    p.add_argument(
        "--step-batch",
        type=int,
        help="integrated_gradients / smoothgrad: at most this many path points (or noisy copies) "
        "evaluated at once (default: as many as --max-memory allows)",
    )
    p.add_argument(
        "--value", type=float, help="inverse_activation: output value to project (default: prediction)"
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="random seed (shuffles, noise; record i draws from fold_in(key(seed), i), whatever "
        "--batch-size; default: %(default)s)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=16,
        help="sequences per progress step, and at most per compiled call (default: %(default)s; "
        "fewer when --max-memory needs it)",
    )
    add_max_memory_arg(p)
    p.add_argument(
        "--precision", choices=("fp32", "tf32", "bf16"), default="fp32", help="default: %(default)s"
    )
    p.add_argument(
        "--logos",
        type=int,
        default=0,
        metavar="N",
        help="draw logos of the N sequences with the largest attribution (default: none)",
    )
    p.add_argument(
        "--logo-width", type=int, default=30, help="bases either side of the peak (0: whole sequence)"
    )
    p.add_argument("--no-logos", action="store_true", help=argparse.SUPPRESS)  # the default now
    add_strict_bases_arg(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _method_options(args) -> dict:
    options = {
        "integrated_gradients": {
            "steps": args.steps,
            "baseline": args.baseline,
            "num_baselines": args.num_baselines,
            "rule": args.rule,
        },
        "smoothgrad": {"samples": args.samples, "sigma": args.sigma},
        "inverse_activation": {"value": args.value},
        "deep_lift_shap": {"n_shuffles": args.n_shuffles, "hypothetical": args.hypothetical},
    }.get(args.method, {})
    given = {k: v for k, v in vars(args).items() if k in _ALL_OPTIONS and v is not None}
    stray = sorted(set(given) - set(options))
    if stray:
        flags = ", ".join("--" + s.replace("_", "-") for s in stray)
        raise CliError(f"{flags} not used by --method {args.method}")
    return {k: v for k, v in options.items() if v is not None}


_ALL_OPTIONS = (
    "steps",
    "baseline",
    "num_baselines",
    "rule",
    "samples",
    "sigma",
    "value",
    "n_shuffles",
    "hypothetical",
)


def _load_model(args):
    """The model (--checkpoint, else the demo's, with its sequences and DNase as default inputs)."""
    if args.checkpoint is None:
        from jaxmotif.demo import demo_model, demo_paths

        model = demo_model()
        if args.fasta is None:
            paths = demo_paths()
            args.fasta = str(paths.seqs)
            if args.dnase is None and args.dnase_npy is None:
                args.dnase_npy = str(paths.seqs_dnase)
    else:
        from jaxmotif.models.checkpoint import load_model

        model = load_model(args.checkpoint)
    if args.fasta is None:
        raise CliError("--fasta is required with --checkpoint")
    if model.config.has_dnase and args.dnase is None and args.dnase_npy is None:
        raise CliError("this two-branch model needs --dnase TRACK.bw or --dnase-npy F.npy")
    if not model.config.has_dnase and (args.dnase is not None or args.dnase_npy is not None):
        raise CliError("this DNA-only model takes no DNase input; drop --dnase/--dnase-npy")
    return model


def _load(args, model):
    """Every record of --fasta (.npz output): names, one-hot (N, L, 4) and DNase (N, L) | None."""
    from jaxmotif.sequence import one_hot

    records = read_fasta_records(args.fasta, args.strict_bases)
    length = model.config.seq_len
    for r in records:
        _check_record(args, r.name, r.sequence, length)
    seq = np.stack([one_hot(r.sequence, model.config.alphabet, name=r.name) for r in records])
    dnase = None
    if args.dnase_npy is not None:
        dnase = np.load(args.dnase_npy).astype(np.float32)
        if dnase.shape != (len(records), length):
            raise CliError(f"--dnase-npy shape {dnase.shape} must be ({len(records)}, {length})")
    elif args.dnase is not None:
        from jaxmotif.io.bigwig import BigWigReader

        with BigWigReader(args.dnase) as reader:
            dnase = _bigwig_rows(reader, [r.name for r in records])
    return records, seq, dnase


def _check_record(args, name: str, text: str, length: int) -> None:
    """One record of --fasta as the model takes it (its length, bases, a region name with --dnase)."""
    from jaxmotif.sequence import check_bases

    if len(text) != length:
        raise CliError(
            f"record {name!r} has length {len(text)}; the model takes {length} "
            "(cut windows of that length, e.g. centred on the peaks)"
        )
    check_bases(text, name=name)  # an invalid character: a SequenceError naming record and position
    if args.dnase is not None:
        region, _ = record_region(name)
        if region.end - region.start != length:
            raise CliError(_span_error(name, region, length))


def _survey(args, model) -> tuple[list[str], np.ndarray | None]:
    """First pass over --fasta (.zarr output), keeping only the record names: every record checked
    (:func:`_check_record`; IUPAC codes counted and reported, or refused with --strict-bases) before
    any device work, so a bad record late in a large file costs no compute. Returns the names and
    --dnase-npy memory-mapped (rows read per chunk) or None.
    """
    tally = IupacTally()
    length = model.config.seq_len
    names = []
    for record in iter_fasta_records(args.fasta, tally=tally):
        _check_record(args, record.name, record.sequence, length)
        names.append(record.name)
    tally.report(args.fasta, args.strict_bases)
    dnase = None
    if args.dnase_npy is not None:
        dnase = np.load(args.dnase_npy, mmap_mode="r")  # pages in only the rows each chunk reads
        if not isinstance(dnase, np.ndarray):  # an .npz archive
            dnase.close()
            raise CliError(f"--dnase-npy {args.dnase_npy} is not one .npy array")
        if dnase.shape != (len(names), length):
            raise CliError(f"--dnase-npy shape {dnase.shape} must be ({len(names)}, {length})")
    return names, dnase


class _ChunkReader:
    """Second pass over --fasta: the records of one store chunk at a time, as model inputs.

    Each call takes the next ``stop - start`` records; a record that differs from the first pass
    (the file changed in between) is a :class:`CliError`. Memory: one chunk of sequences.
    """

    def __init__(self, args, model, names: list[str], dnase_npy):
        self.args, self.names, self.dnase_npy = args, names, dnase_npy
        self.alphabet, self.length = model.config.alphabet, model.config.seq_len
        self.records = iter_fasta_records(args.fasta)
        self.bigwig = None
        if args.dnase is not None:
            from jaxmotif.io.bigwig import BigWigReader

            self.bigwig = BigWigReader(args.dnase)

    def read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(one-hot (n, L, 4) float32, DNase (n, L) float32 | None) of records [start, stop)."""
        from jaxmotif.sequence import one_hot

        batch = list(itertools.islice(self.records, stop - start))
        for i, record in enumerate(batch):
            if record.name != self.names[start + i]:
                raise CliError(
                    f"--fasta {self.args.fasta} changed while being read: record {start + i + 1} is "
                    f"{record.name!r}, it was {self.names[start + i]!r}"
                )
            _check_record(self.args, record.name, record.sequence, self.length)
        if len(batch) < stop - start:
            raise CliError(
                f"--fasta {self.args.fasta} changed while being read: {start + len(batch)} records, "
                f"it had {len(self.names)}"
            )
        seq = np.stack([one_hot(r.sequence, self.alphabet, name=r.name) for r in batch])
        if self.dnase_npy is not None:
            return seq, np.asarray(self.dnase_npy[start:stop], np.float32)
        if self.bigwig is not None:
            return seq, _bigwig_rows(self.bigwig, [r.name for r in batch])
        return seq, None

    def finish(self) -> None:
        """Checks that the file has no more records than the first pass saw."""
        if next(self.records, None) is not None:
            raise CliError(
                f"--fasta {self.args.fasta} changed while being read: more than {len(self.names)} records"
            )

    def close(self) -> None:
        self.records.close()
        if self.bigwig is not None:
            self.bigwig.close()


def _bigwig_rows(reader, names: list[str]) -> np.ndarray:
    """DNase (n, L) float32 of window records named as :func:`record_region` reads them (a ``(-)``
    record's track read back to front, as its sequence is)."""
    rows = []
    for name in names:
        region, reverse = record_region(name)
        row = reader.read(region.chrom, region.start, region.end)
        rows.append(row[::-1] if reverse else row)
    return np.stack(rows).astype(np.float32)


def _span_error(name: str, region, length: int) -> str:
    span = region.end - region.start
    hint = ""
    if span == length - 1:  # samtools faidx names windows chrom:first-last, 1-based and inclusive
        hint = " (names are read as bedtools writes them, 0-based half-open; samtools faidx's are 1-based)"
    return f"record {name!r} spans {span} bp; need {length}{hint}"


def record_region(name: str):
    """(Region, reverse) of a window record named as ``bedtools getfasta`` names it.

    ``chrom:start-end`` (0-based half-open), optionally ``NAME::`` before it (``-name``) and ``(+)``
    or ``(-)`` after it (``-s``). ``reverse`` is True for ``(-)``: the record is the reverse
    complement of the region, so a per-base track of the region is read back to front.

    Raises
    ------
    jaxmotif.io.bed.BedError
        When what is left is not ``chrom:start-end``, naming it.
    """
    from jaxmotif.io.bed import parse_region

    text = name.rpartition("::")[2]
    reverse = text.endswith("(-)")
    if text.endswith(("(+)", "(-)")):
        text = text[:-3]
    return parse_region(text), reverse


def genome_axis(name: str, length: int) -> tuple[int, str] | None:
    """(1-based genome position of the window's first base, axis label) when ``name`` is a region
    ``chrom:start-end`` (0-based half-open, as :func:`record_region` reads it, forward strand) spanning
    ``length`` bases; else None (window offsets, also for a reverse-complemented ``(-)`` record)."""
    from jaxmotif.io.bed import BedError

    try:
        region, reverse = record_region(name)
    except BedError:
        return None
    if reverse or region.end - region.start != length:
        return None
    return region.start + 1, f"{region.chrom} position (1-based)"


def _logo(
    folder: Path, rank: int, record: str, values: np.ndarray, names: Sequence[str], alphabet: str, title: str,
    width: int,
):  # fmt: skip
    """One figure for one sequence, ``folder/<rank>_<record>.png``: a panel per target, drawn and saved
    once; genome positions on the x axis when ``record`` names its region (:func:`genome_axis`)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from jaxmotif.logos import plot_attribution_logo

    length = values.shape[1]
    axis = genome_axis(record, length)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in record)
    peak = int(np.argmax(np.abs(values).sum(axis=(0, 2))))
    lo, hi = (0, length) if width <= 0 else (max(peak - width, 0), min(peak + width + 1, length))
    first, xlabel = (0, "offset in window (0-based)") if axis is None else axis
    fig = Figure(figsize=(max(6, (hi - lo) * 0.15), 1.6 * len(names) + 0.4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(names), 1, squeeze=False)
    for ax, target_values, name in zip(axes[:, 0], values, names, strict=True):
        plot_attribution_logo(ax, target_values[lo:hi], alphabet, title=f"{title} {name}", start=first + lo)
    axes[-1, 0].set_xlabel(xlabel, fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / f"{rank:04d}_{safe}.png", format="png", dpi=100)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: _run(args), catch=(ValueError, OSError, KeyError))


def _saliency_span(args, model, seq, dnase, indices, key, options, budget, start: int):
    """Maps (n, K, L, 4) of records [start, start + n): ``seq`` (n, L, 4) and ``dnase`` (n, L) | None
    are those records' inputs; both outputs (.npz, .zarr) call this.

    Record ``i`` (0-based in --fasta) draws its noise / shuffled references from
    ``fold_in(key(--seed), i)`` (its row, passed as ``rows``): the numbers depend on --seed only,
    not on --batch-size or --max-memory, and equal ``jaxmotif.saliency(..., key=jax.random.key(seed))``
    on the whole FASTA at once.
    """
    import jaxmotif

    rows = None if key is None else np.arange(start, start + seq.shape[0])
    return jaxmotif.saliency(
        model,
        seq,
        dnase,
        target=indices,
        method=args.method,
        logits=args.logits,
        batch_size=args.batch_size,
        max_memory=budget,
        precision=args.precision,
        key=key,
        rows=rows,
        **options,
    )


def _run(args) -> int:
    import jax
    from tqdm import tqdm

    from jaxmotif.attribution import AVERAGED_METHODS

    options = _method_options(args)
    for flag in ("batch_size", "step_batch"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise CliError(f"--{flag.replace('_', '-')} {value} must be positive")
    if args.logos < 0:
        raise CliError(f"--logos {args.logos} must be 0 or more")
    if args.target:
        print("warning: --target is deprecated; use --targets", file=sys.stderr)
    target_values = (args.targets or []) + (args.target or []) or None
    budget = memory_budget(args)
    out = Path(args.out)
    store_out = out.suffix == ".zarr"
    if out.suffix != ".npz" and not store_out:
        out = out.with_name(out.name + ".npz")
    logo_dir = out.with_name(out.stem + "_logos")
    check_output(out, args.overwrite)
    if logo_dir.exists():  # a folder of an earlier run: replaced or removed with --overwrite, never mixed
        check_output(logo_dir, args.overwrite, "--out's logos folder")
    model = _load_model(args)
    indices = list(resolve_cli_targets(model, target_values))  # validated before reading the FASTA
    key = jax.random.key(args.seed) if args.method in AVERAGED_METHODS else None
    if args.step_batch is not None:
        if args.method not in ("integrated_gradients", "smoothgrad"):
            raise CliError(f"--step-batch not used by --method {args.method}")
        options["step_batch" if args.method == "integrated_gradients" else "sample_batch"] = args.step_batch

    if store_out:
        return _run_store(args, out, logo_dir, model, indices, key, options, budget)
    records, seq, dnase = _load(args, model)
    parts = []
    bar = tqdm(total=len(records), unit="seq", disable=args.quiet, desc=args.method)
    for start in range(0, len(records), args.batch_size):
        stop = min(start + args.batch_size, len(records))
        span_dnase = None if dnase is None else dnase[start:stop]
        part = _saliency_span(args, model, seq[start:stop], span_dnase, indices, key, options, budget, start)
        parts.append(part)
        bar.update(stop - start)
    bar.close()
    maps = np.concatenate(parts, axis=0)  # (N, K, L, 4)
    names = np.array([r.name for r in records])
    target_names = np.array([model.config.output_names[i] for i in indices])
    single = target_values is not None and len(indices) == 1
    result = maps[:, 0] if single else maps

    with new_output(out, args.overwrite, folder=False) as tmp:
        with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a name
            np.savez(f, saliency=result, names=names, method=np.array(args.method), targets=target_names)
    written = [out]
    if args.logos:
        order = np.argsort(-np.abs(maps).sum(axis=(1, 2, 3)), kind="stable")[: args.logos]
        with new_output(logo_dir, args.overwrite, folder=True, flag="--out's logos folder") as tmp:
            for rank, i in enumerate(tqdm(order, unit="logo", disable=args.quiet, desc="logos")):
                _logo(
                    tmp,
                    rank,
                    records[i].name,
                    maps[i],
                    list(target_names),
                    model.config.alphabet,
                    args.method,
                    args.logo_width,
                )
        written.append(logo_dir)
    elif logo_dir.exists():  # --overwrite without logos: the old ones would be stale
        import shutil

        shutil.rmtree(logo_dir)
    for path in written:
        print(path)
    return 0


# What the stored numbers are (the store's ``values`` attribute): each method as jaxmotif.saliency
# returns it, not mean-centred (python -m jaxmotif.attribute centres its hypothetical methods; see
# jaxmotif.scan.ATTRIBUTE_VALUES). "hypothetical": a value for every base at every position, of
# which the base present is the contribution (TF-MoDISco reads hypothetical x one-hot).
_EVERY_BASE = ", at every base (hypothetical; not mean-centred)"
_BY_ROW = "record i's {} drawn from fold_in(key(--seed), i), whatever --batch-size"
SALIENCY_VALUES = {
    "gradient": "gradient dS/dX" + _EVERY_BASE,
    "grad_x_input": "gradient x input: dS/dX at the bases present, 0 at the others (not hypothetical)",
    "abs_grad_x_input": "|gradient x input|: |dS/dX| at the bases present, 0 at the others "
    "(not hypothetical)",
    "deconvnet": "deconvnet (Zeiler & Fergus: ReLUs pass the positive backward signal whatever their input)"
    + _EVERY_BASE,
    "guided_backprop": "guided backpropagation (Springenberg et al.: the gradient, ReLUs passing only "
    "positive signal where their input is positive)" + _EVERY_BASE,
    "inverse_activation": "inverse-activation projection (Denas & Taylor) of the output --value (default: "
    "the prediction), its logit sent down by each layer's transpose" + _EVERY_BASE,
    "integrated_gradients": "integrated gradients ((x - x') times the gradient averaged along the path from "
    "the --baseline reference; with --baseline shuffle, "
    + _BY_ROW.format("shuffles")
    + "): each input channel's contribution, "
    "not hypothetical (zeros baseline: 0 at the bases absent)",
    "smoothgrad": "SmoothGrad (Smilkov et al.: the gradient averaged over --samples copies of the input with "
    "Gaussian noise of standard deviation --sigma; " + _BY_ROW.format("noise") + ")" + _EVERY_BASE,
}
# A value at every base: the gradient and what averages or replaces it (not x times it).
HYPOTHETICAL_METHODS = ("gradient", "deconvnet", "guided_backprop", "inverse_activation", "smoothgrad")
_DEEPSHAP = "DeepSHAP {} (--n-shuffles dinucleotide-shuffled references per record, " + _BY_ROW + ")"


def store_meaning(method: str, hypothetical_option: bool = False) -> tuple[bool, str]:
    """(attrs["hypothetical"], attrs["values"]) of a --out X.zarr store of ``method``.

    hypothetical_option: --hypothetical (deep_lift_shap only: the hypothetical contributions
    rather than those of the bases present).
    """
    if method == "deep_lift_shap":
        if hypothetical_option:
            return True, _DEEPSHAP.format("hypothetical contributions, at every base", "shuffles")
        present = "contributions of the bases present, 0 at the others (not hypothetical)"
        return False, _DEEPSHAP.format(present, "shuffles")
    return method in HYPOTHETICAL_METHODS, SALIENCY_VALUES[method]


def _store_region(name: str, length: int) -> tuple[str, int, int]:
    """A record's window: its region when the name is ``chrom:start-end`` of ``length``, else (name, 0, L)."""
    axis = genome_axis(name, length)
    if axis is None:
        return name, 0, length
    region, _ = record_region(name)
    return region.chrom, region.start, region.end


def _run_store(args, out, logo_dir, model, indices, key, options, budget) -> int:
    """--out OUT.zarr: the maps streamed into an attribution store, one chunk per batch.

    --fasta is read twice, never whole: a first pass checks every record and keeps only the names
    (the store's rows are created from them), a second reads one chunk of records at a time. A
    failure at any point leaves nothing (the store is written beside --out and renamed at the end).
    """
    from tqdm import tqdm

    from jaxmotif.io.attribution_writer import AttributionStoreWriter

    names, dnase_npy = _survey(args, model)
    length = model.config.seq_len
    target_names = [model.config.output_names[i] for i in indices]
    hypothetical, values = store_meaning(args.method, bool(args.hypothetical))
    attrs = {
        "method": args.method,
        "hypothetical": hypothetical,
        "values": values,
        "model": str(Path(args.checkpoint).absolute()) if args.checkpoint else "demo",
        "args": {k: v for k, v in vars(args).items() if v is not None},
    }
    regions = [_store_region(name, length) for name in names]
    totals = np.zeros(len(names))  # per-sequence total |attribution|, for --logos
    with (
        new_output(out, args.overwrite, folder=True) as tmp,
        contextlib.closing(_ChunkReader(args, model, names, dnase_npy)) as reader,
    ):
        tmp.rmdir()  # the writer creates the folder itself, atomically
        store = AttributionStoreWriter.create(
            tmp, regions, length, target_names, attrs, chunk_rows=args.batch_size
        )
        bar = tqdm(total=len(names), unit="seq", disable=args.quiet, desc=args.method)
        for k in range(store.n_chunks):
            start, stop = store.chunk_span(k)
            seq, dnase = reader.read(start, stop)
            part = _saliency_span(args, model, seq, dnase, indices, key, options, budget, start)
            totals[start:stop] = np.abs(part).sum(axis=(1, 2, 3))
            store.write_chunk(k, seq.astype(np.uint8), np.moveaxis(part, 1, -1))
            store.mark_done(k)
            bar.update(stop - start)
        bar.close()
        reader.finish()
        store.mark_complete()
    written = [out]
    if args.logos:
        order = np.argsort(-totals, kind="stable")[: args.logos]
        reader = AttributionStoreWriter(out)
        with new_output(logo_dir, args.overwrite, folder=True, flag="--out's logos folder") as tmp:
            for rank, i in enumerate(order):
                _, attr = reader.read_rows(int(i), int(i) + 1)
                _logo(
                    tmp,
                    rank,
                    names[i],
                    np.moveaxis(attr[0], -1, 0),
                    target_names,
                    model.config.alphabet,
                    args.method,
                    args.logo_width,
                )
        written.append(logo_dir)
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
