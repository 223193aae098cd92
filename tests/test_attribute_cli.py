"""``python -m jaxmotif.attribute`` and the scan engine: coverage, API equality, resume, sharding,
jax.distributed, exports, stored precision, constant host memory."""

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import zipfile

import jax
import ml_dtypes
import numpy as np
import pytest

import jaxmotif
from jaxmotif.cli import attribute as cli
from jaxmotif.io.attribution_writer import AttributionStoreWriter
from jaxmotif.io.bigwig import read_bigwig, write_bigwig
from jaxmotif.models import DeepHistoneConfig, Model, save_model
from jaxmotif.scan import scan_attributions
from jaxmotif.sequence import encode_indices, one_hot_from_indices

L = 64
CHROMS = {"chrA": 701, "chrB": 333}
# narrowPeak: chrom start end name score strand signal p q summit. Overlapping windows, both
# chromosome ends, a summit, a summit of -1 (none), a duplicate.
PEAKS = [
    ("chrA", 0, 20, 5),
    ("chrA", 30, 150, 100),
    ("chrA", 60, 120, -1),
    ("chrA", 300, 340, 2),
    ("chrA", 300, 340, 2),
    ("chrA", 660, 701, 30),
    ("chrB", 10, 60, 20),
    ("chrB", 150, 170, 0),
    ("chrB", 300, 333, 10),
]
N = len(PEAKS)
SHUFFLES = 3


def _zarr_arrays(path):
    import zarr

    g = zarr.open_group(str(path), mode="r")
    return {
        "one_hot": np.asarray(g["one_hot"][:]),
        "attributions": np.asarray(g["attributions"][:]),
        "done": np.asarray(g["done"][:]),
        "chrom": np.asarray(g["regions/chrom"][:]),
        "start": np.asarray(g["regions/start"][:]),
        "end": np.asarray(g["regions/end"][:]),
        "attrs": dict(g.attrs),
    }


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("attribute")
    rng = np.random.default_rng(5)
    seqs = {}
    with open(root / "genome.fa", "w") as f:
        for chrom, size in CHROMS.items():
            s = np.array(list("ACGTacgt"))[rng.integers(0, 8, size)]
            s[100:104] = "N"
            seqs[chrom] = "".join(s)
            f.write(f">{chrom}\n" + "\n".join(seqs[chrom][i : i + 60] for i in range(0, size, 60)) + "\n")
    (root / "peaks.narrowPeak").write_text(
        "".join(f"{c}\t{s}\t{e}\tp{i}\t0\t.\t1\t1\t1\t{m}\n" for i, (c, s, e, m) in enumerate(PEAKS))
    )
    dnase = {c: rng.random(n).astype(np.float32) * 3 for c, n in CHROMS.items()}
    write_bigwig(root / "dnase.bw", CHROMS, [(c, 0, v) for c, v in dnase.items()])
    config = DeepHistoneConfig(
        variant="full", seq_len=L, widths=(8, 8, 8), hidden=16, num_outputs=3, output_names=("m1", "m2", "m3")
    )
    model = Model.random(config, key=jax.random.key(4))
    save_model(model, root / "ckpt")
    base = [
        "--checkpoint",
        str(root / "ckpt"),
        "--fasta",
        str(root / "genome.fa"),
        "--dnase",
        str(root / "dnase.bw"),
    ]
    scan = [
        *base,
        "--regions",
        str(root / "peaks.narrowPeak"),
        "--summit-centred",
        "--n-shuffles",
        str(SHUFFLES),
        "--chunk-rows",
        "2",
        "--batch-size",
        "3",
        "--quiet",
    ]
    ref = root / "ref.zarr"
    argv = [
        *scan,
        "--out",
        str(ref),
        "--bigwig",
        str(root / "bw" / "c."),
        "--modisco-npz",
        str(root / "npz" / "d."),
    ]
    assert cli.main(argv) == 0
    # The windows as the CLI defines them, read independently of the engine.
    windows = []
    for c, s, e, m in PEAKS:
        centre = s + m if m >= 0 else (s + e) // 2
        windows.append((c, centre - L // 2, centre - L // 2 + L))
    idx = []
    for c, a, b in windows:
        text = "".join(seqs[c][p] if 0 <= p < CHROMS[c] else "N" for p in range(a, b))
        idx.append(encode_indices(text, "ACGT", iupac="n"))
    idx = np.stack(idx)
    dn = np.stack(
        [np.array([dnase[c][p] if 0 <= p < CHROMS[c] else 0 for p in range(a, b)]) for c, a, b in windows]
    )
    return {
        "root": root,
        "model": model,
        "scan": scan,
        "ref": ref,
        "windows": windows,
        "seq": one_hot_from_indices(idx),
        "dnase": dn.astype(np.float32),
    }


def test_store_layout_and_every_region_once(data):
    s = _zarr_arrays(data["ref"])
    assert s["attrs"]["format"] == "jaxmotif.attributions" and s["attrs"]["complete"] is True
    assert s["attrs"]["hypothetical"] is True and s["attrs"]["method"] == "deep_lift_shap"
    assert s["attrs"]["target_names"] == ["m1", "m2", "m3"]
    assert s["attributions"].shape == (N, L, 4, 3) and s["one_hot"].shape == (N, L, 4)
    assert s["one_hot"].dtype == np.uint8 and s["done"].tolist() == [1] * 5
    assert [
        (str(c), int(a), int(b)) for c, a, b in zip(s["chrom"], s["start"], s["end"], strict=True)
    ] == data["windows"]
    np.testing.assert_array_equal(s["one_hot"], data["seq"])


def test_the_store_reads_back_through_attribution_store(data):
    """The reader of `python -m jaxmotif.modisco` and the report opens what attribute writes."""
    from jaxmotif.io.attribution_store import open_attribution_store

    s = _zarr_arrays(data["ref"])
    store = open_attribution_store(data["ref"])
    assert store.shape == (N, L) and store.hypothetical and store.method == "deep_lift_shap"
    got = store.read("m2")
    np.testing.assert_array_equal(got.attributions, s["attributions"][..., 1])
    np.testing.assert_array_equal(got.one_hot, data["seq"])
    assert [tuple(r) for r in got.regions] == data["windows"]


def test_each_row_written_exactly_once(data, tmp_path, monkeypatch):
    written = []
    original = AttributionStoreWriter.write_chunk

    def counting(self, chunk, one_hot, attributions):
        written.extend(range(*self.chunk_span(chunk)))
        original(self, chunk, one_hot, attributions)

    monkeypatch.setattr(AttributionStoreWriter, "write_chunk", counting)
    assert cli.main([*data["scan"], "--out", str(tmp_path / "once.zarr")]) == 0
    assert sorted(written) == list(range(N))


def test_stored_deep_lift_shap_equals_the_api(data):
    stored = _zarr_arrays(data["ref"])["attributions"]
    expected = jaxmotif.deep_lift_shap(
        data["model"],
        data["seq"],
        data["dnase"],
        None,
        key=jax.random.key(0),
        n_shuffles=SHUFFLES,
        hypothetical=True,
    )  # (N, T, L, 4), all windows in one call
    np.testing.assert_allclose(stored, np.moveaxis(expected, 1, -1), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("method", ["gradient", "guided_backprop", "deconvnet", "ism"])
def test_gradient_and_ism_stores_equal_the_api_mean_centred(data, tmp_path, method):
    out = tmp_path / f"{method}.zarr"
    argv = [*data["scan"], "--method", method, "--targets", "m2", "--out", str(out)]
    assert cli.main(argv) == 0
    s = _zarr_arrays(out)
    assert s["attrs"]["values"].startswith({"ism": "ISM"}.get(method, method.split("_")[0]))
    if method != "ism":
        raw = jaxmotif.saliency(data["model"], data["seq"], data["dnase"], "m2", method=method)  # (N, L, 4)
    else:
        raw = jaxmotif.mutation_map(data["model"], data["seq"], data["dnase"], targets=[1])[..., 0]
    expected = raw - raw.mean(axis=-1, keepdims=True)
    np.testing.assert_allclose(s["attributions"][..., 0], expected, rtol=1e-5, atol=1e-7)


def test_killed_run_resumes_to_identical_store(data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "killed.zarr"
    calls = {"n": 0}
    original = AttributionStoreWriter.mark_done

    def crash_after_two(self, chunk):
        calls["n"] += 1
        if calls["n"] > 2:  # the third chunk's rows are written, its done flag is not: a crash
            raise RuntimeError("simulated crash")
        original(self, chunk)

    monkeypatch.setattr(AttributionStoreWriter, "mark_done", crash_after_two)
    with pytest.raises(RuntimeError, match="simulated crash"):
        cli.main([*data["scan"], "--out", str(out)])
    monkeypatch.setattr(AttributionStoreWriter, "mark_done", original)
    partial = _zarr_arrays(out)
    assert partial["done"].sum() == 2 and partial["attrs"]["complete"] is False
    assert cli.main([*data["scan"], "--out", str(out)]) == 1  # exists, no --resume
    assert "pass --resume" in capsys.readouterr().err
    assert cli.main([*data["scan"], "--out", str(out), "--resume"]) == 0
    a, b = _zarr_arrays(out), _zarr_arrays(data["ref"])
    for k in ("one_hot", "attributions", "done", "start", "end"):
        np.testing.assert_array_equal(a[k], b[k])
    assert a["attrs"]["complete"] is True
    # A resume with another setting is refused, naming it.
    assert cli.main([*data["scan"], "--out", str(out), "--resume", "--seed", "1"]) == 1
    assert "seed differs" in capsys.readouterr().err


SMOOTHGRAD = ["--method", "smoothgrad", "--samples", "4", "--sigma", "0.2", "--seed", "3"]


def test_smoothgrad_store_equals_the_api_whatever_the_batch(data, tmp_path, monkeypatch, capsys):
    """Killed after two chunks of a --batch-size 3 run, resumed with --batch-size 1: every window's
    noise is drawn by its row, so the store equals jaxmotif.saliency on all windows at once."""
    help_text = cli.build_parser().format_help()
    assert "smoothgrad" in help_text and "--samples" in help_text and "--sigma" in help_text
    out = tmp_path / "sg.zarr"
    calls = {"n": 0}
    original = AttributionStoreWriter.mark_done

    def crash_after_two(self, chunk):
        calls["n"] += 1
        if calls["n"] > 2:
            raise RuntimeError("simulated crash")
        original(self, chunk)

    monkeypatch.setattr(AttributionStoreWriter, "mark_done", crash_after_two)
    with pytest.raises(RuntimeError, match="simulated crash"):
        cli.main([*data["scan"], *SMOOTHGRAD, "--out", str(out)])
    monkeypatch.setattr(AttributionStoreWriter, "mark_done", original)
    assert _zarr_arrays(out)["done"].sum() == 2
    npz = str(tmp_path / "npz" / "sg.")
    resumed = [*data["scan"], *SMOOTHGRAD, "--batch-size", "1", "--out", str(out), "--resume"]
    assert cli.main([*resumed, "--modisco-npz", npz]) == 0
    s = _zarr_arrays(out)
    assert s["attrs"]["method"] == "smoothgrad" and s["attrs"]["hypothetical"] is True
    assert s["attrs"]["values"].startswith("SmoothGrad") and s["attrs"]["complete"] is True
    raw = jaxmotif.saliency(
        data["model"],
        data["seq"],
        data["dnase"],
        None,
        method="smoothgrad",
        key=jax.random.key(3),
        samples=4,
        sigma=0.2,
    )  # (N, T, L, 4), one call
    expected = np.moveaxis(raw - raw.mean(axis=-1, keepdims=True), 1, -1)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(s["attributions"], expected, rtol=1e-5, atol=1e-6 * scale)
    # The noise matters: the plain gradient is far from it.
    grad = jaxmotif.saliency(data["model"], data["seq"], data["dnase"], None, method="gradient")
    assert np.abs(np.moveaxis(grad - grad.mean(-1, keepdims=True), 1, -1) - expected).max() > 1e-3 * scale
    hyp = np.load(tmp_path / "npz" / "sg.m2.hyp.npz")["arr_0"]
    np.testing.assert_array_equal(hyp, s["attributions"][..., 1].transpose(0, 2, 1))
    # A resume with other noise is refused, naming the option; the store is left as it was.
    capsys.readouterr()
    for flag, value in (("--samples", "5"), ("--sigma", "0.1"), ("--seed", "4")):
        assert cli.main([*resumed, flag, value]) == 1
        assert f"{flag[2:]} differs" in capsys.readouterr().err
    np.testing.assert_array_equal(_zarr_arrays(out)["attributions"], s["attributions"])
    assert cli.main([*resumed, "--sigma", "-1"]) == 1
    assert "--sigma -1.0 must be" in capsys.readouterr().err


def test_scan_step_is_no_larger_than_the_input_needs():
    from jaxmotif.scan import scan_step

    assert scan_step(5, 12, 1) == 5  # the demo's 5 windows: 5 rows, not 12
    assert scan_step(5, 12, 4) == 8  # a multiple of the devices
    assert scan_step(5, 3, 2) == 4 and scan_step(100, 12, 4) == 12 and scan_step(100, 12, 1) == 12


@pytest.mark.parametrize("method,batch", [("deep_lift_shap", "8"), ("gradient", None)])
def test_small_input_reaches_the_kernel_unpadded(data, tmp_path, monkeypatch, method, batch):
    """3 regions with --batch-size 8 (or gradient's default from --max-memory, 64): every kernel
    call gets 3 rows, and the store equals the run padded to the full batch."""
    from jaxmotif import scan

    peaks = tmp_path / "three.narrowPeak"
    peaks.write_text("".join(f"{c}\t{s}\t{e}\tp\t0\t.\t1\t1\t1\t{m}\n" for c, s, e, m in PEAKS[1:4]))
    argv = [*data["scan"], "--method", method, "--targets", "m2"]
    argv[argv.index("--regions") + 1] = str(peaks)
    i = argv.index("--batch-size")
    argv[i : i + 2] = [] if batch is None else ["--batch-size", batch]
    rows = []
    original = scan.indices_kernel

    def counting(model, key, kernel):
        fn = original(model, key, kernel)
        return lambda p, idx, *rest: (rows.append(idx.shape[0]), fn(p, idx, *rest))[1]

    monkeypatch.setattr(scan, "indices_kernel", counting)
    assert cli.main([*argv, "--out", str(tmp_path / "small.zarr")]) == 0
    assert rows == [3]
    rows.clear()
    monkeypatch.setattr(scan, "scan_step", lambda n, b, d: -(-b // d) * d)  # the old rule: the full batch
    assert cli.main([*argv, "--out", str(tmp_path / "padded.zarr")]) == 0
    assert rows == [int(batch or 64)]
    a, b = _zarr_arrays(tmp_path / "small.zarr"), _zarr_arrays(tmp_path / "padded.zarr")
    assert a["attrs"]["scan"] == b["attrs"]["scan"]  # what was run: the same flags, batch included
    assert {**a["attrs"]["args"], "out": None} == {**b["attrs"]["args"], "out": None}
    np.testing.assert_array_equal(a["one_hot"], b["one_hot"])
    # XLA on CPU picks kernels by batch shape (3 rows here, 64 there): float32 rounding only.
    scale = np.abs(b["attributions"]).max()
    np.testing.assert_allclose(a["attributions"], b["attributions"], rtol=1e-5, atol=1e-6 * scale)


def test_host_memory_is_constant_in_the_number_of_regions(data, tmp_path):
    """The writer holds at most one chunk being assembled (plus batches), whatever N."""
    from jaxmotif.io.fasta import Genome

    genome = Genome(str(data["root"] / "genome.fa"))
    held = []
    for n in (6, 30):
        windows = [cli.Window("chrA", 200 + 7 * i, 200 + 7 * i + L) for i in range(n)]
        store = AttributionStoreWriter.create(tmp_path / f"m{n}.zarr", windows, L, ["m1"], {}, chunk_rows=4)
        summary = scan_attributions(
            data["model"],
            genome,
            windows,
            store,
            method="gradient",
            targets=(0,),
            dnase_reader=_ZeroDnase(),
            batch_size=3,
        )
        assert summary.rows == n and store.done_mask().all()
        held.append(summary.max_rows_held)
    assert held[0] == held[1] <= 8  # one or two chunks of 4 rows, not N


class _ZeroDnase:
    def read(self, chrom, start, end):
        return np.zeros(end - start, np.float32)


def test_bigwig_equals_stored_reference_base_attributions(data):
    s = _zarr_arrays(data["ref"])
    at_ref = np.einsum("nlbt,nlb->nlt", s["attributions"], s["one_hot"].astype(np.float32))
    windows = [cli.Window(*w) for w in data["windows"]]
    spans = cli.assigned_spans(windows, CHROMS)
    covered = {c: np.zeros(n, bool) for c, n in CHROMS.items()}
    for t, name in enumerate(["m1", "m2", "m3"]):
        tracks = {c: read_bigwig(data["root"] / "bw" / f"c.{name}.bw", c, 0, n) for c, n in CHROMS.items()}
        for i, (w, (a, b)) in enumerate(zip(windows, spans, strict=True)):
            if b <= a:
                continue
            values = at_ref[i, a - w.start : b - w.start, t]
            n_base = s["one_hot"][i, a - w.start : b - w.start].sum(-1) == 0
            np.testing.assert_allclose(tracks[w.chrom][a:b][~n_base], values[~n_base], rtol=1e-6, atol=1e-9)
            covered[w.chrom][a:b] = True
    # Every base of every window inside its chromosome is in some window's span, once.
    for c, a, b in data["windows"]:
        assert covered[c][max(a, 0) : min(b, CHROMS[c])].all()


def test_modisco_npz_layout(data):
    s = _zarr_arrays(data["ref"])
    ohe = data["root"] / "npz" / "d.ohe.npz"
    with zipfile.ZipFile(ohe) as zf:
        assert zf.namelist() == ["arr_0.npy"]
    x = np.load(ohe)["arr_0"]
    assert x.shape == (N, 4, L) and x.dtype == np.float32
    np.testing.assert_array_equal(x, s["one_hot"].transpose(0, 2, 1))
    for t, name in enumerate(["m1", "m2", "m3"]):
        h = np.load(data["root"] / "npz" / f"d.{name}.hyp.npz")["arr_0"]
        np.testing.assert_array_equal(h, s["attributions"][..., t].transpose(0, 2, 1))
    # `modisco motifs -s/-a` reads each file as np.load(path)["arr_0"], (N, 4, L)
    # (modiscolite/cli.py _load_input); importing modiscolite here would cost seconds of numba.


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_store_dtype_rounds_the_float32_values(data, tmp_path, dtype, capsys):
    out = tmp_path / f"{dtype}.zarr"
    assert cli.main([*data["scan"], "--store-dtype", dtype, "--out", str(out)]) == 0
    assert "bytes per base" in capsys.readouterr().err
    got = _zarr_arrays(out)["attributions"]
    ref = _zarr_arrays(data["ref"])["attributions"]
    want = ref.astype(np.float16 if dtype == "float16" else ml_dtypes.bfloat16).astype(np.float32)
    np.testing.assert_array_equal(got.astype(np.float32), want)


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_sharded_over_four_fake_devices_equals_one_device(data, tmp_path):
    out = tmp_path / "four.zarr"
    script = textwrap.dedent(
        f"""
        import sys, jax
        assert jax.local_device_count() == 4
        from jaxmotif.cli import attribute as cli
        sys.exit(cli.main({[*data["scan"][:-3], "--batch-size", "4", "--quiet", "--out", str(out)]!r}))
        """
    )
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    a, b = _zarr_arrays(out), _zarr_arrays(data["ref"])
    np.testing.assert_array_equal(a["one_hot"], b["one_hot"])
    # XLA on CPU picks kernels by the per-device batch shape (1 window here, 3 there): float32
    # rounding differences only, far below the attributions' scale.
    scale = np.abs(b["attributions"]).max()
    np.testing.assert_allclose(a["attributions"], b["attributions"], rtol=1e-5, atol=1e-5 * scale)


def test_two_processes_joined_by_jax_distributed_write_one_store(data, tmp_path):
    out = tmp_path / "dist.zarr"
    port = _free_port()
    script = textwrap.dedent(
        f"""
        import sys, jax
        jax.config.update("jax_platforms", "cpu")
        i = int(sys.argv[1])
        jax.distributed.initialize(
            coordinator_address="localhost:{port}", num_processes=2, process_id=i, initialization_timeout=120
        )
        assert jax.process_count() == 2
        from jaxmotif.cli import attribute as cli
        sys.exit(cli.main({[*data["scan"], "--out", str(out)]!r}))
        """
    )
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(i)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    errors = []
    for p in procs:
        try:
            _, err = p.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
        errors.append((p.returncode, err[-2000:]))
    assert all(rc == 0 for rc, _ in errors), errors
    a, b = _zarr_arrays(out), _zarr_arrays(data["ref"])
    for k in ("one_hot", "done", "start"):
        np.testing.assert_array_equal(a[k], b[k])
    scale = np.abs(b["attributions"]).max()  # each process batches its own chunks' rows
    np.testing.assert_allclose(a["attributions"], b["attributions"], rtol=1e-5, atol=1e-5 * scale)
    assert a["attrs"]["complete"] is True


def test_python_call_equals_the_cli(data, tmp_path):
    out = jaxmotif.attribute_regions(
        tmp_path / "api.zarr",
        checkpoint=str(data["root"] / "ckpt"),
        fasta=str(data["root"] / "genome.fa"),
        dnase=str(data["root"] / "dnase.bw"),
        regions=str(data["root"] / "peaks.narrowPeak"),
        summit_centred=True,
        n_shuffles=SHUFFLES,
        chunk_rows=2,
        batch_size=3,
        quiet=True,
    )
    np.testing.assert_array_equal(
        _zarr_arrays(out)["attributions"], _zarr_arrays(data["ref"])["attributions"]
    )


def test_errors_are_one_line(data, tmp_path, capsys):
    bad = tmp_path / "bad.bed"
    bad.write_text("chrZ\t0\t10\n")
    argv = [*data["scan"]]
    argv[argv.index("--regions") + 1] = str(bad)
    assert cli.main([*argv, "--out", str(tmp_path / "x.zarr")]) == 1
    assert "chrZ" in capsys.readouterr().err and not (tmp_path / "x.zarr").exists()
    assert (
        cli.main([*data["scan"], "--method", "integrated_gradients", "--modisco-npz", "p.", "--out", "y"])
        == 1
    )
    assert "hypothetical" in capsys.readouterr().err


def test_saliency_cli_streams_into_an_attribution_store(data, tmp_path):
    from jaxmotif.cli import saliency as saliency_cli
    from jaxmotif.sequence import decode

    fasta = tmp_path / "w.fa"
    seq = data["seq"][[0, 3, 6, 7, 8]]  # five full windows, named as regions
    names = [f"{c}:{a}-{b}" for c, a, b in (data["windows"][i] for i in (0, 3, 6, 7, 8))]
    fasta.write_text("".join(f">{n}\n{decode(s)}\n" for n, s in zip(names, seq, strict=True)))
    dn = tmp_path / "d.npy"
    np.save(dn, data["dnase"][[0, 3, 6, 7, 8]])
    ckpt = str(data["root"] / "ckpt")
    common = ["--checkpoint", ckpt, "--fasta", str(fasta), "--dnase-npy", str(dn), "--method", "gradient"]
    common += ["--batch-size", "2", "--quiet"]
    assert saliency_cli.main([*common, "--out", str(tmp_path / "s.zarr")]) == 0
    assert saliency_cli.main([*common, "--out", str(tmp_path / "s.npz")]) == 0
    s = _zarr_arrays(tmp_path / "s.zarr")
    npz = np.load(tmp_path / "s.npz")["saliency"]  # (N, T, L, 4)
    np.testing.assert_array_equal(s["attributions"], np.moveaxis(npz, 1, -1))
    np.testing.assert_array_equal(s["one_hot"], seq)
    assert s["attrs"]["complete"] is True and s["attrs"]["method"] == "gradient"
    # A name that is a region (of the window's length) gives its coordinates; others (here a
    # negative start) are kept whole, spanning [0, L).
    stored = [(str(c), int(a), int(b)) for c, a, b in zip(s["chrom"], s["start"], s["end"], strict=True)]
    expected = [data["windows"][i] for i in (0, 3, 6, 7, 8)]
    expected = [(f"{c}:{a}-{b}", 0, L) if a < 0 else (c, a, b) for c, a, b in expected]
    assert stored == expected and stored[0] == (names[0], 0, L)


def _saliency_fasta(data, path, rows, texts=None):
    """A FASTA of the windows ``rows`` named as regions (``texts``: other sequences per record)."""
    from jaxmotif.sequence import decode

    names = [f"{c}:{a}-{b}" for c, a, b in (data["windows"][i] for i in rows)]
    texts = texts or [decode(data["seq"][i]) for i in rows]
    path.write_text("".join(f">{n}\n{t[:40]}\n{t[40:]}\n" for n, t in zip(names, texts, strict=True)))
    return names


def test_saliency_store_streams_the_fasta_with_the_values_of_the_npz(data, tmp_path, monkeypatch):
    """--out X.zarr reads one batch of records at a time (never the whole FASTA) and stores what
    the in-memory .npz path computes: SmoothGrad (noise drawn by record index) with --dnase-npy, and
    the gradient with DNase read per batch from the bigWig."""
    from jaxmotif.cli import common
    from jaxmotif.cli import saliency as saliency_cli

    ckpt = ["--checkpoint", str(data["root"] / "ckpt"), "--quiet", "--batch-size", "2"]
    rows = [0, 3, 6, 7, 8]
    _saliency_fasta(data, tmp_path / "w.fa", rows)
    np.save(tmp_path / "d.npy", data["dnase"][rows])
    runs = {
        "npy": ["--dnase-npy", str(tmp_path / "d.npy"), "--method", "smoothgrad", "--samples", "3"],
        "bw": ["--dnase", str(data["root"] / "dnase.bw"), "--method", "gradient"],
    }
    _saliency_fasta(data, tmp_path / "in.fa", [1, 3, 4, 7, 1])  # windows inside their chromosome
    fastas = {"npy": tmp_path / "w.fa", "bw": tmp_path / "in.fa"}
    for name, options in runs.items():
        argv = [*ckpt, "--fasta", str(fastas[name]), *options]
        assert saliency_cli.main([*argv, "--out", str(tmp_path / f"{name}.npz")]) == 0
    spans = []
    original = saliency_cli._saliency_span

    def recording(args, model, seq, dnase, *rest):
        spans.append((seq.shape[0], None if dnase is None else dnase.shape[0]))
        return original(args, model, seq, dnase, *rest)

    def whole_file(*_, **__):
        raise AssertionError("the store path read the whole FASTA")

    monkeypatch.setattr(saliency_cli, "_saliency_span", recording)
    monkeypatch.setattr(saliency_cli, "read_fasta_records", whole_file)
    monkeypatch.setattr(common, "read_fasta_records", whole_file)
    for name, options in runs.items():
        argv = [*ckpt, "--fasta", str(fastas[name]), *options]
        logos = ["--logos", "1"] if name == "bw" else []  # named from the first pass's record names
        assert saliency_cli.main([*argv, *logos, "--out", str(tmp_path / f"{name}.zarr")]) == 0
        s = _zarr_arrays(tmp_path / f"{name}.zarr")
        npz = np.load(tmp_path / f"{name}.npz")["saliency"]  # (N, T, L, 4)
        np.testing.assert_array_equal(s["attributions"], np.moveaxis(npz, 1, -1))
        assert s["attrs"]["complete"] is True and s["done"].all()
    assert spans == [(2, 2), (2, 2), (1, 1)] * 2  # one batch of records (and DNase rows) at a time
    (logo,) = (tmp_path / "bw_logos").iterdir()
    assert logo.name.startswith("0000_chr")


def test_saliency_store_bad_record_late_leaves_nothing(data, tmp_path, monkeypatch, capsys):
    """A bad record in the last batch: refused in the first pass, before any device work; and if
    the file changes after that pass, the second pass refuses it after earlier chunks were written.
    Either way one error line and nothing half-written."""
    from jaxmotif.cli import saliency as saliency_cli
    from jaxmotif.sequence import decode

    rows = [0, 3, 6, 7, 8]
    good = [decode(data["seq"][i]) for i in rows]
    np.save(tmp_path / "d.npy", data["dnase"][rows])
    fasta, out = tmp_path / "w.fa", tmp_path / "s.zarr"
    argv = ["--checkpoint", str(data["root"] / "ckpt"), "--fasta", str(fasta)]
    argv += ["--dnase-npy", str(tmp_path / "d.npy"), "--method", "gradient", "--batch-size", "2"]
    argv += ["--quiet", "--out", str(out)]
    written = []
    original = AttributionStoreWriter.write_chunk

    def counting(self, chunk, one_hot, attributions):
        written.append(chunk)
        original(self, chunk, one_hot, attributions)

    monkeypatch.setattr(AttributionStoreWriter, "write_chunk", counting)

    def leaves_nothing():
        assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

    names = _saliency_fasta(data, fasta, rows, [*good[:4], good[4][:10] + "X" + good[4][11:]])
    assert saliency_cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: record {names[4]!r} position 10: invalid base 'X' (allowed: ACGTN, any case)"]
    _saliency_fasta(data, fasta, rows, [*good[:4], good[4][:50]])
    assert saliency_cli.main(argv) == 1
    assert capsys.readouterr().err.strip() == (
        f"error: record {names[4]!r} has length 50; the model takes {L} "
        "(cut windows of that length, e.g. centred on the peaks)"
    )
    fasta.write_text(fasta.read_text().rsplit(">", 1)[0] + ">\nACGT\n")  # a header without a name
    assert saliency_cli.main(argv) == 1
    assert capsys.readouterr().err.strip() == f"error: {fasta}:13: header '>' has no record name"
    _saliency_fasta(data, fasta, rows, [*good[:4], good[4][:7] + "R" + good[4][8:]])
    assert saliency_cli.main([*argv, "--strict-bases"]) == 1
    assert capsys.readouterr().err.strip() == (
        f"error: --fasta {fasta}: record {names[4]!r} position 7: IUPAC code 'R' "
        "(1 in all; --strict-bases refuses them)"
    )
    assert written == []  # all refused in the first pass
    leaves_nothing()
    assert saliency_cli.main(argv) == 0  # without --strict-bases: one warning, the R read as N
    assert "1 IUPAC ambiguity code(s) read as N" in capsys.readouterr().err
    expected = data["seq"][rows].copy()
    expected[4, 7] = 0
    np.testing.assert_array_equal(_zarr_arrays(out)["one_hot"], expected)
    shutil.rmtree(out)
    written.clear()

    survey = saliency_cli._survey

    def then_changed(args, model):  # the file is replaced between the two passes
        found = survey(args, model)
        _saliency_fasta(data, fasta, rows, [*good[:4], good[4][:50]])
        return found

    monkeypatch.setattr(saliency_cli, "_survey", then_changed)
    _saliency_fasta(data, fasta, rows, good)
    assert saliency_cli.main(argv) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: record {names[4]!r} has length 50; the model takes {L} "
        "(cut windows of that length, e.g. centred on the peaks)"
    ]
    assert written == [0, 1]  # the first chunks were written, then removed with the rest
    leaves_nothing()
    monkeypatch.setattr(saliency_cli, "_survey", survey)
    _saliency_fasta(data, fasta, rows, good)
    assert saliency_cli.main(argv) == 0 and out.exists()  # the good file goes through


def test_scan_mutations_call_and_bfloat16_store(data, tmp_path, capsys):
    from jaxmotif.io.zarr_store import open_mutmap

    common = {
        "checkpoint": str(data["root"] / "ckpt"),
        "fasta": str(data["root"] / "genome.fa"),
        "dnase": str(data["root"] / "dnase.bw"),
        "regions": str(data["root"] / "peaks.narrowPeak"),
        "chunk_len": 128,
        "quiet": True,
    }
    full = jaxmotif.scan_mutations(tmp_path / "f32.zarr", **common)
    half = jaxmotif.scan_mutations(tmp_path / "bf16.zarr", store_dtype="bfloat16", **common)
    assert capsys.readouterr().err.count("bytes per scanned base") == 2
    a, b = open_mutmap(full), open_mutmap(half)
    assert b.attrs["store_dtype"] == "bfloat16"
    for chrom, size in CHROMS.items():
        x, y = a.read(chrom, 0, size).scores, b.read(chrom, 0, size).scores
        np.testing.assert_array_equal(y, x.astype(ml_dtypes.bfloat16).astype(np.float32))
    with pytest.raises(ValueError, match="exists"):
        jaxmotif.scan_mutations(tmp_path / "f32.zarr", **common)
