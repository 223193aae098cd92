"""conv1 PWMs (seed method 7) against a NumPy re-implementation of the seed's get_PWM; the CLI end to end."""

import csv
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
import torch
from conftest import random_onehot, torch_pair
from flax import nnx

import jaxmotif
from jaxmotif.filters import Conv1PWMs, conv1_pwms, conv1_weights, filter_motifs
from jaxmotif.models.model import Model

WIDTHS = (8, 8, 8)
# JASPAR 2024 CORE vertebrate matrices whose 9-bp core, planted and recovered, TomTom names first
# with a wide margin over their family (checked once over 26 candidates).
PLANTED = ("MA0138.3", "MA0106.3", "MA0083.3", "MA0060.4")  # REST, TP53, SRF, NFYA


# ---------------------------------------------------------------------------------------------
# The seed's get_PWM.py in plain NumPy: its loops over filters and sites, its conv output (the
# PyTorch model's get_conv1), its (4, 9) weight layout. Corrected: windows not wholly inside the
# sequence are skipped (the seed kept zero rows), and a filter without sites gives None, not NaN.
# ---------------------------------------------------------------------------------------------


def seed_get_pwm(net, x, factor, *, alignment, max_over):
    weights = net.seq_map.conv1[0].weight.detach().numpy().squeeze(1)  # (F, 4, 9), as the seed
    bias = net.seq_map.conv1[0].bias.detach().numpy()
    with torch.no_grad():
        xt = torch.tensor(np.ascontiguousarray(x.transpose(0, 2, 1)))  # (N, 4, L): transpose, never reshape
        conv_out = net.seq_map.get_conv1(xt).numpy().squeeze(2)  # (N, F, L)
    return seed_rule(weights, bias, conv_out, x, factor, alignment=alignment, max_over=max_over)


def seed_rule(weights, bias, conv_out, x, factor, *, alignment, max_over, mode="seed"):
    n_filters, _, width = weights.shape
    length = x.shape[1]
    out = {"counts": [], "sites": [], "edge": [], "pwms": [], "thresholds": []}
    for i in range(n_filters):
        one_filter_weight = weights[i]  # (4, 9)
        if mode == "seed":
            # The seed: np.max(one_filter_weight, 1), per base the max over positions; "bases" is
            # the best attainable score, per position the max over bases.
            best = np.sum(np.max(one_filter_weight, 1 if max_over == "positions" else 0))
            threshold = (best + bias[i]) * factor
            positions = np.where(conv_out[:, i, :] - bias[i] >= threshold)
        else:
            act = conv_out[:, i, :]
            threshold = 0.5 * act[:, width // 2 : length - width // 2].max()
            positions = np.where(act > threshold)
        counts = np.zeros((width, 4))
        sites = edge = 0
        for n, j in zip(*positions, strict=True):
            start = j - width // 2 if alignment == "filter" else j
            if start < 0 or start + width > length:
                edge += 1
                continue
            counts += x[n, start : start + width]
            sites += 1
        pwm = None
        if sites:
            pwm_matrix = counts / sites
            pwm = pwm_matrix / pwm_matrix.sum(axis=1, keepdims=True)  # the seed's per-position normalization
        for key, value in zip(out, (counts, sites, edge, pwm, threshold), strict=True):
            out[key].append(value)
    return out


def check_against_seed(result: Conv1PWMs, ref):
    np.testing.assert_array_equal(result.sites, ref["sites"])
    np.testing.assert_array_equal(result.edge_sites_excluded, ref["edge"])
    np.testing.assert_array_equal(result.counts, np.stack(ref["counts"]))
    np.testing.assert_allclose(result.thresholds, ref["thresholds"], rtol=1e-5, atol=1e-6)
    assert list(result.filters_with_sites) == [i for i, s in enumerate(ref["sites"]) if s]
    for i, pwm in enumerate(ref["pwms"]):
        if pwm is None:
            assert np.isnan(result.pwms[i]).all()
        else:
            np.testing.assert_allclose(result.pwms[i], pwm, rtol=1e-6, atol=1e-7)


@pytest.fixture(scope="module")
def pair():
    return torch_pair("dna", seq_len=48, widths=(16, 8, 8), hidden=10, seed=1)


@pytest.mark.parametrize("alignment", ["filter", "seed"])
@pytest.mark.parametrize("max_over", ["bases", "positions"])
@pytest.mark.parametrize("factor", [0.5, 0.75])
def test_conv1_pwms_equal_seed_get_pwm(pair, alignment, max_over, factor):
    net, model = pair
    x = random_onehot(np.random.default_rng(2), 80, 48, n_frac=0.05)
    result = conv1_pwms(
        model, x, threshold_factor=factor, alignment=alignment, max_over=max_over, batch_size=16
    )
    ref = seed_get_pwm(net, x, factor, alignment=alignment, max_over=max_over)
    assert sum(ref["sites"]) > 20 and sum(ref["edge"]) > 0  # the comparison exercises both paths
    check_against_seed(result, ref)


@pytest.mark.parametrize("alignment", ["filter", "seed"])
def test_max_activation_mode_equals_reference(pair, alignment):
    net, model = pair
    x = random_onehot(np.random.default_rng(3), 30, 48)
    result = conv1_pwms(model, x, mode="max-activation", alignment=alignment, batch_size=7)
    weights = net.seq_map.conv1[0].weight.detach().numpy().squeeze(1)
    with torch.no_grad():
        conv_out = net.seq_map.get_conv1(torch.tensor(np.ascontiguousarray(x.transpose(0, 2, 1)))).numpy()
    ref = seed_rule(
        weights, None, conv_out.squeeze(2), x, None, alignment=alignment, max_over=None, mode="max"
    )
    check_against_seed(result, ref)


def test_chunking_does_not_change_counts(pair):
    _, model = pair
    x = random_onehot(np.random.default_rng(4), 23, 48)
    whole = conv1_pwms(model, x, threshold_factor=0.6, batch_size=64)
    for batch_size in (1, 5):  # 23 rows: padded tails of 2 and 0
        chunked = conv1_pwms(model, x, threshold_factor=0.6, batch_size=batch_size)
        for a, b in zip(whole[:-1], chunked[:-1], strict=True):
            np.testing.assert_array_equal(a, b)


def test_filter_alignment_recovers_the_motif_and_seed_alignment_shifts_it_by_four():
    motif = np.array([0, 1, 2, 3, 3, 2, 0, 1, 0])  # ACGTTGACA
    kernel = np.eye(4, dtype=np.float32)[motif][:, :, None]  # (9, 4, 1): score 9 only on an exact match
    rng = np.random.default_rng(9)
    idx = rng.integers(0, 4, (30, 60))
    for row in idx:
        start = rng.integers(0, 60 - 9 - 4)
        row[start : start + 9] = motif
    x = np.eye(4, dtype=np.float32)[idx]
    fixed = conv1_pwms((kernel, np.zeros(1, np.float32)), x, threshold_factor=1.0)
    seed = conv1_pwms((kernel, np.zeros(1, np.float32)), x, threshold_factor=1.0, alignment="seed")
    assert fixed.sites[0] >= 30 and fixed.edge_sites_excluded[0] == 0
    np.testing.assert_array_equal(fixed.pwms[0], np.eye(4)[motif])  # exactly the motif the filter encodes
    # The seed's window starts at the centre of the filter's: its first 5 rows are the motif's last 5.
    np.testing.assert_array_equal(seed.pwms[0][:5], np.eye(4)[motif[4:]])
    assert seed.sites[0] == fixed.sites[0]  # sites start <= L - 13, so the seed's window stays inside


def test_filter_without_sites_is_left_out_not_nan(pair):
    _, model = pair
    kernel, bias = conv1_weights(model)
    bias = bias.copy()
    bias[3] = 1e3  # threshold 0.9 * (best + 1000) exceeds every score: no site
    x = random_onehot(np.random.default_rng(6), 20, 48)
    result = conv1_pwms((kernel, bias), x, threshold_factor=0.9)
    assert result.sites[3] == 0 and 3 not in result.filters_with_sites
    assert np.isnan(result.pwms[3]).all()
    with_sites = result.pwms[result.filters_with_sites]
    assert np.isfinite(with_sites).all()
    np.testing.assert_allclose(with_sites.sum(-1), 1.0, rtol=1e-6)
    names = [m.name for m in filter_motifs(result)]
    assert "filter4" not in names and names == [f"filter{i + 1}" for i in result.filters_with_sites]


def test_other_alphabet_gives_acgt_motifs():
    """A model whose alphabet is TGCA: counts come back in its order, MEME motifs in A, C, G, T."""
    cfg = jaxmotif.DeepHistoneConfig(
        variant="dna",
        seq_len=32,
        num_outputs=1,
        widths=WIDTHS,
        hidden=8,
        output_names=("y",),
        alphabet="TGCA",
    )
    model = Model.random(cfg, key=jax.random.key(0))
    x = random_onehot(np.random.default_rng(7), 20, 32)
    result = conv1_pwms(model, x, threshold_factor=0.5)
    assert result.alphabet == "TGCA"
    motif = filter_motifs(result)[0]
    i = result.filters_with_sites[0]
    np.testing.assert_allclose(motif.pwm, result.pwms[i][:, [3, 2, 1, 0]])


def test_bad_inputs_name_the_value(pair):
    _, model = pair
    x = random_onehot(np.random.default_rng(0), 2, 48)
    with pytest.raises(ValueError, match="mode='best'"):
        conv1_pwms(model, x, mode="best")
    with pytest.raises(ValueError, match="alignment='left'"):
        conv1_pwms(model, x, alignment="left")
    with pytest.raises(ValueError, match=r"\(N, L, 4\)"):
        conv1_pwms(model, x[..., :3])
    with pytest.raises(ValueError, match="shorter than the conv1 width 9"):
        conv1_pwms(model, x[:, :5])


# ---------------------------------------------------------------------------------------------
# Hand-set filters encoding JASPAR motifs, planted sequences, the CLI end to end.
# ---------------------------------------------------------------------------------------------


def planted_setup(tmp_path, motif_ids, seed=0, n_per_motif=40, length=120):
    """A checkpoint whose first conv1 filters are log-odds of ``motif_ids``; a FASTA with them planted."""
    from jaxmotif.io.meme import trim_by_information
    from jaxmotif.motifs import jaspar_motifs

    by_id = {m.name: m for m in jaspar_motifs("JASPAR2024", "CORE", "vertebrates")}
    rng = np.random.default_rng(seed)
    cfg = jaxmotif.DeepHistoneConfig(
        variant="dna", seq_len=length, num_outputs=1, widths=WIDTHS, hidden=8, output_names=("y",)
    )
    model = Model.random(cfg, key=jax.random.key(seed))
    params = jax.tree.map(np.asarray, nnx.to_pure_dict(model.params))
    kernel = params["seq_map"]["conv1"]["kernel"].copy()  # (9, 4, F)
    kernel[:, :, len(motif_ids) :] *= 0.1  # the other filters: weak random ones
    for f, matrix_id in enumerate(motif_ids):
        pwm = by_id[matrix_id].pwm
        start, end = trim_by_information(pwm, 9, 9)
        core = np.full((9, 4), 0.25)
        core[: end - start] = pwm[start:end]
        kernel[:, :, f] = np.log2((core + 0.01) / 1.04 / 0.25)
    params["seq_map"]["conv1"]["kernel"] = kernel
    params["seq_map"]["conv1"]["bias"] = np.zeros_like(params["seq_map"]["conv1"]["bias"])
    model = Model.from_params(cfg, params)
    jaxmotif.save_model(model, tmp_path / "ckpt")

    idx = rng.integers(0, 4, (n_per_motif * len(motif_ids), length))
    for r in range(idx.shape[0]):
        pwm = by_id[motif_ids[r % len(motif_ids)]].pwm
        site = np.array([rng.choice(4, p=row / row.sum()) for row in pwm])
        pos = rng.integers(0, length - len(site))
        idx[r, pos : pos + len(site)] = site
    with open(tmp_path / "seqs.fa", "w") as fh:
        for r, row in enumerate(idx):
            fh.write(f">s{r}\n{''.join('ACGT'[i] for i in row)}\n")
    return model, idx


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    pytest.importorskip("memelite")
    pytest.importorskip("pyjaspar")
    from jaxmotif.cli.filters import main

    tmp = tmp_path_factory.mktemp("filters_cli")
    model, _ = planted_setup(tmp, PLANTED)
    out = tmp / "out"
    rc = main(
        [
            "--checkpoint",
            str(tmp / "ckpt"),
            "--fasta",
            str(tmp / "seqs.fa"),
            "--out",
            str(out),
            "--threshold-factor",
            "0.8",
            "--batch-size",
            "64",
        ]
    )
    assert rc == 0
    return tmp, out, model


def read_tsv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def test_planted_jaspar_motifs_are_the_top_tomtom_matches(cli_run):
    _, out, _ = cli_run
    rows = read_tsv(out / "tomtom.tsv")
    assert list(rows[0]) == [
        "filter",
        "nsites",
        "information_content",
        "rank",
        "target_id",
        "target_name",
        "p_value",
        "e_value",
        "q_value",
        "offset",
        "orientation",
    ]
    top = {r["filter"]: r["target_id"] for r in rows if r["rank"] == "1"}
    for f, matrix_id in enumerate(PLANTED):
        assert top[f"filter{f + 1}"] == matrix_id
    per_filter = {}
    for r in rows:
        per_filter.setdefault(r["filter"], []).append(int(r["rank"]))
    assert all(ranks == [1, 2, 3, 4, 5] for ranks in per_filter.values())
    assert (out / "logos.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_filters_meme_reads_back_with_memelite(cli_run):
    from memelite.io import read_meme as memelite_read_meme

    _, out, _ = cli_run
    saved = np.load(out / "filters.npz")
    text = (out / "filters.meme").read_text()
    assert text.startswith("MEME version") and "ALPHABET= ACGT" in text and "strands: + -" in text
    motifs = memelite_read_meme(str(out / "filters.meme"))
    expected = [f"filter{i + 1}" for i in saved["filters_with_sites"]]
    assert [name.split()[0] for name in motifs] == expected
    for (name, matrix), i in zip(motifs.items(), saved["filters_with_sites"], strict=True):
        pwm = np.asarray(matrix).T  # memelite: (4, w)
        assert pwm.shape == (9, 4)
        np.testing.assert_allclose(pwm, saved["pwms"][i], atol=1e-6)
        header = f"MOTIF {name.split()[0]}\nletter-probability matrix: alength= 4 w= 9"
        assert f"{header} nsites= {saved['sites'][i]} " in text
    assert np.isnan(saved["pwms"][saved["sites"] == 0]).all()


def test_cli_output_equals_library_call(cli_run):
    tmp, out, model = cli_run
    from jaxmotif.io.fasta import read_fasta
    from jaxmotif.sequence import one_hot_batch

    x = one_hot_batch([r.sequence for r in read_fasta(tmp / "seqs.fa")])
    result = conv1_pwms(model, x, threshold_factor=0.8)
    saved = np.load(out / "filters.npz")
    np.testing.assert_array_equal(saved["counts"], result.counts)
    np.testing.assert_array_equal(saved["edge_sites_excluded"], result.edge_sites_excluded)


def test_cli_errors_are_one_line(tmp_path, capsys, cli_run):
    from jaxmotif.cli.filters import main

    tmp, _, _ = cli_run
    cases = [
        (["--checkpoint", str(tmp / "ckpt"), "--fasta", str(tmp / "missing.fa")], "missing.fa"),
        (["--checkpoint", str(tmp / "nope"), "--fasta", str(tmp / "seqs.fa")], "nope"),
        (["--checkpoint", str(tmp / "ckpt")], "--fasta"),
        (
            ["--checkpoint", str(tmp / "ckpt"), "--fasta", str(tmp / "seqs.fa"), "--threshold-factor", "nan"],
            "nan",
        ),
        (
            ["--checkpoint", str(tmp / "ckpt"), "--fasta", str(tmp / "seqs.fa"), "--motif-db", "JASPAR1999"],
            "JASPAR",
        ),
    ]
    for args, fragment in cases:
        out = tmp_path / "o"
        assert main([*args, "--out", str(out)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: ") and fragment in err[-1], err
        assert not out.exists()  # nothing half-written


def test_help_has_an_example(capsys):
    from jaxmotif.cli.filters import main

    with pytest.raises(SystemExit):
        main(["--help"])
    assert "example:" in capsys.readouterr().out


def test_sharded_over_8_devices_equals_one(tmp_path, pair):
    _, model = pair
    x = random_onehot(np.random.default_rng(8), 13, 48)
    kernel, bias = conv1_weights(model)
    idx = (np.argmax(x, -1) - (x.sum(-1) == 0)).astype(np.int8)  # the same sequences as base indices
    np.savez(tmp_path / "in.npz", x=x, idx=idx, kernel=kernel, bias=bias)
    code = textwrap.dedent(f"""
        import jax, numpy as np
        from jaxmotif.filters import conv1_pwms
        assert len(jax.local_devices()) == 8
        d = np.load({str(tmp_path / "in.npz")!r})
        a = conv1_pwms((d["kernel"], d["bias"]), d["x"], threshold_factor=0.6, batch_size=8)
        b = conv1_pwms((d["kernel"], d["bias"]), d["x"], mode="max-activation", batch_size=8)
        c = conv1_pwms((d["kernel"], d["bias"]), d["idx"], mode="max-activation", batch_size=8)
        np.savez({str(tmp_path / "out.npz")!r}, a=a.counts, b=b.counts, c=c.counts, ea=a.edge_sites_excluded)
    """)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = np.load(tmp_path / "out.npz")
    np.testing.assert_array_equal(got["a"], conv1_pwms((kernel, bias), x, threshold_factor=0.6).counts)
    np.testing.assert_array_equal(
        got["ea"], conv1_pwms((kernel, bias), x, threshold_factor=0.6).edge_sites_excluded
    )
    np.testing.assert_array_equal(got["b"], conv1_pwms((kernel, bias), x, mode="max-activation").counts)
    np.testing.assert_array_equal(got["c"], got["b"])  # int8 indices sharded: the same counts


def test_uint8_one_hot_gives_the_same_counts():
    rng = np.random.default_rng(11)
    model = jaxmotif.Model.random(
        jaxmotif.DeepHistoneConfig(
            variant="dna", seq_len=64, widths=(8, 8, 8), hidden=8, num_outputs=2, output_names=("a", "b")
        ),
        key=jax.random.key(3),
    )
    seqs = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (9, 64))]
    seqs[:, 5] = 0.0  # an N column
    as_float = conv1_pwms(model, seqs, threshold_factor=0.5, batch_size=4)
    as_uint8 = conv1_pwms(model, seqs.astype(np.uint8), threshold_factor=0.5, batch_size=4)
    idx = np.argmax(seqs, -1).astype(np.int8) - (seqs.sum(-1) == 0).astype(np.int8)  # -1 for the N column
    as_int8 = conv1_pwms(model, idx, threshold_factor=0.5, batch_size=4)
    assert as_float.sites.sum() > 0
    for other in (as_uint8, as_int8):
        np.testing.assert_array_equal(other.counts, as_float.counts)
        np.testing.assert_array_equal(other.sites, as_float.sites)
        np.testing.assert_array_equal(other.edge_sites_excluded, as_float.edge_sites_excluded)


@pytest.mark.parametrize(
    ("padding", "width", "alignment", "mode"),
    [
        ("same", 9, "filter", "seed"),
        ("same", 9, "seed", "max-activation"),
        ("valid", 8, "filter", "max-activation"),  # even K, unpadded (DeepSEA/Beluga-like)
        ("valid", 19, "seed", "seed"),  # Basset's width
    ],
)
def test_int8_indices_equal_uint8_and_float32_one_hot(padding, width, alignment, mode):
    """(N, L) int8 base indices (N as -1 and as 4), uint8 and float32 one-hot: identical results."""
    rng = np.random.default_rng(width)
    kernel = rng.normal(size=(width, 4, 6)).astype(np.float32)
    bias = rng.normal(size=6).astype(np.float32)
    idx = rng.integers(0, 4, (11, 40)).astype(np.int8)
    idx[rng.random(idx.shape) < 0.08] = -1  # scattered Ns
    idx[2, :7] = 4  # another out-of-range code is an N as well, at the left edge
    idx[3] = -1  # a whole N row
    onehot = np.eye(4, dtype=np.float32)[np.clip(idx, 0, 3)] * ((idx >= 0) & (idx < 4))[..., None]
    weights = (kernel, bias, padding)
    kwargs = dict(threshold_factor=0.4, mode=mode, alignment=alignment, batch_size=4)  # tail of 3 rows
    ref = conv1_pwms(weights, onehot, **kwargs)
    assert ref.sites.sum() > 20
    if padding == "same":
        assert ref.edge_sites_excluded.sum() > 0  # edge windows are exercised
    for x in (onehot.astype(np.uint8), idx):
        got = conv1_pwms(weights, x, **kwargs)
        for name in ("counts", "sites", "thresholds", "edge_sites_excluded", "filters_with_sites"):
            np.testing.assert_array_equal(getattr(got, name), getattr(ref, name), err_msg=name)
        np.testing.assert_array_equal(got.pwms, ref.pwms)  # NaN rows in the same places


def test_bad_index_input_is_one_line_value_error(pair):
    _, model = pair
    idx = np.zeros((3, 48), np.int8)
    with pytest.raises(ValueError, match=r"int8 seqs shape \(3, 48, 4\) must be \(N, L\) base indices"):
        conv1_pwms(model, np.zeros((3, 48, 4), np.int8))
    with pytest.raises(ValueError, match=r"int8 seqs shape \(48,\)"):
        conv1_pwms(model, idx[0])
    with pytest.raises(ValueError, match="must be .N, L, 4. .* int8 base indices .got int32."):
        conv1_pwms(model, idx.astype(np.int32))  # indices must be int8
    with pytest.raises(ValueError, match="seqs dtype <U1"):
        conv1_pwms(model, np.full((3, 48), "A"))
    with pytest.raises(ValueError, match="shorter than the conv1 width 9"):
        conv1_pwms(model, idx[:, :5])
    with pytest.raises(ValueError) as info:
        conv1_pwms(model, np.zeros((2, 48, 4), np.int8))
    assert "\n" not in str(info.value)
