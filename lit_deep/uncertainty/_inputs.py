"""The two input checks every metric, score, plot and calibrator of :mod:`lit_deep.uncertainty` shares.

* :func:`check_probs`: probabilities ``[N, C]`` (a tensor or an :class:`MCPrediction`, whose mean is used):
  floating point, finite, in ``[0, 1]``, each row summing to 1 within :func:`sum_tolerance` of its dtype
  (``1e-3`` for float32 and float64, ``1e-2`` for float16 / bfloat16). Logits are the usual mistake: negative
  values or rows far from 1 get a hint to apply a softmax.
* :func:`check_targets`: class indices ``[N]``: an integer dtype (float labels are refused, never truncated),
  ``0 <= y < C``.

A wrong type (a list, a float dtype for labels) raises :class:`~lit_deep._validate.ArgumentTypeError`; a wrong
value ``ValueError``; one line naming the argument, as in :mod:`lit_deep._validate`.
"""

from __future__ import annotations

from typing import Any

import torch

from lit_deep._validate import ArgumentTypeError
from lit_deep._validate import check_targets as _check_targets
from lit_deep.uncertainty.prediction import MCPrediction

__all__ = ["check_logits", "check_probs", "check_targets", "sum_tolerance"]

_LOGITS_HINT = "; these look like logits: apply a softmax first"


def sum_tolerance(dtype: torch.dtype) -> float:
    """How far a row of probabilities of ``dtype`` may sum from 1: ``1e-2`` for 16-bit floats, else ``1e-3``.

    Example::

        >>> sum_tolerance(torch.float32), sum_tolerance(torch.bfloat16)
        (0.001, 0.01)
    """
    return 1e-2 if dtype in (torch.float16, torch.bfloat16) else 1e-3


def _range(t: torch.Tensor) -> str:
    return f"[{float(t.min()):.4g}, {float(t.max()):.4g}]"


def check_probs(probs: Any, name: str = "probs", matrix: bool = True) -> torch.Tensor:
    """``probs`` (or an :class:`MCPrediction`'s mean) as a float32 tensor, when it holds probabilities.

    Args:
        probs: a floating-point tensor ``[N, C]`` (``matrix``) or ``[..., C]``, or an :class:`MCPrediction`.
        name: the argument, first in the message.
        matrix: require ``[N, C]`` with ``N >= 1`` and ``C >= 2`` (metrics); else any ``[..., C]`` (scores).

    Returns:
        The probabilities, float32.

    Raises:
        ArgumentTypeError: for something that is not a tensor, or a tensor that is not floating point.
        ValueError: for the wrong shape, NaN or infinite values, values outside ``[0, 1]`` or rows that do not
            sum to 1 (with a hint when they look like logits).

    Example::

        >>> check_probs(torch.tensor([[0.25, 0.75]])).tolist()
        [[0.25, 0.75]]
        >>> try:
        ...     check_probs(torch.tensor([[2.0, -1.0]]))
        ... except ValueError as err:
        ...     print(err)
        probs: must be probabilities in [0, 1], got values in [-1, 2]; these look like logits: apply a softmax first
    """
    p = probs.probs if isinstance(probs, MCPrediction) else probs
    if not isinstance(p, torch.Tensor) or not p.is_floating_point():
        got = f"dtype {p.dtype}" if isinstance(p, torch.Tensor) else type(p).__name__
        raise ArgumentTypeError(
            f"{name}: must be a floating-point tensor of probabilities or an MCPrediction, got {got}"
        )
    if matrix and (p.dim() != 2 or p.shape[0] < 1 or p.shape[1] < 2):
        raise ValueError(f"{name}: expected [N, C] probabilities with N >= 1 and C >= 2, got shape {tuple(p.shape)}")
    if not matrix and (p.dim() < 1 or p.shape[-1] < 1):
        raise ValueError(f"{name}: expected [..., C] probabilities with C >= 1, got shape {tuple(p.shape)}")
    if not p.numel():
        return p.float()
    finite = torch.isfinite(p)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise ValueError(f"{name}: must be finite probabilities, got {bad} NaN or infinite values of {p.numel()}")
    if float(p.min()) < 0 or float(p.max()) > 1:
        raise ValueError(f"{name}: must be probabilities in [0, 1], got values in {_range(p)}{_LOGITS_HINT}")
    sums = p.double().sum(dim=-1)
    tolerance = sum_tolerance(p.dtype)
    off = (sums - 1).abs()
    if float(off.max()) > tolerance:
        hint = _LOGITS_HINT if float(off.max()) > 0.1 else ""
        raise ValueError(
            f"{name}: rows must sum to 1 (within {tolerance:g} for {p.dtype}), got {int((off > tolerance).sum())} "
            f"rows with sums in {_range(sums)}{hint}"
        )
    return p.float()


def check_targets(targets: Any, rows: int, classes: int, name: str = "targets") -> torch.Tensor:
    """``targets`` as int64 class indices ``[rows]`` in ``[0, classes)`` (:func:`lit_deep._validate.check_targets`).

    Float labels are refused, not truncated (``0.7`` would silently become class 0).

    Example::

        >>> try:
        ...     check_targets(torch.tensor([0.7, 1.0]), 2, 3)
        ... except TypeError as err:
        ...     print(err)
        targets: must be integer class indices (an integer dtype, not truncated floats), got dtype torch.float32
    """
    result: torch.Tensor = _check_targets(name, targets, rows, classes)
    return result


def check_logits(logits: Any, name: str = "logits") -> torch.Tensor:
    """``logits`` when it is a non-empty floating-point tensor ``[N, C]`` or ``[N]`` of finite values.

    Raises:
        ArgumentTypeError: for something that is not a floating-point tensor.
        ValueError: for the wrong shape, or NaN or infinite values.

    Example::

        >>> try:
        ...     check_logits(torch.tensor([[0.0, float("nan")]]))
        ... except ValueError as err:
        ...     print(err)
        logits: must be finite, got 1 NaN or infinite values of 2
    """
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        got = f"dtype {logits.dtype}" if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ArgumentTypeError(f"{name}: must be a floating-point tensor [N, C] or [N], got {got}")
    if logits.dim() not in (1, 2) or logits.shape[0] == 0:
        raise ValueError(f"{name}: expected a non-empty [N, C] or [N] tensor, got shape {tuple(logits.shape)}")
    finite = torch.isfinite(logits)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise ValueError(f"{name}: must be finite, got {bad} NaN or infinite values of {logits.numel()}")
    return logits
