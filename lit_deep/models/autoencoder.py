"""A dense autoencoder whose encoder has the MLP backbone's shape, for unsupervised pretraining."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lit_deep._validate import check_choice, check_seed, check_shape
from lit_deep.models._base import (
    ACTIVATIONS,
    DEFAULT_INIT,
    Activation,
    BackboneHead,
    flat_size,
    make_activation,
    seeded,
)
from lit_deep.nn.init import INIT_SCHEMES, InitScheme, init_weights

__all__ = ["Autoencoder"]


class Autoencoder(BackboneHead):
    """A dense autoencoder: ``encoder`` (= ``backbone``) down to the codings, ``decoder`` (= ``head``) back up.

    The encoder is Flatten and dense layers down to the codings; the decoder is dense layers back up and a
    sigmoid, reshaped to the input shape.

    Shapes: input ``[B, *input_shape]`` in [0, 1], reconstruction of the same shape; ``encode`` returns
    ``[B, hidden[-1]]``. :func:`~lit_deep.models.transfer` puts a classification head on the encoder.

    Args:
        input_shape: shape of one input.
        hidden: widths of the encoder's layers (the decoder mirrors them).
        activation: activation name (see :class:`~lit_deep.models.MLP`).
        init: initialisation scheme; ``None`` picks the activation's match.
        seed: seed the initialisation, leaving the global generator as it was (``None`` uses the global one).

    Example::

        >>> ae = Autoencoder(hidden=(64, 16), seed=0)
        >>> x = torch.rand(2, 1, 28, 28)
        >>> tuple(ae(x).shape), tuple(ae.encode(x).shape), bool(((ae(x) > 0) & (ae(x) < 1)).all())
        ((2, 1, 28, 28), (2, 16), True)
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 28, 28),
        hidden: Sequence[int] = (300, 100),
        activation: Activation = "selu",
        init: InitScheme | None = None,
        seed: int | None = None,
    ) -> None:
        input_shape = check_shape("input_shape", input_shape, min_length=1)
        hidden = list(check_shape("hidden", hidden, min_length=1))
        check_choice("activation", activation, ACTIVATIONS)
        check_choice("init", init, (None, *sorted(INIT_SCHEMES)))
        seed = check_seed("seed", seed)
        with seeded(seed) as generator:
            n_in = flat_size(tuple(input_shape))
            encoder: list[nn.Module] = [nn.Flatten()]
            width = n_in
            for units in hidden:
                encoder += [nn.Linear(width, units), make_activation(activation, units)]
                width = units
            decoder: list[nn.Module] = []
            for units in reversed(hidden[:-1]):
                decoder += [nn.Linear(width, units), make_activation(activation, units)]
                width = units
            decoder += [nn.Linear(width, n_in), nn.Sigmoid()]
            decoder.append(nn.Unflatten(1, tuple(int(s) for s in input_shape)))
            enc, dec = nn.Sequential(*encoder), nn.Sequential(*decoder)
            scheme = init or DEFAULT_INIT[activation]
            init_weights(enc, scheme, generator)
            init_weights(dec, scheme, generator)
        super().__init__(enc, dec, feature_dim=hidden[-1])

    @property
    def encoder(self) -> nn.Module:
        """The encoder (the backbone)."""
        return self.backbone

    @property
    def decoder(self) -> nn.Module:
        """The decoder (the head)."""
        return self.head

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The codings of ``x``: ``[B, hidden[-1]]``."""
        return self.backbone(x)
