"""bpnet-lite BPNet / ChromBPNet as graphs: forward, saliency and mutation maps vs bpnet-lite itself.

Every reference here is bpnet-lite's own PyTorch module (and its ProfileWrapper / CountWrapper)
run on the same random weights; sizes stay tiny (<= 8 filters x 3 layers, L ~ 250).
"""

import json

import jax
import numpy as np
import pytest
from conftest import random_onehot

import jaxmotif
from convert.bpnet import bpnet_config_from_state_dict, bpnet_params, chrombpnet_params, to_state_dict
from jaxmotif.models import BPNetConfig, ChromBPNetConfig, Model, load_model, save_model

torch = pytest.importorskip("torch")
bpnetlite = pytest.importorskip("bpnetlite")
from bpnetlite.bpnet import BPNet, CountWrapper, ProfileWrapper  # noqa: E402
from bpnetlite.chrombpnet import ChromBPNet  # noqa: E402

L = 250


def torch_bpnet(seed=0, **kwargs):
    torch.manual_seed(seed)
    net = BPNet(verbose=False, **kwargs)
    with torch.no_grad():  # default init leaves the outputs tiny; spread them so errors would show
        for p in net.parameters():
            p.mul_(3.0)
    return net.eval()


def state_dict(net):
    return {k: v.detach().numpy() for k, v in net.state_dict().items()}


def bpnet_pair(seq_len=L, seed=0, **kwargs):
    net = torch_bpnet(seed, **kwargs)
    sd = state_dict(net)
    config = bpnet_config_from_state_dict(sd, seq_len=seq_len, trimming=net.trimming)
    return net, Model.from_params(config, bpnet_params(sd, config))


def chrombpnet_pair(seq_len=L, seed=0):
    bias = torch_bpnet(seed, n_filters=4, n_layers=2, n_outputs=1, n_control_tracks=0)
    acc = torch_bpnet(seed + 1, n_filters=8, n_layers=3, n_outputs=1, n_control_tracks=0)
    net = ChromBPNet(bias, acc).eval()
    sd = state_dict(net)
    config = ChromBPNetConfig(
        bias=bpnet_config_from_state_dict(sd, seq_len=seq_len, scope="bias"),
        accessibility=bpnet_config_from_state_dict(sd, seq_len=seq_len, scope="accessibility"),
    )
    return net, Model.from_params(config, chrombpnet_params(sd, config))


def to_torch(x):
    return torch.tensor(np.ascontiguousarray(np.asarray(x).transpose(0, 2, 1)))  # (N, L, C) -> (N, C, L)


def torch_heads(net, seq, control=None):
    with torch.no_grad():
        profile, counts = net(to_torch(seq), None if control is None else to_torch(control))
    return profile.numpy().transpose(0, 2, 1), counts.numpy()


def inputs(rng, model, n=3):
    seq = random_onehot(rng, n, model.config.seq_len, n_frac=0.02)
    ctl = None
    if model.config.n_control_tracks:
        ctl = rng.poisson(2.0, (n, model.config.seq_len, model.config.n_control_tracks)).astype(np.float32)
    return seq, ctl


def assert_rel(got, want, rtol=1e-5):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    scale = max(np.abs(want).max(), 1e-6)
    np.testing.assert_allclose(got, want, rtol=0, atol=rtol * scale)


BPNET_CASES = [
    dict(n_filters=8, n_layers=2, n_outputs=2, n_control_tracks=0),
    dict(n_filters=8, n_layers=3, n_outputs=2, n_control_tracks=2, trimming=40),
    dict(n_filters=6, n_layers=2, n_outputs=1, n_control_tracks=1, trimming=20),  # counts span = whole input
    dict(
        n_filters=8,
        n_layers=2,
        n_outputs=2,
        n_control_tracks=0,
        profile_output_bias=False,
        count_output_bias=False,
    ),
]


@pytest.mark.parametrize("kwargs", BPNET_CASES)
def test_bpnet_forward_matches_bpnetlite(rng, kwargs):
    net, model = bpnet_pair(**kwargs)
    seq, ctl = inputs(rng, model)
    want_profile, want_counts = torch_heads(net, seq, ctl)
    out = model(seq, ctl)
    assert out["profile"].shape == (3, model.config.out_len, kwargs["n_outputs"])
    assert_rel(out["profile"], want_profile)
    assert_rel(out["counts"], want_counts)
    # The target view: bpnet-lite's ProfileWrapper scalar and the counts.
    with torch.no_grad():
        ct = None if ctl is None else to_torch(ctl)
        want_scalar = ProfileWrapper(net)(to_torch(seq), ct).numpy()
    view = np.asarray(model.apply(model.params, seq, ctl))
    assert_rel(view[:, :1], want_scalar)
    assert_rel(view[:, 1:], want_counts)
    # and the key map inverts
    sd = to_state_dict(jax.tree.map(np.asarray, jax.tree.map(lambda v: v, _pure(model))), model.config)
    assert set(sd) == set(net.state_dict())


def _pure(model):
    from flax import nnx

    return nnx.to_pure_dict(model.params)


def test_chrombpnet_forward_matches_bpnetlite(rng):
    net, model = chrombpnet_pair()
    seq, _ = inputs(rng, model)
    want_profile, want_counts = torch_heads(net, seq)
    out = model(seq)
    assert out["profile"].shape == (3, model.config.out_len, 1)
    assert_rel(out["profile"], want_profile)
    assert_rel(out["counts"], want_counts)


def torch_saliency(wrapper, seq, control=None):
    x = to_torch(seq).requires_grad_(True)
    out = wrapper(x, None if control is None else to_torch(control))
    (grad,) = torch.autograd.grad(out.sum(), x)
    return grad.numpy().transpose(0, 2, 1)


@pytest.mark.parametrize("kwargs", BPNET_CASES[:2])
def test_bpnet_saliency_matches_torch_autograd(rng, kwargs):
    net, model = bpnet_pair(**kwargs)
    seq, ctl = inputs(rng, model, n=2)
    got = jaxmotif.saliency(model, seq, ctl, target=["profile", "counts"], method="gradient")
    assert got.shape == (2, 2, L, 4)
    assert_rel(got[:, 0], torch_saliency(ProfileWrapper(net), seq, ctl), 1e-4)
    assert_rel(got[:, 1], torch_saliency(CountWrapper(net), seq, ctl), 1e-4)
    gx = jaxmotif.saliency(model, seq, ctl, target="counts", method="grad_x_input")
    assert_rel(gx, torch_saliency(CountWrapper(net), seq, ctl) * seq, 1e-4)


def test_chrombpnet_saliency_matches_torch_autograd(rng):
    net, model = chrombpnet_pair()
    seq, _ = inputs(rng, model, n=2)
    got = jaxmotif.saliency(model, seq, target=["profile", "counts"], method="gradient")
    assert_rel(got[:, 0], torch_saliency(ProfileWrapper(net), seq), 1e-4)
    assert_rel(got[:, 1], torch_saliency(CountWrapper(net), seq), 1e-4)


def naive_counts_ism(net, seq, control=None):
    """Every single-base substitution through bpnet-lite, one mutant at a time: (L, 4) raw counts."""
    out = np.zeros((seq.shape[0], 4))
    for i in range(seq.shape[0]):
        mutants = np.repeat(seq[None], 4, axis=0)
        mutants[:, i] = np.eye(4, dtype=np.float32)
        ctl = None if control is None else np.repeat(control[None], 4, axis=0)
        out[i] = torch_heads(net, mutants, ctl)[1][:, 0]
    return out


@pytest.mark.parametrize("kwargs", [BPNET_CASES[1]])
def test_bpnet_counts_mutation_map_matches_naive_bpnetlite_loop(rng, kwargs):
    net, model = bpnet_pair(**kwargs)
    seq, ctl = inputs(rng, model, n=1)
    seq[0, 5] = 0.0  # an N: its entries are NaN in every score
    got = jaxmotif.mutation_map(model, seq, ctl, targets="counts", score="raw", method="full")
    want = naive_counts_ism(net, seq[0], None if ctl is None else ctl[0])
    got = np.asarray(got)[0, ..., 0]
    keep = seq[0].sum(-1) > 0
    assert np.isnan(got[~keep]).all()
    assert_rel(got[keep], want[keep])


def test_bpnet_checkpoints_round_trip(tmp_path, rng):
    for _net, model in (bpnet_pair(**BPNET_CASES[1]), chrombpnet_pair()):
        out_dir = tmp_path / model.config.arch
        save_model(model, out_dir)
        meta = json.loads((out_dir / "config.json").read_text())
        assert meta["arch"] == model.config.arch
        loaded = load_model(out_dir)
        assert loaded.config == model.config
        seq, ctl = inputs(rng, model, n=2)
        a, b = model(seq, ctl), loaded(seq, ctl)
        np.testing.assert_array_equal(a["profile"], b["profile"])
        np.testing.assert_array_equal(a["counts"], b["counts"])


def test_bpnet_conv1_filters_are_iconv():
    from jaxmotif.filters import conv1_weights

    net, model = bpnet_pair(**BPNET_CASES[0])
    kernel, bias = conv1_weights(model)
    assert kernel.shape == (21, 4, 8)
    np.testing.assert_array_equal(kernel, net.iconv.weight.detach().numpy().transpose(2, 1, 0))
    np.testing.assert_array_equal(bias, net.iconv.bias.detach().numpy())


def test_bpnet_config_checks():
    with pytest.raises(ValueError, match="no output"):
        BPNetConfig(seq_len=100, n_layers=2, trimming=50)
    with pytest.raises(ValueError, match="control"):
        ChromBPNetConfig(
            bias=BPNetConfig(seq_len=300, n_layers=2, n_control_tracks=2),
            accessibility=BPNetConfig(seq_len=300, n_layers=2, n_control_tracks=0),
        )
    net, model = bpnet_pair(**BPNET_CASES[1])
    seq, ctl = inputs(np.random.default_rng(0), model, n=1)
    with pytest.raises(ValueError, match="control"):
        model(seq)
    with pytest.raises(ValueError, match="control shape"):
        model(seq, ctl[..., :1])


# ---- every attribution method on BPNet, each against bpnet-lite / captum -----------------------


class _RuleReLU(torch.autograd.Function):
    """ReLU whose backward follows deconvnet (``guided=False``) or guided backprop."""

    @staticmethod
    def forward(ctx, x, guided):
        ctx.save_for_backward(x)
        ctx.guided = guided
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        out = g.clamp(min=0)
        return (out * (x > 0) if ctx.guided else out), None


class _RuleModule(torch.nn.Module):
    def __init__(self, guided):
        super().__init__()
        self.guided = guided

    def forward(self, x):
        return _RuleReLU.apply(x, self.guided)


def with_relu_rule(net, guided):
    import copy

    net = copy.deepcopy(net)
    net.irelu = _RuleModule(guided)
    net.rrelus = torch.nn.ModuleList([_RuleModule(guided) for _ in net.rrelus])
    return net


@pytest.fixture(scope="module")
def control_pair():
    return bpnet_pair(**BPNET_CASES[1])


@pytest.mark.parametrize("method", ["deconvnet", "guided_backprop"])
def test_bpnet_relu_rules_match_torch(control_pair, method):
    net, model = control_pair
    seq, ctl = inputs(np.random.default_rng(4), model, n=2)
    got = jaxmotif.saliency(model, seq, ctl, target="counts", method=method)
    ruled = with_relu_rule(net, guided=method == "guided_backprop")
    assert_rel(got, torch_saliency(CountWrapper(ruled), seq, ctl), 1e-4)


def test_bpnet_integrated_gradients_match_captum(control_pair):
    from captum.attr import IntegratedGradients

    net, model = control_pair
    seq, ctl = inputs(np.random.default_rng(5), model, n=2)
    got = jaxmotif.integrated_gradients(model, seq, ctl, target="counts", steps=16)
    x = to_torch(seq)
    want = IntegratedGradients(CountWrapper(net)).attribute(
        x,
        baselines=torch.zeros_like(x),
        additional_forward_args=(to_torch(ctl),),
        n_steps=16,
        method="gausslegendre",
    )
    assert_rel(got, want.detach().numpy().transpose(0, 2, 1), 1e-4)


def test_bpnet_smoothgrad_matches_torch_on_the_same_noise(control_pair):
    net, model = control_pair
    seq, ctl = inputs(np.random.default_rng(6), model, n=2)
    key = jax.random.key(7)
    got = jaxmotif.smoothgrad(model, seq, ctl, target="profile", samples=3, sigma=0.2, key=key)
    want = np.zeros_like(seq)
    for i in range(2):  # the documented noise: normal(fold_in(fold_in(key, row), sample))
        for j in range(3):
            eps = np.asarray(
                jax.random.normal(jax.random.fold_in(jax.random.fold_in(key, i), j), seq.shape[1:])
            )
            want[i] += torch_saliency(ProfileWrapper(net), seq[i : i + 1] + 0.2 * eps, ctl[i : i + 1])[0] / 3
    assert_rel(got, want, 1e-4)


def test_bpnet_projection_of_a_residual_unit_matches_torch(control_pair):
    net, model = control_pair
    assert jaxmotif.layers(model) == ("iconv", "rconvs.0", "rconvs.1", "rconvs.2")
    seq, ctl = inputs(np.random.default_rng(8), model, n=2)
    got = jaxmotif.project(model, seq, "rconvs.1", channel=3, position=100, method="gradient")
    x = to_torch(seq).requires_grad_(True)
    h = net.irelu(net.iconv(x))
    for i in range(2):
        h = h + net.rrelus[i](net.rconvs[i](h))
    (want,) = torch.autograd.grad(h[:, 3, 100].sum(), x)
    assert_rel(got, want.numpy().transpose(0, 2, 1), 1e-4)
    # the receptive field of rconvs.1 (dilations 2, 4 after iconv's 21): 100 +- (10 + 2 + 4)
    assert jaxmotif.projections.receptive_field(model.config, "rconvs.1", 100) == (84, 117)
    assert np.all(got[:, :84] == 0) and np.all(got[:, 117:] == 0)


def test_bpnet_class_optimization_of_counts(control_pair):
    net, model = control_pair
    _, ctl = inputs(np.random.default_rng(9), model, n=1)
    result = jaxmotif.class_inputs(
        model, targets="counts", restarts=2, steps=25, key=jax.random.key(0), dnase=ctl[0]
    )
    assert result.inputs.shape == (1, 2, L, 4)
    assert np.all(result.scores > result.initial_scores)
    want = torch_heads(net, np.asarray(result.inputs[0], np.float32), np.repeat(ctl, 2, axis=0))[1][:, 0]
    assert_rel(result.scores[0], want, 1e-4)
