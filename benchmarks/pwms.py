"""conv1 PWMs (method 7): jaxmotif's on-device counting vs the seed's get_PWM.py loop in NumPy.

The seed computes conv1 with PyTorch (here on the same device) and then loops in Python over
filters and sites. It is timed on a sample of sequences and extrapolated to the full count.
"""

import time

import numpy as np

from benchmarks.common import Result, random_inputs, torch_device, torch_sync
from jaxmotif.filters import conv1_pwms, conv1_weights


def seed_get_pwm(conv_out, weights, bias, x_nchw, factor=0.9):
    """The seed's get_PWM.py loop, verbatim in structure (per filter, per site), edge rows corrected."""
    n_filters, _, width = weights.shape
    length = x_nchw.shape[-1]
    pwms = []
    for i in range(n_filters):
        threshold = (np.sum(np.max(weights[i], 1)) + bias[i]) * factor
        model_c = conv_out[:, i, :] - bias[i]
        position_m = np.where(model_c >= threshold)
        count = position_m[1].shape[0]
        instances = np.zeros([count, 4, width])
        for j in range(count):
            if position_m[1][j] <= length - width:
                instances[j] = x_nchw[position_m[0][j], :, position_m[1][j] : position_m[1][j] + width]
        pwms.append(instances.mean(0) if count else np.full((4, width), np.nan))
    return pwms


def bench_pwms(model, *, precision, device, quick) -> list[Result]:
    """``precision`` is ignored: sites are decided by >= on exact fp32 scores."""
    import torch

    del precision

    n = 2_000 if quick else 100_000
    seq, _ = random_inputs(n, model.config, seed=5)
    batch = 256 if quick else 4096
    t0 = time.perf_counter()
    conv1_pwms(model, seq[:batch], batch_size=batch)  # compiles for this chunk size
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = conv1_pwms(model, seq, batch_size=batch)
    steady = time.perf_counter() - t0
    results = [
        Result(
            f"conv1 PWMs, {n} seqs",
            "jaxmotif",
            "fp32",
            n / steady,
            "seq/s",
            batch,
            compile_s,
            note=f"{int(result.sites.sum())} sites",
        )
    ]
    # the same sequences as uint8 one-hot: exact, a quarter of the bytes from host to device
    onehot_u8 = seq.astype(np.uint8)
    conv1_pwms(model, onehot_u8[:batch], batch_size=batch)
    t0 = time.perf_counter()
    conv1_pwms(model, onehot_u8, batch_size=batch)
    steady_u8 = time.perf_counter() - t0
    results.append(
        Result(
            f"conv1 PWMs, {n} seqs",
            "jaxmotif, uint8 one-hot input",
            "fp32",
            n / steady_u8,
            "seq/s",
            batch,
            0.0,
        )
    )
    # the same sequences as int8 base indices: a sixteenth of float32's bytes, one-hot built on the device
    indices = (np.argmax(seq, -1) - (seq.sum(-1) == 0)).astype(np.int8)  # -1 for N rows
    conv1_pwms(model, indices[:batch], batch_size=batch)
    t0 = time.perf_counter()
    result_i8 = conv1_pwms(model, indices, batch_size=batch)
    steady_i8 = time.perf_counter() - t0
    assert np.array_equal(result_i8.counts, result.counts)  # a benchmark of a wrong answer is no benchmark
    results.append(
        Result(
            f"conv1 PWMs, {n} seqs",
            "jaxmotif, int8 base-index input",
            "fp32",
            n / steady_i8,
            "seq/s",
            batch,
            0.0,
        )
    )
    # the seed: conv1 through PyTorch, then the Python loop, on a sample
    sample = 64 if quick else 500
    kernel, bias = conv1_weights(model)  # (9, 4, F), (F,)
    weights = kernel.transpose(2, 1, 0)  # (F, 4, 9) as the seed's WEIGHTS.squeeze()
    conv = torch.nn.Conv2d(1, weights.shape[0], (4, 9), 1, (0, 4)).to(torch_device(device))
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(weights[:, None]))
        conv.bias.copy_(torch.tensor(bias))
    x_nchw = np.ascontiguousarray(seq[:sample].transpose(0, 2, 1))
    t0 = time.perf_counter()
    with torch.no_grad():
        conv_out = conv(torch.tensor(x_nchw[:, None], device=torch_device(device))).squeeze(2)
    torch_sync()
    seed_get_pwm(conv_out.cpu().numpy(), weights, bias, x_nchw)
    seed_s = (time.perf_counter() - t0) * n / sample
    results.append(
        Result(
            f"conv1 PWMs, {n} seqs",
            "seed get_PWM.py (NumPy loop)",
            "fp32",
            n / seed_s,
            "seq/s",
            sample,
            0.0,
            note=f"extrapolated from {sample} seqs",
        )
    )
    return results
