"""Uncertainty scores: larger means more uncertain (the convention OOD detection metrics expect).

All entropies are in nats (natural logarithm); ``0 log 0`` is taken as 0. :func:`uncertainty_score` checks its
input (:mod:`lit_deep.uncertainty._inputs`); :func:`predictive_entropy` and :func:`max_softmax_uncertainty` are
the bare formulas (applied inside mc_predict and the metrics to values already checked) and do not.
"""

from __future__ import annotations

import torch

from lit_deep._validate import check_choice
from lit_deep.uncertainty._inputs import check_probs
from lit_deep.uncertainty.prediction import MCPrediction

__all__ = ["SCORES", "max_softmax_uncertainty", "predictive_entropy", "uncertainty_score"]

#: The scores :func:`uncertainty_score` knows, by name.
SCORES = ("entropy", "mutual_info", "variation_ratio", "max_softmax", "std")


def predictive_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Entropy of categorical distributions: ``-sum_c p_c log p_c`` over the last dimension, in nats.

    Shapes: ``[..., C]`` -> ``[...]``.

    Example::

        >>> round(predictive_entropy(torch.tensor([0.5, 0.5, 0.0])).item(), 4)
        0.6931
    """
    return -torch.special.xlogy(probs, probs).sum(dim=-1)


def max_softmax_uncertainty(probs: torch.Tensor) -> torch.Tensor:
    """``1 - max_c p_c``: the maximum-softmax-probability baseline of Hendrycks & Gimpel (2017), as uncertainty.

    Shapes: ``[..., C]`` -> ``[...]``.

    Example::

        >>> max_softmax_uncertainty(torch.tensor([[0.75, 0.25]])).tolist()
        [0.25]
    """
    return 1.0 - probs.max(dim=-1).values


def uncertainty_score(prediction: MCPrediction | torch.Tensor, name: str) -> torch.Tensor:
    """One uncertainty score ``[N]`` by name.

    Args:
        prediction: an :class:`MCPrediction`, or plain probabilities ``[N, C]`` (e.g. of a deterministic pass;
            only ``entropy`` and ``max_softmax`` are defined for those).
        name: ``entropy`` (predictive entropy), ``mutual_info`` (BALD), ``variation_ratio``, ``max_softmax``
            (``1 - max p``) or ``std`` (mean over classes of the per-class standard deviation).

    Returns:
        The score, larger for more uncertain inputs.

    Raises:
        ValueError: for an unknown name, a score that needs MC samples asked of plain probabilities, or
            probabilities that are not finite, in [0, 1] and summing to 1 (:mod:`lit_deep.uncertainty._inputs`).

    Example::

        >>> pred = MCPrediction.from_samples(torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]]))
        >>> uncertainty_score(pred, "variation_ratio").tolist(), uncertainty_score(pred, "max_softmax").tolist()
        ([0.5], [0.5])
    """
    check_choice("name", name, SCORES)
    probs = check_probs(prediction, "prediction", matrix=False)
    if name == "entropy":
        return predictive_entropy(probs)
    if name == "max_softmax":
        return max_softmax_uncertainty(probs)
    if not isinstance(prediction, MCPrediction):
        raise ValueError(f"name: {name!r} needs an MCPrediction, got plain probabilities")
    if name == "std":
        return prediction.std.mean(dim=-1)
    return getattr(prediction, name)
