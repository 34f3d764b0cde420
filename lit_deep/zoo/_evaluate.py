"""Measuring a zoo model on the Fashion-MNIST test split: the figures its card and registry entry report."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassCalibrationError

from lit_deep.data import FashionMNISTDataModule
from lit_deep.nn.dropout import MCAlphaDropout, MCDropout
from lit_deep.zoo.registry import ZooEntry

__all__ = ["ECE_BINS", "classification_metrics", "evaluate", "load_test_split", "mc_probabilities"]

#: Bins of the expected calibration error (torchmetrics ``MulticlassCalibrationError``, l1 norm).
ECE_BINS = 15
MC_SEED = 0
_DECIMALS = 4


def load_test_split(task: str, data_dir: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The task's test images as raw [0, 1] floats ``[N, 1, 28, 28]`` and labels ``[N]`` (file order).

    Example::

        >>> load_test_split("C")
        Traceback (most recent call last):
        ...
        ValueError: task: expected one of ('full', 'A', 'B'), got 'C'
    """
    dm = FashionMNISTDataModule(data_dir, task=task, standardize=False, val_size=1)  # val_size: any; test split only
    dm.setup("test")
    assert dm.test_set is not None
    return dm.test_set.inputs, dm.test_set.targets


@contextlib.contextmanager
def _mc_off(model: nn.Module) -> Iterator[None]:
    """Temporarily set every MC dropout rate to 0: the deterministic (weight-scaling) prediction."""
    layers = [m for m in model.modules() if isinstance(m, (MCDropout, MCAlphaDropout))]
    rates = [m.p for m in layers]
    for m in layers:
        m.p = 0.0
    try:
        yield
    finally:
        for m, p in zip(layers, rates, strict=True):
            m.p = p


def _split_at_first_mc(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """``(prefix, rest)``: the layers before the first MC dropout layer (run once) and the others (run per pass).

    Only for a plain ``nn.Sequential`` of ``nn.Sequential``s (``BackboneHead`` models); anything else runs whole.
    """
    if not isinstance(model, nn.Sequential) or type(model).forward is not nn.Sequential.forward:
        return nn.Identity(), model
    layers: list[nn.Module] = []
    for child in model.children():
        plain = isinstance(child, nn.Sequential) and type(child).forward is nn.Sequential.forward
        layers.extend(child.children() if plain else [child])
    stochastic = [any(isinstance(m, (MCDropout, MCAlphaDropout)) for m in layer.modules()) for layer in layers]
    first = stochastic.index(True) if any(stochastic) else len(layers)
    return nn.Sequential(*layers[:first]), nn.Sequential(*layers[first:])


@torch.no_grad()
def mc_probabilities(model: nn.Module, x: torch.Tensor, samples: int, batch_size: int = 2000) -> torch.Tensor:
    """Class probabilities ``[N, C]``: softmax of one pass, or the mean of ``samples`` passes (seeded).

    The deterministic layers before the first MC dropout layer run once per batch, the rest once per pass
    (the same numbers as whole passes, much faster when the first layer dominates). The random state is
    forked, so measuring does not change the caller's generator.

    Example::

        >>> net = nn.Sequential(nn.Flatten(), MCDropout(0.5), nn.Linear(4, 3))
        >>> p = mc_probabilities(net, torch.rand(5, 4), samples=10)
        >>> tuple(p.shape), bool(torch.allclose(p.sum(1), torch.ones(5)))
        ((5, 3), True)
    """
    model.eval()
    passes = max(samples, 1)
    prefix, rest = _split_at_first_mc(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(MC_SEED)
        chunks = []
        for start in range(0, x.shape[0], batch_size):
            features = prefix(x[start : start + batch_size])
            total = torch.zeros(())
            for _ in range(passes):
                total = total + rest(features).softmax(dim=-1)
            chunks.append(total / passes)
    return torch.cat(chunks)


def classification_metrics(probs: torch.Tensor, y: torch.Tensor, prefix: str = "test") -> dict[str, float]:
    """Accuracy, NLL (nats, ``-log p[y]`` averaged) and 15-bin ECE of probabilities ``[N, C]``.

    Example::

        >>> m = classification_metrics(torch.tensor([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([0, 0]))
        >>> m["test_acc"], m["test_nll"]
        (0.5, 0.8574)
    """
    ece = MulticlassCalibrationError(num_classes=probs.shape[1], n_bins=ECE_BINS, norm="l1")
    nll = -probs.gather(1, y.view(-1, 1)).clamp_min(1e-12).log().mean()
    return {
        f"{prefix}_acc": round(float((probs.argmax(1) == y).float().mean()), _DECIMALS),
        f"{prefix}_nll": round(float(nll), _DECIMALS),
        f"{prefix}_ece": round(float(ece(probs, y)), _DECIMALS),
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
    """Measure ``model`` (a loaded zoo model, taking raw [0, 1] images) as its registry entry reports it.

    Classifiers: test accuracy, NLL and ECE; for MC-dropout models those of the mean of ``entry.mc_samples``
    seeded passes, and, as extra metrics, those of the deterministic pass (MC rates set to 0). Autoencoders:
    the per-pixel mean squared error and binary cross-entropy of the reconstructions.

    Args:
        model: the model; it takes raw images.
        entry: its registry entry (task, kind, MC samples).
        data_dir: where the Fashion-MNIST files are (see :func:`~lit_deep.data.load_fashion_mnist`).
        data: ``(images, labels)`` to measure on instead of the task's test split.

    Returns:
        ``(metrics, extra_metrics)``, rounded as the registry stores them.

    Example::

        >>> from lit_deep.zoo.registry import get_entry
        >>> uniform = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
        >>> _ = nn.init.zeros_(uniform[1].weight), nn.init.zeros_(uniform[1].bias)
        >>> images, labels = torch.rand(20, 1, 28, 28), torch.arange(20) % 10
        >>> metrics, extra = evaluate(uniform, get_entry("mlp.fmnist"), data=(images, labels))
        >>> metrics["test_acc"], metrics["test_nll"], extra
        (0.1, 2.3026, {})
    """
    x, y = data if data is not None else load_test_split(entry.task, data_dir)
    if entry.kind == "autoencoder":
        return _reconstruction_metrics(model, x), {}
    metrics = classification_metrics(mc_probabilities(model, x, entry.mc_samples), y)
    extra: dict[str, float] = {}
    if entry.mc_samples:
        with _mc_off(model):
            extra = classification_metrics(mc_probabilities(model, x, 1), y, prefix="det_test")
    return metrics, extra
