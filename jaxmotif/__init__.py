"""jaxmotif: high-throughput attribution for genomic CNNs (DeepHistone, BPNet, Basset, ...) in JAX/Flax."""

from jaxmotif.attribution import ATTRIBUTION_METHODS, SALIENCY_METHODS, saliency
from jaxmotif.deeplift import deep_lift_shap
from jaxmotif.integrated import dinucleotide_shuffle, integrated_gradients, smoothgrad
from jaxmotif.ism import mutation_map
from jaxmotif.ism_fast import mutant_predictions_fast
from jaxmotif.ism_graph import flops_per_window
from jaxmotif.models import (
    DEEPHISTONE_OUTPUTS,
    BPNetConfig,
    CheckpointError,
    ChromBPNetConfig,
    DeepHistoneConfig,
    Model,
    load_model,
    save_model,
)
from jaxmotif.projections import inverse_activation, layers, project

__version__ = "0.1.0"

__all__ = [
    "DEEPHISTONE_OUTPUTS",
    "BPNetConfig",
    "CheckpointError",
    "ChromBPNetConfig",
    "DeepHistoneConfig",
    "Model",
    "ATTRIBUTION_METHODS",
    "SALIENCY_METHODS",
    "__version__",
    "attribute_regions",
    "deep_lift_shap",
    "dinucleotide_shuffle",
    "flops_per_window",
    "integrated_gradients",
    "inverse_activation",
    "layers",
    "load_model",
    "mutant_predictions_fast",
    "mutation_map",
    "project",
    "saliency",
    "save_model",
    "scan_mutations",
    "smoothgrad",
]

# Modules run with ``python -m jaxmotif.<verb>`` are imported lazily (PEP 562): importing them here
# would make runpy warn that the module is already in sys.modules when it runs as __main__.
_LAZY_MODULES = ("filters", "optimize", "plot", "demo")
_LAZY_NAMES = {
    "demo_model": "demo",
    "demo_paths": "demo",
    "conv1_pwms": "filters",
    "Conv1PWMs": "filters",
    "class_inputs": "optimize",
    "ClassInputs": "optimize",
    "scan_mutations": "scan",
    "attribute_regions": "scan",
}


def __getattr__(name):
    import importlib

    if name in _LAZY_MODULES:
        return importlib.import_module(f"jaxmotif.{name}")
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(f"jaxmotif.{_LAZY_NAMES[name]}"), name)
    raise AttributeError(f"module 'jaxmotif' has no attribute {name!r}")
