"""LightningModules that receive plain ``nn.Module`` architectures."""

from lit_deep.modules._logging import DivergenceError
from lit_deep.modules._optim import OPTIMIZERS, build_optimizer, param_groups
from lit_deep.modules.autoencoder import AutoencoderModule
from lit_deep.modules.classifier import Classifier
from lit_deep.modules.rotation import RotationPretext, rotate_batch

__all__ = [
    "OPTIMIZERS",
    "DivergenceError",
    "AutoencoderModule",
    "Classifier",
    "RotationPretext",
    "build_optimizer",
    "param_groups",
    "rotate_batch",
]
