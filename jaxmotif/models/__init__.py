"""Models: architectures as graphs (DeepHistone, BPNet, ChromBPNet), the Model shell, checkpoints."""

from jaxmotif.models.bpnet import BPNetConfig, ChromBPNetConfig
from jaxmotif.models.checkpoint import CheckpointError, load_model, save_model
from jaxmotif.models.deephistone import DEEPHISTONE_OUTPUTS, DeepHistone, DeepHistoneConfig
from jaxmotif.models.model import Model

__all__ = [
    "DEEPHISTONE_OUTPUTS",
    "BPNetConfig",
    "CheckpointError",
    "ChromBPNetConfig",
    "DeepHistone",
    "DeepHistoneConfig",
    "Model",
    "load_model",
    "save_model",
]
