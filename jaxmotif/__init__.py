"""jaxmotif: high-throughput attribution for genomic CNNs (DeepHistone) in JAX/Flax."""

from jaxmotif.attribution import SALIENCY_METHODS, saliency
from jaxmotif.models import (
    DEEPHISTONE_OUTPUTS,
    CheckpointError,
    DeepHistoneConfig,
    Model,
    load_model,
    save_model,
)

__version__ = "0.1.0"

__all__ = [
    "DEEPHISTONE_OUTPUTS",
    "CheckpointError",
    "DeepHistoneConfig",
    "Model",
    "SALIENCY_METHODS",
    "__version__",
    "load_model",
    "saliency",
    "save_model",
]
