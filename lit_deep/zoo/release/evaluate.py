"""Measuring a zoo model on the Fashion-MNIST test split with the functions users call.

Classifiers are scored by :func:`lit_deep.uncertainty.calibration_report` on the probabilities of
:func:`lit_deep.uncertainty.deterministic_probs`, or, for MC-dropout models, of
:func:`lit_deep.uncertainty.mc_predict` (seed 0, per-image masks: no global random state is touched).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from lit_deep._device import to_model_device
from lit_deep._validate import check_device
from lit_deep.models import BackboneHead
from lit_deep.uncertainty import (
    aurc,
    brier_score,
    calibration_report,
    conformal_calibrate,
    deterministic_probs,
    mc_predict,
    prediction_sets,
    set_coverage,
)
from lit_deep.zoo.api import fold_temperature
from lit_deep.zoo.registry import ZooEntry

__all__ = [
    "CONFORMAL_ALPHA",
    "MC_SEED",
    "ROTATION_NAMES",
    "classification_metrics",
    "conformal_metrics",
    "evaluate",
    "load_test_split",
]

MC_SEED = 0
#: The miscoverage of the conformal sets the cards report (sets hold the true class for >= 90 % of images).
CONFORMAL_ALPHA = 0.1
_DECIMALS = 4
#: The outputs of a rotation-pretext model (``kind="pretext"``): counter-clockwise quarter turns.
ROTATION_NAMES = ("rotated 0 degrees", "rotated 90 degrees", "rotated 180 degrees", "rotated 270 degrees")


def load_test_split(task: str, data_dir: str | None = None, **task_args: object) -> tuple[torch.Tensor, torch.Tensor]:
    """The task's test images as raw [0, 1] floats ``[N, 1, 28, 28]`` and labels ``[N]`` (file order).

    Example::

        >>> load_test_split("C")
        Traceback (most recent call last):
        ...
        ValueError: task: must be one of ('full', 'A', 'B'), got 'C'
    """
    from lit_deep.data import FashionMNISTDataModule

    dm = FashionMNISTDataModule(data_dir, task=task, standardize=False, val_size=1, **task_args)  # type: ignore[arg-type]
    dm.setup("test")
    assert dm.test_set is not None
    return dm.test_set.inputs, dm.test_set.targets


def load_val_split(task: str, data_dir: str | None = None, val_size: int = 5000) -> tuple[torch.Tensor, torch.Tensor]:
    """The task's validation images (the first ``val_size`` of the training file, never trained on) and labels."""
    from lit_deep.data import FashionMNISTDataModule

    dm = FashionMNISTDataModule(data_dir, task=task, standardize=False, val_size=val_size)  # type: ignore[arg-type]
    dm.setup("validate")
    assert dm.val_set is not None
    return dm.val_set.inputs, dm.val_set.targets


def conformal_metrics(
    cal_probs: torch.Tensor, cal_y: torch.Tensor, probs: torch.Tensor, y: torch.Tensor
) -> dict[str, float]:
    """Split-conformal test coverage and mean set size at ``alpha = 0.1`` for LAC and randomized APS (seed 0).

    Calibrated on ``cal_probs`` / ``cal_y`` (held-out examples), measured on ``probs`` / ``y``.

    Example::

        >>> p = torch.tensor([[0.9, 0.1], [0.2, 0.8]]).repeat(50, 1)
        >>> m = conformal_metrics(p, torch.tensor([0, 1]).repeat(50), p, torch.tensor([0, 1]).repeat(50))
        >>> m["lac_coverage"], m["lac_set_size"]
        (1.0, 1.0)
    """
    out: dict[str, float] = {}
    for method in ("lac", "aps"):
        calibrated = conformal_calibrate(cal_probs, cal_y, alpha=CONFORMAL_ALPHA, method=method, seed=MC_SEED)
        sets = prediction_sets(probs, calibrated, seed=MC_SEED + 1)
        out[f"{method}_coverage"] = round(set_coverage(sets, y), _DECIMALS)
        out[f"{method}_set_size"] = round(float(sets.sum(1).double().mean()), _DECIMALS)
    return out


def classification_metrics(probs: torch.Tensor, y: torch.Tensor, prefix: str = "test") -> dict[str, float]:
    """Accuracy, NLL (nats) and 15-bin ECE of probabilities ``[N, C]``, rounded as the registry stores them.

    Example::

        >>> m = classification_metrics(torch.tensor([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([0, 0]))
        >>> m["test_acc"], m["test_nll"]
        (0.5, 0.8574)
    """
    report = calibration_report(probs, y)
    return {
        f"{prefix}_acc": round(report["accuracy"], _DECIMALS),
        f"{prefix}_nll": round(report["nll"], _DECIMALS),
        f"{prefix}_ece": round(report["ece"], _DECIMALS),
    }


@torch.no_grad()
def _reconstruction_metrics(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    model.eval()
    squared, bce = 0.0, 0.0
    for start in range(0, x.shape[0], 2000):
        xb = to_model_device(model, x[start : start + 2000])
        recon = model(xb)
        squared += float((recon - xb).pow(2).sum())
        bce += float(F.binary_cross_entropy(recon.clamp(1e-7, 1 - 1e-7), xb, reduction="sum"))
    n = x.numel()
    return {"test_mse": round(squared / n, _DECIMALS + 2), "test_bce": round(bce / n, _DECIMALS)}


def _rotation_metrics(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """How well a rotation-pretext model tells the quarter turn of each test image (turns drawn with seed 0)."""
    from lit_deep.modules.rotation import rotate_batch  # Lightning: the release tooling's layer may import it

    rotated, turns = rotate_batch(x, torch.Generator().manual_seed(MC_SEED))
    return classification_metrics(deterministic_probs(model, rotated).cpu(), turns, prefix="test_rotation")


def evaluate(
    model: nn.Module,
    entry: ZooEntry,
    data_dir: str | None = None,
    data: tuple[torch.Tensor, torch.Tensor] | None = None,
    val_size: int = 5000,
    device: str | torch.device | None = None,
) -> tuple[dict[str, float], dict[str, float]]:
    """Measure ``model`` (taking raw [0, 1] images) as its card and registry entry report it.

    Classifiers: test accuracy, NLL and ECE; for MC-dropout models (``entry.mc_samples > 0``) those of the mean of
    ``mc_samples`` passes of :func:`~lit_deep.uncertainty.mc_predict` (seed 0) and, as extra metrics, those of the
    deterministic pass (dropout off). A model with ``entry.temperature`` is passed raw: its metrics are those
    with the temperature folded in (what ``zoo.load`` returns), and ``raw_test_nll`` / ``raw_test_ece`` those
    before scaling. Brier score and AURC come with them. Measured on the task's own test split (no ``data``), the
    extra metrics add split-conformal coverage and mean set size at ``alpha = 0.1`` (LAC and randomized APS,
    :func:`conformal_metrics`), calibrated on the 5,000 validation images with the raw network's probabilities
    (the MC mean for MC-dropout models): the temperature was fitted on those images, so the scaled model's
    probabilities would not be exchangeable with the test ones. Autoencoders: per-pixel MSE and BCE of the
    reconstructions. Rotation-pretext models (``entry.kind == "pretext"``): accuracy, NLL and ECE at telling the
    quarter turn of each test image (turns drawn with seed 0).

    Args:
        model: the model.
        entry: its entry (task, kind, MC samples).
        data_dir: where the Fashion-MNIST files are.
        data: ``(images, labels)`` to measure on instead of the task's test split.
        val_size: the run's validation split (the first ``val_size`` training-file images) for the conformal sets.
        device: where to run the model (it is moved there; default: where its parameters are, e.g. the GPU it
            was trained on). Images go to the model's device batch by batch; the probabilities come back to the
            CPU for the metrics, so the figures do not depend on the device beyond the model's own rounding.

    Returns:
        ``(metrics, extra_metrics)``.

    Example::

        >>> from lit_deep.zoo.registry import get_entry
        >>> uniform = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
        >>> _ = nn.init.zeros_(uniform[1].weight), nn.init.zeros_(uniform[1].bias)
        >>> images, labels = torch.rand(20, 1, 28, 28), torch.arange(20) % 10
        >>> metrics, extra = evaluate(uniform, get_entry("mlp_selu.fmnist_a"), data=(images, labels))
        >>> metrics["test_acc"], metrics["test_nll"], metrics["test_brier"], extra
        (0.1, 2.3026, 0.9, {})
    """
    if device is not None:
        model.to(check_device("device", device))
    x, y = data if data is not None else load_test_split(entry.task, data_dir)
    if entry.kind == "autoencoder":
        return _reconstruction_metrics(model, x), {}
    if entry.kind == "pretext":
        return _rotation_metrics(model, x), {}
    det, probs = _predict(model, entry, x)  # once: the metrics and the conformal sets share them
    metrics, extra = _classification(model, entry, x, y, det, probs)
    if data is None:  # the task's own splits: conformal sets calibrated on the validation images
        vx, vy = load_val_split(entry.task, data_dir, val_size)
        _, cal_probs = _predict(model, entry, vx)
        extra.update(conformal_metrics(cal_probs, vy, probs, y))
    return metrics, extra


def _predict(model: nn.Module, entry: ZooEntry, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(deterministic, reported)`` probabilities: the reported ones are the MC mean for MC-dropout models."""
    det = deterministic_probs(model, x).cpu()
    if not entry.mc_samples:
        return det, det
    return det, mc_predict(model, x, samples=entry.mc_samples, seed=MC_SEED).probs.cpu()


def _with_scores(metrics: dict[str, float], probs: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    brier, risk = brier_score(probs, y), aurc(probs, y)
    return {**metrics, "test_brier": round(brier, _DECIMALS), "test_aurc": round(risk, _DECIMALS)}


def _classification(
    model: nn.Module, entry: ZooEntry, x: torch.Tensor, y: torch.Tensor, det: torch.Tensor, probs: torch.Tensor
) -> tuple[dict[str, float], dict[str, float]]:
    if entry.temperature and not entry.mc_samples:
        # ``model`` is the raw network (as exported); the zoo folds the temperature into its output layer.
        raw = classification_metrics(det, y, prefix="raw_test")
        if not isinstance(model, BackboneHead):
            raise ValueError(
                f"model: a zoo model with a temperature must be a BackboneHead, got {type(model).__name__}"
            )
        with torch.no_grad():
            scaled = deterministic_probs(fold_temperature(copy.deepcopy(model), entry.temperature), x).cpu()
        extra = {k: v for k, v in raw.items() if k != "raw_test_acc"}
        return _with_scores(classification_metrics(scaled, y), scaled, y), extra
    if not entry.mc_samples:
        return _with_scores(classification_metrics(det, y), det, y), {}
    return _with_scores(classification_metrics(probs, y), probs, y), classification_metrics(det, y, prefix="det_test")
