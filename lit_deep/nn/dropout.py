"""Monte-Carlo dropout layers (dropout that stays on in eval mode) and the fast dropout masks they draw.

With MC dropout (Gal & Ghahramani, 2016) the network keeps dropping units at inference time and the
prediction is the average of many stochastic passes. ``model.train()`` would also switch BatchNorm to batch
statistics; these layers are stochastic whatever the mode, so the rest of the model stays in eval mode.

**Masks.** On CPU, ``F.dropout`` draws one Bernoulli variable per unit through a float path that costs more
than the matrix product that follows it. :func:`keep_mask` instead draws 64-bit random words and cuts each
into four 16-bit integers ``u`` uniform on ``[0, 65536)``; a unit is dropped when ``u < round(65536 p)``. The
dropout rate is therefore quantised to a multiple of ``1/65536`` (:func:`quantize_rate`; absolute error at
most ``2**-17``, e.g. ``p=0.2`` becomes ``0.1999969``), and kept units are scaled by ``1 / (1 - p_q)`` with
that quantised rate, so ``E[dropout(x)] = x`` holds exactly. On other devices the layers call PyTorch's own
dropout.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lit_deep._validate import check_probability

__all__ = [
    "TORCH_DROPOUT_LAYERS",
    "MCAlphaDropout",
    "MCDropout",
    "apply_mask",
    "keep_mask",
    "keep_threshold",
    "quantize_rate",
]

#: PyTorch's dropout layers: random in training mode only (the MC layers below are random in both modes).
TORCH_DROPOUT_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)

_LEVELS = 1 << 16
# SELU's negative saturation value, -scale * alpha: where alpha dropout puts dropped units (as PyTorch does).
_ALPHA_PRIME = 1.7580993408473766


def _drop_levels(p: float) -> int:
    # Never all 65536 levels: a rate just below 1 keeps one level in 65536 rather than dividing by zero.
    return min(round(check_probability("p", p) * _LEVELS), _LEVELS - 1)


def quantize_rate(p: float) -> float:
    """The dropout rate :func:`keep_mask` realises: ``p`` rounded to a multiple of ``1/65536``.

    Args:
        p: the nominal dropout rate in [0, 1).

    Returns:
        The rate actually used.

    Example::

        >>> quantize_rate(0.2), quantize_rate(0.5)
        (0.1999969482421875, 0.5)
    """
    return _drop_levels(p) / _LEVELS


def keep_threshold(p: float) -> int:
    """The int16 threshold of the mask: a unit is kept when its 16-bit draw (as int16) is ``>=`` it.

    Example::

        >>> keep_threshold(0.5)
        0
    """
    return _drop_levels(p) - _LEVELS // 2


def keep_mask(
    shape: Sequence[int],
    p: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.bool,
) -> torch.Tensor:
    """A mask of ``shape``: 1 (keep) with probability ``1 - quantize_rate(p)``, else 0, independently.

    Random 64-bit words are cut into four 16-bit draws each, which costs about a quarter of one random number
    per unit. Ask for a floating ``dtype`` when the mask multiplies activations: the comparison writes it
    directly, and a same-dtype product is several times faster on CPU than a float-by-bool one.

    Args:
        shape: shape of the mask.
        p: dropout rate in [0, 1).
        generator: the random generator (the default generator of ``device`` if ``None``).
        device: where to draw the mask.
        dtype: ``torch.bool`` or a floating dtype (values 0 and 1).

    Returns:
        A tensor of ``shape`` and ``dtype``.

    Example::

        >>> mask = keep_mask((1000, 100), 0.25, torch.Generator().manual_seed(0))
        >>> mask.dtype, round(mask.float().mean().item(), 2)
        (torch.bool, 0.75)
    """
    threshold = keep_threshold(p)
    count = math.prod(shape)
    words = torch.empty((count + 3) // 4, dtype=torch.int64, device=device)
    # from=-2**63 with to=None draws all 64 bits (the default range of random_ leaves the sign bit at 0).
    words.random_(-(2**63), None, generator=generator)
    draws = words.view(torch.int16)[:count].view(tuple(shape))
    return torch.ge(draws, threshold, out=torch.empty(tuple(shape), dtype=dtype, device=device))


def apply_mask(x: torch.Tensor, keep: torch.Tensor, p: float, alpha: bool = False) -> torch.Tensor:
    """Dropout with a given keep mask (``keep`` and ``x`` broadcast together), at the quantised rate ``p_q``.

    Standard: ``x * keep / (1 - p_q)``. Alpha (PyTorch's and Keras's ``AlphaDropout``): kept units become
    ``a * x + a * alpha' * p_q`` and dropped ones ``a * alpha' * (p_q - 1)``, with ``alpha' = 1.7581`` and
    ``a = ((1 - p_q) (1 + p_q alpha'^2))^(-1/2)``, which keeps zero mean and unit variance.

    Args:
        x: input of any shape.
        keep: mask of 0/1 values (bool, or the dtype of ``x``, which is faster).
        p: nominal dropout rate (quantised as :func:`quantize_rate`).
        alpha: alpha dropout instead of standard dropout.

    Returns:
        A new tensor of the broadcast shape.

    Example::

        >>> apply_mask(torch.ones(4), torch.tensor([True, False, True, True]), 0.5).tolist()
        [2.0, 0.0, 2.0, 2.0]
    """
    rate = quantize_rate(p)
    keep = keep.to(x.dtype)
    if not alpha:
        scale = 1.0 / (1.0 - rate)
        if x.numel() < keep.numel():  # x is broadcast: scaling it first is cheaper than scaling the result
            return x.mul(scale).mul(keep)
        return x.mul(keep).mul_(scale)
    a = ((1.0 - rate) * (1.0 + rate * _ALPHA_PRIME**2)) ** -0.5
    kept, dropped = a * _ALPHA_PRIME * rate, a * _ALPHA_PRIME * (rate - 1.0)
    # keep * (a x + kept) + (1 - keep) * dropped, as one fused multiply-add.
    return torch.addcmul(torch.tensor(dropped, dtype=x.dtype, device=x.device), keep, x.mul(a).add_(kept - dropped))


class MCDropout(nn.Dropout):
    """``nn.Dropout`` that is active in train and eval mode alike (Keras ``Dropout(...)(x, training=True)``).

    Shapes: any input, output of the same shape. On CPU the mask comes from :func:`keep_mask` (rate quantised
    to ``1/65536``, several times faster than ``F.dropout``); elsewhere from ``F.dropout``.

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
        super().__init__(check_probability("p", p))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Drop units whatever the module's mode."""
        if x.device.type != "cpu":
            return F.dropout(x, self.p, training=True)
        if self.p == 0:
            return x
        return apply_mask(x, keep_mask(x.shape, self.p, device=x.device, dtype=x.dtype), self.p)


class MCAlphaDropout(nn.AlphaDropout):
    """``nn.AlphaDropout`` that stays active in eval mode, for MC dropout in self-normalising (SELU) nets.

    Alpha dropout sets dropped units to SELU's negative saturation value and applies an affine correction so
    that the mean and variance of the activations are preserved (see :func:`apply_mask`). On CPU the mask comes
    from :func:`keep_mask`.

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
        super().__init__(check_probability("p", p))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply alpha dropout whatever the module's mode."""
        if x.device.type != "cpu":
            return F.alpha_dropout(x, self.p, training=True)
        if self.p == 0:
            return x
        return apply_mask(x, keep_mask(x.shape, self.p, device=x.device, dtype=x.dtype), self.p, alpha=True)
