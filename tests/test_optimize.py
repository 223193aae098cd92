"""Class optimization (seed method 6): objective, keys, batching invariance, PWMs and the CLI."""

import csv
import logging
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from conftest import torch_pair

import jaxmotif
from jaxmotif.models.model import Model
from jaxmotif.optimize import (
    class_inputs,
    class_optimization_kernel,
    deepmotif_pwm,
    motif_window,
    row_keys,
)

SMALL = dict(seq_len=32, widths=(8, 8, 8), hidden=12)


@pytest.fixture(scope="module")
def full_model():
    return Model.random(jaxmotif.DeepHistoneConfig(variant="full", **SMALL), key=jax.random.key(0))


@pytest.fixture(scope="module")
def run(full_model):
    return class_inputs(full_model, targets=[1, 4], restarts=3, steps=40, key=jax.random.key(7))


def test_raises_the_target_score(run):
    assert run.inputs.shape == (2, 3, 32, 4) and run.scores.shape == (2, 3)
    assert (run.scores > run.initial_scores + 0.05).all()
    np.testing.assert_allclose(run.score_trace[..., 0], run.initial_scores, rtol=1e-5, atol=1e-6)
    # rmsprop ascent on a smooth objective: the score trace ends near its best value.
    assert (run.score_trace[..., -1] >= run.score_trace.max(axis=-1) - 0.05).all()


def test_start_is_the_documented_key_derivation(full_model, run):
    """Row (target t, restart r) starts at 0.01 * normal(fold_in(key, t * 100003 + r))."""
    keys = [jax.random.fold_in(jax.random.key(7), t * 100003 + r) for t in (1, 4) for r in range(3)]
    np.testing.assert_array_equal(
        jax.random.key_data(row_keys(jax.random.key(7), [1, 4], 3)), jax.random.key_data(jnp.stack(keys))
    )
    x0 = np.stack([np.asarray(jax.random.normal(k, (32, 4))) * 0.01 for k in keys])
    logits = full_model.apply_logits(full_model.params, x0, np.zeros((6, 32), np.float32))
    expected = np.asarray(logits)[np.arange(6), np.repeat([1, 4], 3)].reshape(2, 3)
    np.testing.assert_allclose(run.initial_scores, expected, rtol=1e-5, atol=1e-6)


def test_same_key_same_result_other_key_differs(full_model, run):
    again = class_inputs(full_model, targets=[1, 4], restarts=3, steps=40, key=jax.random.key(7))
    for a, b in zip(run[:-1], again[:-1], strict=True):
        np.testing.assert_array_equal(a, b)
    other = class_inputs(full_model, targets=[1, 4], restarts=3, steps=40, key=jax.random.key(8))
    assert np.abs(other.inputs - run.inputs).max() > 1e-3


def test_one_call_equals_separate_calls(full_model, run):
    # One target per call, with more restarts: its first restarts are the rows of the joint call
    # (the same per-row keys). Six rows as in the joint call, so nothing recompiles.
    for i, t in enumerate((1, 4)):
        alone = class_inputs(full_model, targets=t, restarts=6, steps=40, key=jax.random.key(7))
        np.testing.assert_allclose(alone.inputs[0, :3], run.inputs[i], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(alone.scores[0, :3], run.scores[i], rtol=1e-5, atol=1e-6)
    # Output names work as targets, in any order.
    names = [full_model.output_names[4], full_model.output_names[1]]
    swapped = class_inputs(full_model, targets=names, restarts=3, steps=40, key=jax.random.key(7))
    assert list(swapped.targets) == [4, 1]
    np.testing.assert_allclose(swapped.inputs[::-1], run.inputs, rtol=1e-5, atol=1e-6)


def test_pwms_are_deepmotif_pwms_of_the_best_restart(run):
    assert (run.best_restart == run.scores.argmax(axis=1)).all()
    best = run.inputs[np.arange(2), run.best_restart]
    np.testing.assert_allclose(run.pwms, deepmotif_pwm(best))
    np.testing.assert_allclose(run.pwms.sum(-1), 1.0, rtol=1e-9)
    assert (run.pwms >= 0.01 / 1.04 - 1e-12).all()


def test_deepmotif_pwm_by_hand():
    x = np.array([[2.0, -1.0, 1.0, 1.0], [-1.0, -2.0, -0.5, -3.0]])
    # Clamp at 0 -> [2, 0, 1, 1] / 4; + 0.01 and renormalize. An all-negative row becomes uniform.
    first = (np.array([0.5, 0.0, 0.25, 0.25]) + 0.01) / 1.04
    np.testing.assert_allclose(deepmotif_pwm(x), [first, [0.25] * 4])


def test_motif_window_picks_the_strong_positions():
    """DeepMotif's PWM makes near-zero noise look conserved; the window follows the magnitudes."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4)) * 0.02  # what rmsprop leaves at positions the model ignores
    x[23:35] = np.eye(4)[rng.integers(0, 4, 12)] * 5.0 - 1.0  # a 12-bp motif the model wants
    assert motif_window(x, 9, 20) == (23, 35)
    assert motif_window(x, 9, 10)[1] - motif_window(x, 9, 10)[0] == 10
    assert motif_window(np.full((30, 4), -1.0), 9, 20) == (0, 9)  # nothing positive: uniform, leftmost


def test_kernel_equals_torch_gradient_ascent():
    """Five SGD steps of S_c(X) - l2 ||X||^2 on the PyTorch net, against the kernel with optax.sgd."""
    net, model = torch_pair("dna", seq_len=32, widths=(8, 8, 8), hidden=12, outputs=3, activation="none")
    rng = np.random.default_rng(0)
    x0 = (rng.normal(size=(4, 32, 4)) * 0.1).astype(np.float32)
    targets = np.array([0, 2, 1, 2], np.int32)
    lr, l2 = 0.1, 0.009
    xt = torch.tensor(np.ascontiguousarray(x0.transpose(0, 2, 1)), requires_grad=True)
    opt = torch.optim.SGD([xt], lr=lr, maximize=True)
    for _ in range(5):
        opt.zero_grad()
        out = net(xt)
        objective = out[torch.arange(4), torch.tensor(targets, dtype=torch.long)] - l2 * (xt**2).sum(
            dim=(1, 2)
        )
        objective.sum().backward()
        opt.step()
    with torch.no_grad():
        final = net(xt)[torch.arange(4), torch.tensor(targets, dtype=torch.long)].numpy()
    x, scores, trace = jax.jit(
        lambda p, z, t: class_optimization_kernel(
            model.apply_logits,
            p,
            z,
            t,
            None,
            steps=5,
            optimizer=optax.sgd(lr),
            l2=l2,
            parameterization="direct",
        )
    )(model.params, x0, targets)
    np.testing.assert_allclose(np.asarray(x), xt.detach().numpy().transpose(0, 2, 1), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(scores), final, rtol=1e-4, atol=1e-5)
    assert trace.shape == (4, 5)


def test_softmax_parameterization_keeps_distributions():
    cfg = jaxmotif.DeepHistoneConfig(variant="dna", num_outputs=1, output_names=("y",), **SMALL)
    dna = Model.random(cfg, key=jax.random.key(0))  # also the DNA-only path: no DNase input at all
    res = class_inputs(dna, restarts=2, steps=30, key=jax.random.key(1), parameterization="softmax")
    assert res.inputs.shape == (1, 2, 32, 4)
    assert (res.inputs >= 0).all()
    np.testing.assert_allclose(res.inputs.sum(-1), 1.0, rtol=1e-5)
    assert (res.scores > res.initial_scores).all()
    with pytest.raises(ValueError, match="DNA-only"):
        class_inputs(dna, restarts=1, steps=1, key=jax.random.key(0), dnase=1.0)


def test_dnase_choices(full_model, run):
    kw = dict(targets=[1, 4], restarts=3, steps=40, key=jax.random.key(7))  # the shapes of `run`
    const = class_inputs(full_model, dnase=1.5, **kw)
    profile = class_inputs(full_model, dnase=np.full(32, 1.5, np.float32), **kw)
    np.testing.assert_array_equal(const.inputs, profile.inputs)
    assert not np.array_equal(const.initial_scores, run.initial_scores)  # run: dnase="zeros"
    with pytest.raises(ValueError, match=r"dnase profile shape \(31,\) must be \(32,\)"):
        class_inputs(full_model, dnase=np.zeros(31), **kw)


def test_bad_arguments_name_the_value(full_model):
    kw = dict(restarts=1, steps=2, key=jax.random.key(0))
    with pytest.raises(ValueError, match="target=9 out of range"):
        class_inputs(full_model, targets=[9], **kw)
    with pytest.raises(ValueError, match="parameterization='logits'"):
        class_inputs(full_model, parameterization="logits", **kw)
    with pytest.raises(ValueError, match="restarts=0"):
        class_inputs(full_model, restarts=0, steps=2, key=jax.random.key(0))
    with pytest.raises(TypeError):
        class_inputs(full_model, [0], 1, 2)  # the key is keyword-only and required


def test_no_recompile_on_second_call(full_model, run, caplog):
    with jax.log_compiles(), caplog.at_level(logging.WARNING):
        class_inputs(full_model, targets=[1, 4], restarts=3, steps=40, key=jax.random.key(9))
    assert not [r.getMessage() for r in caplog.records if "Compiling" in r.getMessage()]


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def test_cli_writes_npz_meme_tsv_and_logos(tmp_path, full_model, run, capsys):
    pytest.importorskip("memelite")
    pytest.importorskip("pyjaspar")
    from memelite.io import read_meme as memelite_read_meme

    from jaxmotif.cli.optimize import main

    jaxmotif.save_model(full_model, tmp_path / "ckpt")
    out = tmp_path / "out"
    args = ["--checkpoint", str(tmp_path / "ckpt"), "--out", str(out), "--targets", "H3K4me3", "4"]
    assert main([*args, "--restarts", "3", "--steps", "40", "--seed", "7", "--dnase", "zeros"]) == 0
    saved = np.load(out / "optimized.npz")
    np.testing.assert_allclose(saved["inputs"], run.inputs, rtol=1e-6, atol=1e-7)  # the library call
    assert list(saved["target_names"]) == ["H3K4me3", "H3K9me3"]
    motifs = memelite_read_meme(str(out / "optimized.meme"))
    assert [name.split()[0] for name in motifs] == ["H3K4me3", "H3K9me3"]
    for (start, end), matrix, pwm in zip(saved["windows"], motifs.values(), saved["pwms"], strict=True):
        assert 9 <= end - start <= 20
        np.testing.assert_allclose(np.asarray(matrix).T, pwm[start:end], atol=1e-6)
    with open(out / "tomtom.tsv", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    assert {r["filter"] for r in rows} == {"H3K4me3", "H3K9me3"} and len(rows) == 10
    assert (out / "logos.png").read_bytes()[:4] == b"\x89PNG"
    assert "optimized 2 targets" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--dnase", "const:x"], "const:1.5"),
        (["--dnase", "missing.npy"], "missing.npy"),
        (["--targets", "H3K99"], "H3K99"),
        (["--steps", "0"], "--steps"),
        (["--min-width", "30"], "--min-width"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, full_model, capsys, extra, fragment):
    from jaxmotif.cli.optimize import main

    jaxmotif.save_model(full_model, tmp_path / "ckpt")
    out = tmp_path / "out"
    assert main(["--checkpoint", str(tmp_path / "ckpt"), "--out", str(out), "--no-tomtom", *extra]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and fragment in err[-1], err
    assert not out.exists()


def test_sharded_over_8_devices_equals_one(tmp_path, full_model, run):
    jaxmotif.save_model(full_model, tmp_path / "ckpt")
    code = textwrap.dedent(f"""
        import jax, numpy as np, jaxmotif
        from jaxmotif.optimize import class_inputs
        assert len(jax.local_devices()) == 8
        model = jaxmotif.load_model({str(tmp_path / "ckpt")!r})
        r = class_inputs(model, targets=[1, 4], restarts=3, steps=40, key=jax.random.key(7))
        np.savez({str(tmp_path / "out.npz")!r}, inputs=r.inputs, scores=r.scores)
    """)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = np.load(tmp_path / "out.npz")
    # 6 rows padded to 8 and sharded; the same rows as the one-device fixture run.
    np.testing.assert_allclose(got["inputs"], run.inputs, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got["scores"], run.scores, rtol=1e-4, atol=1e-5)


def test_chunked_scans_equal_one_scan_and_report_progress(full_model, run):
    """K steps per compiled call (the carry passed on) gives the numbers of one scan over all steps."""
    one = class_inputs(
        full_model, targets=[1, 4], restarts=3, steps=40, key=jax.random.key(7), steps_per_call=40
    )
    calls = []
    chunked = class_inputs(
        full_model,
        targets=[1, 4],
        restarts=3,
        steps=40,
        key=jax.random.key(7),
        steps_per_call=7,  # 5 chunks of 7 and one of 5
        progress=lambda n, best: calls.append((n, best)),
    )
    for a, b, c in zip(one[:-1], chunked[:-1], run[:-1], strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(c, a, rtol=1e-6, atol=1e-7)
    assert [n for n, _ in calls] == [7, 7, 7, 7, 7, 5]
    bests = [b for _, b in calls]
    assert bests == sorted(bests) and bests[-1] == pytest.approx(float(chunked.score_trace.max()))


def test_a_small_memory_budget_splits_rows_not_results(full_model, run):
    from jaxmotif import memory

    act = memory.activation_elements(full_model) + 3 * 32 * 4
    budget = memory.param_bytes(full_model) + memory.ITEMSIZE * memory.gradient_elements(2, 1, act, 32)
    calls = []
    split = class_inputs(
        full_model,
        targets=[1, 4],
        restarts=3,
        steps=40,
        key=jax.random.key(7),
        max_memory=budget,
        progress=lambda n, best: calls.append(n),
    )
    for a, b in zip(run[:-1], split[:-1], strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    assert sum(calls) == pytest.approx(40) and len(calls) == 3 * 4  # 3 groups of 2 rows x 4 chunks


def test_cli_rejects_a_bigwig_dnase_and_a_bad_target_before_starting(tmp_path, capsys):
    from jaxmotif.cli.optimize import main

    out = tmp_path / "out"
    assert main(["--out", str(out), "--dnase", "track.bw", "--no-tomtom"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --dnase track.bw: a bigWig track") and "pickle" not in err
    assert main(["--out", str(out), "--targets", "H3K4me1,NOPE", "--no-tomtom"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --targets") and "NOPE" in err and "optimizing" not in err
    assert not out.exists()
