"""Deconvnet / guided backprop / inverse-activation projections against hand values and PyTorch hooks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from conftest import compile_messages, random_onehot, torch_pair
from flax import nnx

import jaxmotif
from jaxmotif import projections
from jaxmotif.models.deephistone import maxpool
from jaxmotif.models.model import Model

WIDTHS = (8, 8, 8)

# ---------------------------------------------------------------------------------------------
# The rules on a hand-weighted network
# ---------------------------------------------------------------------------------------------

W1 = jnp.array([[1.0, -1.0], [2.0, 1.0], [-1.0, 2.0]])
B1 = jnp.array([0.0, -1.0, 0.5])
U = jnp.array([[1.0, -2.0, 1.0], [3.0, 1.0, -0.5]])
X = jnp.array([1.0, 2.0])  # pre-activations W1 x + b1 = [-1, 3, 3.5]: unit 0 off, 1 and 2 on


def one_layer(relu, x):
    return jnp.dot(jnp.array([2.0, -1.0, 3.0]), relu(W1 @ x + B1))


def two_layers(relu, x):  # second pre-activations U h = [-2.5, 1.25]
    return jnp.dot(jnp.array([-1.0, 2.0]), relu(U @ relu(W1 @ x + B1)))


# Worked by hand. One layer, signal at the ReLU v = [2, -1, 3]:
#   gradient  v * on = [0, -1, 3]           -> W1^T . = [-5, 5]
#   deconvnet relu(v) = [2, 0, 3]           -> [-1, 4]
#   guided    v * on * (v > 0) = [0, 0, 3]  -> [-3, 6]
# Two layers, signal at the top ReLU w = [-1, 2] (top unit 0 off, 1 on):
#   gradient  [0, 2] -> U^T . = [6, 2, -1] -> * on = [0, 2, -1]      -> [5, 0]
#   deconvnet relu([-1, 2]) = [0, 2] -> [6, 2, -1] -> relu = [6, 2, 0] -> [10, -4]
#   guided    [0, 2] -> [6, 2, -1] -> * on * (> 0) = [0, 2, 0]        -> [4, 2]
HAND = {
    "gradient": ([-5.0, 5.0], [5.0, 0.0]),
    "deconvnet": ([-1.0, 4.0], [10.0, -4.0]),
    "guided_backprop": ([-3.0, 6.0], [4.0, 2.0]),
}


@pytest.mark.parametrize("method", projections.RELU_RULES)
def test_relu_rules_equal_hand_values(method):
    relu = projections.relu_rule(method)
    for net, expected in zip((one_layer, two_layers), HAND[method], strict=True):
        grad = jax.jit(jax.grad(lambda x, net=net: net(relu, x)))(X)
        np.testing.assert_allclose(grad, expected, rtol=0, atol=1e-6)
        # the forward values are the ordinary ReLU's
        assert net(relu, X) == net(jax.nn.relu, X)
    # vmappable: a batch of inputs gives the per-input rules
    batch = jnp.stack([X, -X])
    grads = jax.vmap(jax.grad(lambda x: one_layer(relu, x)))(batch)
    np.testing.assert_allclose(grads[0], HAND[method][0], atol=1e-6)


def test_maxpool_routes_to_one_switch_on_ties():
    x = jnp.array([1.0, 3.0, 3.0, 0.0, 2.0, 2.0, 2.0, 2.0, 9.0]).reshape(1, 9, 1)  # ragged tail dropped
    np.testing.assert_array_equal(maxpool(x)[0, :, 0], [3.0, 2.0])
    g = jax.grad(lambda v: jnp.sum(maxpool(v) * jnp.array([1.0, 5.0]).reshape(1, 2, 1)))(x)[0, :, 0]
    np.testing.assert_array_equal(g, [0, 1, 0, 0, 5, 0, 0, 0, 0])  # the first maximum, as PyTorch
    xt = torch.tensor(np.asarray(x).reshape(1, 1, 9), requires_grad=True)
    (torch.nn.functional.max_pool1d(xt, 4) * torch.tensor([[[1.0, 5.0]]])).sum().backward()
    np.testing.assert_array_equal(xt.grad.numpy().ravel(), g)


# ---------------------------------------------------------------------------------------------
# The rules on DeepHistone against PyTorch backward hooks
# ---------------------------------------------------------------------------------------------


def hook_relus(net, method):
    def deconvnet(module, grad_input, grad_output):
        return (grad_output[0].clamp(min=0),)

    def guided(module, grad_input, grad_output):
        return (grad_input[0].clamp(min=0),)  # grad_input already has the forward mask

    hook = {"deconvnet": deconvnet, "guided_backprop": guided}.get(method)
    if hook is None:
        return []
    return [m.register_full_backward_hook(hook) for m in net.modules() if isinstance(m, torch.nn.ReLU)]


def torch_backward(net, seq, dnase, method, objective):
    handles = hook_relus(net, method)
    try:
        x = torch.tensor(np.ascontiguousarray(seq.transpose(0, 2, 1)), requires_grad=True)
        objective(x).backward()
        return x.grad.numpy().transpose(0, 2, 1)
    finally:
        for h in handles:
            h.remove()


def with_n_run(rng, n, length):
    seq = random_onehot(rng, n, length, n_frac=0.02)
    seq[0, 40:100] = 0.0  # a long run of N: exact ties in the pools
    return seq


@pytest.mark.parametrize("method", projections.RELU_RULES)
def test_rule_saliency_equals_torch_hooks(rng, method):
    net, model = torch_pair("full", 160, widths=WIDTHS, outputs=3, seed=3)
    seq = with_n_run(rng, 3, 160)
    dnase = rng.random((3, 160)).astype(np.float32)
    dnase[:, 30:110] = 0.0  # DNase ties too (the DNase branch is not differentiated)
    name = "gradient" if method == "gradient" else method
    got = jaxmotif.saliency(model, seq, dnase, target=None, method=name, batch_size=2)
    for t in range(3):
        ref = torch_backward(
            net, seq, dnase, method, lambda x, t=t: net(x, torch.tensor(dnase[:, None]))[:, t].sum()
        )
        assert np.max(np.abs(got[:, t] - ref)) <= 1e-5 * np.max(np.abs(ref))


def all_active_model():
    """Every ReLU input positive and every weight positive: the backward signal is positive everywhere."""
    model = Model.random(
        jaxmotif.DeepHistoneConfig(
            variant="dna", seq_len=32, num_outputs=2, widths=WIDTHS, hidden=6, output_names=("a", "b")
        ),
        key=jax.random.key(1),
    )

    def fix(path, leaf):
        names = [str(k.key) for k in path if isinstance(k, jax.tree_util.DictKey)]
        if names[-1] == "kernel":
            return jnp.abs(leaf)
        if names[-2:] == ["norm", "bias"]:
            return jnp.full_like(leaf, 0.5)
        return leaf

    state = jax.tree_util.tree_map_with_path(fix, model.params)
    return Model(nnx.merge(model.graphdef, state))


def test_guided_equals_gradient_where_all_relus_active(rng):
    model = all_active_model()
    seq = random_onehot(rng, 3, 32)
    grad = jaxmotif.saliency(model, seq, target=None, method="gradient", logits=True)
    assert np.all(grad > 0)  # the construction worked: every path carries positive signal
    for method in ("guided_backprop", "deconvnet"):
        got = jaxmotif.saliency(model, seq, target=None, method=method, logits=True)
        np.testing.assert_allclose(got, grad, rtol=1e-6, atol=0)
    # a normal model differs, so the check above is not vacuous
    _, other = torch_pair("dna", 32, widths=WIDTHS, outputs=2, seed=0)
    a = jaxmotif.saliency(other, seq, target=0, method="gradient")
    b = jaxmotif.saliency(other, seq, target=0, method="guided_backprop")
    assert not np.allclose(a, b)


# ---------------------------------------------------------------------------------------------
# Hidden units as targets
# ---------------------------------------------------------------------------------------------


def hand_receptive_field(layer, position, length):
    """[start, stop) from the chain rule of receptive fields along the longest path to ``layer``."""
    b1 = ["conv"] * 4  # conv1 + three dense layers
    path = {"conv1": ["conv"], "trans1": [*b1, "pool"], "trans2": [*b1, "pool", *["conv"] * 3, "pool"]}
    for i in range(3):
        path[f"block1.{i}"] = ["conv"] * (i + 2)
        path[f"block2.{i}"] = [*b1, "pool", *["conv"] * (i + 1)]
    jump, size, start = 1, 1, 0
    for op in path[layer]:
        if op == "conv":  # kernel 9, padding 4
            size, start = size + 8 * jump, start - 4 * jump
        else:  # max-pool 4, stride 4
            size, jump = size + 3 * jump, jump * 4
    lo = position * jump + start
    return max(lo, 0), min(lo + size, length)


@pytest.mark.parametrize("method", projections.RELU_RULES)
def test_projections_vanish_outside_the_receptive_field(rng, method):
    _, model = torch_pair("full", 256, widths=WIDTHS, outputs=2, seed=4)
    seq = random_onehot(rng, 2, 256)
    assert projections.layers(model)[:9] == (
        "conv1", "block1.0", "block1.1", "block1.2", "trans1", "block2.0", "block2.1", "block2.2", "trans2",
    )  # fmt: skip
    for layer in projections.layers(model)[:9]:
        shape = projections.layer_shape(model.config, layer)
        for position in (0, shape.positions // 2, shape.positions - 1):
            start, stop = hand_receptive_field(layer, position, 256)
            assert projections.receptive_field(model.config, layer, position) == (start, stop)
            got = jaxmotif.project(model, seq, layer, channel=1, position=position, method=method)
            assert got.shape == (2, 256, 4)
            inside = np.zeros(256, bool)
            inside[start:stop] = True
            assert np.all(got[:, ~inside] == 0), (layer, position)
            assert np.any(got[:, inside] != 0), (layer, position)


@pytest.mark.parametrize("method", projections.RELU_RULES)
def test_project_equals_torch_hooks(rng, method):
    net, model = torch_pair("dna", 128, widths=WIDTHS, outputs=2, seed=5)
    seq = with_n_run(rng, 3, 128)
    branch = net.seq_map
    taps = {"block1.1": branch.block1.layer[1].block[2], "trans1": branch.trans1, "trans2": branch.trans2}
    for layer, module in taps.items():
        for position, signal in ((None, "ones"), (3, "ones"), (None, "activation")):
            seen = {}
            handle = module.register_forward_hook(lambda m, i, o, seen=seen: seen.update(out=o))

            def objective(x, channel=2, position=position, signal=signal, seen=seen):
                net(x)
                fmap = seen["out"][:, channel, 0]  # (N, W)
                if position is not None:
                    fmap = fmap[:, position : position + 1]
                weight = torch.ones_like(fmap) if signal == "ones" else fmap.detach().clamp(min=0)
                return (fmap * weight).sum()

            try:
                ref = torch_backward(net, seq, None, method, objective)
            finally:
                handle.remove()
            got = jaxmotif.project(model, seq, layer, 2, position, method=method, signal=signal, batch_size=2)
            assert np.max(np.abs(got - ref)) <= 1e-5 * np.max(np.abs(ref)) + 1e-12, (layer, position, signal)


def test_project_head_units_and_errors(rng):
    net, model = torch_pair("full", 64, widths=WIDTHS, hidden=10, outputs=2, seed=6)
    seq = random_onehot(rng, 2, 64)
    dnase = rng.random((2, 64)).astype(np.float32)
    got = jaxmotif.project(model, seq, "head.dense", channel=4, dnase=dnase, method="gradient")
    dense = net.linear_map[1]
    dnase_t = torch.tensor(dnase[:, None])
    ref = torch_backward(
        net,
        seq,
        dnase,
        "gradient",
        lambda x: dense(torch.cat([net.seq_map(x), net.dns_map(dnase_t)], 1))[:, 4].sum(),
    )
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6 * np.abs(ref).max())
    with pytest.raises(ValueError, match="layer='block3.0' is not a layer"):
        jaxmotif.project(model, seq, "block3.0", 0)
    with pytest.raises(ValueError, match="channel=8 out of range for layer='trans2' with 8 channels"):
        jaxmotif.project(model, seq, "trans2", 8)
    with pytest.raises(ValueError, match="position=4 out of range for layer='trans2' with 4 positions"):
        jaxmotif.project(model, seq, "trans2", 0, 4)
    with pytest.raises(ValueError, match="method='lrp'"):
        jaxmotif.project(model, seq, "conv1", 0, method="lrp")
    with pytest.raises(ValueError, match="seq shape"):
        jaxmotif.project(model, seq[:, :10], "conv1", 0)


# ---------------------------------------------------------------------------------------------
# Inverse-activation projection
# ---------------------------------------------------------------------------------------------


def test_inverse_activation_equals_torch_transpose_pass(rng):
    net, model = torch_pair("full", 96, widths=WIDTHS, outputs=3, seed=7)
    seq = random_onehot(rng, 4, 96)
    dnase = rng.random((4, 96)).astype(np.float32)
    values = np.array([0.9, 0.2, 0.5001, 0.99], np.float32)
    got = projections.inverse_activation(model, seq, dnase, target=1, value=values)
    z = np.log(values / (1 - values))
    signal = torch.zeros(4, 3)
    signal[:, 1] = torch.tensor(z)

    def objective(x):
        features = torch.cat([net.seq_map(x), net.dns_map(torch.tensor(dnase[:, None]))], 1)
        logits = net.linear_map[:-1](features)
        return (logits * signal).sum()

    ref = torch_backward(net, seq, dnase, "deconvnet", objective)
    assert np.max(np.abs(got - ref)) <= 1e-5 * np.max(np.abs(ref))
    # value=None starts from the model's own prediction
    pred = model(seq, dnase)[:, 1]
    np.testing.assert_allclose(
        projections.inverse_activation(model, seq, dnase, target=1),
        projections.inverse_activation(model, seq, dnase, target=1, value=pred),
        rtol=1e-5,
        atol=1e-7,
    )
    # through saliency(): every target at once
    every = jaxmotif.saliency(model, seq, dnase, target=None, method="inverse_activation", value=0.9)
    np.testing.assert_allclose(
        every[:, 1], projections.inverse_activation(model, seq, dnase, 1, value=0.9), rtol=1e-6, atol=1e-9
    )
    with pytest.raises(ValueError, match="value=1.0 must lie strictly between 0 and 1"):
        projections.inverse_activation(model, seq, dnase, target=0, value=1.0)


def test_rule_saliency_does_not_recompile(rng):
    _, model = torch_pair("dna", 64, widths=WIDTHS, outputs=2)
    seq = random_onehot(rng, 3, 64)
    jaxmotif.saliency(model, seq, target=0, method="deconvnet")
    jaxmotif.project(model, seq, "trans1", 0, 3)
    with compile_messages() as messages:
        jaxmotif.saliency(model, seq, target=0, method="deconvnet")
        jaxmotif.project(model, seq, "trans1", 5, 7)  # another unit: same compiled kernel
    assert not [m for m in messages if "Compiling" in m]
