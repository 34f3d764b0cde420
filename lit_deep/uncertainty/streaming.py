"""Streaming twins of the calibration metrics: torchmetrics ``Metric`` s for NLL, Brier, adaptive ECE and AURC.

Each metric accumulates batch by batch (``update``), reduces over DDP ranks (``dist_reduce_fx``) and gives the
value of its whole-dataset function on the concatenated data (``compute``):

====================================  ==============================================================  ==========
metric                                function                                                        state
====================================  ==============================================================  ==========
:class:`NegativeLogLikelihood`        :func:`~lit_deep.uncertainty.nll`                               sums
:class:`BrierScore`                   :func:`~lit_deep.uncertainty.brier_score`                       sums
:class:`AdaptiveCalibrationError`     :func:`~lit_deep.uncertainty.adaptive_calibration_error`        every row
:class:`AURC`                         :func:`~lit_deep.uncertainty.aurc`                              every row
====================================  ==============================================================  ==========

Adaptive ECE and AURC rank all predictions, so they keep one confidence (or uncertainty score) and one
correctness flag per example (``cat`` states: 16 bytes a row). Accumulators are float64 whatever the module's
dtype (``module.half()`` and ``module.to(torch.bfloat16)`` leave them float64; float32 on MPS, which has no
float64).

This module imports torchmetrics (and with it matplotlib) when imported, so ``import lit_deep.uncertainty``
does not import it: ``from lit_deep.uncertainty.streaming import BrierScore``.

Example::

    >>> metric = BrierScore()
    >>> metric.update(torch.tensor([[1.0, 0.0]]), torch.tensor([0]))
    >>> metric.update(torch.tensor([[0.5, 0.5]]), torch.tensor([1]))
    >>> float(metric.compute())
    0.25
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from lit_deep._validate import check_int
from lit_deep.uncertainty.metrics import _EPS, ECE_BINS, _checked
from lit_deep.uncertainty.prediction import MCPrediction
from lit_deep.uncertainty.scores import max_softmax_uncertainty
from lit_deep.uncertainty.selective import _adaptive_ece, _risk_coverage

__all__ = ["AURC", "AdaptiveCalibrationError", "BrierScore", "NegativeLogLikelihood"]


def _accumulator_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


class _FixedDtype(Metric):
    """A Metric whose float states stay float64 when a parent module casts itself (``.half()``, ``.to(dtype)``)."""

    full_state_update = False

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], exclude_state: Any = ()) -> Any:
        this = super()._apply(fn, exclude_state)
        for name in self._defaults:
            value = getattr(this, name)
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                setattr(this, name, value.to(_accumulator_dtype(value.device)))
            elif isinstance(value, list):
                setattr(this, name, [v.to(_accumulator_dtype(v.device)) if v.is_floating_point() else v for v in value])
        for name, default in list(self._defaults.items()):
            if isinstance(default, torch.Tensor) and default.is_floating_point():
                self._defaults[name] = default.to(_accumulator_dtype(default.device))
        return this


class _SumMetric(_FixedDtype):
    """``sum_n f(p_n, y_n) / N`` with a float64 sum and an int64 count, both summed over ranks."""

    total: torch.Tensor
    count: torch.Tensor

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def _terms(self, p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def update(self, probs: MCPrediction | torch.Tensor, targets: torch.Tensor) -> None:
        """Add a batch: ``probs`` ``[B, C]`` (or an :class:`MCPrediction`) and ``targets`` ``[B]``."""
        p, y = _checked(probs, targets)
        self.total += self._terms(p, y.to(p.device)).to(self.total).sum()
        self.count += y.numel()

    def compute(self) -> torch.Tensor:
        """The mean over every example seen (and every rank): a float64 scalar (``nan`` before any update)."""
        return self.total / self.count


class NegativeLogLikelihood(_SumMetric):
    """Streaming :func:`~lit_deep.uncertainty.nll`: ``mean_n -log p_n[y_n]`` in nats (floored at ``1e-12``).

    Example::

        >>> metric = NegativeLogLikelihood()
        >>> metric.update(torch.tensor([[0.5, 0.5]]), torch.tensor([0]))
        >>> metric.update(torch.tensor([[0.25, 0.75]]), torch.tensor([1]))
        >>> round(float(metric.compute()), 4)
        0.4904
    """

    higher_is_better = False
    is_differentiable = False

    def _terms(self, p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return -p.gather(1, y[:, None]).clamp_min(_EPS).log()


class BrierScore(_SumMetric):
    """Streaming :func:`~lit_deep.uncertainty.brier_score`: ``mean_n sum_c (p_nc - [y_n = c])^2``, in [0, 2].

    Example::

        >>> metric = BrierScore()
        >>> metric.update(torch.tensor([[0.9, 0.1], [0.5, 0.5]]), torch.tensor([0, 1]))
        >>> round(float(metric.compute()), 4)
        0.26
    """

    higher_is_better = False
    is_differentiable = False

    def _terms(self, p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (p - torch.nn.functional.one_hot(y, p.shape[1])).square().sum(dim=1)


class _RowMetric(_FixedDtype):
    """Keeps one float64 value and one 0/1 flag per example (``cat`` states, concatenated over ranks)."""

    values: list[torch.Tensor]
    flags: list[torch.Tensor]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("values", [], dist_reduce_fx="cat")
        self.add_state("flags", [], dist_reduce_fx="cat")

    def _rows(self) -> tuple[torch.Tensor, torch.Tensor]:
        # a list of batches, or one tensor once torchmetrics has gathered it across DDP ranks
        if len(self.values) == 0:
            raise ValueError(f"{type(self).__name__}: compute() before any update()")
        return dim_zero_cat(self.values), dim_zero_cat(self.flags)


class AdaptiveCalibrationError(_RowMetric):
    """Streaming :func:`~lit_deep.uncertainty.adaptive_calibration_error` (equal-mass bins over all examples).

    Args:
        n_bins: the number of bins.

    Example::

        >>> metric = AdaptiveCalibrationError(n_bins=2)
        >>> metric.update(torch.tensor([[0.9, 0.1], [0.8, 0.2]]), torch.tensor([0, 1]))
        >>> metric.update(torch.tensor([[0.6, 0.4], [0.7, 0.3]]), torch.tensor([0, 0]))
        >>> round(float(metric.compute()), 4)
        0.35
    """

    higher_is_better = False
    is_differentiable = False

    def __init__(self, n_bins: int = ECE_BINS, **kwargs: Any) -> None:
        self.n_bins = check_int("n_bins", n_bins, minimum=1)
        super().__init__(**kwargs)

    def update(self, probs: MCPrediction | torch.Tensor, targets: torch.Tensor) -> None:
        """Add a batch: ``probs`` ``[B, C]`` (or an :class:`MCPrediction`) and ``targets`` ``[B]``."""
        p, y = _checked(probs, targets)
        confidence, predicted = p.double().max(dim=1)
        self.values.append(confidence.to(_accumulator_dtype(p.device)))
        self.flags.append((predicted == y.to(p.device)).to(confidence.dtype))

    def compute(self) -> torch.Tensor:
        """The adaptive ECE of every example seen (and every rank), a float64 scalar."""
        confidence, correct = self._rows()
        return torch.tensor(_adaptive_ece(confidence, correct, self.n_bins), dtype=torch.float64)


class AURC(_RowMetric):
    """Streaming :func:`~lit_deep.uncertainty.aurc`: the area under the risk-coverage curve; lower is better.

    ``update(probs, targets, scores=None)``: uncertainty ``scores`` ``[B]`` rank the predictions (default
    ``1 - max p``), as in the function. Ties keep the order of arrival (under DDP: rank by rank).

    Example::

        >>> metric = AURC()
        >>> metric.update(torch.tensor([[0.9, 0.1], [0.6, 0.4]]), torch.tensor([0, 0]))
        >>> metric.update(torch.tensor([[0.8, 0.2]]), torch.tensor([1]))
        >>> round(float(metric.compute()), 4)
        0.2778
    """

    higher_is_better = False
    is_differentiable = False

    def update(
        self, probs: MCPrediction | torch.Tensor, targets: torch.Tensor, scores: torch.Tensor | None = None
    ) -> None:
        """Add a batch: ``probs`` ``[B, C]``, ``targets`` ``[B]`` and optional uncertainty ``scores`` ``[B]``."""
        p, y = _checked(probs, targets)
        if scores is None:
            score = max_softmax_uncertainty(p)
        elif scores.shape != (p.shape[0],):
            raise ValueError(f"scores: expected shape ({p.shape[0]},), got {tuple(scores.shape)}")
        else:
            score = scores.to(p.device)
        dtype = _accumulator_dtype(p.device)
        self.values.append(score.to(dtype))
        self.flags.append((p.argmax(dim=1) != y.to(p.device)).to(dtype))

    def compute(self) -> torch.Tensor:
        """The AURC of every example seen (and every rank), a float64 scalar."""
        score, wrong = self._rows()
        return _risk_coverage(score, wrong)[1].mean()
