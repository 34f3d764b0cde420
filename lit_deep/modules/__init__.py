"""LightningModules that receive plain ``nn.Module`` architectures."""

from lit_deep.modules._optim import OPTIMIZERS, build_optimizer, param_groups
from lit_deep.modules.classifier import Classifier

__all__ = ["OPTIMIZERS", "Classifier", "build_optimizer", "param_groups"]
