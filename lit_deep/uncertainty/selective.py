"""Selective prediction and more calibration metrics: adaptive ECE, the risk-coverage curve, AURC, FPR at 95 % TPR.

torchmetrics has none of adaptive ECE, AURC and the risk-coverage curve (written here, plain formulas below);
FPR at a given TPR is torchmetrics' ``binary_specificity_at_sensitivity`` (``FPR = 1 - specificity``).
"""

from __future__ import annotations

import torch

from lit_deep._validate import ArgumentTypeError, check_int, check_probability
from lit_deep.uncertainty.metrics import ECE_BINS, _checked
from lit_deep.uncertainty.prediction import MCPrediction
from lit_deep.uncertainty.scores import max_softmax_uncertainty

__all__ = ["adaptive_calibration_error", "aurc", "fpr_at_tpr", "risk_coverage_curve"]


def adaptive_calibration_error(
    probs: MCPrediction | torch.Tensor, targets: torch.Tensor, n_bins: int = ECE_BINS
) -> float:
    """Adaptive (equal-mass) ECE: the ECE over ``n_bins`` bins holding equally many predictions.

    ``sum_b |B_b|/N * |accuracy(B_b) - confidence(B_b)|`` with the predictions sorted by confidence
    ``max_c p_c`` and cut into ``n_bins`` groups of (as nearly as possible) equal size.

    Equal-mass bins follow the data (Nixon et al., 2019): with an accurate network most confidences sit near
    1, where equal-width bins put nearly every prediction into the last bin.

    Example::

        >>> p = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.7, 0.3]])
        >>> round(adaptive_calibration_error(p, torch.tensor([0, 1, 0, 0]), n_bins=2), 4)
        0.35
    """
    check_int("n_bins", n_bins, minimum=1)
    p, y = _checked(probs, targets)
    confidence, predicted = p.double().max(dim=1)
    return _adaptive_ece(confidence, (predicted == y).double(), n_bins)


def _adaptive_ece(confidence: torch.Tensor, correct: torch.Tensor, n_bins: int) -> float:
    """Adaptive ECE from float64 confidences and 0/1 correctness ``[N]`` (shared with the streaming metric)."""
    order = torch.argsort(confidence, stable=True)
    correct = correct[order]
    total = 0.0
    for conf, hit in zip(confidence[order].tensor_split(n_bins), correct.tensor_split(n_bins), strict=True):
        if conf.numel():
            total += conf.numel() * abs(float(hit.mean() - conf.mean()))
    return total / confidence.shape[0]


def _uncertainty(p: torch.Tensor, scores: torch.Tensor | None) -> torch.Tensor:
    if scores is None:
        return max_softmax_uncertainty(p)
    if not isinstance(scores, torch.Tensor) or not (scores.is_floating_point() or _is_integer(scores)):
        got = f"dtype {scores.dtype}" if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ArgumentTypeError(f"scores: must be None or a real tensor [N] of uncertainties, got {got}")
    if scores.shape != (p.shape[0],):
        raise ValueError(f"scores: expected shape ({p.shape[0]},), got {tuple(scores.shape)}")
    if not bool(torch.isfinite(scores).all()):
        raise ValueError(f"scores: must be finite, got {int((~torch.isfinite(scores)).sum())} NaN or infinite values")
    return scores


def _is_integer(t: torch.Tensor) -> bool:
    return not t.is_floating_point() and not t.is_complex() and t.dtype != torch.bool


def risk_coverage_curve(
    probs: MCPrediction | torch.Tensor, targets: torch.Tensor, scores: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Selective risk against coverage: keep the ``k`` most certain predictions, ``k = 1..N``.

    ``coverage[k-1] = k / N`` and ``risk[k-1]`` = error rate among the ``k`` predictions with the lowest
    uncertainty ``scores`` (default ``1 - max p``; ties keep the input order).

    Returns:
        Two ``[N]`` float64 tensors: coverage, risk.

    Example::

        >>> p = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.8, 0.2]])
        >>> cov, risk = risk_coverage_curve(p, torch.tensor([0, 0, 1]))
        >>> [round(c, 3) for c in cov.tolist()], risk.tolist()
        ([0.333, 0.667, 1.0], [0.0, 0.5, 0.3333333333333333])
    """
    p, y = _checked(probs, targets)
    return _risk_coverage(_uncertainty(p, scores), (p.argmax(dim=1) != y).double())


def _risk_coverage(score: torch.Tensor, wrong: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Coverage and risk from uncertainty scores and 0/1 errors ``[N]`` (shared with the streaming metric)."""
    order = torch.argsort(score.double(), stable=True)
    errors = wrong.double()[order].cumsum(0)
    kept = torch.arange(1, score.shape[0] + 1, dtype=torch.float64, device=errors.device)
    return kept / score.shape[0], errors / kept


def aurc(probs: MCPrediction | torch.Tensor, targets: torch.Tensor, scores: torch.Tensor | None = None) -> float:
    """Area under the risk-coverage curve (Geifman & El-Yaniv, 2017): ``(1/N) sum_k risk(k/N)``; lower is better.

    A perfect ranking of errors last gives the minimum for the accuracy; random ranking gives about the error
    rate. See :func:`risk_coverage_curve` for ``scores``.

    Example::

        >>> p = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.8, 0.2]])
        >>> round(aurc(p, torch.tensor([0, 0, 1])), 4)
        0.2778
    """
    return float(risk_coverage_curve(probs, targets, scores)[1].mean())


def fpr_at_tpr(scores_in: torch.Tensor, scores_out: torch.Tensor, tpr: float = 0.95) -> float:
    """False-positive rate on in-distribution inputs at the threshold that flags ``tpr`` of the OOD inputs.

    OOD inputs are the positives and larger scores mean "more likely OOD" (as :func:`ood_auroc`). FPR95 is
    the usual report (lower is better). torchmetrics ``binary_specificity_at_sensitivity``, ``1 -`` its result.
    Scores are ranked; scores outside ``[0, 1]`` are mapped into it by a rank-preserving min-max rescaling.

    Example::

        >>> fpr_at_tpr(torch.tensor([0.1, 0.2, 0.6, 0.3]), torch.tensor([0.5, 0.9]), tpr=0.95)
        0.25
    """
    tpr = check_probability("tpr", tpr, upper_inclusive=True, lower_inclusive=False)
    if scores_in.dim() != 1 or scores_out.dim() != 1 or not scores_in.numel() or not scores_out.numel():
        raise ValueError("scores_in, scores_out: expected two non-empty 1-D tensors")
    scores = torch.cat([scores_in, scores_out]).double()
    if not bool(torch.isfinite(scores).all()):
        raise ValueError("scores_in, scores_out: contain NaN or infinite values")
    # torchmetrics applies a sigmoid to scores outside [0, 1], which can saturate and create ties: rescale.
    low, high = scores.min(), scores.max()
    scores = (scores - low) / (high - low) if high > low else torch.zeros_like(scores)
    zeros, ones = (
        torch.full((s.numel(),), v, dtype=torch.long, device=scores.device)
        for s, v in ((scores_in, 0), (scores_out, 1))
    )
    labels = torch.cat([zeros, ones])
    from torchmetrics.functional.classification import binary_specificity_at_sensitivity  # loads matplotlib

    specificity, _ = binary_specificity_at_sensitivity(scores, labels, min_sensitivity=tpr)
    return float(1.0 - specificity)
