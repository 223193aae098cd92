"""The bundled demo: a small trained two-branch DeepHistone and synthetic data it was trained on.

Everything lives in ``jaxmotif/data/demo/`` and is regenerated, bit for bit, by
``python -m jaxmotif.demo_training`` (see :mod:`jaxmotif.demo_training` for the generator):

    model/              jaxmotif checkpoint (:func:`jaxmotif.load_model`), widths (16, 16, 16), hidden 32
    metrics.json        held-out AUROC per output, training settings and seeds
    planted_motifs.meme the four JASPAR 2024 matrices planted into the synthetic sequences
    seqs.fa             200 held-out 1000-bp sequences; headers carry the planted sites and labels
    seqs_dnase.npy      their DNase tracks, float32 (200, 1000)
    genome.fa           a two-chromosome demo genome (chrA 30 kb, chrB 12 kb)
    dnase.bw            its per-base DNase track
    regions.bed         a few regions of it (odd-sized, short, touching a chromosome end)
    planted_sites.bed   every motif site planted into the genome (name = motif, strand)

Which motif drives which output is :data:`DEMO_PLANTED`; the rule itself is :func:`demo_labels`.
``python -m jaxmotif.demo`` runs the demo end to end (the CLI is :mod:`jaxmotif.cli.demo`).
"""

import os
import shutil
import sys
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np

#: The planted motifs, JASPAR 2024 CORE vertebrate matrix IDs and names, in the order of the
#: columns of ``present`` in :func:`demo_labels`. Short (9-10 bp, so a 9-wide conv1 filter covers
#: nearly all of each), of different families, and distinct within JASPAR: a PWM built from any
#: 9-bp window of sampled sites finds its own matrix first among all 879 JASPAR 2024 vertebrate
#: matrices, with the runner-up's TomTom p-value at least 38x larger (checked when they were
#: chosen). AP-1 (FOS::JUN) and the E-box (USF1) were planted before and dropped: JASPAR holds
#: dozens of near-identical bZIP and bHLH matrices, so even a perfect filter names a paralog first.
DEMO_MOTIFS = (
    ("MA0107.1", "RELA"),  # NF-kB, GGGAATTTCC
    ("MA0502.3", "NFYB"),  # CCAAT box
    ("MA0527.2", "ZBTB33"),  # Kaiso, TCTCGCGAGA
    ("MA0070.2", "PBX1"),  # TGATTGAT
)

#: Output -> what makes it positive in the synthetic data ("open" = a DNase peak in the window).
#: H3K4me1 and H3K36me3 depend on exactly one motif each and not on the DNase track, so class
#: optimization of either recovers that motif.
DEMO_PLANTED = {
    "H3K4me1": "RELA (MA0107.1) present",
    "H3K4me3": "NFYB (MA0502.3) present AND open",
    "H3K27me3": "PBX1 (MA0070.2) present AND closed",
    "H3K36me3": "ZBTB33 (MA0527.2) present",
    "H3K9me3": "no planted motif AND closed",
    "H3K9ac": "NFYB (MA0502.3) OR ZBTB33 (MA0527.2) present",
    "H3K27ac": "RELA (MA0107.1) present AND open",
}

#: Outputs driven by exactly one motif, regardless of chromatin: output name -> JASPAR ID.
DEMO_SINGLE_MOTIF_OUTPUTS = {"H3K4me1": "MA0107.1", "H3K36me3": "MA0527.2"}


def demo_labels(present: np.ndarray, is_open: np.ndarray) -> np.ndarray:
    """The 7 demo labels from which motifs were planted and whether the window is open.

    Parameters
    ----------
    present : np.ndarray, shape=(N, 4), bool
        Motif ``j`` of :data:`DEMO_MOTIFS` planted in the window.
    is_open : np.ndarray, shape=(N,), bool
        The window has a DNase peak.

    Returns
    -------
    np.ndarray, shape=(N, 7), float32, in DeepHistone's output order (see :data:`DEMO_PLANTED`).
    """
    present = np.asarray(present, dtype=bool)
    is_open = np.asarray(is_open, dtype=bool)
    if present.ndim != 2 or present.shape[1] != len(DEMO_MOTIFS):
        raise ValueError(f"present shape {present.shape} must be (N, {len(DEMO_MOTIFS)})")
    if is_open.shape != present.shape[:1]:
        raise ValueError(f"is_open shape {is_open.shape} must be ({present.shape[0]},)")
    rela, nfy, kaiso, pbx = present.T
    closed = ~is_open
    labels = [
        rela,
        nfy & is_open,
        pbx & closed,
        kaiso,
        ~present.any(axis=1) & closed,
        nfy | kaiso,
        rela & is_open,
    ]
    return np.stack(labels, axis=1).astype(np.float32)


class DemoPaths(NamedTuple):
    """Files of the bundled demo (see the module docstring)."""

    root: Path
    model: Path
    metrics: Path
    motifs: Path
    seqs: Path
    seqs_dnase: Path
    genome: Path
    dnase: Path
    regions: Path
    planted_sites: Path


def demo_root() -> Path:
    """The folder ``jaxmotif/data/demo`` inside the installed package."""
    return Path(str(resources.files("jaxmotif") / "data" / "demo"))


def demo_paths(root: str | os.PathLike | None = None) -> DemoPaths:
    """Paths of the demo files under ``root`` (default: the bundled :func:`demo_root`)."""
    root = demo_root() if root is None else Path(root)
    return DemoPaths(
        root=root,
        model=root / "model",
        metrics=root / "metrics.json",
        motifs=root / "planted_motifs.meme",
        seqs=root / "seqs.fa",
        seqs_dnase=root / "seqs_dnase.npy",
        genome=root / "genome.fa",
        dnase=root / "dnase.bw",
        regions=root / "regions.bed",
        planted_sites=root / "planted_sites.bed",
    )


def demo_model():
    """The bundled demo model, a two-branch 7-output DeepHistone (:class:`jaxmotif.Model`)."""
    from jaxmotif.models.checkpoint import load_model

    return load_model(demo_paths().model)


def writable_genome(dest_dir: str | os.PathLike) -> Path:
    """A path of the demo genome whose folder is writable, for :class:`jaxmotif.io.fasta.Genome`.

    pyfaidx writes ``genome.fa.fai`` beside the FASTA on first use, and an installed package folder
    may be read-only (and a checkout should not gain an untracked index), so the 42-kb FASTA is
    copied into ``dest_dir`` (created if needed) and that copy is returned.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / "genome.fa"
    src = demo_paths().genome
    if not dest.exists() or dest.read_bytes() != src.read_bytes():
        tmp = dest_dir / f".genome.fa.{os.getpid()}.tmp"
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
        (dest_dir / "genome.fa.fai").unlink(missing_ok=True)
    return dest


if __name__ == "__main__":
    from jaxmotif.cli.demo import main

    sys.exit(main())
