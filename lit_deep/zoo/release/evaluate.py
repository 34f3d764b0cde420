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

from lit_deep.models import BackboneHead
from lit_deep.uncertainty import calibration_report, deterministic_probs, mc_predict
from lit_deep.zoo.api import fold_temperature
from lit_deep.zoo.registry import ZooEntry

__all__ = ["MC_SEED", "classification_metrics", "evaluate", "load_test_split"]

MC_SEED = 0
_DECIMALS = 4


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
        xb = x[start : start + 2000]
        recon = model(xb)
        squared += float((recon - xb).pow(2).sum())
        bce += float(F.binary_cross_entropy(recon.clamp(1e-7, 1 - 1e-7), xb, reduction="sum"))
    n = x.numel()
    return {"test_mse": round(squared / n, _DECIMALS + 2), "test_bce": round(bce / n, _DECIMALS)}


def evaluate(
    model: nn.Module,
    entry: ZooEntry,
    data_dir: str | None = None,
    data: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[dict[str, float], dict[str, float]]:
    """Measure ``model`` (taking raw [0, 1] images) as its card and registry entry report it.

    Classifiers: test accuracy, NLL and ECE; for MC-dropout models (``entry.mc_samples > 0``) those of the mean of
    ``mc_samples`` passes of :func:`~lit_deep.uncertainty.mc_predict` (seed 0) and, as extra metrics, those of the
    deterministic pass (dropout off). A model with ``entry.temperature`` is passed raw: its metrics are those
    with the temperature folded in (what ``zoo.load`` returns), and ``raw_test_nll`` / ``raw_test_ece`` those
    before scaling. Autoencoders: per-pixel MSE and BCE of the reconstructions.

    Args:
        model: the model.
        entry: its entry (task, kind, MC samples).
        data_dir: where the Fashion-MNIST files are.
        data: ``(images, labels)`` to measure on instead of the task's test split.

    Returns:
        ``(metrics, extra_metrics)``.

    Example::

        >>> from lit_deep.zoo.registry import get_entry
        >>> uniform = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
        >>> _ = nn.init.zeros_(uniform[1].weight), nn.init.zeros_(uniform[1].bias)
        >>> images, labels = torch.rand(20, 1, 28, 28), torch.arange(20) % 10
        >>> metrics, extra = evaluate(uniform, get_entry("mlp_selu.fmnist_a"), data=(images, labels))
        >>> metrics["test_acc"], metrics["test_nll"], extra
        (0.1, 2.3026, {})
    """
    x, y = data if data is not None else load_test_split(entry.task, data_dir)
    if entry.kind == "autoencoder":
        return _reconstruction_metrics(model, x), {}
    det = deterministic_probs(model, x)
    if entry.temperature and not entry.mc_samples:
        # ``model`` is the raw network (as exported); the zoo folds the temperature into its output layer.
        raw = classification_metrics(det, y, prefix="raw_test")
        if not isinstance(model, BackboneHead):
            raise ValueError(
                f"model: a zoo model with a temperature must be a BackboneHead, got {type(model).__name__}"
            )
        with torch.no_grad():
            scaled = deterministic_probs(fold_temperature(copy.deepcopy(model), entry.temperature), x)
        return classification_metrics(scaled, y), {k: v for k, v in raw.items() if k != "raw_test_acc"}
    if not entry.mc_samples:
        return classification_metrics(det, y), {}
    mc = mc_predict(model, x, samples=entry.mc_samples, seed=MC_SEED).probs
    return classification_metrics(mc, y), classification_metrics(det, y, prefix="det_test")
