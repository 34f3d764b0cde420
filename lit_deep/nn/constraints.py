"""Max-norm regularisation with Keras semantics: bound each neuron's incoming weight vector."""

from __future__ import annotations

import torch

__all__ = ["max_norm_"]

_EPS = 1e-7  # Keras backend epsilon


@torch.no_grad()
def max_norm_(weight: torch.Tensor, max_value: float = 1.0) -> torch.Tensor:
    """Rescale each neuron's incoming weights in place so that their L2 norm is at most ``max_value``.

    Keras ``max_norm`` semantics:

    .. math:: w \\leftarrow w \\cdot \\frac{\\operatorname{clip}(\\lVert w \\rVert_2, 0, r)}{\\epsilon + \\lVert w \\rVert_2}

    applied to rows only where the norm exceeds ``r``, so vectors already inside the ball are left bitwise
    unchanged. A Linear weight ``(out, in)`` is bounded per row (per output neuron); a Conv weight
    ``(out, in, *kernel)`` per output filter. Biases and other 1-D parameters are never touched.

    Args:
        weight: a Linear or Conv weight with at least two dimensions.
        max_value: the bound ``r`` (> 0).

    Returns:
        The same tensor.

    Raises:
        ValueError: for ``max_value <= 0`` or a 1-D tensor.

    Example::

        >>> w = torch.tensor([[3.0, 4.0], [0.3, 0.4]])
        >>> max_norm_(w, 1.0).norm(dim=1).tolist()
        [1.0, 0.5]
    """
    if not max_value > 0:
        raise ValueError(f"max_value: must be positive, got {max_value}")
    if weight.dim() < 2:
        raise ValueError(f"weight: max-norm applies to weights with 2 or more dimensions, got {tuple(weight.shape)}")
    flat = weight.view(weight.shape[0], -1) if weight.is_contiguous() else weight.reshape(weight.shape[0], -1)
    norms = flat.norm(p=2, dim=1, keepdim=True)
    over = norms > max_value
    if bool(over.any()):
        factor = torch.where(over, max_value / (_EPS + norms), torch.ones_like(norms))
        if weight.is_contiguous():
            flat.mul_(factor)
        else:
            weight.copy_((flat * factor).view_as(weight))
    return weight
