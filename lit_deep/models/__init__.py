"""Plain ``nn.Module`` architectures (no Lightning import): each has ``.backbone`` and ``.head``."""

from lit_deep.models._base import ACTIVATIONS, DROPOUT_KINDS, BackboneHead, make_activation, make_dropout, replace_head
from lit_deep.models.autoencoder import Autoencoder
from lit_deep.models.cnn import CNN
from lit_deep.models.mlp import MLP
from lit_deep.models.pretrained import FromCheckpoint

__all__ = [
    "ACTIVATIONS",
    "CNN",
    "DROPOUT_KINDS",
    "MLP",
    "Autoencoder",
    "BackboneHead",
    "FromCheckpoint",
    "make_activation",
    "make_dropout",
    "replace_head",
]
