"""Calibration and out-of-distribution metrics of probabilistic predictions.

Accuracy, expected calibration error and AUROC come from torchmetrics; torchmetrics has no multiclass NLL or
Brier score, so those two are written here (plain formulas below). Every metric checks its inputs the same way
(:mod:`lit_deep.uncertainty._inputs`): probabilities finite, in [0, 1], rows summing to 1 (logits are refused
with a hint); targets integer class indices in ``[0, C)`` (float labels refused, not truncated).
"""

from __future__ import annotations

import torch

from lit_deep._validate import check_int
from lit_deep.uncertainty._inputs import check_probs, check_targets
from lit_deep.uncertainty.prediction import MCPrediction

__all__ = [
    "ECE_BINS",
    "accuracy",
    "brier_score",
    "calibration_report",
    "expected_calibration_error",
    "nll",
    "ood_auroc",
]

#: Bins of the expected calibration error (the usual 15, equal width over the confidence [0, 1]).
ECE_BINS = 15
_EPS = 1e-12


def _checked(probs: MCPrediction | torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities ``[N, C]`` and targets ``[N]``, checked (:mod:`lit_deep.uncertainty._inputs`)."""
    p = check_probs(probs)
    return p, check_targets(targets, p.shape[0], p.shape[1])


def accuracy(probs: MCPrediction | torch.Tensor, targets: torch.Tensor) -> float:
    """Accuracy of ``argmax(probs)`` (torchmetrics ``multiclass_accuracy``, micro average).

    Shapes: ``probs`` ``[N, C]`` (or an :class:`MCPrediction`, whose mean is used), ``targets`` ``[N]``.

    Example::

        >>> accuracy(torch.tensor([[0.9, 0.1], [0.4, 0.6]]), torch.tensor([0, 0]))
        0.5
    """
    p, y = _checked(probs, targets)
    from torchmetrics.functional.classification import multiclass_accuracy  # torchmetrics loads matplotlib

    return float(multiclass_accuracy(p, y, num_classes=p.shape[1], average="micro"))


def nll(probs: MCPrediction | torch.Tensor, targets: torch.Tensor) -> float:
    """Negative log-likelihood in nats: ``mean_n -log p_n[y_n]`` (probabilities floored at ``1e-12``).

    Example::

        >>> round(nll(torch.tensor([[0.5, 0.5], [0.25, 0.75]]), torch.tensor([0, 1])), 4)
        0.4904
    """
    p, y = _checked(probs, targets)
    return float(-p.gather(1, y[:, None]).clamp_min(_EPS).log().mean())


def brier_score(probs: MCPrediction | torch.Tensor, targets: torch.Tensor) -> float:
    """Multiclass Brier score (Brier, 1950): ``mean_n sum_c (p_nc - [y_n = c])^2``, in [0, 2].

    Example::

        >>> brier_score(torch.tensor([[1.0, 0.0], [0.5, 0.5]]), torch.tensor([0, 1]))
        0.25
    """
    p, y = _checked(probs, targets)
    return float((p - torch.nn.functional.one_hot(y, p.shape[1])).square().sum(dim=1).mean())


def expected_calibration_error(
    probs: MCPrediction | torch.Tensor, targets: torch.Tensor, n_bins: int = ECE_BINS
) -> float:
    """ECE: ``sum_b |B_b|/N * |accuracy(B_b) - confidence(B_b)|`` over ``n_bins`` equal-width confidence bins.

    torchmetrics ``multiclass_calibration_error`` with ``norm="l1"``; confidence is ``max_c p_c``.

    Example::

        >>> round(expected_calibration_error(torch.tensor([[0.9, 0.1], [0.8, 0.2]]), torch.tensor([0, 1])), 4)
        0.45
    """
    check_int("n_bins", n_bins, minimum=1)
    p, y = _checked(probs, targets)
    from torchmetrics.functional.classification import multiclass_calibration_error  # torchmetrics loads matplotlib

    return float(multiclass_calibration_error(p, y, num_classes=p.shape[1], n_bins=n_bins, norm="l1"))


def ood_auroc(scores_in: torch.Tensor, scores_out: torch.Tensor) -> float:
    """AUROC of separating out-of-distribution inputs (positives) from in-distribution ones by a score.

    Larger scores must mean "more likely OOD" (uncertainty scores such as entropy or ``1 - max p``). 0.5 is
    chance, 1.0 perfect. torchmetrics ``binary_auroc``.

    Shapes: ``[N_in]`` and ``[N_out]``.

    Example::

        >>> round(ood_auroc(torch.tensor([0.1, 0.2, 0.6]), torch.tensor([0.5, 0.9])), 4)
        0.8333
    """
    if scores_in.dim() != 1 or scores_out.dim() != 1 or not scores_in.numel() or not scores_out.numel():
        raise ValueError(
            f"scores_in, scores_out: expected two non-empty 1-D tensors, got {tuple(scores_in.shape)} and "
            f"{tuple(scores_out.shape)}"
        )
    scores = torch.cat([scores_in, scores_out]).float()
    if not bool(torch.isfinite(scores).all()):
        raise ValueError("scores_in, scores_out: contain NaN or infinite values")
    zeros, ones = (
        torch.full((s.numel(),), v, dtype=torch.long, device=scores.device)
        for s, v in ((scores_in, 0), (scores_out, 1))
    )
    labels = torch.cat([zeros, ones])
    from torchmetrics.functional.classification import binary_auroc  # torchmetrics loads matplotlib

    return float(binary_auroc(scores, labels))


def calibration_report(
    probs: MCPrediction | torch.Tensor, targets: torch.Tensor, n_bins: int = ECE_BINS
) -> dict[str, float]:
    """Accuracy, NLL (nats), Brier score and ECE (``n_bins`` bins) in one dict.

    Example::

        >>> report = calibration_report(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1]))
        >>> report["accuracy"], report["brier"], report["ece"]
        (1.0, 0.0, 0.0)
    """
    return {
        "accuracy": accuracy(probs, targets),
        "nll": nll(probs, targets),
        "brier": brier_score(probs, targets),
        "ece": expected_calibration_error(probs, targets, n_bins),
    }
