"""benchmarks.hlo --time --ceilings measured and benchmarks.alternate, narrow model, no timing asserted."""

import json
import os

import jax
import numpy as np
import pytest

import jaxmotif
from benchmarks import alternate, common, hlo
from jaxmotif.models.model import Model

SMALL = dict(variant="full", seq_len=64, widths=(8, 8, 8), hidden=12)


def test_floors_are_ceiling_ratios_and_fractions_floor_over_time():
    row = {"flops_per_unit": 6e9, "bytes_per_unit": 2e8, "precision": "fp32", "time_s": 0.5}
    f = hlo.floors(row, {"fp32": 3e10, "bandwidth": 1e10})
    assert f["flop_floor_s"] == pytest.approx(0.2) and f["memory_floor_s"] == pytest.approx(0.02)
    assert f["of_flop_floor"] == pytest.approx(0.4) and f["of_memory_floor"] == pytest.approx(0.04)
    assert f["bound"] == "compute"
    assert "of_flop_floor" not in hlo.floors({**row, "time_s": None}, {"fp32": 3e10, "bandwidth": 1e10})


def test_time_with_measured_ceilings_writes_fractions(tmp_path, capsys):
    model = Model.random(jaxmotif.DeepHistoneConfig(**SMALL), key=jax.random.key(0))
    out = tmp_path / "hlo.json"
    argv = "--time --ceilings measured --precision fp32 --batch 2 --deeplift-batch 1 --repeats 2".split()
    argv += "--gemm-n 128 --copy-mib 4 --ism-timed chunked".split()
    assert hlo.main([*argv, "--json", str(out)], model=model) == 0
    data = json.loads(out.read_text())
    ceiling = data["ceilings"]
    assert data["floors_device"] == "measured" and set(ceiling) == {"bandwidth", "fp32"}
    assert ceiling["fp32"] > 0 and ceiling["bandwidth"] > 0
    assert data["ceilings_measurement"]["gemm_n"] == 128
    rows = {r["task"].split(" ")[0]: r for r in data["rows"]}
    assert set(rows) == {"forward", "saliency", "ism_fast", "deeplift"}
    for row in rows.values():
        assert row["time_min_s"] <= row["time_s"] <= row["time_max_s"] and row["cpu_time_s"] > 0
        assert row["flop_floor_s"] == pytest.approx(row["flops_per_unit"] / ceiling["fp32"])
        assert row["memory_floor_s"] == pytest.approx(row["bytes_per_unit"] / ceiling["bandwidth"])
        assert row["of_flop_floor"] == pytest.approx(row["flop_floor_s"] / row["time_s"])
        assert row["of_memory_floor"] == pytest.approx(row["memory_floor_s"] / row["time_s"])
        assert row["of_flop_floor_best"] == pytest.approx(row["flop_floor_s"] / row["time_min_s"])
        cpu_floor = row["flops_per_unit"] / data["ceilings_measurement"]["per_cpu_second"]["fp32"]
        assert row["of_flop_floor_cpu"] == pytest.approx(cpu_floor / row["cpu_time_s"])
    assert rows["forward"]["timed"] == "the analysed executable" and rows["forward"]["units"] == 2
    assert rows["ism_fast"]["timed"].startswith("mutant_predictions_fast") and rows["ism_fast"]["units"] == 1
    assert "of FLOP floor" in capsys.readouterr().out


def test_named_ceilings_without_time_have_no_fractions(tmp_path):
    model = Model.random(jaxmotif.DeepHistoneConfig(**SMALL), key=jax.random.key(0))
    out = tmp_path / "hlo.json"
    argv = ["--tasks", "forward", "--precision", "fp32", "--batch", "2", "--device-floors", "h100"]
    assert hlo.main([*argv, "--measured", "forward:fp32=1e-3", "--json", str(out)], model=model) == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row["timed"] == "--measured" and row["of_flop_floor"] == pytest.approx(row["flop_floor_s"] / 1e-3)
    assert hlo.main(["--tasks", "nope"], model=model) == 1
    assert hlo.main(["--precision", "fp16"], model=model) == 1


def test_alternate_compares_before_timing():
    config = jaxmotif.DeepHistoneConfig(seq_len=64, widths=(8, 8, 8), hidden=12)
    net, model = common.published_pair(config)
    seq, dnase = common.random_inputs(2, config)
    out = alternate.run(net, model, seq, dnase, device="cpu", rounds=2)
    for task in ("forward", "saliency"):
        assert out[task]["max_abs_diff"] < 1e-5
        assert len(out[task]["wall_s"]["jaxmotif"]) == len(out[task]["cpu_s"]["pytorch"]) == 2
        assert np.all(np.asarray(out[task]["speed_vs_pytorch_per_round"]) > 0)


def test_every_row_has_the_hlo_text_traffic_and_the_sequential_floor(tmp_path, capsys, monkeypatch):
    model = Model.random(jaxmotif.DeepHistoneConfig(**SMALL), key=jax.random.key(0))
    out = tmp_path / "hlo.json"
    argv = ["--tasks", "forward", "--precision", "fp32", "--batch", "2", "--measured", "forward:fp32=1e-3"]
    assert hlo.main([*argv, "--json", str(out)], model=model) == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row["bytes_counted_by"] == "XLA cost analysis" and row["kernels_per_call"] >= 1
    assert 0 < row["elementwise_bytes_per_unit"] <= row["traffic_bytes_per_unit"]
    seq_floor = row["flop_floor_s"] + row["elementwise_bytes_per_unit"] / hlo.DEVICES["h200"]["bandwidth"]
    assert row["sequential_floor_s"] == pytest.approx(seq_floor)
    assert row["of_sequential_floor"] == pytest.approx(seq_floor / 1e-3)
    # a GPU compiled without the device has nothing to time, and without the CUDA plugin cannot be
    # compiled for at all: one line saying what to install
    assert hlo.main(["--compile-for", "h200", "--time"], model=model) == 1
    assert "nothing to time" in capsys.readouterr().err
    for name in ("JAX_PLATFORMS", "JAX_SKIP_CUDA_CONSTRAINTS_CHECK"):  # --compile-for sets them if unset
        monkeypatch.setenv(name, os.environ.get(name, "cpu" if name == "JAX_PLATFORMS" else "1"))
    try:
        import jax_plugins.xla_cuda12  # noqa: F401
    except ImportError:
        assert hlo.main(["--compile-for", "h200", "--tasks", "forward"], model=model) == 1
        assert 'pip install "jax[cuda12]' in capsys.readouterr().err
