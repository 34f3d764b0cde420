"""Split conformal prediction sets for classification: LAC, APS and RAPS on top of any probabilities.

Split conformal prediction (Vovk et al., 2005; Angelopoulos & Bates, 2021) turns any class probabilities -- one
deterministic pass, temperature-scaled, the MC-dropout mean (:attr:`MCPrediction.probs`), an ensemble -- into
prediction *sets* that contain the true class with probability at least ``1 - alpha``, for any model, as long as
the calibration and test examples are exchangeable. A *conformity score* ``s(x, y)`` (large: ``y`` is unlikely)
is computed on ``n`` held-out calibration examples; its finite-sample quantile

    ``q = the k-th smallest calibration score, k = ceil((n + 1) * (1 - alpha))``

(the empirical quantile at level ``ceil((n + 1)(1 - alpha)) / n``; ``q = inf`` when ``k > n``, too few
examples for that ``alpha``: every set is then every class) gives the set ``C(x) = {y : s(x, y) <= q}``. Then
``1 - alpha <= P(Y in C(X))``, and ``P(Y in C(X)) < 1 - alpha + 1 / (n + 1)`` when the scores have no ties.

The scores, with ``p_(1) >= p_(2) >= ...`` the probabilities of ``x`` sorted (ties keep the class order),
``o(y)`` the rank of class ``y`` (1 for the most likely) and ``E_k = p_(1) + ... + p_(k)``:

* ``"lac"`` (least ambiguous set-valued classifier, Sadinle et al., 2019): ``s = 1 - p_y``. The smallest sets
  on average; they adapt little to how hard ``x`` is, and may be empty.
* ``"aps"`` (adaptive prediction sets, Romano et al., 2020): ``s = E_(o(y)-1) + u * p_y``, the probability
  mass of the classes ranked above ``y`` plus a share ``u`` of its own. Sets grow with the model's uncertainty.
* ``"raps"`` (regularized APS, Angelopoulos et al., 2021): APS plus ``lam * max(0, o(y) - k_reg)``, a
  penalty on every class ranked below ``k_reg``, which cuts the long tail of unlikely classes that APS adds
  when the probabilities are spread thinly. ``lam = 0`` is APS.

APS and RAPS come in two variants (``randomized``):

* ``randomized=True`` (the papers' definition, the default): ``u ~ Uniform(0, 1)``, one draw per example,
  at calibration and at prediction; ``C(x) = {y : s(x, y, u) <= q}``, a set of top-ranked classes (the score
  grows with the rank). The coverage is then exact: within ``[1 - alpha, 1 - alpha + 1 / (n + 1))``. A set may
  be empty (when ``u * p_(1) > q``).
* ``randomized=False``: ``u = 1`` (``s = E_o(y)`` plus the penalty) at calibration, and the set is the top
  classes whose score is ``<= q`` *plus the next one* (the smallest top-``k`` set whose score reaches ``q``),
  as the reference code of Angelopoulos et al. and MAPIE's ``include_last_label=True``: never empty, coverage
  ``>= 1 - alpha`` but conservative (larger sets), and deterministic.

LAC has no randomisation. Every tensor is made on the device of the probabilities; scores are computed in
float64 (float32 on MPS, which has no float64).

Example::

    >>> cal = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.5, 0.4, 0.1]])
    >>> calibration = conformal_calibrate(cal, torch.tensor([0, 1, 0, 1]), alpha=0.2)
    >>> round(calibration.quantile, 4)  # k = ceil(5 * 0.8) = 4: the largest of 1 - p_y = (0.3, 0.2, 0.7, 0.6)
    0.7
    >>> prediction_sets(torch.tensor([[0.6, 0.35, 0.05]]), calibration).tolist()
    [[True, True, False]]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from lit_deep._validate import check_bool, check_choice, check_int, check_non_negative, check_probability, check_seed
from lit_deep.uncertainty.metrics import _checked
from lit_deep.uncertainty.prediction import MCPrediction

__all__ = [
    "ConformalCalibration",
    "Method",
    "calibrate_scores",
    "conformal_calibrate",
    "conformity_scores",
    "mean_set_size",
    "prediction_sets",
    "set_coverage",
]

Method = Literal["lac", "aps", "raps"]
METHODS: tuple[Method, ...] = ("lac", "aps", "raps")


@dataclass(frozen=True)
class ConformalCalibration:
    """What :func:`conformal_calibrate` returns: the score, its parameters and the calibrated quantile.

    Attributes:
        method: ``"lac"``, ``"aps"`` or ``"raps"``.
        alpha: the miscoverage asked for; sets cover the true class with probability ``>= 1 - alpha``.
        quantile: ``q``, the ``ceil((n + 1)(1 - alpha))``-th smallest calibration score (``inf`` if that exceeds
            ``n``).
        n: the number of calibration examples.
        lam: the RAPS penalty per rank below ``k_reg`` (0 for LAC and APS).
        k_reg: the number of top ranks RAPS does not penalise (0 for LAC and APS).
        randomized: APS/RAPS with a uniform ``u`` per example (``False`` for LAC); see the module docstring.

    Example::

        >>> c = ConformalCalibration("raps", 0.1, 0.93, 500, lam=0.1, k_reg=1, randomized=True)
        >>> ConformalCalibration(**c.to_dict()) == c
        True
    """

    method: Method
    alpha: float
    quantile: float
    n: int
    lam: float = 0.0
    k_reg: int = 0
    randomized: bool = False

    def to_dict(self) -> dict[str, object]:
        """The fields as a plain dict (what a checkpoint stores)."""
        return {
            "method": self.method,
            "alpha": self.alpha,
            "quantile": self.quantile,
            "n": self.n,
            "lam": self.lam,
            "k_reg": self.k_reg,
            "randomized": self.randomized,
        }


def _wide(p: torch.Tensor) -> torch.Tensor:
    return p.to(torch.float32 if p.device.type == "mps" else torch.float64)


def _probs(probs: MCPrediction | torch.Tensor) -> torch.Tensor:
    p = probs.probs if isinstance(probs, MCPrediction) else probs
    if not isinstance(p, torch.Tensor) or p.dim() != 2 or p.shape[1] < 2:
        shape = tuple(p.shape) if isinstance(p, torch.Tensor) else type(p).__name__
        raise ValueError(f"probs: expected [N, C] probabilities with C >= 2, got {shape}")
    if not bool(torch.isfinite(p).all()):
        raise ValueError("probs: contains NaN or infinite values")
    return p


def _check_params(method: str, lam: float, k_reg: int, randomized: bool) -> tuple[Method, float, int, bool]:
    method = check_choice("method", method, METHODS)
    lam = check_non_negative("lam", lam)
    k_reg = check_int("k_reg", k_reg, minimum=0)
    randomized = check_bool("randomized", randomized)
    if method == "lac":
        return "lac", 0.0, 0, False
    if method == "aps":
        return "aps", 0.0, 0, randomized
    return "raps", lam, k_reg, randomized


def _uniform(n: int, seed: int | None, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``n`` draws of ``Uniform(0, 1)``, from ``seed`` (a CPU generator: the same on every device) or torch's."""
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    return torch.rand(n, generator=generator, dtype=torch.float64).to(device=device, dtype=dtype)


def _sorted_scores(
    p: torch.Tensor, method: Method, lam: float, k_reg: int, u: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores of every class in rank order ``[N, C]`` (``u=None``: ``u = 1``) and the ranking (class indices)."""
    ordered, order = p.sort(dim=1, descending=True, stable=True)
    cumulative = ordered.cumsum(dim=1)
    scores = cumulative if u is None else cumulative - ordered + u[:, None] * ordered
    if method == "raps" and lam > 0:
        ranks = torch.arange(1, p.shape[1] + 1, device=p.device, dtype=p.dtype)
        scores = scores + lam * (ranks - k_reg).clamp_min(0)
    return scores, order


def conformity_scores(
    probs: MCPrediction | torch.Tensor,
    targets: torch.Tensor,
    method: Method = "lac",
    lam: float = 0.1,
    k_reg: int = 1,
    randomized: bool = True,
    seed: int | None = None,
) -> torch.Tensor:
    """The conformity score of each example's true class ``[N]`` (float64; float32 on MPS), on probs' device.

    The formulas are in the module docstring; ``seed`` seeds the uniform ``u`` of randomized APS/RAPS (``None``:
    torch's global generator). :func:`calibrate_scores` turns them into a :class:`ConformalCalibration`;
    computing scores per shard and gathering them is how the DDP callback calibrates.

    Example::

        >>> p = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]])
        >>> scores = conformity_scores(p, torch.tensor([1, 2]), "aps", randomized=False)  # the mass down to y
        >>> [round(s, 4) for s in scores.tolist()]
        [0.8, 0.9]
        >>> [round(s, 4) for s in conformity_scores(p, torch.tensor([1, 2]), "lac").tolist()]
        [0.7, 0.7]
    """
    method, lam, k_reg, randomized = _check_params(method, lam, k_reg, randomized)
    seed = check_seed("seed", seed)
    p = _probs(probs)
    _, y = _checked(p, targets.to(p.device))
    p = _wide(p)
    if method == "lac":
        return 1.0 - p.gather(1, y[:, None]).squeeze(1)
    u = _uniform(p.shape[0], seed, p.device, p.dtype) if randomized else None
    scores, order = _sorted_scores(p, method, lam, k_reg, u)
    rank = (order == y[:, None]).long().argmax(dim=1)  # 0-based rank of the true class
    return scores.gather(1, rank[:, None]).squeeze(1)


def _rank_k(n: int, alpha: float) -> int:
    # ceil((n + 1)(1 - alpha)), with a tolerance against rounding: (9 + 1) * 0.9 is 9.000000000000002
    return math.ceil((n + 1) * (1.0 - alpha) - 1e-9)


def calibrate_scores(
    scores: torch.Tensor,
    alpha: float,
    method: Method = "lac",
    lam: float = 0.1,
    k_reg: int = 1,
    randomized: bool = True,
) -> ConformalCalibration:
    """The :class:`ConformalCalibration` of scores ``[n]``: ``q`` is their ``ceil((n+1)(1-alpha))``-th smallest.

    ``method``, ``lam``, ``k_reg`` and ``randomized`` must be those the scores were computed with
    (:func:`conformity_scores`); they are recorded so that :func:`prediction_sets` scores the test classes alike.

    Example::

        >>> scores = torch.arange(1.0, 10.0, dtype=torch.float64) / 10  # 0.1, ..., 0.9
        >>> calibrate_scores(scores, alpha=0.2).quantile  # k = ceil(10 * 0.8) = 8
        0.8
        >>> calibrate_scores(torch.tensor([0.1, 0.2]), alpha=0.1).quantile  # k = 3 > n: every set is every class
        inf
    """
    alpha = check_probability("alpha", alpha, lower_inclusive=False)
    method, lam, k_reg, randomized = _check_params(method, lam, k_reg, randomized)
    if not isinstance(scores, torch.Tensor) or scores.dim() != 1 or not scores.numel():
        raise ValueError(f"scores: expected a non-empty 1-D tensor, got {getattr(scores, 'shape', scores)!r}")
    if not bool(torch.isfinite(scores).all()):
        raise ValueError("scores: contains NaN or infinite values")
    n = scores.numel()
    k = _rank_k(n, alpha)
    quantile = math.inf if k > n else float(torch.kthvalue(scores.double().cpu(), k).values)
    return ConformalCalibration(method, alpha, quantile, n, lam, k_reg, randomized)


def conformal_calibrate(
    probs: MCPrediction | torch.Tensor,
    targets: torch.Tensor,
    alpha: float = 0.1,
    method: Method = "lac",
    lam: float = 0.1,
    k_reg: int = 1,
    randomized: bool = True,
    seed: int | None = None,
) -> ConformalCalibration:
    """Calibrate split conformal prediction sets on held-out ``probs`` ``[n, C]`` and their ``targets`` ``[n]``.

    Any probabilities will do (one pass, temperature-scaled, an :class:`MCPrediction`'s mean, an ensemble's); the
    test probabilities given to :func:`prediction_sets` must come from the same predictor. The calibration
    examples must not have been used to train (or early-stop, or temperature-scale) the model.

    Args:
        probs: ``[n, C]`` probabilities of the calibration examples, or an :class:`MCPrediction`.
        targets: ``[n]`` their classes.
        alpha: the miscoverage, in ``(0, 1)``: sets hold the true class with probability ``>= 1 - alpha``.
        method: the score: ``"lac"`` (``1 - p_y``), ``"aps"`` or ``"raps"`` (module docstring).
        lam: RAPS only: the penalty per rank below ``k_reg`` (Angelopoulos et al. pick it on held-out data;
            larger values give smaller, less adaptive sets). The defaults ``lam=0.1, k_reg=1`` suit an accurate
            10-class model (Fashion-MNIST); the paper's ImageNet choice is ``lam=0.01, k_reg=5``.
        k_reg: RAPS only: how many top ranks go unpenalised (about the rank the true class reaches in a
            ``1 - alpha`` share of examples; 1 for an accurate 10-class model).
        randomized: APS/RAPS: draw ``u ~ Uniform(0, 1)`` per example (exact coverage, sets may be empty) or
            not (``u = 1``; sets never empty and conservative). Ignored by LAC.
        seed: seeds the ``u`` draws (``None``: torch's global generator).

    Returns:
        A frozen :class:`ConformalCalibration` (method, alpha, quantile, n and the parameters).

    Example::

        >>> p = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.4, 0.6], [0.3, 0.7]])
        >>> c = conformal_calibrate(p, torch.tensor([0, 0, 1, 0]), alpha=0.25)
        >>> c.method, c.n, round(c.quantile, 4)  # k = ceil(5 * 0.75) = 4: the largest of (0.1, 0.2, 0.4, 0.7)
        ('lac', 4, 0.7)
    """
    alpha = check_probability("alpha", alpha, lower_inclusive=False)
    method, lam, k_reg, randomized = _check_params(method, lam, k_reg, randomized)
    scores = conformity_scores(probs, targets, method, lam, k_reg, randomized, seed)
    return calibrate_scores(scores, alpha, method, lam, k_reg, randomized)


def prediction_sets(
    probs: MCPrediction | torch.Tensor, calibrated: ConformalCalibration, seed: int | None = None
) -> torch.Tensor:
    """Prediction sets ``[N, C]`` (bool, on probs' device): ``sets[i, c]`` is whether class ``c`` is in ``C(x_i)``.

    Args:
        probs: ``[N, C]`` test probabilities from the predictor that was calibrated, or an :class:`MCPrediction`.
        calibrated: what :func:`conformal_calibrate` returned.
        seed: seeds the ``u`` draws of randomized APS/RAPS (``None``: torch's global generator).

    Example::

        >>> c = ConformalCalibration("aps", alpha=0.1, quantile=0.85, n=100)  # randomized=False
        >>> prediction_sets(torch.tensor([[0.5, 0.3, 0.2], [0.9, 0.05, 0.05]]), c).tolist()
        [[True, True, True], [True, False, False]]
    """
    if not isinstance(calibrated, ConformalCalibration):
        raise ValueError(f"calibrated: expected a ConformalCalibration, got {type(calibrated).__name__}")
    seed = check_seed("seed", seed)
    p = _wide(_probs(probs))
    q = calibrated.quantile
    if calibrated.method == "lac":
        return (1.0 - p) <= q
    u = _uniform(p.shape[0], seed, p.device, p.dtype) if calibrated.randomized else None
    scores, order = _sorted_scores(p, calibrated.method, calibrated.lam, calibrated.k_reg, u)
    keep = scores <= q
    if not calibrated.randomized:  # also the first class whose score passes q: never empty
        count = keep.sum(dim=1, keepdim=True)
        keep = torch.arange(p.shape[1], device=p.device)[None, :] <= count.clamp_max(p.shape[1] - 1)
    return torch.zeros_like(keep).scatter(1, order, keep)


def _check_sets(sets: torch.Tensor) -> torch.Tensor:
    if not isinstance(sets, torch.Tensor) or sets.dim() != 2 or sets.dtype != torch.bool:
        raise ValueError(f"sets: expected a bool [N, C] tensor, got {getattr(sets, 'dtype', type(sets).__name__)}")
    return sets


def set_coverage(sets: torch.Tensor, targets: torch.Tensor) -> float:
    """The share of examples whose set holds the true class: ``mean_i sets[i, y_i]``.

    Example::

        >>> set_coverage(torch.tensor([[True, False], [True, True], [False, True]]), torch.tensor([0, 0, 0]))
        0.6666666666666666
    """
    sets = _check_sets(sets)
    if targets.shape != (sets.shape[0],):
        raise ValueError(f"targets: expected shape ({sets.shape[0]},) to match sets, got {tuple(targets.shape)}")
    if not targets.numel():
        raise ValueError("sets: expected at least one example, got 0")
    if int(targets.min()) < 0 or int(targets.max()) >= sets.shape[1]:
        raise ValueError(
            f"targets: class indices must be in [0, {sets.shape[1]}), got {targets.min()}..{targets.max()}"
        )
    covered = sets.gather(1, targets.to(sets.device).long()[:, None])
    return float(covered.double().mean())


def mean_set_size(sets: torch.Tensor) -> float:
    """The mean number of classes per set.

    Example::

        >>> mean_set_size(torch.tensor([[True, False], [True, True], [False, False]]))
        1.0
    """
    sets = _check_sets(sets)
    if not sets.shape[0]:
        raise ValueError("sets: expected at least one example, got 0")
    return float(sets.sum(dim=1).double().mean())
