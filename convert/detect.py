"""Which architecture a checkpoint holds, and BPNet hyperparameters inferred from its tensors and checked.

``detect_arch`` reads the state_dict keys (and, for pickled modules, the recorded class names):

    deephistone   seq_map.conv1.0.weight
    bpnet         iconv.weight, rconvs.{i}.weight, fconv.weight, linear.weight        (bpnet-lite BPNet)
    chrombpnet    bias.iconv.weight + accessibility.iconv.weight                    (bpnet-lite ChromBPNet)
    basset        0.weight (300, 4, 19, 1), 13.1.weight                              (kipoi Basset)
    deepsea       0.weight (320, 4, 1, 8), 12.1.weight, 14.1.weight                  (kipoi DeepSEA)
    beluga        model.0.0.weight, model.1.2.1.weight                               (ExPecto Beluga)

Keys are first stripped of prefixes every key shares (``strip_wrapper``: ``module.``, ``model.``,
kipoi's ``Sequential`` index, ...) and bpnet-lite wrapper modules unwrapped (``unwrap_module``).
bpnet-lite's ``BasePairNet`` has BPNet's keys but another graph: a pickled one is refused (its
state_dict cannot be told apart from a BPNet's).
"""

import numpy as np

from convert.readers import Checkpoint, ConversionError

ARCHITECTURES = ("deephistone", "bpnet", "chrombpnet", "basset", "deepsea", "beluga")


MAX_WRAPPERS = 4  # e.g. Lightning's "model." around DataParallel's "module." around kipoi's "2."


def strip_wrapper(sd: dict, arch: str | None = None) -> dict:
    """Drops leading key components every key shares, as far as needed for an architecture to show.

    Training code wraps models: DataParallel adds ``module.``, Lightning and Selene ``model.``, users
    ``net.``; kipoi's ``deepsea_predict.pth`` is ``Sequential(ReCodeAlphabet(), ConcatenateRC(),
    deepsea, AverageRC())`` (keys ``2.0.weight``, ...). Keys are tried as they are first, then with
    one shared component removed at a time (Beluga's own keys start with ``model.``): the first form
    :func:`detect_arch` recognises -- as ``arch`` when one is forced, else as any architecture, so
    that a forced wrong one is reported against the real keys -- is returned; ``sd`` itself if none is.
    """
    found = _detectable(sd, arch)
    return sd if found is None else found


def _shared_prefix_forms(sd: dict) -> list[dict]:
    forms = [sd]
    while len(forms) <= MAX_WRAPPERS:
        keys = forms[-1]
        first = {k.split(".", 1)[0] for k in keys}
        if len(first) != 1 or not all("." in k for k in keys):
            break
        forms.append({k.split(".", 1)[1]: v for k, v in keys.items()})
    return forms


def _detectable(sd: dict, arch: str | None) -> dict | None:
    found = []
    for form in _shared_prefix_forms(sd):
        try:
            found.append((detect_arch(Checkpoint(form, "state_dict")), form))
        except ConversionError:
            continue
    for detected, form in found:
        if arch is None or detected == arch:
            return form
    return found[0][1] if found else None


def model_keys(sd: dict, arch: str | None = None) -> tuple[dict, list[str]]:
    """:func:`strip_wrapper`, and where that finds no model: the one top-level module that holds one.

    A Lightning module keeps more than its network in its state_dict (``model.*`` next to, say,
    ``criterion.pos_weight``). When exactly one top-level prefix (after the shared ones) holds a
    recognisable model, its keys are returned with the list of the keys left out; two or more
    (``model.*`` and ``ema_model.*``) are refused, naming them. Otherwise ``(sd, [])``.
    """
    found = _detectable(sd, arch)
    if found is not None:
        return found, []
    for form in _shared_prefix_forms(sd):
        groups = sorted({k.split(".", 1)[0] for k in form if "." in k})
        hits = {}
        for group in groups:
            sub = {k[len(group) + 1 :]: v for k, v in form.items() if k.startswith(group + ".")}
            inner = _detectable(sub, arch)
            if inner is not None:
                hits[group] = inner
        if len(hits) > 1:
            raise ConversionError(
                "several models in one file, under " + ", ".join(f"{g}." for g in hits) + "; save the one to "
                "convert on its own"
            )
        if hits:
            ((group, inner),) = hits.items()
            return inner, sorted(k for k in form if not k.startswith(group + "."))
    return sd, []


# bpnet-lite's attribution wrappers hold the model as ``.model`` and add no parameters
BPNETLITE_WRAPPERS = (
    "bpnetlite.bpnet.ControlWrapper",
    "bpnetlite.bpnet.ProfileWrapper",
    "bpnetlite.bpnet.CountWrapper",
)


def unwrap_module(ck: Checkpoint) -> Checkpoint:
    """A pickled ``ControlWrapper`` / ``ProfileWrapper`` / ``CountWrapper`` -> the model inside.

    The converted model is the wrapped network; its attribution targets (``profile``, ``counts``)
    are what these wrappers compute.
    """
    while ck.root_class in BPNETLITE_WRAPPERS:
        inner = "model."
        if "model" not in ck.modules:
            raise ConversionError(f"a pickled {ck.root_class} without its .model")
        stray = sorted(k for k in ck.tensors if not k.startswith(inner))
        if stray:
            raise ConversionError(f"unexpected tensors in a {ck.root_class}: {', '.join(stray)}")
        tensors = {k[len(inner) :]: v for k, v in ck.tensors.items()}
        modules = {
            ("" if k == "model" else k[len(inner) :]): v
            for k, v in ck.modules.items()
            if k == "model" or k.startswith(inner)
        }
        ck = Checkpoint(tensors, ck.source, modules)
    return ck


def detect_arch(ck: Checkpoint) -> str:
    """The architecture name for ``ck`` (see the module docstring); an error lists what was seen."""
    keys = set(ck.tensors)
    root = ck.root_class or ""
    if root.endswith("ChromBPNet") or {"bias.iconv.weight", "accessibility.iconv.weight"} <= keys:
        return "chrombpnet"
    if root == "bpnetlite.bpnet.BasePairNet":
        raise ConversionError(BASEPAIRNET_REFUSAL)
    if root.endswith("BPNet") or {"iconv.weight", "fconv.weight", "linear.weight"} <= keys:
        return "bpnet"
    if "seq_map.conv1.0.weight" in keys:
        return "deephistone"
    if {"model.0.0.weight", "model.1.2.1.weight"} <= keys:
        return "beluga"
    if {"0.weight", "1.running_mean", "13.1.weight"} <= keys:
        return "basset"
    if {"0.weight", "12.1.weight", "14.1.weight"} <= keys:
        return "deepsea"
    shown = ", ".join(sorted(keys)[:6]) + (", ..." if len(keys) > 6 else "")
    raise ConversionError(
        f"cannot tell the architecture from the keys ({shown}); pass --arch one of {', '.join(ARCHITECTURES)}"
    )


# ---- BPNet (bpnet-lite) -----------------------------------------------------------------------------------

# Same keys and shapes as a BPNet, different graph: a BPNet conversion would predict wrong numbers.
BASEPAIRNET_REFUSAL = (
    "bpnetlite.bpnet.BasePairNet (basepairmodels' BPNet: residuals added before the ReLU, counts "
    "read log(2 + control)) is not supported; only bpnet-lite's BPNet and ChromBPNet are"
)

BPNET_HYPER = ("n_filters", "n_layers", "n_outputs", "n_control_tracks")


def _shape(sd, key, prefix=""):
    if key not in sd:
        raise ConversionError(f"missing key {prefix + key!r}: not a bpnet-lite BPNet state_dict")
    return tuple(np.shape(sd[key]))


def bpnet_hyperparameters(
    sd: dict, recorded: dict | None = None, prefix: str = "", trimming: int | None = None
) -> dict:
    """``n_filters``, ``n_layers``, ``n_outputs``, ``n_control_tracks``, ``trimming`` of one BPNet.

    Inferred from the tensors under ``prefix``; every key's shape is checked against them, and so is
    every hyperparameter ``recorded`` in a pickled module. A mismatch raises an error naming the key.
    ``trimming`` is not in the tensors: ``trimming`` if given (checked against a recorded value),
    else the recorded value, else bpnet-lite's default for ``n_layers``.
    """
    from convert.readers import default_trimming

    sub = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    n_filters, cin, width = _shape(sub, "iconv.weight", prefix)
    n_layers = 0
    while f"rconvs.{n_layers}.weight" in sub:
        n_layers += 1
    n_outputs, fin, fwidth = _shape(sub, "fconv.weight", prefix)
    n_controls = fin - n_filters
    has_count_control = 1 if n_controls > 0 else 0
    want = {
        "iconv.weight": (n_filters, 4, 21),
        "iconv.bias": (n_filters,),
        "fconv.weight": (n_outputs, n_filters + n_controls, 75),
        "linear.weight": (1, n_filters + has_count_control),
    }
    for i in range(n_layers):
        want[f"rconvs.{i}.weight"] = (n_filters, n_filters, 3)
        want[f"rconvs.{i}.bias"] = (n_filters,)
    optional = {"fconv.bias": (n_outputs,), "linear.bias": (1,)}  # profile/count_output_bias=False drop them
    problems = []
    if n_controls < 0:
        problems.append(f"{prefix}fconv.weight has {fin} input channels, fewer than the {n_filters} filters")
    for key, shape in {**want, **optional}.items():
        if key in sub and tuple(np.shape(sub[key])) != shape:
            problems.append(f"{prefix}{key} has shape {tuple(np.shape(sub[key]))}, expected {shape}")
        elif key not in sub and key in want:
            problems.append(f"missing key {prefix}{key}")
    unexpected = sorted(set(sub) - set(want) - set(optional))
    if unexpected:
        problems.append("unexpected keys " + ", ".join(prefix + k for k in unexpected))
    inferred = {
        "n_filters": int(n_filters),
        "n_layers": n_layers,
        "n_outputs": int(n_outputs),
        "n_control_tracks": int(max(n_controls, 0)),
    }
    recorded = recorded or {}
    for name in BPNET_HYPER:
        if name in recorded and recorded[name] is not None and recorded[name] != inferred[name]:
            problems.append(
                f"{prefix}{name} = {recorded[name]} recorded in the file, but the tensors give "
                f"{inferred[name]} "
                f"({_evidence(name, prefix)})"
            )
    if trimming is not None and recorded.get("trimming") not in (None, trimming):
        problems.append(f"--trimming {trimming}, but the file records trimming = {recorded['trimming']}")
    source = "flag"
    if trimming is None:
        trimming, source = recorded.get("trimming"), "recorded"
    if trimming is None:
        trimming, source = default_trimming(n_layers), "default"
    if not isinstance(trimming, int) or trimming < 0:
        problems.append(f"{prefix}trimming = {trimming!r} is not a non-negative integer")
    if problems:
        raise ConversionError("; ".join(problems))
    return {**inferred, "trimming": trimming, "trimming_from": source, "name": recorded.get("name")}


def _evidence(name: str, prefix: str) -> str:
    return {
        "n_filters": f"{prefix}iconv.weight rows",
        "n_layers": f"the {prefix}rconvs.* keys",
        "n_outputs": f"{prefix}fconv.weight rows",
        "n_control_tracks": f"{prefix}fconv.weight input channels minus n_filters",
    }[name]


def check_recorded_layers(ck: Checkpoint, prefix: str = "") -> None:
    """A pickled module's own record of its layers must be a plain bpnet-lite BPNet's.

    The tensors fix the widths, not how a module was called: bpnet-lite's ``from_chrombpnet_lite``
    (and a user) can change a convolution's ``padding`` after construction, and ``BasePairNet``
    shares BPNet's keys. Both would convert silently into a model that predicts other numbers.
    """
    record = ck.modules.get(prefix.rstrip("."))
    if record is not None and record.cls == "bpnetlite.bpnet.BasePairNet":
        raise ConversionError(f"{prefix}: {BASEPAIRNET_REFUSAL}" if prefix else BASEPAIRNET_REFUSAL)
    if record is not None and not record.cls.endswith("BPNet") and ck.source == "module":
        raise ConversionError(f"{prefix.rstrip('.') or 'the root'} is a {record.cls}, not a bpnet-lite BPNet")
    n_layers = 0
    while f"{prefix}rconvs.{n_layers}.weight" in ck.tensors:
        n_layers += 1
    convs = (
        {"iconv": (21, 1)} | {f"rconvs.{i}": (3, 2 ** (i + 1)) for i in range(n_layers)} | {"fconv": (75, 1)}
    )
    problems = []
    for name, (width, dilation) in convs.items():
        conv = ck.modules.get(prefix + name)
        if conv is None:
            continue
        want = {
            "kernel_size": [width],
            "dilation": [dilation],
            "padding": [dilation * (width - 1) // 2],
            "stride": [1],
            "groups": 1,
            "padding_mode": "zeros",
        }
        for key, value in want.items():
            got = conv.hyper.get(key, value)
            if key == "padding" and got == "same":
                continue
            if got != value:
                problems.append(f"{prefix}{name}.{key} = {got} (a bpnet-lite BPNet has {value})")
    if problems:
        raise ConversionError("the pickled module is not a plain bpnet-lite BPNet: " + "; ".join(problems))


def bpnet_family_hyperparameters(ck: Checkpoint, arch: str, trimming: int | None = None) -> dict:
    """``{"": hyper}`` for a BPNet; ``{"bias": hyper, "accessibility": hyper}`` for a ChromBPNet.

    ``trimming`` (a BPNet's; state_dicts do not record it) overrides bpnet-lite's default.
    """
    sd = ck.tensors
    if arch == "bpnet":
        record = ck.modules.get("")
        check_recorded_layers(ck)
        return {"": bpnet_hyperparameters(sd, record.hyper if record else None, trimming=trimming)}
    if trimming is not None:
        raise ConversionError("--trimming is for a BPNet; a ChromBPNet's halves record or default theirs")
    out = {}
    for part in ("bias", "accessibility"):
        record = ck.modules.get(part)
        check_recorded_layers(ck, f"{part}.")
        out[part] = bpnet_hyperparameters(sd, record.hyper if record else None, f"{part}.")
    stray = sorted(k for k in sd if not k.startswith(("bias.", "accessibility.")))
    if stray:
        raise ConversionError(f"unexpected keys in a ChromBPNet: {', '.join(stray)}")
    return out
