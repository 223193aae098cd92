"""Safe readers: checkpoint files -> ``{key: np.ndarray}`` plus what the file says about the model.

No reader runs code stored in a file. Supported inputs:

- a ``state_dict`` saved with ``torch.save`` (``.pt``/``.pth``/``.bin``/``.txt``, torch's zip format or
  the legacy pickle format), bare or inside a training checkpoint (``{"state_dict": ..., "optimizer":
  ..., "epoch": ...}``, see ``WRAPPER_KEYS``), or a ``.safetensors`` file; fp16 / bf16 read as float32;
- a whole module saved with ``torch.save(model)`` -- how bpnet-lite saves ``BPNet`` and
  ``ChromBPNet`` (``*.torch``) -- read by :class:`RestrictedUnpickler`, which rebuilds tensors from
  the zip's storages, records every allow-listed ``torch.nn`` / bpnet-lite class by name together
  with its plain hyperparameters (``n_filters``, ``n_layers``, ``trimming``, ...), and refuses any
  other global -- naming it -- before anything is built. Neither bpnet-lite nor torch is imported;
- Keras ``.h5`` files of ENCODE's ChromBPNet (the bias model and the ``chrombpnet_nobias``
  accessibility model), read with h5py and renamed to bpnet-lite's ``state_dict`` keys.

Every reader returns a :class:`Checkpoint`; the converters downstream only see NumPy arrays.
"""

import collections
import io
import os
import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class ConversionError(ValueError):
    """A file or state_dict that cannot be converted; the message names the file, key or class at fault."""


def key_mismatches(sd: dict, want: dict[str, tuple]) -> list[str]:
    """What keeps ``sd`` from matching ``want`` (key -> shape): missing, unexpected, mis-shaped keys.

    ``num_batches_tracked`` is BatchNorm bookkeeping that PyTorch < 0.4.1 checkpoints lack and the
    conversion never reads, so its absence is not a problem. Empty when ``sd`` matches.
    """
    missing = sorted(k for k in want if k not in sd and not k.endswith("num_batches_tracked"))
    unexpected = sorted(k for k in sd if k not in want)
    wrong = sorted(k for k in want if k in sd and tuple(np.shape(sd[k])) != tuple(want[k]))
    problems = []
    if missing:
        problems.append(f"missing keys: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {', '.join(unexpected)}")
    if wrong:
        shapes = ", ".join(f"{k} {tuple(np.shape(sd[k]))} (expected {tuple(want[k])})" for k in wrong)
        problems.append(f"wrong shapes: {shapes}")
    return problems


@dataclass(frozen=True)
class ModuleRecord:
    """One module of a pickled model: its class (``module.QualName``) and plain hyperparameters."""

    cls: str
    hyper: dict = field(default_factory=dict)


@dataclass
class Checkpoint:
    """What a reader found.

    tensors: ``{state_dict key: array}`` (float arrays as float32, integer buffers as they are).
    source: ``"state_dict"``, ``"safetensors"``, ``"module"`` (a pickled whole module) or ``"keras"``.
    modules: for ``"module"`` and ``"keras"`` sources, ``{key prefix: ModuleRecord}`` for every module
        (``""`` is the root; ``"bias"`` / ``"accessibility"`` the halves of a ChromBPNet).
    """

    tensors: dict[str, np.ndarray]
    source: str
    modules: dict[str, ModuleRecord] = field(default_factory=dict)

    @property
    def root_class(self) -> str | None:
        record = self.modules.get("")
        return record.cls if record else None


# ---- the restricted unpickler ------------------------------------------------------------------------

# torch's storage classes as pickled by torch.save -> NumPy dtypes (bfloat16 is read as its raw bits).
STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16",
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}

MAX_PICKLE_BYTES = 2**28  # a model's data.pkl is kilobytes; never inflate a bomb
MAX_TENSOR_ELEMENTS = 2**33  # 32 GB of float32: far above any published genomics CNN

# Classes recorded by name (never imported): every torch.nn layer, and bpnet-lite's models.
MODULE_PREFIXES = ("torch.nn.modules.",)
MODULE_CLASSES = frozenset(
    {
        "bpnetlite.bpnet.BPNet",
        "bpnetlite.bpnet.BasePairNet",
        "bpnetlite.bpnet.ControlWrapper",
        "bpnetlite.bpnet.ProfileWrapper",
        "bpnetlite.bpnet.CountWrapper",
        "bpnetlite.bpnet._ProfileLogitScaling",
        "bpnetlite.chrombpnet.ChromBPNet",
        "bpnetlite.chrombpnet._Exp",
        "bpnetlite.chrombpnet._Log",
    }
)
# Plain objects bpnet-lite keeps on its models (a training log): recorded, their contents ignored.
PLAIN_CLASSES = frozenset({"bpnetlite.logging.Logger"})


class _StorageType:
    def __init__(self, name: str):
        self.name = name
        self.dtype = STORAGE_DTYPES[name]


class _Recorded:
    """Stand-in for an allow-listed class: keeps the class name and the pickled ``__dict__``, runs nothing."""

    qualname = "?"

    def __new__(cls, *args, **kwargs):  # NEWOBJ calls this (never __init__); the arguments are ignored
        obj = super().__new__(cls)
        obj.state = {}
        return obj

    def __init__(self, *args, **kwargs):  # REDUCE on a stand-in calls this: nothing to run
        pass

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slots) form
            state = {**(state[0] or {}), **(state[1] or {})}
        self.state = dict(state) if isinstance(state, dict) else {}


_STANDINS: dict[str, type] = {}


def _standin(qualname: str) -> type:
    if qualname not in _STANDINS:
        _STANDINS[qualname] = type(qualname.rsplit(".", 1)[-1], (_Recorded,), {"qualname": qualname})
    return _STANDINS[qualname]


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    """``torch._utils._rebuild_tensor_v2`` on NumPy: a strided view of the storage, copied."""
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if not isinstance(storage, np.ndarray):
        raise ConversionError("a tensor refers to something that is not a storage")
    if any(s < 0 for s in size) or any(s < 0 for s in stride) or storage_offset < 0:
        raise ConversionError("a tensor has a negative size, stride or offset")
    if any(s == 0 for s in size):
        return np.zeros(size, storage.dtype)
    count = int(np.prod(size, dtype=np.int64))
    if count > MAX_TENSOR_ELEMENTS or count > 1024 * storage.size:
        # a broadcast (stride-0) view is legal but a 1-element storage must not become gigabytes
        raise ConversionError(f"a tensor of shape {size} is implausibly large (storage: {storage.size})")
    last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if last >= storage.size:
        raise ConversionError(f"a tensor of shape {size} reads past the end of its storage ({storage.size})")
    base = storage[storage_offset:]
    item = storage.itemsize
    return np.lib.stride_tricks.as_strided(base, size, tuple(s * item for s in stride)).copy()


def _rebuild_parameter(data, requires_grad=False, hooks=None, state=None):
    return data


def _numpy_scalar(dtype, data=None):
    return np.frombuffer(data, dtype=dtype)[0] if data is not None else dtype.type()


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles torch's ``data.pkl`` with an allow-list; storages come from ``load_storage(key, dtype)``.

    Allowed: OrderedDict, set/frozenset, torch's tensor and parameter rebuild functions and storage
    classes, NumPy scalars and dtypes, and -- as inert stand-ins that record their class name and
    ``__dict__`` -- ``torch.nn.modules.*`` classes and bpnet-lite's models. Anything else (``os.system``,
    ``builtins.eval``, an unknown model class) raises :class:`ConversionError` naming it.
    """

    def __init__(self, file, load_storage):
        super().__init__(file)
        self._load_storage = load_storage
        self._storages: dict[str, np.ndarray] = {}

    def find_class(self, module, name):
        qualname = f"{module}.{name}"
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module in ("builtins", "__builtin__") and name in ("set", "frozenset"):
            return {"set": set, "frozenset": frozenset}[name]
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch._utils" and name in ("_rebuild_parameter", "_rebuild_parameter_with_state"):
            return _rebuild_parameter
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "scalar":
            return _numpy_scalar
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        if qualname in MODULE_CLASSES or qualname in PLAIN_CLASSES or module.startswith(MODULE_PREFIXES):
            return _standin(qualname)
        raise ConversionError(
            f"refusing to load {qualname}: not a tensor, a torch.nn layer or a bpnet-lite model "
            "(nothing from the file was run)"
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise ConversionError(f"unsupported persistent record {str(pid)[:60]!r}")
        _, storage_type, key, _location, numel = pid[:5]
        if not isinstance(storage_type, _StorageType):
            raise ConversionError(f"storage {key!r} has an unknown type")
        key = str(key)
        if key not in self._storages:
            self._storages[key] = self._load_storage(key, storage_type.dtype, int(numel))
        return self._storages[key]


def _read_zip_pickle(path: Path):
    """torch's zip format (``<root>/data.pkl`` + ``<root>/data/<key>``) through the restricted unpickler."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise ConversionError(f"{path}: a zip file but not torch's format (no single */data.pkl)")
        if archive.getinfo(pkl[0]).file_size > MAX_PICKLE_BYTES:
            raise ConversionError(
                f"{path}: {pkl[0]} declares {archive.getinfo(pkl[0]).file_size} bytes: not a checkpoint"
            )
        root = pkl[0][: -len("data.pkl")]
        order = f"{root}byteorder"
        if order in names and archive.read(order).decode().strip() != "little":
            raise ConversionError(f"{path}: big-endian tensors are not supported")

        def load_storage(key, dtype, numel):
            member = f"{root}data/{key}"
            if member not in names:
                raise ConversionError(f"{path}: storage {key!r} is missing from the archive")
            itemsize = 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize
            if archive.getinfo(member).file_size > numel * itemsize:
                # torch writes exactly numel items; more is a foreign file (or a zip bomb): never inflate it
                raise ConversionError(
                    f"{path}: storage {key!r} holds {archive.getinfo(member).file_size} bytes, "
                    f"more than its {numel} items"
                )
            raw = archive.read(member)
            if dtype == "bfloat16":  # bfloat16 = the high half of a float32
                bits = np.frombuffer(raw, "<u2").astype(np.uint32) << 16
                return bits.view(np.float32)[:numel]
            array = np.frombuffer(raw, np.dtype(dtype).newbyteorder("<"))
            if array.size < numel:
                raise ConversionError(f"{path}: storage {key!r} is truncated")
            return array[:numel]

        return RestrictedUnpickler(io.BytesIO(archive.read(pkl[0])), load_storage).load()


# ---- turning what was unpickled into tensors + records ----------------------------------------------

_PLAIN = (int, float, str, bool, type(None), np.integer, np.floating)


def _plain(value):
    if isinstance(value, _PLAIN):
        return value.item() if isinstance(value, np.generic) else value
    if isinstance(value, tuple | list) and all(isinstance(v, _PLAIN) for v in value):
        return [v.item() if isinstance(v, np.generic) else v for v in value]
    return None


def _flatten_module(obj: _Recorded, prefix: str, tensors: dict, modules: dict, path: Path) -> None:
    state = obj.state
    hyper = {}
    for name, value in state.items():
        if name.startswith("_") or name == "training":
            continue
        plain = _plain(value)
        if plain is not None or value is None:
            hyper[name] = plain
    modules[prefix.rstrip(".")] = ModuleRecord(obj.qualname, hyper)
    skip = set(state.get("_non_persistent_buffers_set") or ())
    for group in ("_parameters", "_buffers"):
        for name, value in (state.get(group) or {}).items():
            if value is None or name in skip:
                continue
            if not isinstance(value, np.ndarray):
                raise ConversionError(f"{path}: {prefix}{name} is a {type(value).__name__}, not a tensor")
            tensors[f"{prefix}{name}"] = value
    for name, child in (state.get("_modules") or {}).items():
        if child is None:
            continue
        if not isinstance(child, _Recorded) or child.qualname in PLAIN_CLASSES:
            raise ConversionError(f"{path}: submodule {prefix}{name} is not a module")
        _flatten_module(child, f"{prefix}{name}.", tensors, modules, path)


def _is_float(v) -> bool:
    return np.issubdtype(np.asarray(v).dtype, np.floating)


def _as_float32(tensors: dict) -> dict[str, np.ndarray]:
    return {str(k): np.asarray(v, np.float32) if _is_float(v) else np.asarray(v) for k, v in tensors.items()}


# Training scripts save {"state_dict": ..., "optimizer": ..., "epoch": ...} (Lightning, Selene),
# {"model_state_dict": ...} (the PyTorch tutorial) or {"model": ...} / {"net": ...}: the first found is read.
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "network")


def _state_dict_from_object(obj, path: Path) -> Checkpoint:
    if isinstance(obj, _Recorded):
        if obj.qualname in PLAIN_CLASSES:
            raise ConversionError(f"{path}: holds a {obj.qualname}, not a model or a state_dict")
        tensors, modules = {}, {}
        _flatten_module(obj, "", tensors, modules, path)
        if not tensors:
            raise ConversionError(f"{path}: the pickled {obj.qualname} has no parameters")
        return Checkpoint(_as_float32(tensors), "module", modules)
    if isinstance(obj, dict):
        for wrapper in WRAPPER_KEYS:
            if wrapper in obj and isinstance(obj[wrapper], dict | _Recorded):
                return _state_dict_from_object(obj[wrapper], path)  # the rest (optimizer, epoch) is unused
    if not isinstance(obj, dict) or not obj:
        raise ConversionError(f"{path}: holds a {type(obj).__name__}, not a state_dict (a dict of tensors)")
    bad = [k for k, v in obj.items() if not isinstance(v, np.ndarray)]
    if bad:
        raise ConversionError(
            f"{path}: not a state_dict: {bad[0]!r} is a {type(obj[bad[0]]).__name__}, not a tensor"
        )
    return Checkpoint(_as_float32(obj), "state_dict")


def _read_legacy_torch(path: Path) -> Checkpoint:
    """Pre-1.6 torch files (a bare pickle stream): torch.load(weights_only=True), state_dicts only."""
    import torch

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises KeyError, UnpicklingError, RuntimeError, ... on foreign bytes
        text = str(e)
        glob = re.search(r"\bGLOBAL ([\w.]+)", text)
        if glob:  # name the culprit; torch's own advice (weights_only=False) would run the file's code
            raise ConversionError(
                f"{path}: refusing to load {glob.group(1)}: a legacy (pre-zip) torch file is read as a "
                "state_dict of tensors only (nothing was run)"
            ) from None
        detail = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        first = detail.group(1).strip() if detail else lines[0] if lines else ""
        if first.startswith("Weights only load failed"):  # never repeat torch's advice to unpickle
            first = ""
        raise ConversionError(
            f"{path}: not a torch checkpoint this converter reads (torch.load(weights_only=True): "
            f"{type(e).__name__}{': ' + first if first else ''})"
        ) from None
    if isinstance(obj, dict):
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), dict)), obj)
        obj = {
            k: v.detach().cpu().float().numpy()
            if isinstance(v, torch.Tensor) and v.is_floating_point()
            else v.cpu().numpy()
            if isinstance(v, torch.Tensor)
            else v
            for k, v in inner.items()
        }
    return _state_dict_from_object(obj, path)


def read_torch(path: str | os.PathLike) -> Checkpoint:
    """A ``torch.save`` file (a state_dict or a whole module) or a ``.safetensors`` file, read safely."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: no such file")
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        try:
            return Checkpoint(_as_float32(load_file(str(path))), "safetensors")
        except Exception as e:  # safetensors raises its own error types for damaged headers
            raise ConversionError(f"{path}: not a readable safetensors file ({type(e).__name__})") from None
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"PK\x03\x04" and not zipfile.is_zipfile(path):
        raise ConversionError(
            f"{path}: a damaged zip archive (truncated or cut short?): not readable as torch's format"
        )
    if zipfile.is_zipfile(path):
        try:
            obj = _read_zip_pickle(path)
        except ConversionError as e:
            raise ConversionError(str(e) if str(e).startswith(f"{path}:") else f"{path}: {e}") from None
        except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, TypeError, AttributeError) as e:
            raise ConversionError(f"{path}: damaged or unsupported torch file ({type(e).__name__})") from None
        return _state_dict_from_object(obj, path)
    return _read_legacy_torch(path)


# ---- Keras h5 (ENCODE ChromBPNet) -------------------------------------------------------------------------


def _keras_weights(group, layer: str, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(kernel, bias) of Keras layer ``layer``, wherever under ``group[layer]`` the datasets sit."""
    if layer not in group:
        raise ConversionError(f"{path}: Keras layer {layer!r} not found")
    found = {}

    def visit(name, obj):
        leaf = name.rsplit("/", 1)[-1]
        if hasattr(obj, "shape") and leaf.split(":")[0] in ("kernel", "bias"):
            found[leaf.split(":")[0]] = np.asarray(obj[()], np.float32)

    group[layer].visititems(visit)
    if "kernel" not in found:
        raise ConversionError(f"{path}: Keras layer {layer!r} has no kernel")
    return found["kernel"], found.get("bias")


def default_trimming(n_layers: int) -> int:
    """bpnet-lite's default trimming: iconv (21) and fconv (75) half-widths + the dilated receptive field."""
    return 47 + sum(2**i for i in range(1, n_layers + 1))


def read_chrombpnet_h5(path: str | os.PathLike) -> Checkpoint:
    """One Keras ``.h5`` of ENCODE ChromBPNet (bias model, or the ``wo_bias_`` accessibility model).

    Keras layer -> bpnet-lite key (conv kernels ``(K, Cin, Cout)`` -> ``(Cout, Cin, K)``; Dense
    ``(Cin, 1)`` -> ``(1, Cin)``):

        [wo_bias_]bpnet_1st_conv                  -> iconv
        [wo_bias_]bpnet_{i}conv, i = 1..n          -> rconvs.{i-1}
        [wo_bias_bpnet_]prof_out_precrop          -> fconv
        [wo_bias_bpnet_]logcount_predictions      -> linear

    The Keras models use 'valid' convolutions and crop; bpnet-lite's 'same' convolutions with
    ``trimming = 47 + sum 2^i`` give the same central outputs, which is how bpnet-lite loads them too.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: no such file")
    try:
        h5 = h5py.File(path, "r")
    except OSError as e:
        raise ConversionError(f"{path}: not an HDF5 file ({e})") from None
    with h5:
        weights = h5["model_weights"] if "model_weights" in h5 else h5
        names = list(weights.keys())
        if "bpnet_1st_conv" in names:
            prefix, head = "", ""
        elif "wo_bias_bpnet_1st_conv" in names:
            prefix, head = "wo_bias_", "wo_bias_bpnet_"
        else:
            raise ConversionError(
                f"{path}: no bpnet_1st_conv or wo_bias_bpnet_1st_conv layer: not a ChromBPNet Keras model"
            )
        n_layers = 0
        while f"{prefix}bpnet_{n_layers + 1}conv" in names:
            n_layers += 1
        tensors = {}

        def conv(layer, key):
            kernel, bias = _keras_weights(weights, layer, path)
            if kernel.ndim != 3:
                raise ConversionError(f"{path}: {layer} kernel has shape {kernel.shape}, not (K, Cin, Cout)")
            tensors[f"{key}.weight"] = np.ascontiguousarray(kernel.transpose(2, 1, 0))
            if bias is not None:
                tensors[f"{key}.bias"] = bias

        conv(f"{prefix}bpnet_1st_conv", "iconv")
        for i in range(1, n_layers + 1):
            conv(f"{prefix}bpnet_{i}conv", f"rconvs.{i - 1}")
        conv(f"{head}prof_out_precrop", "fconv")
        kernel, bias = _keras_weights(weights, f"{head}logcount_predictions", path)
        tensors["linear.weight"] = np.ascontiguousarray(kernel.T)
        if bias is not None:
            tensors["linear.bias"] = bias
    n_filters, _, width = tensors["iconv.weight"].shape
    if width != 21 or tensors["fconv.weight"].shape[2] != 75:
        raise ConversionError(
            f"{path}: convolution widths {width} / {tensors['fconv.weight'].shape[2]} (expected 21 / 75, "
            "the ChromBPNet release architecture)"
        )
    hyper = {
        "n_filters": int(n_filters),
        "n_layers": n_layers,
        "n_outputs": int(tensors["fconv.weight"].shape[0]),
        "n_control_tracks": 0,
        "trimming": default_trimming(n_layers),
        "name": path.stem,
    }
    return Checkpoint(tensors, "keras", {"": ModuleRecord("keras.BPNet", hyper)})


def read_chrombpnet_pair(bias_path, accessibility_path) -> Checkpoint:
    """The ENCODE pair (bias ``.h5`` + accessibility ``.h5``) as one bpnet-lite ``ChromBPNet`` state_dict."""
    parts = {"bias": read_chrombpnet_h5(bias_path), "accessibility": read_chrombpnet_h5(accessibility_path)}
    tensors = {f"{part}.{k}": v for part, ck in parts.items() for k, v in ck.tensors.items()}
    modules = {"": ModuleRecord("keras.ChromBPNet", {"name": "ChromBPNet"})}
    modules.update({part: ck.modules[""] for part, ck in parts.items()})
    return Checkpoint(tensors, "keras", modules)


def read_checkpoint(path: str | os.PathLike, *, bias: str | os.PathLike | None = None) -> Checkpoint:
    """Any supported file; ``bias`` (a Keras bias ``.h5``) makes ``path`` the accessibility half of a pair."""
    path = Path(path)
    if path.suffix.lower() in (".h5", ".hdf5", ".keras"):
        return read_chrombpnet_pair(bias, path) if bias is not None else read_chrombpnet_h5(path)
    if bias is not None:
        raise ConversionError(f"--bias is for Keras .h5 pairs; {path} is not an .h5 file")
    return read_torch(path)


def strip_prefix(sd: dict, prefix: str = "module.") -> dict:
    """Removes DataParallel's ``module.`` prefix when every key has it."""
    if sd and all(k.startswith(prefix) for k in sd):
        return {k[len(prefix) :]: v for k, v in sd.items()}
    return sd
