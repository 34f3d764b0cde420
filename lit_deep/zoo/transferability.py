"""Choosing what to transfer before training: rank zoo models and cut depths by LogME and LEEP.

:func:`rank` extracts the features of the user's labelled images once per model (one forward pass, eval mode,
no grad, a forward hook at every cut of the backbone) and scores each (model, cut) candidate with

* **LogME** (You et al., "LogME: Practical Assessment of Pre-trained Models for Transfer Learning", ICML 2021):
  the log marginal evidence, per sample, of a Bayesian linear regression from the features to each one-hot
  column of the labels (one-vs-rest), with the prior precision ``alpha`` and the noise precision ``beta`` set
  by the paper's fixed-point iteration on the SVD of the features, averaged over the classes (:func:`logme`);
* **LEEP** (Nguyen et al., "LEEP: A New Measure to Evaluate Transferability of Learned Representations", ICML
  2020): the mean log of the expected empirical prediction of the source head's softmax through the empirical
  conditional ``P(y | z)`` of target labels given source classes (:func:`leep`); defined for the full model
  with its classifier head only.

Everything is computed in float64 with torch; no Lightning is imported.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lit_deep._validate import ArgumentTypeError, check_int
from lit_deep.models import BackboneHead
from lit_deep.models.resnet import ResidualBlock

__all__ = ["TransferScore", "cut_points", "leep", "logme", "rank"]

#: Modules after which a cut is offered: the outputs of nonlinearities (what the next layer consumes), residual
#: blocks included (each ends with one).
_ACTIVATIONS: tuple[type[nn.Module], ...] = (
    ResidualBlock,
    nn.ReLU,
    nn.SELU,
    nn.ELU,
    nn.GELU,
    nn.LeakyReLU,
    nn.SiLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.Mish,
)
#: Modules that are the identity in eval mode: a cut followed only by these is the full backbone.
_IDENTITY_IN_EVAL: tuple[type[nn.Module], ...] = (nn.Dropout, nn.AlphaDropout, nn.FeatureAlphaDropout, nn.Identity)
_EPS = 1e-12


@dataclass(frozen=True)
class TransferScore:
    """One row of :func:`rank`'s table: a (model, cut) candidate and its scores.

    Attributes:
        model: the candidate as given (a zoo name, repo id or folder) or the loaded model's name.
        cut: ``"backbone"`` for the whole backbone, ``"backbone[:k]"`` for its first ``k`` child modules.
        depth: ``k``, the number of backbone child modules the features pass through.
        feature_dim: the size of the (flattened) features.
        logme: LogME (higher is better; per sample, averaged over the classes).
        leep: LEEP of the source head (``None`` for an earlier cut or a head that is not a classifier).
        seconds: this row's share of the model's loading and forward pass plus its own scoring time (the rows
            of a run add up to its total time).
    """

    model: str
    cut: str
    depth: int
    feature_dim: int
    logme: float
    leep: float | None
    seconds: float


def _class_indices(name: str, labels: Any, rows: int | None) -> tuple[torch.Tensor, int]:
    """Labels renumbered 0..C-1 in the order of their values, and C (at least 2)."""
    if not isinstance(labels, torch.Tensor):
        raise ArgumentTypeError(f"{name}: must be a tensor of integer class indices, got {type(labels).__name__}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ArgumentTypeError(
            f"{name}: must be integer class indices (an integer dtype, not truncated floats), got dtype {labels.dtype}"
        )
    if labels.dim() != 1 or (rows is not None and labels.shape[0] != rows):
        expected = f"({rows},)" if rows is not None else "[N]"
        raise ValueError(f"{name}: expected shape {expected}, got {tuple(labels.shape)}")
    values, inverse = torch.unique(labels.cpu(), return_inverse=True)
    if values.numel() < 2:
        raise ValueError(f"{name}: must hold at least 2 distinct classes, got {values.tolist()}")
    return inverse, int(values.numel())


def _evidence(sigma: torch.Tensor, x2: torch.Tensor, rest: float, n: int, d: int, alpha: float, beta: float) -> float:
    """The log evidence (per sample) at ``alpha``, ``beta``, with the posterior mean ``m`` at those values."""
    lam = alpha / beta
    m2 = float((sigma * x2 / (lam + sigma) ** 2).sum())  # ||m||^2
    res2 = float((x2 * (lam / (lam + sigma)) ** 2).sum()) + rest  # ||F m - y||^2
    # log|A| with A = alpha I + beta F^T F: k eigenvalues alpha + beta sigma_i, d - k equal to alpha.
    logdet = float(torch.log(alpha + beta * sigma).sum()) + (d - sigma.numel()) * math.log(alpha)
    evidence = (
        d / 2 * math.log(alpha)
        + n / 2 * math.log(beta)
        - logdet / 2
        - beta / 2 * res2
        - alpha / 2 * m2
        - n / 2 * math.log(2 * math.pi)
    )
    return evidence / n


def _spectrum(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sigma, P)``: the squared singular values ``s_i^2`` of ``F`` ``[N, D]`` and ``P = U^T`` ``[k, N]``.

    ``F = U S V^T`` (thin SVD, ``k = min(N, D)``), obtained from the eigendecomposition of the smaller Gram
    matrix (``F F^T`` or ``F^T F``), as the paper's code does: an order of magnitude faster than a float64 SVD
    on a busy CPU, and exact where it matters (directions with ``s_i^2`` below ``1e-12`` of the largest are
    treated as null: their part of ``y`` is left to the residual).
    """
    n, d = f.shape
    if n <= d:
        sigma, u = torch.linalg.eigh(f @ f.T)  # ascending, N eigenpairs
        sigma = sigma.clamp_min(0)
        null = sigma <= sigma.max() * 1e-12
        return sigma.masked_fill(null, 0.0), u.T.masked_fill(null[:, None], 0.0)
    sigma, v = torch.linalg.eigh(f.T @ f)  # D eigenpairs; u_i = F v_i / s_i
    sigma = sigma.clamp_min(0)
    null = sigma <= sigma.max() * 1e-12
    scale = torch.where(null, torch.zeros_like(sigma), sigma.clamp_min(1e-300).rsqrt())
    return sigma.masked_fill(null, 0.0), (f @ v * scale).T


def _fit_column(
    sigma: torch.Tensor, x: torch.Tensor, norm2: float, n: int, d: int, max_iter: int, tol: float
) -> tuple[float, float, float]:
    """LogME of one target column: ``(evidence per sample, alpha, beta)`` at the fixed point."""
    x2 = x**2
    rest = max(norm2 - float(x2.sum()), 0.0)  # the part of y outside the column space of F
    if float(sigma.max()) <= 0:  # no features at all: the noise-only model (alpha -> infinity)
        beta = n / max(norm2, _EPS)
        return (n / 2 * math.log(beta) - n / 2 - n / 2 * math.log(2 * math.pi)) / n, math.inf, beta
    alpha, beta = 1.0, 1.0
    for _ in range(max_iter):
        lam = alpha / beta
        gamma = float((sigma / (sigma + lam)).sum())
        m2 = float((sigma * x2 / (lam + sigma) ** 2).sum())
        res2 = float((x2 * (lam / (lam + sigma)) ** 2).sum()) + rest
        alpha = gamma / (m2 + _EPS)
        beta = (n - gamma) / (res2 + _EPS)
        if abs(alpha / beta - lam) <= tol * lam:
            break
    return _evidence(sigma, x2, rest, n, d, alpha, beta), alpha, beta


def logme(features: torch.Tensor, labels: torch.Tensor, *, max_iter: int = 100, tol: float = 1e-10) -> float:
    """LogME of ``features`` for the classification ``labels`` (You et al., ICML 2021), in float64.

    For each class ``c`` the target is the one-hot column ``y = [labels == c]``; the model is ``y = F w + noise``
    with ``w ~ N(0, alpha^-1 I)`` and noise ``N(0, beta^-1 I)``. ``alpha`` and ``beta`` maximise the evidence
    ``p(y | F, alpha, beta)`` by the paper's fixed-point iteration (MacKay's updates, ``gamma = sum sigma_i /
    (sigma_i + alpha / beta)``, ``alpha = gamma / m^T m``, ``beta = (N - gamma) / ||F m - y||^2``) on the SVD of
    ``F``; the score is ``log p(y | F, alpha, beta) / N`` averaged over the classes. Unlike the paper's code
    (which stops after 11 iterations), the iteration runs until ``alpha / beta`` changes by less than ``tol``
    relatively, and the evidence is evaluated with ``m`` at the final ``alpha``, ``beta``; ``log|A|`` counts the
    ``D - N`` null directions of a wide ``F`` (``log alpha`` each), as the paper's formula does.

    Args:
        features: ``[N, D]`` real features (any float dtype; computed in float64).
        labels: ``[N]`` integer labels, at least two distinct values (any values: renumbered).
        max_iter: the most fixed-point iterations per class.
        tol: the relative change of ``alpha / beta`` at which the iteration stops.

    Returns:
        The score (higher: the labels are more linearly predictable from the features).

    Raises:
        ValueError: for features that are not ``[N, D]`` finite reals, labels of the wrong shape or with fewer
            than two classes, or a bad ``max_iter``/``tol`` (each named).

    Example::

        >>> g = torch.Generator().manual_seed(0)
        >>> y = torch.arange(100) % 2
        >>> separable = torch.randn(100, 8, generator=g) + 4 * y[:, None]
        >>> noise = torch.randn(100, 8, generator=g)
        >>> logme(separable, y) > logme(noise, y)
        True
        >>> round(logme(noise, y), 3)
        -1.072
    """
    check_int("max_iter", max_iter, minimum=1)
    if isinstance(tol, bool) or not isinstance(tol, (int, float)):
        raise ArgumentTypeError(f"tol: must be a number in (0, 1), got {tol!r}")
    if not 0 < tol < 1:
        raise ValueError(f"tol: must be a number in (0, 1), got {tol!r}")
    if not isinstance(features, torch.Tensor) or features.dim() != 2 or features.is_complex():
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise ValueError(f"features: must be a real tensor [N, D], got {shape}")
    f = features.detach().to(device="cpu", dtype=torch.float64)
    if not bool(torch.isfinite(f).all()):
        raise ValueError("features: must be finite, got nan or inf values")
    n, d = f.shape
    y, classes = _class_indices("labels", labels, n)
    sigma, project = _spectrum(f)
    total = 0.0
    for c in range(classes):
        column = (y == c).to(torch.float64)
        total += _fit_column(sigma, project @ column, float(column.sum()), n, d, max_iter, tol)[0]
    return total / classes


def leep(probabilities: torch.Tensor, labels: torch.Tensor) -> float:
    """LEEP (Nguyen et al., 2020) of a source model's class probabilities for the target ``labels``.

    With ``theta(x_i)`` the source softmax over its classes ``z``, the empirical joint is
    ``P(y, z) = 1/N sum_{i: y_i = y} theta_z(x_i)``, the conditional ``P(y | z) = P(y, z) / P(z)``, and
    ``LEEP = 1/N sum_i log sum_z P(y_i | z) theta_z(x_i)``: the log-likelihood of the expected empirical
    predictor (a value <= 0; higher is better).

    Args:
        probabilities: ``[N, Z]`` probabilities of the source classes (rows summing to 1).
        labels: ``[N]`` integer target labels, at least two distinct values (any values: renumbered).

    Returns:
        The score, in float64 arithmetic.

    Raises:
        ValueError: for probabilities that are not ``[N, Z]`` rows of non-negative numbers summing to 1, or bad
            labels (each named).

    Example::

        >>> theta = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> leep(theta, torch.tensor([0, 1]))  # each source class predicts one target class: log 1
        0.0
        >>> round(leep(torch.full((2, 2), 0.5), torch.tensor([0, 1])), 4)  # uninformative source: log 1/2
        -0.6931
    """
    if not isinstance(probabilities, torch.Tensor) or probabilities.dim() != 2 or probabilities.is_complex():
        shape = tuple(probabilities.shape) if isinstance(probabilities, torch.Tensor) else type(probabilities).__name__
        raise ValueError(f"probabilities: must be a real tensor [N, Z], got {shape}")
    theta = probabilities.detach().to(device="cpu", dtype=torch.float64)
    if not bool(torch.isfinite(theta).all()) or bool((theta < 0).any()):
        raise ValueError("probabilities: must be finite and non-negative")
    if not torch.allclose(theta.sum(dim=1), torch.ones(theta.shape[0], dtype=torch.float64), atol=1e-4):
        raise ValueError("probabilities: each row must sum to 1 (softmax outputs, not logits)")
    n = theta.shape[0]
    y, classes = _class_indices("labels", labels, n)
    onehot = nn.functional.one_hot(y, classes).to(torch.float64)  # [N, Y]
    joint = onehot.T @ theta / n  # [Y, Z]
    marginal = joint.sum(dim=0, keepdim=True)  # P(z)
    conditional = torch.where(marginal > 0, joint / marginal.clamp_min(1e-300), torch.zeros_like(joint))
    expected = (theta @ conditional.T).gather(1, y[:, None]).squeeze(1)  # [N]
    return float(torch.log(expected.clamp_min(1e-300)).mean())


def cut_points(backbone: nn.Module, cuts: int) -> list[int]:
    """The ``cuts`` deepest cut depths of ``backbone``: its length first, then the outputs of activations.

    A depth ``k`` means the features ``backbone[:k](x)``. Depths after an activation module (ReLU, SELU, ...)
    are offered, deepest first, skipping one whose remaining modules are all the identity in eval mode
    (dropout), which is the whole backbone again.

    Example::

        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2), nn.ReLU(), nn.Dropout())
        >>> cut_points(net, 3)
        [6, 3]
    """
    check_int("cuts", cuts, minimum=1)
    if not isinstance(backbone, nn.Sequential) or len(backbone) == 0:
        raise ValueError(f"backbone: must be a non-empty nn.Sequential, got {type(backbone).__name__}")
    modules = list(backbone)
    depths = [len(modules)]
    for k in range(len(modules) - 1, 0, -1):
        if len(depths) >= cuts:
            break
        if isinstance(modules[k - 1], _ACTIVATIONS) and not all(isinstance(m, _IDENTITY_IN_EVAL) for m in modules[k:]):
            depths.append(k)
    return depths


def _candidate(candidate: Any, index: int) -> tuple[str, BackboneHead, float]:
    """``(label, model, seconds to load it)`` of one candidate."""
    start = time.perf_counter()
    if isinstance(candidate, BackboneHead):
        info = candidate.__dict__.get("zoo_info")
        label = getattr(info, "name", None) or f"{type(candidate).__name__}#{index}"
        return label, candidate, 0.0
    if isinstance(candidate, str) and candidate:
        from lit_deep.zoo.api import load

        return candidate, load(candidate), time.perf_counter() - start
    raise ArgumentTypeError(
        f"candidates: each must be a zoo name, repo id, local folder or BackboneHead model, got {candidate!r}"
    )


def _no_dropout(model: nn.Module) -> list[tuple[nn.Module, float]]:
    """Set the rate of every dropout module to 0 (MC dropout stays active in eval mode); the saved rates."""
    saved: list[tuple[nn.Module, float]] = []
    for module in model.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
            saved.append((module, module.p))
            module.p = 0.0
    return saved


def _extract(
    model: BackboneHead, images: torch.Tensor, depths: Sequence[int], batch_size: int
) -> tuple[dict[int, torch.Tensor], torch.Tensor | None]:
    """Features at each depth (float64, flattened) and the head's softmax, from one pass in eval mode."""
    backbone = model.backbone
    assert isinstance(backbone, nn.Sequential)  # checked by rank
    full = len(backbone)
    captured: dict[int, list[torch.Tensor]] = {k: [] for k in depths}
    hooks = []
    for k in depths:
        target = backbone if k == full else backbone[k - 1]

        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor, k: int = k) -> None:
            captured[k].append(output.detach().flatten(1).to(device="cpu", dtype=torch.float64))

        hooks.append(target.register_forward_hook(hook))
    classifier = isinstance(model.head, nn.Linear) and model.head.out_features >= 2
    probabilities: list[torch.Tensor] = []
    was_training = model.training
    saved = _no_dropout(model)
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    try:
        model.eval()
        with torch.no_grad():
            for start in range(0, images.shape[0], batch_size):
                out = model(images[start : start + batch_size].to(device))
                if classifier:
                    probabilities.append(torch.softmax(out.to(torch.float64), dim=1).cpu())
    finally:
        for handle in hooks:
            handle.remove()
        for module, p in saved:
            module.p = p  # type: ignore[assignment]
        model.train(was_training)
    features = {k: torch.cat(parts) for k, parts in captured.items()}
    return features, torch.cat(probabilities) if classifier else None


def _check_images(images: Any) -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        raise ArgumentTypeError(f"images: must be a tensor [N, 28, 28] or [N, 1, 28, 28], got {type(images).__name__}")
    if images.dim() not in (3, 4) or images.shape[0] < 2:
        raise ValueError(
            f"images: must be a tensor [N, 28, 28] or [N, 1, 28, 28] with N >= 2, got {tuple(images.shape)}"
        )
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise ValueError(f"images: must be uint8 or floating point in [0, 1], got dtype {images.dtype}")
    return images


def rank(
    images: torch.Tensor,
    labels: torch.Tensor,
    candidates: Sequence[str | BackboneHead] | None = None,
    cuts: int = 3,
    batch_size: int = 256,
) -> list[TransferScore]:
    """Rank pretrained models and cut depths for transfer to a labelled task, best LogME first.

    For each candidate model, the images go through it once (eval mode, no grad, MC dropout switched off) with
    a forward hook at each cut of its backbone (:func:`cut_points`); each cut's flattened features are scored by
    :func:`logme`, and the full model's head (a classifier's) by :func:`leep`. No model is trained or changed.

    Args:
        images: the labelled training images, raw (uint8 ``[N, 28, 28]``/``[N, 1, 28, 28]``, or float in [0, 1]):
            the zoo models apply their own preprocessing.
        labels: ``[N]`` integer labels of the target task (at least two classes; any values).
        candidates: zoo names, Hub repo ids, local zoo folders or :class:`~lit_deep.models.BackboneHead`
            models; default every registered classifier and self-supervised backbone (``kind`` ``"classifier"`` or
            ``"pretext"``).
        cuts: the cut depths per model: the whole backbone and the ``cuts - 1`` deepest earlier activation
            outputs (fewer where the backbone has fewer).
        batch_size: images per forward pass.

    Returns:
        One :class:`TransferScore` per (model, cut), sorted by LogME, best first.

    Raises:
        ValueError: for bad images, labels, candidates, ``cuts`` or ``batch_size`` (each named), and what
            :func:`~lit_deep.zoo.load` raises for a candidate it cannot load.

    Example::

        >>> from lit_deep.models import MLP
        >>> g = torch.Generator().manual_seed(0)
        >>> images, labels = torch.rand(40, 28, 28, generator=g), torch.arange(40) % 2
        >>> rows = rank(images, labels, candidates=[MLP(hidden=(8, 6), num_classes=3, seed=0)], cuts=2)
        >>> [(r.cut, r.feature_dim, r.leep is not None) for r in sorted(rows, key=lambda r: -r.depth)]
        [('backbone', 6, True), ('backbone[:3]', 8, False)]
    """
    images = _check_images(images)
    _class_indices("labels", labels, images.shape[0])
    check_int("cuts", cuts, minimum=1)
    check_int("batch_size", batch_size, minimum=1)
    if candidates is None:
        from lit_deep.zoo.registry import REGISTRY, list_models

        candidates = [name for name in list_models() if REGISTRY[name].kind in ("classifier", "pretext")]
    elif isinstance(candidates, (str, nn.Module)) or not isinstance(candidates, Sequence) or not candidates:
        raise ArgumentTypeError(f"candidates: must be None or a non-empty list of models or names, got {candidates!r}")
    rows: list[TransferScore] = []
    for index, candidate in enumerate(candidates):
        label, model, seconds = _candidate(candidate, index)
        if not isinstance(model, BackboneHead) or not isinstance(model.backbone, nn.Sequential):
            raise ValueError(f"candidates: {label!r} is not a BackboneHead with an nn.Sequential backbone")
        start = time.perf_counter()
        depths = cut_points(model.backbone, cuts)
        features, probabilities = _extract(model, images, depths, batch_size)
        shared = (seconds + time.perf_counter() - start) / len(depths)
        full = len(model.backbone)
        for k in depths:
            start = time.perf_counter()
            score = logme(features[k], labels)
            transfer_leep = leep(probabilities, labels) if k == full and probabilities is not None else None
            rows.append(
                TransferScore(
                    model=label,
                    cut="backbone" if k == full else f"backbone[:{k}]",
                    depth=k,
                    feature_dim=int(features[k].shape[1]),
                    logme=score,
                    leep=transfer_leep,
                    seconds=shared + time.perf_counter() - start,
                )
            )
    return sorted(rows, key=lambda r: (-r.logme, r.model, -r.depth))
