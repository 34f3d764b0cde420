"""Plain ``nn.Module`` architectures (no Lightning import): each has ``.backbone`` and ``.head``.

Models describe themselves as data with :func:`describe` and are rebuilt by :func:`build` (allow-listed classes
only); :func:`transfer` puts a new head on a pretrained backbone.
"""

from lit_deep.models._base import (
    ACTIVATIONS,
    DROPOUT_KINDS,
    Activation,
    BackboneHead,
    DropoutKind,
    make_activation,
    make_dropout,
)
from lit_deep.models._record import register_model
from lit_deep.models.autoencoder import Autoencoder
from lit_deep.models.cnn import CNN
from lit_deep.models.description import (
    DescriptionError,
    build,
    check_description,
    describe,
    describe_or_none,
    resolve_class,
)
from lit_deep.models.mlp import MLP
from lit_deep.models.preprocess import Preprocess
from lit_deep.models.transfer import FromCheckpoint, load_checkpoint_model, transfer

__all__ = [
    "ACTIVATIONS",
    "CNN",
    "DROPOUT_KINDS",
    "Activation",
    "DropoutKind",
    "MLP",
    "Autoencoder",
    "BackboneHead",
    "DescriptionError",
    "FromCheckpoint",
    "Preprocess",
    "build",
    "check_description",
    "describe",
    "describe_or_none",
    "load_checkpoint_model",
    "make_activation",
    "make_dropout",
    "register_model",
    "resolve_class",
    "transfer",
]
