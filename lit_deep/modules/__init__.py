"""LightningModules that receive plain ``nn.Module`` architectures.

Every one subclasses :class:`LitDeepModule` (:mod:`lit_deep.modules.base`): the model, its hyper-parameters, the
optimizer by name, the schedule, the parameter groups and the cheap training logging are there once; each
module adds its task's ``step``.
"""

from lit_deep.modules._logging import DivergenceError
from lit_deep.modules._optim import OPTIMIZERS, OptimizerName
from lit_deep.modules.autoencoder import AutoencoderModule
from lit_deep.modules.base import LitDeepModule
from lit_deep.modules.classifier import Classifier
from lit_deep.modules.rotation import RotationPretext

__all__ = [
    "OPTIMIZERS",
    "DivergenceError",
    "AutoencoderModule",
    "Classifier",
    "LitDeepModule",
    "OptimizerName",
    "RotationPretext",
]
