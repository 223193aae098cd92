"""DeepLIFT / DeepSHAP against tangermeme's ``deep_lift_shap`` (and bpnet-lite's wrapper of it) and
Captum's ``DeepLiftShap`` on the same PyTorch weights and the same reference tensors.

Comparisons through max-pools run in float64 (``jax.enable_x64`` and torch ``.double()``): in
float32 a near-tie in a pooling window can pick a different switch in each framework.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import random_onehot, torch_pair

import jaxmotif
from jaxmotif import deeplift
from jaxmotif.deeplift import DEEPLIFT_OPS, deep_lift_shap, deep_lift_shap_kernel
from jaxmotif.integrated import dinucleotide_shuffle
from jaxmotif.models.model import Model
from jaxmotif.nonlinear import DEFAULT_OPS

torch = pytest.importorskip("torch")
tangermeme_dls = pytest.importorskip("tangermeme.deep_lift_shap")


def _to_torch(x):
    """(..., L, C) channels-last -> torch (..., C, L), float64."""
    return torch.tensor(np.ascontiguousarray(np.swapaxes(x, -1, -2)), dtype=torch.float64)


def _theirs(net, seq, refs, target, hypothetical, args=None, extra_ops=None, fn=None):
    """tangermeme's (or ``fn``'s) contributions, channels-last (N, L, 4)."""
    fn = fn or tangermeme_dls.deep_lift_shap
    kwargs = {} if extra_ops is None else {"additional_nonlinear_ops": extra_ops}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = fn(
            net,
            _to_torch(seq).to(next(net.parameters()).dtype),
            args=args,
            target=target,
            references=_to_torch(refs).to(next(net.parameters()).dtype),
            hypothetical=hypothetical,
            device="cpu",
            batch_size=5,  # not a multiple of R: tangermeme's batches straddle sequences
            **kwargs,
        )
    return np.swapaxes(out.detach().numpy(), -1, -2)


def _ours(apply, params, seq, refs, targets, hypothetical, dnase=None, ops=DEEPLIFT_OPS):
    kernel = jax.jit(
        lambda p, s, d, r: deep_lift_shap_kernel(
            lambda p_, s_, d_: apply(p_, s_, d_, ops=ops), p, s, d, r, targets, hypothetical
        )
    )
    contrib, deltas = kernel(params, jnp.asarray(seq), None if dnase is None else jnp.asarray(dnase), refs)
    return np.asarray(contrib), np.asarray(deltas)


def _rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


# ---------------------------------------------------------------------------------------------
# Small models written twice: torch modules and JAX functions routing nonlinearities through ops
# ---------------------------------------------------------------------------------------------

L_TOY = 40


def _conv(x, w, b, pad, dilation=1):
    """torch Conv1d weight (Cout, Cin, K) on channels-last x (N, L, Cin)."""
    y = jax.lax.conv_general_dilated(
        x,
        jnp.transpose(w, (2, 1, 0)),
        (1,),
        [(pad, pad)],
        rhs_dilation=(dilation,),
        dimension_numbers=("NWC", "WIO", "NWC"),
    )
    return y if b is None else y + b[None, None, :]


def _flatten(h):
    """torch's Flatten of a (N, C, W) map: channel-major."""
    return jnp.transpose(h, (0, 2, 1)).reshape(h.shape[0], -1)


def _pool_net(no_relu=False):
    """Conv -> ReLU -> MaxPool(4) -> Conv -> Softplus -> Linear -> ReLU -> Linear -> Sigmoid; with
    ``no_relu`` the first ReLU is left out."""
    from collections import OrderedDict

    nn = torch.nn
    torch.manual_seed(0)
    c = 6
    layers = [("conv1", nn.Conv1d(4, c, 5, padding=2)), ("relu1", nn.ReLU()), ("pool", nn.MaxPool1d(4))]
    layers = [layer for layer in layers if not (no_relu and layer[0] == "relu1")]
    layers += [
        ("conv2", nn.Conv1d(c, c, 3, padding=1)),
        ("softplus", nn.Softplus()),
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(c * (L_TOY // 4), 8)),
        ("relu2", nn.ReLU()),
        ("fc2", nn.Linear(8, 3)),
        ("sigmoid", nn.Sigmoid()),
    ]
    net = nn.Sequential(OrderedDict(layers))

    def apply(p, x, d=None, *, ops=DEFAULT_OPS):
        h = _conv(x, p["conv1.weight"], p["conv1.bias"], 2)
        h = ops.maxpool(h if no_relu else ops.relu(h), 4)
        h = _flatten(ops.softplus(_conv(h, p["conv2.weight"], p["conv2.bias"], 1)))
        h = ops.relu(h @ p["fc1.weight"].T + p["fc1.bias"][None])
        return ops.sigmoid(h @ p["fc2.weight"].T + p["fc2.bias"][None])

    return net, apply, {}


class _Gate(torch.nn.Module):
    """Conv -> DeepSEA Threshold -> Linear heads a, b -> log(exp(a) + exp(b)) (ChromBPNet's counts)."""

    def __init__(self):
        super().__init__()
        from bpnetlite.chrombpnet import _Exp, _Log

        self.conv = torch.nn.Conv1d(4, 5, 7, padding=3)
        self.threshold = torch.nn.Threshold(0, 1e-6)
        self.a = torch.nn.Linear(5 * L_TOY, 2)
        self.b = torch.nn.Linear(5 * L_TOY, 2)
        self.exp_a, self.exp_b, self.log = _Exp(), _Exp(), _Log()

    def forward(self, x):
        h = self.threshold(self.conv(x)).flatten(1)
        return self.log(self.exp_a(self.a(h)) + self.exp_b(self.b(h)))


def _gate_net():
    from bpnetlite.chrombpnet import _Exp, _Log
    from tangermeme.deep_lift_shap import _nonlinear

    torch.manual_seed(1)
    net = _Gate()

    def apply(p, x, d=None, *, ops=DEFAULT_OPS):
        h = _flatten(ops.threshold(_conv(x, p["conv.weight"], p["conv.bias"], 3)))
        a = h @ p["a.weight"].T + p["a.bias"][None]
        b = h @ p["b.weight"].T + p["b.bias"][None]
        return ops.log(ops.exp(a) + ops.exp(b))

    # tangermeme has no Threshold rule (treats it as linear): register the rescale rule, as for
    # bpnet-lite's _Exp/_Log.
    return net, apply, {torch.nn.Threshold: _nonlinear, _Exp: _nonlinear, _Log: _nonlinear}


def _params(net):
    return {k: jnp.asarray(v.numpy()) for k, v in net.state_dict().items()}


@pytest.mark.parametrize(
    "make", [_pool_net, _gate_net], ids=["relu-maxpool-softplus-sigmoid", "threshold-exp-log"]
)
def test_toy_models_equal_tangermeme_float64(make):
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        net, apply, extra = make()
        net = net.double().eval()
        params = _params(net)
        seq = random_onehot(rng, 3, L_TOY).astype(np.float64)
        refs = dinucleotide_shuffle(seq, key=jax.random.key(1), num_shuffles=4).astype(np.float64)
        np.testing.assert_allclose(
            np.asarray(apply(params, jnp.asarray(seq))), net(_to_torch(seq)).detach().numpy(), rtol=1e-12
        )
        for hypothetical in (False, True):
            ours, deltas = _ours(apply, params, seq, refs, (0, 1), hypothetical)
            assert deltas.shape == (3, 2, 4) and deltas.max() < 1e-10
            for k in (0, 1):
                theirs = _theirs(net, seq, refs, k, hypothetical, extra_ops=extra or None)
                assert _rel(ours[:, k], theirs) < 1e-10, (hypothetical, k)


def test_captum_and_tangermeme_agree_through_max_pooling():
    """Captum's DeepLiftShap on a pooled model, where its max-pool rule agrees with tangermeme's.

    The two differ where a pooled input does not change between sequence and reference (there
    tangermeme takes the input half's ordinary gradient and Captum 0.9 takes ``grad_input[0]``,
    the first row of its batch), and Captum's hooks mis-chain a max-pool followed directly by
    another nonlinearity (a ReLU after the pool: 40 % apart, each alone agrees). Pooling the
    first convolution, with references that differ from the sequence at every position, avoids
    both.
    """
    from captum.attr import DeepLiftShap
    from tangermeme.deep_lift_shap import hypothetical_attributions

    rng = np.random.default_rng(1)
    with jax.enable_x64(True):
        net, apply, _ = _pool_net(no_relu=True)
        net = net.double().eval()
        seq = random_onehot(rng, 2, L_TOY).astype(np.float64)
        refs = np.stack([np.roll(seq, k, axis=-1) for k in (1, 2, 3)], axis=1)  # another base everywhere
        ours, _ = _ours(apply, _params(net), seq, refs, (2,), True)
        assert _rel(ours[:, 0], _theirs(net, seq, refs, 2, True)) < 1e-10
        explainer = DeepLiftShap(net)
        for i in range(2):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                captum = explainer.attribute(
                    _to_torch(seq[i : i + 1]),
                    _to_torch(refs[i]),
                    target=2,
                    custom_attribution_func=hypothetical_attributions,
                )
            captum = np.swapaxes(captum.detach().numpy(), -1, -2)[0]
            assert _rel(ours[i, 0], captum) < 1e-10


# ---------------------------------------------------------------------------------------------
# BPNet / ChromBPNet (the model graph) with targets "profile" and "counts", vs bpnet-lite's wrapper
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["bpnet", "chrombpnet"])
def test_bpnet_family_profile_and_counts_equal_bpnetlite(arch):
    """bpnet-lite's ``attribute.deep_lift_shap`` (tangermeme with its profile-scaling, exp and log
    rules) on ProfileWrapper / CountWrapper; ChromBPNet's counts are a logsumexp (exp, log)."""
    from bpnetlite.attribute import deep_lift_shap as bpnetlite_dls
    from bpnetlite.bpnet import CountWrapper, ProfileWrapper
    from test_bpnet import bpnet_pair, chrombpnet_pair

    length = 160
    if arch == "bpnet":
        net, model = bpnet_pair(length, n_filters=6, n_layers=2, n_outputs=2, n_control_tracks=0)
    else:
        net, model = chrombpnet_pair(length)
    rng = np.random.default_rng(2)
    seq = random_onehot(rng, 2, length)
    refs = dinucleotide_shuffle(seq, key=jax.random.key(3), num_shuffles=3)
    with jax.enable_x64(True):
        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), model.params)
        net = net.double()
        hyp, deltas = _ours(model.apply, params, seq.astype(np.float64), refs, (0, 1), True)
        assert deltas.max() < 1e-10
        for k, wrapper in enumerate((ProfileWrapper, CountWrapper)):
            theirs = _theirs(wrapper(net), seq, refs, 0, True, fn=bpnetlite_dls)
            assert _rel(hyp[:, k], theirs) < 1e-10, wrapper.__name__
            plain = _theirs(wrapper(net), seq, refs, 0, False, fn=bpnetlite_dls)
            assert _rel(hyp[:, k] * seq, plain) < 1e-10, wrapper.__name__
    # The public function, float32, by target name.
    counts, deltas = deep_lift_shap(model, seq, None, "counts", references=refs, return_deltas=True)
    assert counts.shape == (2, length, 4) and deltas.shape == (2, 3) and deltas.max() < 1e-5


# ---------------------------------------------------------------------------------------------
# DeepHistone (the converted PyTorch reference), both variants
# ---------------------------------------------------------------------------------------------

L_DH = 64


@pytest.mark.parametrize("variant", ["full", "dna"])
def test_deephistone_equals_tangermeme(variant):
    rng = np.random.default_rng(4)
    net, model = torch_pair(variant, seq_len=L_DH, widths=(8, 8, 8), hidden=12)
    seq = random_onehot(rng, 2, L_DH)
    dnase = rng.random((2, L_DH)).astype(np.float32) if variant == "full" else None
    refs = dinucleotide_shuffle(seq, key=jax.random.key(5), num_shuffles=3)
    args = None if dnase is None else (torch.tensor(dnase[:, None], dtype=torch.float64),)
    with jax.enable_x64(True):
        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), model.params)
        d64 = None if dnase is None else dnase.astype(np.float64)
        net64 = net.double()
        # One compiled pass (hypothetical); the plain contributions are those times the input
        # (the kernel's other branch is checked on the small models above).
        hyp, deltas = _ours(model.apply, params, seq.astype(np.float64), refs, (0, 1), True, d64)
        assert deltas.max() < 1e-10
        for k in (0, 1):
            assert _rel(hyp[:, k], _theirs(net64, seq, refs, k, True, args=args)) < 1e-10
            assert _rel(hyp[:, k] * seq, _theirs(net64, seq, refs, k, False, args=args)) < 1e-10
    # The public function in float32. Its deltas stay below 1e-5; its contributions are float32
    # DeepLIFT's: secants of small differences and near-tied pooling windows put tangermeme's
    # own float32 run 2e-4 (full) to 8e-3 (DNA-only) of the largest value away from the float64
    # truth on these weights, and ours as far; so the check against the truth is that loose.
    contrib, deltas = deep_lift_shap(
        model, seq, dnase, target=[0, 1], references=refs, return_deltas=True, batch_size=3
    )
    assert contrib.shape == (2, 2, L_DH, 4) and deltas.shape == (2, 2, 3)
    assert deltas.max() < 1e-5
    assert _rel(contrib[:, 1], hyp[:, 1] * seq) < 2e-2


# ---------------------------------------------------------------------------------------------
# Convergence, references, batching, devices, dispatch
# ---------------------------------------------------------------------------------------------

SMALL = dict(variant="full", seq_len=64, widths=(8, 8, 8), hidden=12)


@pytest.fixture(scope="module")
def small_model():
    return Model.random(jaxmotif.DeepHistoneConfig(**SMALL), key=jax.random.key(0))


def test_summation_to_delta_and_a_broken_rule_is_caught(small_model, monkeypatch):
    rng = np.random.default_rng(6)
    seq, dnase = random_onehot(rng, 3, 64), rng.random((3, 64)).astype(np.float32)
    key = jax.random.key(7)
    contrib, deltas = deep_lift_shap(
        small_model, seq, dnase, target=None, key=key, n_shuffles=3, return_deltas=True
    )
    assert deltas.shape == (3, 7, 3) and deltas.max() < 1e-5
    refs = deeplift.make_references(seq, None, n_shuffles=3, key=key)
    gap = small_model(seq, dnase)[:, :, None] - np.stack(
        [small_model(refs[:, j], dnase) for j in range(3)], -1
    )
    np.testing.assert_allclose(contrib.sum(axis=(2, 3)), gap.mean(-1), rtol=1e-4, atol=1e-5)
    # The plain gradient for ReLU breaks summation-to-delta, and the check says so.
    monkeypatch.setattr(deeplift, "DEEPLIFT_OPS", DEEPLIFT_OPS._replace(relu=jax.nn.relu))
    fresh = Model(small_model.module())  # no compiled closures from above
    with pytest.warns(RuntimeWarning, match=r"convergence delta .* at sequence \d"):
        _, broken = deep_lift_shap(fresh, seq, dnase, target=0, key=key, n_shuffles=3, return_deltas=True)
    assert broken.max() > 1e-3


def test_same_key_same_contributions_whatever_the_batch_size(small_model):
    rng = np.random.default_rng(8)
    seq, dnase = random_onehot(rng, 5, 64), rng.random((5, 64)).astype(np.float32)
    kw = dict(target="H3K27ac", n_shuffles=2, hypothetical=True, key=jax.random.key(9))
    one = deep_lift_shap(small_model, seq, dnase, batch_size=2, **kw)  # pairs: 1 sequence per chunk
    three = deep_lift_shap(small_model, seq, dnase, batch_size=6, **kw)
    np.testing.assert_allclose(one, three, rtol=1e-5, atol=1e-7)
    other = deep_lift_shap(small_model, seq, dnase, batch_size=6, **{**kw, "key": jax.random.key(10)})
    assert not np.allclose(one, other)
    # The first sequences' contributions do not depend on the ones after them.
    np.testing.assert_allclose(
        deep_lift_shap(small_model, seq[:2], dnase[:2], batch_size=2, **kw), one[:2], rtol=1e-5, atol=1e-7
    )


def test_saliency_dispatches_deep_lift_shap(small_model):
    rng = np.random.default_rng(11)
    seq, dnase = random_onehot(rng, 2, 64), rng.random((2, 64)).astype(np.float32)
    key = jax.random.key(12)
    direct = deep_lift_shap(small_model, seq, dnase, target=[1, 2], key=key, n_shuffles=2)
    via = jaxmotif.saliency(small_model, seq, dnase, [1, 2], method="deep_lift_shap", key=key, n_shuffles=2)
    np.testing.assert_array_equal(direct, via)
    zeros = jaxmotif.saliency(small_model, seq, dnase, 0, method="deep_lift_shap", references="zeros")
    assert zeros.shape == (2, 64, 4)
    with pytest.raises(ValueError, match="steps"):
        jaxmotif.saliency(small_model, seq, dnase, 0, method="deep_lift_shap", steps=3)


def test_bad_references_are_refused(small_model):
    seq, dnase = np.zeros((2, 64, 4), np.float32), np.zeros((2, 64), np.float32)
    with pytest.raises(ValueError, match="key"):
        deep_lift_shap(small_model, seq, dnase, 0)
    with pytest.raises(ValueError, match=r"references shape \(2, 64, 4\)"):
        deep_lift_shap(small_model, seq, dnase, 0, references=np.zeros((2, 64, 4)))
    with pytest.raises(ValueError, match="'ones'"):
        deep_lift_shap(small_model, seq, dnase, 0, references="ones")


def test_sharded_over_8_devices_equals_one(small_model, tmp_path):
    from test_multidevice import run_on_fake_devices

    rng = np.random.default_rng(13)
    seq, dnase = random_onehot(rng, 5, 64), rng.random((5, 64)).astype(np.float32)
    np.savez(tmp_path / "in.npz", seq=seq, dnase=dnase)
    jaxmotif.save_model(small_model, tmp_path / "ckpt")
    script = f"""
        import jax, numpy as np, jaxmotif
        assert len(jax.local_devices()) == 8, jax.local_devices()
        model = jaxmotif.load_model({str(tmp_path / "ckpt")!r})
        x = np.load({str(tmp_path / "in.npz")!r})
        c, d = jaxmotif.deep_lift_shap(model, x["seq"], x["dnase"], key=jax.random.key(14), n_shuffles=2,
                                       batch_size=16, return_deltas=True)
        np.savez(OUT_PATH, c=c, d=d)
    """
    sharded = run_on_fake_devices(script, tmp_path)
    contrib = deep_lift_shap(small_model, seq, dnase, key=jax.random.key(14), n_shuffles=2)
    np.testing.assert_allclose(sharded["c"], contrib, rtol=1e-4, atol=1e-6 * np.abs(contrib).max())
    assert sharded["d"].max() < 1e-5


def test_integrated_gradients_return_their_completeness_gap(small_model):
    rng = np.random.default_rng(15)
    seq, dnase = random_onehot(rng, 2, 64), rng.random((2, 64)).astype(np.float32)
    kw = dict(baseline="shuffle", num_baselines=2, key=jax.random.key(16), return_deltas=True)
    attr, deltas = jaxmotif.integrated_gradients(small_model, seq, dnase, [0, 3], steps=3, **kw)
    refs = dinucleotide_shuffle(seq, key=jax.random.key(16), num_shuffles=2)
    gap = small_model(seq, dnase) - np.mean([small_model(refs[:, b], dnase) for b in range(2)], axis=0)
    np.testing.assert_allclose(deltas, np.abs(attr.sum(axis=(2, 3)) - gap[:, [0, 3]]), rtol=1e-5, atol=1e-9)
    _, fine = jaxmotif.integrated_gradients(small_model, seq, dnase, 3, steps=32, **kw)
    assert fine.shape == (2,) and fine.max() < deltas[:, 1].max()


def test_a_small_memory_budget_splits_chunks_and_targets_not_results(small_model):
    memory = pytest.importorskip("jaxmotif.memory")
    rng = np.random.default_rng(17)
    seq, dnase = random_onehot(rng, 3, 64), rng.random((3, 64)).astype(np.float32)
    kw = dict(target=[0, 2, 5], n_shuffles=2, key=jax.random.key(18), return_deltas=True)
    whole, d_whole = deep_lift_shap(small_model, seq, dnase, max_memory=2**30, **kw)
    # Room for one model row with one target (float32): one sequence and one target per call.
    tiny = memory.param_bytes(small_model) + 4 * 2 * (memory.activation_elements(small_model) + 64 * 4)
    assert deeplift._chunks(small_model, 3, 2, 3, None, tiny) == (1, 1)
    split, d_split = deep_lift_shap(small_model, seq, dnase, max_memory=tiny, **kw)
    np.testing.assert_allclose(split, whole, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(d_split, d_whole, rtol=1e-3, atol=1e-7)
