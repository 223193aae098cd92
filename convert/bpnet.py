"""bpnet-lite BPNet / ChromBPNet ``state_dict`` (NumPy) <-> jaxmotif params: the explicit key maps.

Pure dict functions, no file reading (``convert.convert`` reads files). bpnet-lite's names are
kept: ``iconv``, ``rconvs.{i}``, ``fconv``, ``linear``; a ChromBPNet's are the same under
``bias.`` and ``accessibility.``.

Layout changes: PyTorch ``Conv1d`` weights are ``(out, in, K)`` over ``(N, C, L)``; ours
``(K, in, out)`` over channels-last ``(N, L, C)``. ``Linear`` weights ``(out, in)`` become
kernels ``(in, out)``. Channel orders are unchanged (``fconv`` reads ``[filters, controls]``,
``linear`` reads ``[filters, log(1 + control total)]``, as bpnet-lite concatenates them).
"""

import numpy as np

from convert.readers import key_mismatches
from jaxmotif.models.bpnet import FCONV_WIDTH, ICONV_WIDTH, RCONV_WIDTH, BPNetConfig, ChromBPNetConfig


def _conv(w):
    return np.ascontiguousarray(np.asarray(w, np.float32).transpose(2, 1, 0))


def bpnet_keys(config: BPNetConfig, scope: str = "") -> dict[str, tuple]:
    """Every state_dict key of a bpnet-lite BPNet built as ``config``, with its PyTorch shape."""
    p = f"{scope}." if scope else ""
    f, ctl = config.n_filters, config.n_control_tracks
    keys = {f"{p}iconv.weight": (f, 4, ICONV_WIDTH), f"{p}iconv.bias": (f,)}
    for i in range(config.n_layers):
        keys[f"{p}rconvs.{i}.weight"] = (f, f, RCONV_WIDTH)
        keys[f"{p}rconvs.{i}.bias"] = (f,)
    keys[f"{p}fconv.weight"] = (config.n_outputs, f + ctl, FCONV_WIDTH)
    if config.profile_output_bias:
        keys[f"{p}fconv.bias"] = (config.n_outputs,)
    keys[f"{p}linear.weight"] = (1, f + (1 if ctl else 0))
    if config.count_output_bias:
        keys[f"{p}linear.bias"] = (1,)
    return keys


def check_keys(sd: dict, expected: dict[str, tuple]) -> None:
    """Raises ValueError naming every missing, unexpected or mis-shaped key."""
    problems = key_mismatches(sd, expected)
    if problems:
        raise ValueError("state_dict does not match the BPNet config: " + "; ".join(problems))


def bpnet_params(sd: dict, config: BPNetConfig, scope: str = "") -> dict:
    """bpnet-lite BPNet state_dict -> the NNX pure dict of ``config``'s graph (keys checked first)."""
    check_keys(
        {k: v for k, v in sd.items() if k.startswith(f"{scope}." if scope else "")}, bpnet_keys(config, scope)
    )
    p = f"{scope}." if scope else ""

    def conv(name, bias=True):
        out = {"kernel": _conv(sd[f"{p}{name}.weight"])}
        if bias:
            out["bias"] = np.asarray(sd[f"{p}{name}.bias"], np.float32)
        return out

    params = {
        "iconv": conv("iconv"),
        "rconvs": {i: conv(f"rconvs.{i}") for i in range(config.n_layers)},
        "fconv": conv("fconv", config.profile_output_bias),
        "linear": {"kernel": np.ascontiguousarray(np.asarray(sd[f"{p}linear.weight"], np.float32).T)},
    }
    if config.count_output_bias:
        params["linear"]["bias"] = np.asarray(sd[f"{p}linear.bias"], np.float32)
    return params


def chrombpnet_params(sd: dict, config: ChromBPNetConfig) -> dict:
    """bpnet-lite ChromBPNet state_dict (``bias.*``, ``accessibility.*``) -> NNX pure dict."""
    expected = {**bpnet_keys(config.bias, "bias"), **bpnet_keys(config.accessibility, "accessibility")}
    check_keys(sd, expected)
    return {
        "bias": bpnet_params(sd, config.bias, "bias"),
        "accessibility": bpnet_params(sd, config.accessibility, "accessibility"),
    }


def bpnet_config_from_state_dict(
    sd: dict, *, seq_len: int = 2114, trimming: int | None = None, scope: str = ""
) -> BPNetConfig:
    """Filters, layers, strands, control tracks and biases read from the tensor shapes.

    ``trimming`` (and ``seq_len``) are not in a state_dict: bpnet-lite's default trimming for the
    layer count is assumed unless given.
    """
    p = f"{scope}." if scope else ""
    if f"{p}iconv.weight" not in sd:
        raise ValueError(f"no {p}iconv.weight: not a bpnet-lite BPNet state_dict")
    n_filters = int(np.shape(sd[f"{p}iconv.weight"])[0])
    n_layers = 0
    while f"{p}rconvs.{n_layers}.weight" in sd:
        n_layers += 1
    if f"{p}fconv.weight" not in sd:
        raise ValueError(f"no {p}fconv.weight in the state_dict")
    n_outputs, fin, _ = np.shape(sd[f"{p}fconv.weight"])
    return BPNetConfig(
        seq_len=seq_len,
        n_filters=n_filters,
        n_layers=n_layers,
        n_outputs=int(n_outputs),
        n_control_tracks=int(fin) - n_filters,
        trimming=trimming,
        profile_output_bias=f"{p}fconv.bias" in sd,
        count_output_bias=f"{p}linear.bias" in sd,
    )


def to_state_dict(params: dict, config) -> dict:
    """The inverse map (jaxmotif params -> bpnet-lite state_dict, NumPy), for tests and export."""
    if isinstance(config, ChromBPNetConfig):
        out = {}
        for scope in ("bias", "accessibility"):
            out.update(
                {f"{scope}.{k}": v for k, v in to_state_dict(params[scope], getattr(config, scope)).items()}
            )
        return out

    def conv(name, q):
        out = {f"{name}.weight": np.asarray(q["kernel"]).transpose(2, 1, 0)}
        if "bias" in q:
            out[f"{name}.bias"] = np.asarray(q["bias"])
        return out

    sd = {**conv("iconv", params["iconv"]), **conv("fconv", params["fconv"])}
    for i in range(config.n_layers):
        sd.update(conv(f"rconvs.{i}", params["rconvs"][i]))
    sd["linear.weight"] = np.asarray(params["linear"]["kernel"]).T
    if "bias" in params["linear"]:
        sd["linear.bias"] = np.asarray(params["linear"]["bias"])
    return sd
