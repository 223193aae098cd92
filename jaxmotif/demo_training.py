"""Synthetic data and training of the bundled demo model (``python -m jaxmotif.demo_training``).

The synthetic windows (length 1000) are built so that the labels are a function of what the
model can see:

1. Background bases are drawn i.i.d. with GC content 0.42.
2. Each motif of :data:`jaxmotif.demo.DEMO_MOTIFS` is present with probability 0.3; a present
   motif is planted twice, each site on a random strand at a random position of the central
   500 bp (250-750; ChIP-derived training windows are centered on peaks too), without overlaps.
   Sites are sampled from the JASPAR PWM and redrawn until their log-odds score (vs. the
   background) reaches the median score of sampled sites, so planted sites are typical-to-strong,
   never near-misses.
3. Chance matches are scrubbed first: every background window scoring (either strand) within
   3 bits of that threshold is redrawn until none is left, so the labels of "motif absent"
   windows are not noisy (a short motif such as AP-1's TGASTCA, planted in an earlier version,
   had 0.2-2 chance sites per 1000 bp as strong as a planted one). Planting happens after the
   scrub, so the junctions of planted sites can still form a match, rarely.
4. Half of the windows are open: their DNase track has smooth bumps (Gaussian, sd 40-100 bp,
   height 2-4) over every planted site (or one random bump if none was planted), with per-base
   multiplicative noise; every window has a gamma(1, 0.15) background.
5. Labels follow :func:`jaxmotif.demo.demo_labels` (see :data:`jaxmotif.demo.DEMO_PLANTED`).

Training runs a training-mode forward (BatchNorm normalizes by batch statistics, built from the
functional pieces of :mod:`jaxmotif.models.deephistone`); afterwards the running statistics are set
to the population statistics of 2000 training windows, so the shipped model is an ordinary eval-mode
jaxmotif checkpoint. Loss: binary cross-entropy on the sigmoid outputs (from the logits), plus
the same cross-entropy of a training-only DeepBind-style head on conv1 (ReLU(conv1) -> max over
positions -> linear; :func:`_aux_logits`), which is then dropped. DeepHistone's conv1 is followed
by BatchNorm, ReLU and another 9-wide convolution, so a plain training run spreads each motif over
several conv1 filters and no filter's PWM matched a planted motif in TomTom; the extra head makes
each filter a whole-motif detector (the seed's method 7 reads motifs off conv1, so the demo model
should have them there). Optimizer: Adam with cosine decay. Dropout is left out. Everything is
seeded, and the run is deterministic on a given machine and JAX version.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxmotif.demo import DEMO_MOTIFS, DEMO_PLANTED, demo_labels, demo_paths

SEQ_LEN = 1000
GC = 0.42
BACKGROUND = np.array([(1 - GC) / 2, GC / 2, GC / 2, (1 - GC) / 2])  # A, C, G, T
PLANT_PROB = 0.3
PLANT_REGION = (250, 750)  # planted sites lie inside this central stretch of each window
COPIES = 2  # sites planted per present motif
OPEN_PROB = 0.5
PLANT_QUANTILE = 50.0  # percent: planted sites score at least this percentile of sampled sites
SCRUB_MARGIN = 3.0  # bits: chance matches within this of the planting threshold are redrawn
PSEUDO = 0.01  # added to PWM probabilities before log-odds, so a zero count is not -inf

GENOME_CHROMS = {"chrA": 30_000, "chrB": 12_000}

#: Seeds of every random stream; metrics.json records them.
SEEDS = {"train": 1, "valid": 2, "test": 3, "seqs": 4, "genome": 5, "init": 0, "batches": 6, "thresholds": 7}


# ---------------------------------------------------------------------------------------------
# Motifs and scoring
# ---------------------------------------------------------------------------------------------


def load_demo_motifs(path: str | os.PathLike | None = None):
    """The planted motifs, in :data:`DEMO_MOTIFS` order, from the bundled ``planted_motifs.meme``."""
    from jaxmotif.io.meme import read_meme

    motifs = {m.name: m for m in read_meme(demo_paths().motifs if path is None else path)}
    missing = [mid for mid, _ in DEMO_MOTIFS if mid not in motifs]
    if missing:
        raise ValueError(f"{path or demo_paths().motifs} lacks the demo motifs {missing}")
    return [motifs[mid] for mid, _ in DEMO_MOTIFS]


def motifs_from_jaspar(release: str = "JASPAR2024"):
    """The :data:`DEMO_MOTIFS` matrices read offline from pyjaspar (what ``planted_motifs.meme`` holds)."""
    from jaxmotif.motifs import jaspar_motifs

    by_id = {m.name: m for m in jaspar_motifs(release, "CORE", "vertebrates")}
    missing = [mid for mid, _ in DEMO_MOTIFS if mid not in by_id]
    if missing:
        raise ValueError(f"{release} lacks the demo matrices {missing}")
    return [by_id[mid] for mid, _ in DEMO_MOTIFS]


def log_odds(pwm: np.ndarray) -> np.ndarray:
    """Log2-odds matrix (w, 4) of a PWM against the GC-0.42 background."""
    p = np.asarray(pwm, dtype=np.float64) + PSEUDO
    p = p / p.sum(axis=1, keepdims=True)
    return np.log2(p / BACKGROUND.reshape(1, 4))


def window_scores(idx: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Best-strand log-odds of every window: idx (N, L) base indices -> (N, L - w + 1)."""
    w = lo.shape[0]
    n_win = idx.shape[1] - w + 1
    rc = lo[::-1, ::-1]  # reverse complement: ACGT reversed is TGCA, the complement order
    fwd = np.zeros((idx.shape[0], n_win))
    rev = np.zeros((idx.shape[0], n_win))
    for k in range(w):
        cols = idx[:, k : k + n_win]
        fwd += lo[k][cols]
        rev += rc[k][cols]
    return np.maximum(fwd, rev)


def sample_sites(pwm: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n sites (n, w) of base indices drawn position by position from the PWM."""
    cum = np.cumsum(np.asarray(pwm, dtype=np.float64), axis=1)
    u = rng.random((n, pwm.shape[0], 1))
    return np.minimum((u > cum[None]).sum(axis=2), 3)


class MotifModel(NamedTuple):
    """A planted motif with its log-odds matrix and score thresholds."""

    name: str
    alt_name: str
    pwm: np.ndarray
    lo: np.ndarray
    scrub: float  # chance matches at or above this are redrawn
    plant: float  # planted sites score at least this


def motif_models(motifs) -> list[MotifModel]:
    rng = np.random.default_rng(SEEDS["thresholds"])
    out = []
    for m in motifs:
        lo = log_odds(m.pwm)
        sites = sample_sites(m.pwm, 20_000, rng)
        scores = lo[np.arange(lo.shape[0])[None, :], sites].sum(axis=1)
        out.append(
            MotifModel(
                m.name,
                m.alt_name or m.name,
                np.asarray(m.pwm),
                lo,
                float(np.percentile(scores, PLANT_QUANTILE)) - SCRUB_MARGIN,
                float(np.percentile(scores, PLANT_QUANTILE)),
            )
        )
    return out


# ---------------------------------------------------------------------------------------------
# Synthetic windows
# ---------------------------------------------------------------------------------------------


class Site(NamedTuple):
    motif: int  # index into DEMO_MOTIFS
    start: int
    strand: str


class SyntheticData(NamedTuple):
    """Synthetic windows.

    Attributes
    ----------
    idx : np.ndarray, shape=(N, L), uint8
        Base indices in A, C, G, T order.
    dnase : np.ndarray, shape=(N, L), float32
    labels : np.ndarray, shape=(N, 7), float32
    present : np.ndarray, shape=(N, 4), bool
        Which :data:`DEMO_MOTIFS` were planted.
    is_open : np.ndarray, shape=(N,), bool
    sites : list of list of Site
        The planted sites of each window.
    """

    idx: np.ndarray
    dnase: np.ndarray
    labels: np.ndarray
    present: np.ndarray
    is_open: np.ndarray
    sites: list

    def onehot(self, rows=slice(None)) -> np.ndarray:
        """One-hot (n, L, 4) float32 of the selected windows."""
        return np.eye(4, dtype=np.float32)[self.idx[rows]]


def _scrub(idx: np.ndarray, models: list[MotifModel], rng: np.random.Generator) -> None:
    """Redraw windows that match a motif by chance, in place, until none is left."""
    for _ in range(100):
        dirty = False
        for m in models:
            w = m.lo.shape[0]
            rows, starts = np.nonzero(window_scores(idx, m.lo) >= m.scrub)
            if rows.size:
                dirty = True
                for r, s in zip(rows.tolist(), starts.tolist(), strict=True):
                    idx[r, s : s + w] = rng.choice(4, size=w, p=BACKGROUND)
        if not dirty:
            return
    raise RuntimeError("could not scrub chance motif matches in 100 rounds")


def _planted_site(m: MotifModel, rng: np.random.Generator) -> np.ndarray:
    w = m.lo.shape[0]
    while True:
        site = sample_sites(m.pwm, 1, rng)[0]
        if m.lo[np.arange(w), site].sum() >= m.plant:
            return site


def _dnase_track(length: int, centers: list[int], is_open: bool, rng: np.random.Generator) -> np.ndarray:
    track = rng.gamma(1.0, 0.15, size=length)
    if is_open:
        x = np.arange(length)
        bump = np.zeros(length)
        for c in centers or [int(rng.integers(0, length))]:
            sd = rng.uniform(40, 100)
            bump += rng.uniform(2.0, 4.0) * np.exp(-0.5 * ((x - c) / sd) ** 2)
        track += bump * rng.gamma(10.0, 0.1, size=length)
    return track.astype(np.float32)


def generate(n: int, *, seed: int, length: int = SEQ_LEN, motifs=None) -> SyntheticData:
    """``n`` synthetic windows, deterministic for ``seed`` (see the module docstring).

    Parameters
    ----------
    n : int
    seed : int
        Seed of the NumPy ``Generator`` that draws everything.
    length : int
    motifs : list of Motif, optional
        Default: the bundled ``planted_motifs.meme`` in :data:`DEMO_MOTIFS` order.
    """
    if n < 1:
        raise ValueError(f"n={n} must be at least 1")
    models = motif_models(load_demo_motifs() if motifs is None else motifs)
    widest = max(m.lo.shape[0] for m in models)
    # The central stretch scales with the window (250-750 of 1000), so short test windows work too.
    region = (length * PLANT_REGION[0] // SEQ_LEN, length * PLANT_REGION[1] // SEQ_LEN)
    if region[1] - region[0] < 2 * COPIES * len(models) * widest:
        raise ValueError(f"length={length} too short to plant {len(models)} motifs of width {widest}")
    rng = np.random.default_rng(seed)
    idx = rng.choice(4, size=(n, length), p=BACKGROUND).astype(np.uint8)
    _scrub(idx, models, rng)
    present = rng.random((n, len(models))) < PLANT_PROB
    is_open = rng.random(n) < OPEN_PROB
    dnase = np.empty((n, length), dtype=np.float32)
    all_sites = []
    for i in range(n):
        taken = np.zeros(length, dtype=bool)
        sites = []
        for j in np.flatnonzero(present[i]).tolist():
            m = models[j]
            w = m.lo.shape[0]
            for _ in range(COPIES):
                while True:
                    start = int(rng.integers(region[0], region[1] - w + 1))
                    if not taken[start : start + w].any():
                        break
                site = _planted_site(m, rng)
                strand = "+" if rng.random() < 0.5 else "-"
                if strand == "-":
                    site = 3 - site[::-1]
                idx[i, start : start + w] = site
                taken[start : start + w] = True
                sites.append(Site(j, start, strand))
        centers = [s.start + models[s.motif].lo.shape[0] // 2 for s in sites]
        dnase[i] = _dnase_track(length, centers, bool(is_open[i]), rng)
        all_sites.append(sites)
    return SyntheticData(idx, dnase, demo_labels(present, is_open), present, is_open, all_sites)


def describe(data: SyntheticData, i: int) -> str:
    """FASTA header fields of window ``i``: planted sites (motif@start strand), open, labels."""
    sites = ";".join(f"{DEMO_MOTIFS[s.motif][1]}@{s.start}{s.strand}" for s in data.sites[i]) or "none"
    labels = "".join(str(int(v)) for v in data.labels[i])
    return f"sites={sites} open={int(data.is_open[i])} labels={labels}"


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum (Mann-Whitney) formula, ties counted half.

    Parameters
    ----------
    scores, labels : np.ndarray, shape=(N,)
        Labels are 0/1; NaN when only one class is present.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # Average ranks over ties (1-based).
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def evaluate(model, data: SyntheticData, *, batch_size: int = 128) -> dict[str, float]:
    """AUROC per output name of ``model`` on ``data``."""
    pred = model(data.onehot(), data.dnase, batch_size=batch_size)
    return {name: auroc(pred[:, k], data.labels[:, k]) for k, name in enumerate(model.config.output_names)}


class TrainSettings(NamedTuple):
    widths: tuple = (16, 16, 16)
    hidden: int = 32
    steps: int = 1500
    batch_size: int = 32
    learning_rate: float = 5e-3
    n_train: int = 10_000
    n_valid: int = 1_000
    aux_weight: float = 1.0


def _aux_init(config, key):
    """Parameters of the training-only motif head: conv1 filters (F) -> outputs (T)."""
    import jax
    import jax.numpy as jnp

    n_filters = config.widths[0]
    scale = 1.0 / np.sqrt(n_filters)
    return {
        "kernel": scale * jax.random.normal(key, (n_filters, config.num_outputs), jnp.float32),
        "bias": jnp.zeros((config.num_outputs,), jnp.float32),
    }


def _aux_logits(params: dict, aux: dict, seq):
    """DeepBind-style head on the shipped model's own conv1: ReLU(conv1) -> max over positions -> linear.

    Only used as an extra training loss (the head is dropped afterwards). The max over positions of
    a single filter's rectified score can only flag a motif if that one 9-wide filter matches it,
    so this loss makes each conv1 filter a motif detector on its own. Without it the network is
    free to spread a motif over the BatchNorm-ReLU'd outputs of all conv1 filters (they are
    followed by another 9-wide convolution), and the trained filters matched none of the planted
    motifs in TomTom.
    """
    import jax
    import jax.numpy as jnp

    from jaxmotif.models.deephistone import conv1d

    q = params["seq_map"]["conv1"]
    # Only windows wholly inside the sequence, as the filters' PWMs are counted.
    act = jax.nn.relu(conv1d(seq, q["kernel"], q["bias"], ((0, 0),)))  # (N, L - w + 1, F)
    pooled = jnp.max(act, axis=1)  # (N, F)
    return pooled @ aux["kernel"] + aux["bias"][None, :]


def _train_forward(params: dict, seq, dnase):
    """Training-mode DeepHistone on a params pure dict: BatchNorm uses batch statistics.

    Returns (logits (N, T), {path: (batch mean, batch E[x^2])} of every BatchNorm input). The
    layer order is the one of :class:`jaxmotif.models.deephistone.DeepHistone`; the test
    ``test_train_forward_matches_eval_with_recalibrated_stats`` checks the two agree.
    """
    import jax
    import jax.numpy as jnp

    from jaxmotif.models.deephistone import DENSE_LAYERS, batchnorm, conv1d, maxpool

    moments = {}

    def bn(x, q, path):
        axes = tuple(range(x.ndim - 1))
        mean = jnp.mean(x, axis=axes)
        sq = jnp.mean(jnp.square(x), axis=axes)
        moments[path] = (mean, sq)
        return batchnorm(x, mean, sq - jnp.square(mean), q["scale"], q["bias"])

    def conv(x, q):
        half = q["kernel"].shape[0] // 2
        return conv1d(x, q["kernel"], q["bias"], ((half, half),))

    def branch(x, q, name):
        x = conv(x, q["conv1"])
        for block, trans in (("block1", "trans1"), ("block2", "trans2")):
            for i in range(DENSE_LAYERS):
                layer = q[block]["layers"][i]
                y = conv(jax.nn.relu(bn(x, layer["norm"], (name, block, "layers", i, "norm"))), layer["conv"])
                x = jnp.concatenate([x, y], axis=-1)
            t = q[trans]
            x = maxpool(conv(jax.nn.relu(bn(x, t["norm"], (name, trans, "norm"))), t["conv"]))
        return x.reshape(x.shape[0], -1)

    flat = jnp.concatenate(
        [branch(seq, params["seq_map"], "seq_map"), branch(dnase[..., None], params["dns_map"], "dns_map")],
        axis=-1,
    )
    head = params["head"]
    h = flat @ head["dense"]["kernel"] + head["dense"]["bias"][None, :]
    h = jax.nn.relu(bn(h, head["norm"], ("head", "norm")))
    return h @ head["out"]["kernel"] + head["out"]["bias"][None, :], moments


def _set_running_stats(params: dict, moments: dict) -> dict:
    """A copy of ``params`` whose BatchNorm mean/var are ``moments`` (path -> (mean, E[x^2]))."""
    import copy

    params = copy.deepcopy(params)
    for path, (mean, sq) in moments.items():
        node = params
        for key in path:
            node = node[key]
        node["mean"] = np.asarray(mean, np.float32)
        node["var"] = np.asarray(np.maximum(sq - np.square(mean), 0.0), np.float32)
    return params


def recalibrate(params: dict, data: SyntheticData, *, rows: int = 2000, chunk: int = 250) -> dict:
    """Running statistics = population mean and variance of every BatchNorm input over ``rows`` windows.

    Moments are averaged over equal chunks (each chunk normalized by its own batch statistics, as in
    training), so the eval-mode model sees the statistics its layers were trained under.
    """
    import jax

    fwd = jax.jit(lambda p, s, d: _train_forward(p, s, d)[1])
    rows = min(rows, data.idx.shape[0]) // chunk * chunk or data.idx.shape[0]
    chunk = min(chunk, rows)
    acc = None
    for start in range(0, rows, chunk):
        sl = slice(start, start + chunk)
        m = jax.device_get(fwd(params, data.onehot(sl), data.dnase[sl]))
        m = {k: (np.asarray(a, np.float64), np.asarray(b, np.float64)) for k, (a, b) in m.items()}
        acc = m if acc is None else {k: (acc[k][0] + m[k][0], acc[k][1] + m[k][1]) for k in acc}
    n = rows // chunk
    return _set_running_stats(params, {k: (a / n, b / n) for k, (a, b) in acc.items()})


def train(
    config,
    data: SyntheticData,
    *,
    steps: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    aux_weight: float = 0.0,
    log_every: int = 100,
    log=print,
):
    """Train a two-branch DeepHistone on ``data``; returns a :class:`jaxmotif.Model`.

    BatchNorm normalizes by batch statistics during training (as PyTorch's train mode); the
    running statistics of the returned model are then set by :func:`recalibrate`. Batches are
    drawn by a NumPy Generator seeded with ``seed + 1``, initial weights from ``jax.random.key(seed)``.
    With ``aux_weight > 0`` the loss adds ``aux_weight`` times the cross-entropy of a training-only
    head on conv1 (:func:`_aux_logits`), which makes each conv1 filter a motif detector; the head is
    not part of the returned model.
    """
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from jaxmotif.models.deephistone import init_deephistone
    from jaxmotif.models.model import Model

    if config.variant != "full":
        raise ValueError(f"the demo trains two-branch models, not variant={config.variant!r}")
    module = init_deephistone(config, key=jax.random.key(seed))
    params = jax.tree.map(jnp.asarray, nnx.to_pure_dict(nnx.state(module)))
    trained = {"model": params, "aux": _aux_init(config, jax.random.fold_in(jax.random.key(seed), 1))}
    schedule = optax.cosine_decay_schedule(learning_rate, steps, alpha=0.05)
    optimizer = optax.adam(schedule)
    opt_state = optimizer.init(trained)

    def loss_fn(t, seq, dnase, y):
        logits, _ = _train_forward(t["model"], seq, dnase)
        loss = jnp.mean(optax.sigmoid_binary_cross_entropy(logits, y))
        if aux_weight:
            aux = _aux_logits(t["model"], t["aux"], seq)
            loss = loss + aux_weight * jnp.mean(optax.sigmoid_binary_cross_entropy(aux, y))
        return loss

    @jax.jit
    def step(p, o, seq, dnase, y):
        # BatchNorm running statistics get zero gradients, so Adam leaves them untouched.
        loss, grads = jax.value_and_grad(loss_fn)(p, seq, dnase, y)
        updates, o = optimizer.update(grads, o, p)
        return optax.apply_updates(p, updates), o, loss

    rng = np.random.default_rng(seed + 1)
    eye = np.eye(4, dtype=np.float32)
    n = data.idx.shape[0]
    batch_size = min(batch_size, n)
    running = []
    t0 = time.perf_counter()
    for i in range(steps):
        rows = rng.choice(n, size=batch_size, replace=False)
        trained, opt_state, loss = step(
            trained, opt_state, eye[data.idx[rows]], data.dnase[rows], data.labels[rows]
        )
        running.append(loss)
        if log is not None and ((i + 1) % log_every == 0 or i + 1 == steps):
            mean = float(np.mean(jax.device_get(running)))
            running = []
            log(f"step {i + 1}/{steps}  loss {mean:.4f}  {time.perf_counter() - t0:.0f} s")
    params = recalibrate(jax.device_get(trained["model"]), data)
    return Model.from_params(config, params)


# ---------------------------------------------------------------------------------------------
# Writing the bundled files
# ---------------------------------------------------------------------------------------------


def _fasta_text(records) -> str:
    lines = []
    for header, seq in records:
        lines.append(f">{header}")
        lines.extend(seq[i : i + 80] for i in range(0, len(seq), 80))
    return "\n".join(lines) + "\n"


def _decode(idx: np.ndarray) -> str:
    return np.frombuffer(b"ACGT", dtype=np.uint8)[idx].tobytes().decode("ascii")


def write_genome(out_dir: Path, motifs) -> dict:
    """genome.fa, dnase.bw, planted_sites.bed, regions.bed: 1000-bp synthetic tiles laid end to end."""
    from jaxmotif.io.bigwig import write_bigwig

    models = motif_models(motifs)
    records, tracks, site_lines = [], [], []
    seed = SEEDS["genome"]
    for c, (chrom, size) in enumerate(GENOME_CHROMS.items()):
        data = generate(size // SEQ_LEN, seed=seed * 100 + c, motifs=motifs)
        records.append((chrom, "".join(_decode(row) for row in data.idx)))
        tracks.append((chrom, 0, data.dnase.reshape(-1)))
        planted = sorted(
            (t * SEQ_LEN + s.start, models[s.motif], s.strand)
            for t, sites in enumerate(data.sites)
            for s in sites
        )
        for start, m, strand in planted:
            site_lines.append(f"{chrom}\t{start}\t{start + m.lo.shape[0]}\t{m.alt_name}\t0\t{strand}")
    (out_dir / "genome.fa").write_text(_fasta_text(records))
    write_bigwig(out_dir / "dnase.bw", GENOME_CHROMS, tracks)
    (out_dir / "planted_sites.bed").write_text("\n".join(site_lines) + "\n")
    # An ordinary window, an odd-sized one, one shorter than the model's L, and windows touching
    # both ends of chrB: the mutation-map demo must center, pad or tile each of them.
    regions = [
        ("chrA", 2000, 3000, "tile"),
        ("chrA", 10_250, 11_487, "odd_1237bp"),
        ("chrA", 20_100, 20_700, "short_600bp"),
        ("chrB", 0, 1000, "chrB_start"),
        ("chrB", 11_300, 12_000, "chrB_end_700bp"),
    ]
    (out_dir / "regions.bed").write_text("".join(f"{c}\t{s}\t{e}\t{n}\n" for c, s, e, n in regions))
    return {"chroms": GENOME_CHROMS, "sites": len(site_lines), "regions": len(regions)}


def build(out_dir: Path, settings: TrainSettings, *, log=print, motifs=None) -> dict:
    """Generate the data, train, evaluate and write every demo file into ``out_dir`` (must be empty)."""
    from jaxmotif.io.meme import write_meme
    from jaxmotif.models.checkpoint import save_model
    from jaxmotif.models.deephistone import DeepHistoneConfig

    paths = demo_paths(out_dir)
    motifs = motifs_from_jaspar() if motifs is None else motifs
    write_meme(paths.motifs, motifs)
    t0 = time.perf_counter()
    train_data = generate(settings.n_train, seed=SEEDS["train"], motifs=motifs)
    valid = generate(settings.n_valid, seed=SEEDS["valid"], motifs=motifs)
    log(f"generated {settings.n_train} + {settings.n_valid} windows in {time.perf_counter() - t0:.0f} s")
    config = DeepHistoneConfig(
        variant="full", seq_len=SEQ_LEN, widths=settings.widths, hidden=settings.hidden
    )
    t0 = time.perf_counter()
    model = train(
        config,
        train_data,
        steps=settings.steps,
        batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        seed=SEEDS["init"],
        aux_weight=settings.aux_weight,
        log=log,
        log_every=max(1, settings.steps // 20),
    )
    train_s = time.perf_counter() - t0
    scores = evaluate(model, valid)
    log("held-out AUROC: " + "  ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    save_model(model, paths.model, overwrite=True)

    held = generate(200, seed=SEEDS["seqs"], motifs=motifs)
    seq_records = [(f"demo_{i:04d} {describe(held, i)}", _decode(held.idx[i])) for i in range(200)]
    paths.seqs.write_text(_fasta_text(seq_records))
    np.save(paths.seqs_dnase, held.dnase)
    genome = write_genome(out_dir, motifs)

    metrics = {
        "auroc_heldout": scores,
        "heldout": {"n": settings.n_valid, "seed": SEEDS["valid"]},
        "planted": DEMO_PLANTED,
        "motifs": [{"id": mid, "name": name} for mid, name in DEMO_MOTIFS],
        "training": {
            **settings._asdict(),
            "widths": list(settings.widths),
            "optimizer": "adam, cosine decay to 5%",
            "loss": "binary cross-entropy on sigmoid outputs",
            "batchnorm": "batch statistics in training; running stats from 2000 training windows",
            "aux_head": "DeepBind-style head on conv1 (relu, max over positions, linear), loss weight "
            "aux_weight, dropped after training",
            "seconds": round(train_s, 1),
            "device": "2-core CPU" if os.cpu_count() == 2 else f"{os.cpu_count()}-core CPU",
        },
        "data": {
            "seq_len": SEQ_LEN,
            "gc": GC,
            "plant_prob": PLANT_PROB,
            "plant_region": list(PLANT_REGION),
            "copies": COPIES,
            "open_prob": OPEN_PROB,
        },
        "seeds": SEEDS,
        "genome": genome,
        "regenerate": "python -m jaxmotif.demo_training",
    }
    paths.metrics.write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jaxmotif.demo_training",
        description="Regenerate the bundled demo model and data (deterministic; ~10 min on 2 CPU cores).",
        epilog="example: nice python -m jaxmotif.demo_training            # rewrites jaxmotif/data/demo\n"
        "         python -m jaxmotif.demo_training --out /tmp/demo --steps 200",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default: the bundled demo folder)"
    )
    parser.add_argument(
        "--steps", type=int, default=TrainSettings().steps, help="Adam steps (default %(default)s)"
    )
    args = parser.parse_args(argv)
    if args.steps < 1:
        print(f"error: --steps={args.steps} must be at least 1", file=sys.stderr)
        return 1
    out = (demo_paths().root if args.out is None else args.out).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    # Build into a sibling temp folder and swap it in at the end: nothing half-written is left behind.
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        build(tmp, TrainSettings(steps=args.steps))
        # mkdtemp (here and in save_model) makes folders private; package data must be readable.
        for folder in [tmp, *(p for p in tmp.rglob("*") if p.is_dir())]:
            os.chmod(folder, 0o755)
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
