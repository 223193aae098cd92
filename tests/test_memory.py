"""Memory budgets: the chunk sizes every kernel picks keep each compiled call under the budget.

The estimate of jaxmotif.memory is checked two ways: as arithmetic (whatever N, T, steps and
references, the planned chunk's estimated bytes fit), and against XLA's own memory analysis of the
very calls the kernels make (``jit(f).lower(...).compile().memory_analysis()``), with the budget
small enough that the kernels must split sequences, path points and targets.
"""

import itertools

import jax
import numpy as np
import pytest

import jaxmotif
from jaxmotif import attribution, integrated, memory
from jaxmotif.batching import chunk_size_for
from jaxmotif.batching import map_batches as real_map_batches

SMALL = dict(seq_len=64, widths=(8, 8, 8), hidden=12)


@pytest.fixture(scope="module")
def model():
    return jaxmotif.Model.random(jaxmotif.DeepHistoneConfig(variant="full", **SMALL), key=jax.random.key(0))


def test_plans_fit_the_budget_whatever_the_sizes():
    act, length, fixed = 50_000, 1000, 1_000_000
    for n, t, points, refs, budget_mb in itertools.product(
        (1, 7, 1000), (1, 7, 40), (1, 64, 4 * 64), (0, 1, 4), (4, 64, 4096)
    ):
        budget = budget_mb * 2**20
        kw = dict(targets=t, activations=act, length=length, fixed_bytes=fixed)
        s_n, s_p, s_k = memory.path_plan(budget, sequences=n, points=points, references=refs, **kw)
        assert 1 <= s_n <= n and 1 <= s_p <= points and 1 <= s_k <= t
        held = memory.path_elements(s_n, s_p, s_k, refs, act, length) * memory.ITEMSIZE + fixed
        assert held <= budget, (n, t, points, refs, budget_mb, s_n, s_p, s_k)
        g_n, g_k = memory.gradient_plan(budget, rows=n, **kw)
        assert 1 <= g_n <= n and 1 <= g_k <= t
        assert memory.gradient_elements(g_n, g_k, act, length) * memory.ITEMSIZE + fixed <= budget
        for fast in (True, False):
            d_n, d_k = memory.deeplift_plan(budget, sequences=n, references=max(refs, 1), fast=fast, **kw)
            assert 1 <= d_n <= n and 1 <= d_k <= t
            held = memory.deeplift_elements(d_n, max(refs, 1), d_k, act, length, fast=fast)
            assert held * memory.ITEMSIZE + fixed <= budget or (d_n, d_k) == (1, 1)
    # A bigger budget never gives smaller chunks; everything fits in one call when there is room.
    assert memory.path_plan(2**40, sequences=5, points=64, references=2, **kw) == (5, 64, t)


def _spy(peaks, params_bytes):
    """A map_batches that first compiles the call it is given and records XLA's peak bytes."""

    def spy(fn, arrays, *, batch_size, **kw):
        n = next(a for a in arrays if a is not None).shape[0]
        chunk = chunk_size_for(n, batch_size, 1)
        args = [
            None if a is None else np.resize(np.asarray(a)[:chunk], (chunk, *a.shape[1:])) for a in arrays
        ]
        stats = jax.jit(fn).lower(*args).compile().memory_analysis()
        # The parameters are closed over (constants of the program): counted on top, once.
        held = stats.temp_size_in_bytes + stats.argument_size_in_bytes + stats.output_size_in_bytes
        peaks.append(held + params_bytes)
        return real_map_batches(fn, arrays, batch_size=batch_size, **kw)

    return spy


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("integrated_gradients", {"steps": 8, "baseline": "shuffle", "num_baselines": 3}),
        ("grad_x_input", {}),
        ("guided_backprop", {}),
    ],
)
def test_compiled_calls_stay_under_the_budget(model, monkeypatch, method, options):
    rng = np.random.default_rng(0)
    seq = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (5, 64))]
    dnase = rng.random((5, 64)).astype(np.float32)
    key = jax.random.key(1) if method == "integrated_gradients" else None
    expected = jaxmotif.saliency(model, seq, dnase, method=method, key=key, **options)
    act = memory.activation_elements(model)
    fixed = memory.param_bytes(model)
    # Room for about two rows with every target: the kernels must split sequences and path points.
    budget = fixed + memory.ITEMSIZE * memory.path_elements(1, 2, 7, 3, act, 64)
    peaks = []
    spy = _spy(peaks, fixed)
    monkeypatch.setattr(attribution, "map_batches", spy)
    monkeypatch.setattr(integrated, "map_batches", spy)
    import jaxmotif.projections as projections

    monkeypatch.setattr(projections, "map_batches", spy)
    got = jaxmotif.saliency(model, seq, dnase, method=method, key=key, max_memory=budget, **options)
    assert peaks and max(peaks) <= budget, (peaks, budget)
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=1e-7)


def test_a_budget_below_one_target_splits_the_targets(model, monkeypatch):
    rng = np.random.default_rng(1)
    seq = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (3, 64))]
    dnase = rng.random((3, 64)).astype(np.float32)
    expected = jaxmotif.saliency(model, seq, dnase, method="gradient")
    act = memory.activation_elements(model)
    budget = memory.param_bytes(model) + memory.ITEMSIZE * memory.gradient_elements(1, 3, act, 64)
    rows, per_call = attribution.gradient_chunks(model, 3, 7, budget, None)
    assert (rows, per_call) == (1, 3)
    groups = []
    real = attribution.by_target_groups
    monkeypatch.setattr(
        attribution, "by_target_groups", lambda t, k, run: groups.append(k) or real(t, k, run)
    )
    got = jaxmotif.saliency(model, seq, dnase, method="gradient", max_memory=budget)
    assert groups == [3]
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-8)


def test_activation_estimate_bounds_xla_on_the_demo_model():
    """On the demo-width model the estimate is above what XLA holds for a gradient of 7 targets."""
    from jaxmotif.demo import demo_model

    model = demo_model()
    act = memory.activation_elements(model)
    rows = 4
    fn = jax.jit(
        lambda p, s, d: attribution.saliency_kernel(model.apply, p, s, d, tuple(range(7)), "gradient")
    )
    seq = np.zeros((rows, 1000, 4), np.float32)
    stats = fn.lower(model.params, seq, np.zeros((rows, 1000), np.float32)).compile().memory_analysis()
    held = stats.temp_size_in_bytes + stats.argument_size_in_bytes + stats.output_size_in_bytes
    estimate = memory.gradient_elements(rows, 7, act, 1000) * memory.ITEMSIZE + memory.param_bytes(model)
    assert held <= estimate, (held, estimate)


def test_resolve_budget_and_default():
    assert memory.resolve_budget(123) == 123
    assert memory.resolve_budget(None) == memory.default_memory_budget() > 0
    with pytest.raises(ValueError, match="max_memory"):
        memory.resolve_budget(-1)


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "stacked-fallback"])
def test_deep_lift_shap_calls_fill_the_budget_as_xla_counts_it(model, monkeypatch, fast):
    """DeepSHAP's plan against XLA's memory analysis of the calls it makes, on the path the kernel
    takes: each call under the budget (no under-estimate), and above 1/1.5 of it (no over-estimate:
    the stacked 2R-row estimate on the fast path, about twice XLA's, fails here)."""
    from jaxmotif import deeplift

    rng = np.random.default_rng(2)
    seq = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (5, 64))]
    dnase = rng.random((5, 64)).astype(np.float32)
    refs = np.stack([rng.permuted(seq, axis=1) for _ in range(4)], axis=1)  # (5, R=4, 64, 4)
    if not fast:  # a nonlinearity without a rule: the kernel falls back to the stacked pass
        monkeypatch.setattr(deeplift, "DEEPLIFT_OPS", deeplift.DEEPLIFT_OPS._replace(relu=jax.nn.relu))
        model = jaxmotif.Model(model.module())  # no cached path or closures from other tests
    apply_fn = lambda p, s, d: model.apply(p, s, d, ops=deeplift.DEEPLIFT_OPS)  # noqa: E731
    assert deeplift.takes_fast_path(apply_fn, model.params, (64, 4), (64,)) == fast
    act = memory.activation_elements(model)
    fixed = 2 * memory.param_bytes(model)  # parameters, and the backward's transposed weights
    # Room for two sequences with all 7 targets: 5 sequences go as 2 + 2 + 1.
    budget = fixed + memory.ITEMSIZE * memory.deeplift_elements(2, 4, 7, act, 64, fast=fast)
    assert deeplift._chunks(model, 5, 4, 7, None, budget, fast=fast) == (2, 7)
    peaks = []
    monkeypatch.setattr(deeplift, "map_batches", _spy(peaks, memory.param_bytes(model)))
    # warning_threshold: the plain ReLU of the fallback case breaks summation-to-delta, as it should
    kw = dict(target=None, references=refs, max_memory=budget, warning_threshold=np.inf)
    got = jaxmotif.deep_lift_shap(model, seq, dnase, **kw)
    assert got.shape == (5, 7, 64, 4)
    assert len(peaks) == 1  # one target group, every target in it
    assert budget / 1.5 <= peaks[0] <= budget, (peaks, budget)
