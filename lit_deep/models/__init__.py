"""Plain ``nn.Module`` architectures (no Lightning import): each has ``.backbone`` and ``.head``.

Models describe themselves as data with :func:`describe` and are rebuilt by :func:`build` (allow-listed classes
only); :func:`transfer` puts a new head on a pretrained backbone.
"""

from lit_deep.models._base import BackboneHead, make_activation
from lit_deep.models._record import register_model
from lit_deep.models.autoencoder import Autoencoder
from lit_deep.models.checkpoint import CheckpointError, read_checkpoint
from lit_deep.models.cnn import CNN
from lit_deep.models.description import DescriptionError, build, describe
from lit_deep.models.mlp import MLP
from lit_deep.models.preprocess import Preprocess
from lit_deep.models.resnet import ResNet
from lit_deep.models.transfer import FromCheckpoint, transfer

__all__ = [
    "CNN",
    "MLP",
    "ResNet",
    "Autoencoder",
    "BackboneHead",
    "CheckpointError",
    "DescriptionError",
    "FromCheckpoint",
    "Preprocess",
    "build",
    "describe",
    "make_activation",
    "read_checkpoint",
    "register_model",
    "transfer",
]
