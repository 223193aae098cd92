"""Basset, DeepSEA and Beluga state_dicts -> channels-last 1-D parameters, as explicit key maps.

Layouts (see ``convert.torch_reference`` for the PyTorch definitions):

    basset   kipoi ``Basset``: Conv2d over ``(N, 4, L, 1)``, kernels ``(K, 1)``   weight (out, in, K, 1)
    deepsea  kipoi ``DeepSEA``: Conv2d over ``(N, 4, 1, L)``, kernels ``(1, 8)``  weight (out, in, 1, K)
    beluga   ExPecto ``Beluga``: as DeepSEA, six convolutions

Inside jaxmotif every convolution is 1-D over channels-last ``(N, L, C)`` with kernel ``(K, in, out)``
and 'valid' padding (these models pad nothing). The first Linear reads PyTorch's channel-major
flatten of ``(N, C, P)`` (index ``c * P + p``); jaxmotif flattens ``(N, P, C)`` position-major
(``p * C + c``), so its rows are permuted once here. The checkpoint's one-hot order (``AGCT`` for
DeepSEA and Beluga) is folded into the first convolution: converted models always read ACGT.

Parameter names of the result (the layer names of ``jaxmotif.models.{basset,deepsea,beluga}``):

    basset   conv1 bn1 conv2 bn2 conv3 bn3 dense1 bn4 dense2 bn5 out
    deepsea  conv1 conv2 conv3 dense1 out
    beluga   conv1 .. conv6 dense1 out
"""

import dataclasses

import numpy as np

from convert.readers import ConversionError, key_mismatches
from jaxmotif.models.basset import BassetConfig
from jaxmotif.models.beluga import BelugaConfig
from jaxmotif.models.deepsea import DeepSEAConfig

BN_TORCH_TO_JAX = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where a published checkpoint keeps each layer's tensors.

    The layer pattern itself (kernel widths, pools, published sizes and one-hot order) is the
    model's: it is read from ``model``, the architecture's config class in ``jaxmotif.models``.
    """

    arch: str
    model: type  # BassetConfig | DeepSEAConfig | BelugaConfig
    convs: tuple[str, ...]  # state_dict prefixes of the convolutions, in order
    conv_norms: tuple[str | None, ...]  # BatchNorm2d prefix after each convolution
    dense: tuple[str, ...]  # Linear prefixes, in order (the last one is the output layer)
    dense_norms: tuple[str | None, ...]  # BatchNorm1d prefix after each hidden Linear
    kernel_axis: int  # 2: Conv2d (out, in, K, 1) [Basset]; 3: (out, in, 1, K) [DeepSEA, Beluga]

    @property
    def kernel_widths(self) -> tuple[int, ...]:
        return self.model.kernel_widths

    @property
    def pools(self) -> tuple[int, ...]:
        """Max-pool width after each convolution (1 = none)."""
        return self.model.pools

    @property
    def published(self):
        """The published model's config (sizes, L, one-hot order)."""
        return self.model()

    @property
    def seq_len(self) -> int:
        return self.published.seq_len

    @property
    def alphabet(self) -> str:
        return self.published.source_alphabet

    @property
    def defaults(self) -> dict:
        c = self.published
        return {"widths": c.widths, "hidden": c.hidden, "outputs": c.num_outputs}


LAYOUTS = {
    "basset": Layout(
        arch="basset",
        model=BassetConfig,
        convs=("0", "4", "8"),
        conv_norms=("1", "5", "9"),
        dense=("13.1", "17.1", "21.1"),
        dense_norms=("14", "18"),
        kernel_axis=2,
    ),
    "deepsea": Layout(
        arch="deepsea",
        model=DeepSEAConfig,
        convs=("0", "4", "8"),
        conv_norms=(None, None, None),
        dense=("12.1", "14.1"),
        dense_norms=(None,),
        kernel_axis=3,
    ),
    "beluga": Layout(
        arch="beluga",
        model=BelugaConfig,
        convs=tuple(f"model.0.{i}" for i in (0, 2, 6, 8, 12, 14)),
        conv_norms=(None,) * 6,
        dense=("model.1.2.1", "model.1.4.1"),
        dense_norms=(None,),
        kernel_axis=3,
    ),
}


def conv_lengths(seq_len: int, layout: Layout) -> list[int]:
    """Positions after each convolution (and its pool): valid convolutions, floor pooling."""
    lengths, n = [], seq_len
    for width, pool in zip(layout.kernel_widths, layout.pools, strict=True):
        n = (n - width + 1) // pool
        lengths.append(n)
    return lengths


@dataclasses.dataclass(frozen=True)
class ClassicSizes:
    """What a converted classic model needs: sizes inferred from the tensors, plus names and L.

    :func:`model_config` turns it into the jaxmotif model config of ``arch``.
    """

    arch: str
    seq_len: int
    widths: tuple[int, ...]
    hidden: tuple[int, ...]
    num_outputs: int
    output_names: tuple[str, ...]
    source_alphabet: str  # the checkpoint's one-hot order (already folded: the model reads ACGT)

    @property
    def pooled_len(self) -> int:
        return conv_lengths(self.seq_len, LAYOUTS[self.arch])[-1]


def _shape(sd, key, arch):
    if key not in sd:
        raise ConversionError(f"missing key {key!r}: not a {arch} state_dict")
    return tuple(np.shape(sd[key]))


def _lengths_for(pooled: int, layout: Layout) -> list[int]:
    """Every input length L whose last map has ``pooled`` positions (a short, contiguous range)."""
    receptive = sum(layout.kernel_widths)  # a generous upper bound on what one pooled position spans
    stride = int(np.prod(layout.pools))
    low = max(1, pooled * stride)
    span = range(low, low + stride + receptive * stride + 1)
    return [n for n in span if conv_lengths(n, layout)[-1] == pooled]


def _roundness(n: int) -> tuple:
    """Sort key: lengths people train at first (multiples of 1000, 500, 100, 50, 10), then the shortest."""
    return (next((i for i, m in enumerate((1000, 500, 100, 50, 10)) if n % m == 0), 5), n)


def infer_config(
    sd: dict, arch: str, *, seq_len: int | None = None, alphabet: str | None = None, output_names=None
) -> ClassicSizes:
    """Sizes from the tensors; ``seq_len`` only where the first Linear leaves it open."""
    layout = LAYOUTS[arch]
    widths = tuple(_shape(sd, f"{c}.weight", arch)[0] for c in layout.convs)
    dense_shapes = [_shape(sd, f"{d}.weight", arch) for d in layout.dense]
    hidden = tuple(s[0] for s in dense_shapes[:-1])
    outputs = dense_shapes[-1][0]
    features = dense_shapes[0][1]
    pooled, rest = divmod(features, widths[-1])
    first = layout.dense[0]
    if rest or pooled < 1:
        raise ConversionError(
            f"{first}.weight has {features} inputs, not a multiple of the {widths[-1]} channels of "
            f"{layout.convs[-1]}.weight"
        )
    candidates = _lengths_for(pooled, layout)
    if not candidates:
        raise ConversionError(f"{first}.weight: no input length gives {pooled} positions before the flatten")
    if seq_len is None:
        # the published L, else the roundest that fits (a 2000-bp DeepSEA: 2000, not 1987)
        seq_len = layout.seq_len if layout.seq_len in candidates else min(candidates, key=_roundness)
    elif seq_len not in candidates:
        raise ConversionError(
            f"--seq-len {seq_len} leaves {conv_lengths(seq_len, layout)[-1]} positions before the flatten "
            f"but {first}.weight expects {pooled} (L from {candidates[0]} to {candidates[-1]})"
        )
    alphabet = (alphabet or layout.alphabet).upper()
    if sorted(alphabet) != sorted("ACGT"):
        raise ConversionError(f"--alphabet {alphabet!r} must be a permutation of ACGT")
    names = tuple(output_names) if output_names else tuple(f"output{i}" for i in range(outputs))
    if len(names) != outputs:
        raise ConversionError(f"{len(names)} output names given for a model with {outputs} outputs")
    return ClassicSizes(arch, seq_len, widths, hidden, outputs, names, alphabet)


def expected_shapes(config: ClassicSizes) -> dict[str, tuple]:
    """Every key of the PyTorch state_dict for ``config``, with its shape."""
    layout = LAYOUTS[config.arch]
    keys = {}
    cin = 4
    for conv, width, norm, cout in zip(
        layout.convs, layout.kernel_widths, layout.conv_norms, config.widths, strict=True
    ):
        k = (width, 1) if layout.kernel_axis == 2 else (1, width)
        keys[f"{conv}.weight"] = (cout, cin, *k)
        keys[f"{conv}.bias"] = (cout,)
        if norm:
            keys.update(_bn_keys(norm, cout))
        cin = cout
    features = config.widths[-1] * config.pooled_len
    for i, (dense, out) in enumerate(zip(layout.dense, (*config.hidden, config.num_outputs), strict=True)):
        keys[f"{dense}.weight"] = (out, features)
        keys[f"{dense}.bias"] = (out,)
        if i < len(layout.dense_norms) and layout.dense_norms[i]:
            keys.update(_bn_keys(layout.dense_norms[i], out))
        features = out
    return keys


def _bn_keys(prefix, channels):
    keys = {f"{prefix}.{name}": (channels,) for name in BN_TORCH_TO_JAX}
    keys[f"{prefix}.num_batches_tracked"] = ()
    return keys


def check_keys(sd: dict, config: ClassicSizes) -> None:
    """Raises one ConversionError listing every missing, unexpected and mis-shaped key."""
    problems = key_mismatches(sd, expected_shapes(config))
    if problems:
        raise ConversionError(f"state_dict does not match {config.arch}: " + "; ".join(problems))


def conv_kernel(w: np.ndarray, kernel_axis: int) -> np.ndarray:
    """Conv2d weight ``(out, in, K, 1)`` (axis 2) or ``(out, in, 1, K)`` (axis 3) -> ``(K, in, out)``."""
    w = w[:, :, :, 0] if kernel_axis == 2 else w[:, :, 0, :]
    return np.ascontiguousarray(w.transpose(2, 1, 0))


def fold_alphabet(kernel: np.ndarray, alphabet: str) -> np.ndarray:
    """First-layer kernel ``(K, 4, out)`` with input rows in ``alphabet`` order -> rows in ACGT order."""
    return np.ascontiguousarray(kernel[:, [alphabet.index(base) for base in "ACGT"], :])


def flatten_rows(w: np.ndarray, channels: int, positions: int) -> np.ndarray:
    """Linear weight ``(H, C * P)`` (PyTorch order ``c * P + p``) -> kernel ``(P * C, H)`` (``p * C + c``)."""
    hidden = w.shape[0]
    return np.ascontiguousarray(
        w.reshape(hidden, channels, positions).transpose(2, 1, 0).reshape(positions * channels, hidden)
    )


def to_params(sd: dict, config: ClassicSizes) -> dict:
    """The explicit key map: PyTorch keys -> the nested parameter dict of the jaxmotif model."""
    layout = LAYOUTS[config.arch]
    params = {}
    norm_index = 0
    for i, (conv, norm) in enumerate(zip(layout.convs, layout.conv_norms, strict=True)):
        kernel = conv_kernel(np.asarray(sd[f"{conv}.weight"], np.float32), layout.kernel_axis)
        if i == 0:
            kernel = fold_alphabet(kernel, config.source_alphabet)
        params[f"conv{i + 1}"] = {"kernel": kernel, "bias": np.asarray(sd[f"{conv}.bias"], np.float32)}
        if norm:
            norm_index += 1
            params[f"bn{norm_index}"] = _bn(sd, norm)
    names = [f"dense{i + 1}" for i in range(len(layout.dense) - 1)] + ["out"]
    for i, (dense, name) in enumerate(zip(layout.dense, names, strict=True)):
        w = np.asarray(sd[f"{dense}.weight"], np.float32)
        if i == 0:
            kernel = flatten_rows(w, config.widths[-1], config.pooled_len)
        else:
            kernel = np.ascontiguousarray(w.T)
        params[name] = {"kernel": kernel, "bias": np.asarray(sd[f"{dense}.bias"], np.float32)}
        if i < len(layout.dense_norms) and layout.dense_norms[i]:
            norm_index += 1
            params[f"bn{norm_index}"] = _bn(sd, layout.dense_norms[i])
    return params


def _bn(sd, prefix):
    return {jax: np.asarray(sd[f"{prefix}.{torch}"], np.float32) for torch, jax in BN_TORCH_TO_JAX.items()}


def model_config(sizes: ClassicSizes):
    """The jaxmotif model config (``jaxmotif.models.<arch>``) of converted ``sizes``."""
    return LAYOUTS[sizes.arch].model(
        seq_len=sizes.seq_len,
        widths=sizes.widths,
        hidden=sizes.hidden,
        output_names=sizes.output_names,
        source_alphabet=sizes.source_alphabet,
    )


def convert_classic(sd: dict, arch: str, **options) -> tuple[ClassicSizes, dict]:
    """state_dict (NumPy) -> (config, params); every check happens here, before anything is written."""
    from convert.readers import strip_prefix

    if arch not in LAYOUTS:
        raise ConversionError(f"unknown classic architecture {arch!r}; one of {', '.join(LAYOUTS)}")
    sd = strip_prefix(dict(sd))
    config = infer_config(sd, arch, **options)
    check_keys(sd, config)
    return config, to_params(sd, config)
