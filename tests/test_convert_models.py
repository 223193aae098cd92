"""python -m convert end to end: files -> checkpoints -> jaxmotif models that predict like PyTorch.

Classic models (Basset, DeepSEA, Beluga) at reduced widths and lengths with random weights and
BatchNorm statistics; bpnet-lite BPNet / ChromBPNet from whole-module files and from a Keras h5 pair.
"""

import jax
import numpy as np
import pytest
import torch
from test_convert_classic import SMALL, small_net, torch_input, torch_logits
from test_convert_readers import _bpnet, write_keras_bpnet

import jaxmotif
from convert.__main__ import main as convert_main
from convert.classic import convert_classic, model_config
from jaxmotif.gradients import saliency_kernel
from jaxmotif.models.model import Model

bpnetlite = pytest.importorskip("bpnetlite")
from bpnetlite.chrombpnet import ChromBPNet  # noqa: E402

CLASSIC = {"basset": "BassetConfig", "deepsea": "DeepSEAConfig", "beluga": "BelugaConfig"}


def assert_rel(got, want, rtol=1e-5):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    scale = max(np.max(np.abs(want)), 1e-12)
    assert np.max(np.abs(got - want)) <= rtol * scale, np.max(np.abs(got - want)) / scale


def convert_classic_file(tmp_path, arch, net, seq_len, *extra):
    path = tmp_path / f"{arch}.pth"
    torch.save(net.state_dict(), path)
    out = tmp_path / f"ckpt_{arch}"
    # no --arch and no --alphabet: both come from the layout (L is ambiguous at reduced sizes)
    assert convert_main([str(path), str(out), "--seq-len", str(seq_len), *extra]) == 0
    return jaxmotif.load_model(out)


def classic_model(arch, net, seq_len):
    """The same conversion without the file round trip (for the slower checks)."""
    sd = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    sizes, params = convert_classic(sd, arch, seq_len=seq_len)
    return Model.from_params(model_config(sizes), params)


@pytest.mark.parametrize("arch", sorted(SMALL))
def test_classic_checkpoint_predicts_like_pytorch(tmp_path, rng, arch):
    net, seq_len = small_net(arch)
    model = convert_classic_file(tmp_path, arch, net, seq_len)
    assert model.config.arch == arch and model.config.alphabet == "ACGT"
    seq = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (4, seq_len))]
    with torch.no_grad():
        want = net(torch_input(seq, arch, model.config.source_alphabet).float()).numpy()
    assert_rel(model(seq), want)


@pytest.mark.parametrize("arch", sorted(SMALL))
def test_classic_saliency_matches_torch_autograd_in_float64(tmp_path, rng, arch):
    net, seq_len = small_net(arch, seed=1)
    model = classic_model(arch, net, seq_len)
    seq = np.eye(4)[rng.integers(0, 4, (2, seq_len))]
    targets = (0, 2)
    x = torch_input(seq, arch, model.config.source_alphabet).requires_grad_(True)
    out = net.double()(x)
    want = []
    for t in targets:
        (g,) = torch.autograd.grad(out[:, t].sum(), x, retain_graph=True)
        g = g[:, :, :, 0] if arch == "basset" else g[:, :, 0, :]  # (N, 4, L) in checkpoint row order
        rows = ["ACGT".index(b) for b in model.config.source_alphabet]
        acgt = np.zeros_like(g.numpy())
        acgt[:, rows] = g.numpy()  # checkpoint row i is base alphabet[i]
        want.append(acgt.transpose(0, 2, 1))
    want = np.stack(want, axis=1)  # (N, K, L, 4)
    with jax.enable_x64(True):
        params = jax.tree.map(lambda a: np.asarray(a, np.float64), model.params)
        kernel = jax.jit(lambda p, s: saliency_kernel(model.apply, p, s, None, targets, "gradient"))
        got = kernel(params, seq)
    assert_rel(got, want)
    assert np.max(np.abs(want)) > 0


def test_alphabet_fold_agct_and_acgt_checkpoints_predict_alike(tmp_path, rng):
    net, seq_len = small_net("deepsea", seed=2)
    agct = convert_classic_file(tmp_path, "deepsea", net, seq_len)  # kipoi's AGCT, folded by default
    with torch.no_grad():  # the same model with its input rows stored in ACGT order
        net[0].weight.copy_(net[0].weight[:, ["AGCT".index(b) for b in "ACGT"]].clone())
    (tmp_path / "acgt").mkdir()
    acgt = convert_classic_file(tmp_path / "acgt", "deepsea", net, seq_len, "--alphabet", "ACGT")
    assert (agct.config.source_alphabet, acgt.config.source_alphabet) == ("AGCT", "ACGT")
    seq = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (3, seq_len))]
    np.testing.assert_array_equal(agct(seq), acgt(seq))


@pytest.mark.parametrize("arch", sorted(SMALL))
def test_classic_fast_ism_equals_full(tmp_path, rng, arch):
    net, seq_len = small_net(arch, seed=4)
    model = classic_model(arch, net, seq_len)
    seq = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (1, seq_len))]
    # raw mutant predictions: deltas of p ~ 0.5 would compare fp32 cancellation noise
    full = jaxmotif.mutation_map(model, seq, score="raw", targets=[0, 1], method="full")
    fast = jaxmotif.mutation_map(model, seq, score="raw", targets=[0, 1], method="fast")
    assert_rel(fast, full)
    assert np.ptp(full) > 1e-4  # substitutions change the outputs


# ---- bpnet-lite ------------------------------------------------------------------------------------------

L = 240


def torch_heads(net, seq, control=None):
    x = torch.tensor(seq.transpose(0, 2, 1))
    ctl = None if control is None else torch.tensor(control.transpose(0, 2, 1))
    with torch.no_grad():
        profile, counts = net(x, ctl)
    return profile.numpy().transpose(0, 2, 1), counts.numpy()


@pytest.mark.parametrize("controls", [0, 2])
def test_bpnet_whole_module_file_converts_and_predicts_like_bpnetlite(tmp_path, rng, controls):
    net = _bpnet(6, 3, n_control_tracks=controls).eval()
    path = tmp_path / "bpnet.final.torch"
    torch.save(net, path)
    out = tmp_path / "ckpt"
    assert convert_main([str(path), str(out), "--seq-len", str(L)]) == 0
    model = jaxmotif.load_model(out)
    assert model.config.arch == "bpnet" and model.config.trimming == net.trimming
    seq = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (3, L))]
    control = rng.random((3, L, controls)).astype(np.float32) if controls else None
    got = model(seq, control)
    profile, counts = torch_heads(net, seq, control)
    assert_rel(got["profile"], profile)
    assert_rel(got["counts"], counts)


def test_encode_chrombpnet_h5_pair_converts_and_predicts_like_bpnetlite(tmp_path, rng):
    bias, acc = tmp_path / "bias.h5", tmp_path / "chrombpnet_nobias.h5"
    write_keras_bpnet(bias, "", 4, 2, seed=5)
    write_keras_bpnet(acc, "wo_bias_", 6, 3, seed=6)
    out = tmp_path / "ckpt"
    assert convert_main([str(acc), str(out), "--bias", str(bias), "--seq-len", str(L)]) == 0
    model = jaxmotif.load_model(out)
    assert model.config.arch == "chrombpnet"
    net = ChromBPNet.from_chrombpnet(str(bias), str(acc)).eval()
    seq = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (2, L))]
    got = model(seq)
    profile, counts = torch_heads(net, seq)
    assert_rel(got["profile"], profile)
    assert_rel(got["counts"], counts)


METHODS = {
    "grad_x_input": lambda m, s: jaxmotif.saliency(m, s, target=0),
    "guided_backprop": lambda m, s: jaxmotif.saliency(m, s, target=0, method="guided_backprop"),
    "integrated_gradients": lambda m, s: jaxmotif.integrated_gradients(m, s, target=0, steps=4),
    "mutation_map": lambda m, s: jaxmotif.mutation_map(m, s, targets=[0], method="full")[..., 0],
    "conv1_pwms": lambda m, s: jaxmotif.conv1_pwms(m, s).pwms,
}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_kernels_run_on_a_converted_deepsea(rng, method):
    """DeepSEA: valid convolutions of even width, the Threshold activation, AGCT folded."""
    net, seq_len = small_net("deepsea", seed=0)
    model = classic_model("deepsea", net, seq_len)
    seq = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (2, seq_len))]
    out = np.asarray(METHODS[method](model, seq))
    # per sequence, or per conv1 filter (5 at this width) with 8-row windows for the PWMs
    assert out.shape[:2] == ((5, 8) if method == "conv1_pwms" else (2, seq_len))
    assert np.all(np.isfinite(out[~np.isnan(out)])) and np.any(out != 0)


def first_torch_conv(net, arch):
    return net.model[0][0] if arch == "beluga" else net[0]


def naive_valid_pwm_counts(conv_out, bias, x, width, *, factor=None):
    """Loop reference for a 'valid' conv1: output j saw rows j .. j + K - 1; conv_out (N, F, L - K + 1).

    ``factor``: the seed rule on the pre-bias score with the best-K-mer threshold (needs ``weights``
    folded in by the caller as ``thresholds``); None: Basset's rule, activation > 0.5 x its maximum.
    """
    n_filters = conv_out.shape[1]
    counts = np.zeros((n_filters, width, 4))
    sites = np.zeros(n_filters, np.int64)
    for i in range(n_filters):
        act = conv_out[:, i, :]
        fired = act - bias[i] >= factor[i] if factor is not None else act > 0.5 * act.max()
        for n, j in zip(*np.nonzero(fired), strict=True):
            counts[i] += x[n, j : j + width]
            sites[i] += 1
    return counts, sites


@pytest.mark.parametrize("arch", sorted(SMALL))
@pytest.mark.parametrize("mode", ["seed", "max-activation"])
def test_conv1_pwms_of_a_valid_first_conv_equal_a_loop_over_torch_conv1(rng, arch, mode):
    """Basset (K = 19), DeepSEA and Beluga (K = 8, even): windows are the K rows each output saw."""
    net, seq_len = small_net(arch, seed=5)
    model = classic_model(arch, net, seq_len)
    width = 19 if arch == "basset" else 8
    seq = np.eye(4)[rng.integers(0, 4, (6, seq_len))]
    seq[0, 10:14] = 0  # a few N rows: they add nothing to the counts
    with torch.no_grad():
        conv = first_torch_conv(net, arch).double()
        conv_out = conv(torch_input(seq, arch, model.config.source_alphabet)).numpy()
    conv_out = conv_out[:, :, :, 0] if arch == "basset" else conv_out[:, :, 0, :]  # (N, F, L - K + 1)
    bias = conv.bias.detach().numpy()
    result = jaxmotif.conv1_pwms(model, seq.astype(np.float32), mode=mode, threshold_factor=0.5)
    assert result.pwms.shape[1] == width and result.alphabet == "ACGT"
    if mode == "seed":
        rows = ["ACGT".index(b) for b in model.config.source_alphabet]
        weights = np.zeros_like(conv.weight.detach().numpy())
        weights[:, rows] = conv.weight.detach().numpy()  # checkpoint row i is base alphabet[i]
        best = weights.reshape(weights.shape[0], 4, width).max(axis=1).sum(axis=1)
        thresholds = 0.5 * (best + bias)
        np.testing.assert_allclose(result.thresholds, thresholds, rtol=1e-5, atol=1e-6)
        counts, sites = naive_valid_pwm_counts(conv_out, bias, seq, width, factor=thresholds)
    else:
        counts, sites = naive_valid_pwm_counts(conv_out, bias, seq, width)
    assert sites.sum() > 10
    np.testing.assert_array_equal(result.sites, sites)
    np.testing.assert_array_equal(result.counts, counts)
    np.testing.assert_array_equal(result.edge_sites_excluded, 0)  # a valid conv1 never reads padding


def test_conv1_pwms_of_bpnet_iconv_equal_the_seed_rule_over_torch_iconv(tmp_path, rng):
    """BPNet's iconv (K = 21, 'same'): windows centred on the output position, edges excluded."""
    from test_filters import check_against_seed, seed_rule

    net = _bpnet(6, 2).eval()
    torch.save(net, tmp_path / "bpnet.torch")
    assert convert_main([str(tmp_path / "bpnet.torch"), str(tmp_path / "ckpt"), "--seq-len", str(L)]) == 0
    model = jaxmotif.load_model(tmp_path / "ckpt")
    x = np.eye(4)[rng.integers(0, 4, (4, 60))]  # conv1 PWMs take any L >= K
    result = jaxmotif.conv1_pwms(model, x, threshold_factor=0.4)
    with torch.no_grad():
        conv_out = net.iconv.double()(torch.tensor(x.transpose(0, 2, 1))).numpy()
    weights, bias = net.iconv.weight.detach().double().numpy(), net.iconv.bias.detach().double().numpy()
    ref = seed_rule(weights, bias, conv_out, x, 0.4, alignment="filter", max_over="bases")
    assert result.pwms.shape[1] == 21 and sum(ref["sites"]) > 5 and sum(ref["edge"]) > 0
    check_against_seed(result, ref)


def test_classic_models_default_to_the_exact_fast_ism():
    from jaxmotif.ism import default_method

    for arch in SMALL:
        net, seq_len = small_net(arch)
        assert default_method(classic_model(arch, net, seq_len)) == "fast"


def test_class_optimization_on_a_converted_basset():
    """Class optimization on a classic model (valid convs, BatchNorm, sigmoid head): the logit it
    reports for the optimized inputs is PyTorch's, and it went up."""
    net, seq_len = small_net("basset", seed=6)
    model = classic_model("basset", net, seq_len)
    # no L2 penalty: this small random net is nearly flat, the default l2 would outweigh its gradient
    result = jaxmotif.class_inputs(model, targets=[1], restarts=2, steps=25, key=jax.random.key(0), l2=0.0)
    assert result.inputs.shape == (1, 2, seq_len, 4)
    assert np.all(result.scores > result.initial_scores)
    x = torch_input(np.asarray(result.inputs[0], np.float64), "basset", model.config.source_alphabet)
    want = torch_logits(net.double(), x)[:, 1]
    assert_rel(result.scores[0], want, 1e-4)


def test_bpnet_state_dict_with_trimming_flag(tmp_path, rng):
    net = _bpnet(5, 2, trimming=40).eval()  # not bpnet-lite's default (53): a state_dict cannot say so
    torch.save(net.state_dict(), tmp_path / "sd.pt")
    out = tmp_path / "ckpt"
    assert convert_main([str(tmp_path / "sd.pt"), str(out), "--seq-len", str(L), "--trimming", "40"]) == 0
    model = jaxmotif.load_model(out)
    seq = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (2, L))]
    profile, counts = torch_heads(net, seq)
    got = model(seq)
    assert got["profile"].shape == profile.shape == (2, L - 80, 2)
    assert_rel(got["profile"], profile)
    assert_rel(got["counts"], counts)


@pytest.mark.parametrize("arch", sorted(CLASSIC))
def test_full_size_graphs_hold_the_published_tensors(arch):
    """The published models' parameter shapes, without allocating them or running a forward."""
    from test_convert_classic import FULL

    from convert.classic import LAYOUTS, conv_kernel
    from jaxmotif.models.checkpoint import abstract_params

    make, _ = FULL[arch]
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in make().state_dict().items()}
    layout = LAYOUTS[arch]
    config = layout.published
    params = abstract_params(config)
    for i, conv in enumerate(layout.convs):
        kernel = conv_kernel(np.empty(shapes[f"{conv}.weight"], np.float32), layout.kernel_axis)
        assert params[f"conv{i + 1}"]["kernel"].shape == kernel.shape
    hidden = shapes[f"{layout.dense[0]}.weight"]
    assert params["dense1"]["kernel"].shape == (hidden[1], hidden[0])
    assert params["out"]["kernel"].shape[-1] == config.num_outputs == shapes[f"{layout.dense[-1]}.weight"][0]
