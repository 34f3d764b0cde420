"""Monte-Carlo dropout layers: dropout that stays on in eval mode.

With MC dropout (Gal & Ghahramani, 2016) the network keeps dropping units at inference time and the
prediction is the average of many stochastic passes. ``model.train()`` would also switch BatchNorm to batch
statistics; these layers are stochastic whatever the mode, so the rest of the model stays in eval mode.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MCAlphaDropout", "MCDropout"]


def _check_p(p: float) -> float:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"p: dropout rate must be in [0, 1), got {p}")
    return float(p)


class MCDropout(nn.Dropout):
    """``nn.Dropout`` that is active in train and eval mode alike (Keras ``Dropout(...)(x, training=True)``).

    Shapes: any input, output of the same shape.

    Args:
        p: probability of zeroing a unit; kept units are scaled by ``1 / (1 - p)``.

    Example::

        >>> layer = MCDropout(0.5).eval()
        >>> torch.manual_seed(0) and None
        >>> out = layer(torch.ones(1000))
        >>> sorted(set(out.tolist())), 400 < int((out == 0).sum()) < 600
        ([0.0, 2.0], True)
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__(_check_p(p))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Drop units whatever the module's mode."""
        return F.dropout(x, self.p, training=True)


class MCAlphaDropout(nn.AlphaDropout):
    """``nn.AlphaDropout`` that stays active in eval mode, for MC dropout in self-normalising (SELU) nets.

    Alpha dropout sets dropped units to SELU's negative saturation value and applies an affine correction so
    that the mean and variance of the activations are preserved.

    Args:
        p: probability of dropping a unit.

    Example::

        >>> layer = MCAlphaDropout(0.2).eval()
        >>> torch.manual_seed(0) and None
        >>> out = layer(torch.randn(100_000))
        >>> abs(out.mean().item()) < 0.02, abs(out.std().item() - 1) < 0.02
        (True, True)
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__(_check_p(p))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply alpha dropout whatever the module's mode."""
        return F.alpha_dropout(x, self.p, training=True)
