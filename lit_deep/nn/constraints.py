"""Max-norm regularisation with Keras semantics: bound each neuron's incoming weight vector."""

from __future__ import annotations

import torch

from lit_deep._validate import check_positive

__all__ = ["max_norm_"]


@torch.no_grad()
def max_norm_(weight: torch.Tensor, max_value: float = 1.0) -> torch.Tensor:
    r"""Rescale each neuron's incoming weights in place so that their L2 norm is at most ``max_value``.

    Keras ``max_norm`` semantics:

    .. math:: w \leftarrow w \cdot \frac{\min(\lVert w \rVert_2, r)}{\epsilon + \lVert w \rVert_2}

    applied to the rows whose norm exceeds ``r`` only, so vectors already inside the ball are left bitwise
    unchanged (Keras also shrinks those, by ``n / (n + eps)``: a relative change below 1e-6). A Linear weight
    ``(out, in)`` is bounded per row (per output neuron); a Conv weight ``(out, in, *kernel)`` per output
    filter. Biases and other 1-D parameters are never touched. ``epsilon`` is Keras's 1e-7.

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
    max_value = check_positive("max_value", max_value)
    if weight.dim() < 2:
        raise ValueError(f"weight: max-norm applies to weights with 2 or more dimensions, got {tuple(weight.shape)}")
    # torch.renorm computes exactly this, with Keras's epsilon 1e-7: factor = r / (n + 1e-7) where n > r, else 1,
    # per slice along dim 0, in one call (no host-device synchronisation, no Python loop over rows).
    return weight.renorm_(2, 0, max_value)
