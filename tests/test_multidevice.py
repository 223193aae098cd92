"""Every kernel uses all local devices: 8 fake CPU devices give the same results as one.

JAX fixes the device count at start-up, so the 8-device side runs in a subprocess with
XLA_FLAGS=--xla_force_host_platform_device_count=8 and compares against this process (1 device).
"""

import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
from conftest import random_onehot

import jaxmotif
from jaxmotif.models.model import Model

CONFIG = dict(variant="full", seq_len=64, widths=(8, 8, 8), hidden=12)


def run_on_fake_devices(script: str, tmp_path, n_devices: int = 8) -> dict:
    env = dict(
        os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n_devices}", JAX_PLATFORMS="cpu"
    )
    out = tmp_path / "out.npz"
    code = textwrap.dedent(script).replace("OUT_PATH", repr(str(out)))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(np.load(out))


def test_saliency_and_forward_sharded_over_8_devices(tmp_path):
    rng = np.random.default_rng(3)
    seq = random_onehot(rng, 13, 64)  # 13 rows: not a multiple of 8, so the padded tail is exercised
    dnase = rng.random((13, 64)).astype(np.float32)
    np.savez(tmp_path / "in.npz", seq=seq, dnase=dnase)
    model = Model.random(jaxmotif.DeepHistoneConfig(**CONFIG), key=jax.random.key(0))
    jaxmotif.save_model(model, tmp_path / "ckpt")
    script = f"""
        import jax, numpy as np, jaxmotif
        assert len(jax.local_devices()) == 8, jax.local_devices()
        model = jaxmotif.load_model({str(tmp_path / "ckpt")!r})
        x = np.load({str(tmp_path / "in.npz")!r})
        pred = model(x["seq"], x["dnase"], batch_size=8)
        sal = jaxmotif.saliency(model, x["seq"], x["dnase"], target=None, batch_size=8)
        np.savez(OUT_PATH, pred=pred, sal=sal)
    """
    sharded = run_on_fake_devices(script, tmp_path)
    np.testing.assert_allclose(sharded["pred"], model(seq, dnase), rtol=1e-5, atol=1e-7)
    sal = jaxmotif.saliency(model, seq, dnase, target=None)
    np.testing.assert_allclose(sharded["sal"], sal, rtol=1e-4, atol=1e-6 * np.abs(sal).max())


def test_graph_fast_ism_sharded_over_8_devices(tmp_path):
    """BPNet's graph fast ISM (the delta form) over 8 devices equals ``full`` on one, every position."""
    from jaxmotif.models import BPNetConfig

    cfg = BPNetConfig(seq_len=101, n_filters=6, n_layers=2, n_outputs=1, n_control_tracks=1, trimming=20)
    model = Model.random(cfg, key=jax.random.key(4))
    model.params = jax.tree.map(lambda x: x * 3.0 if x.ndim > 1 else x, model.params)  # visible effects
    rng = np.random.default_rng(5)
    seq = random_onehot(rng, 9, cfg.seq_len)  # 9 windows: not a multiple of 8
    ctl = rng.poisson(2.0, (9, cfg.seq_len, 1)).astype(np.float32)
    np.savez(tmp_path / "in.npz", seq=seq, ctl=ctl)
    jaxmotif.save_model(model, tmp_path / "ckpt")
    script = f"""
        import jax, numpy as np, jaxmotif
        assert len(jax.local_devices()) == 8, jax.local_devices()
        model = jaxmotif.load_model({str(tmp_path / "ckpt")!r})
        x = np.load({str(tmp_path / "in.npz")!r})
        fast = jaxmotif.mutation_map(model, x["seq"], x["ctl"], score="raw", method="fast")
        np.savez(OUT_PATH, fast=fast)
    """
    sharded = run_on_fake_devices(script, tmp_path)["fast"]
    full = jaxmotif.mutation_map(model, seq, ctl, score="raw", method="full")
    assert sharded.shape == (9, cfg.seq_len, 4, 2)
    np.testing.assert_allclose(sharded, full, rtol=0, atol=1e-5 * np.abs(full).max())
