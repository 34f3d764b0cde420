"""Dynamic int8 quantisation for low-latency inference, measured: speed-up and accuracy change."""

from __future__ import annotations

import copy
import json
import time
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from typing_extensions import override

__all__ = ["DynamicQuantization", "measure_latency", "quantize_dynamic_int8"]


def quantize_dynamic_int8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose Linear layers run with int8 weights and dynamically quantised activations.

    PyTorch's ``torch.ao.quantization.quantize_dynamic`` (deprecated in favour of torchao, still shipped);
    CPU only. The original model is not modified.

    Example::

        >>> net = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> "quantized.dynamic" in type(quantize_dynamic_int8(net)[0]).__module__
        True
    """
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the deprecation notice of quantized tensors, once per layer
        return quantize_dynamic(copy.deepcopy(model).cpu().eval(), {nn.Linear}, dtype=torch.qint8)


@torch.inference_mode()
def measure_latency(model: nn.Module, x: torch.Tensor, repeats: int = 20) -> float:
    """Median seconds of one forward pass of ``model`` on ``x`` (after two warm-up passes).

    Example::

        >>> measure_latency(nn.Linear(4, 2), torch.zeros(3, 4), repeats=3) > 0
        True
    """
    model.eval()
    for _ in range(2):
        model(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


@torch.inference_mode()
def _accuracy(model: nn.Module, loader: Any) -> float:
    correct = total = 0
    for x, y in loader:
        logits = model(x)
        pred = (logits.squeeze(-1) > 0).long() if logits.shape[-1] == 1 else logits.argmax(-1)
        correct += int((pred == y).sum())
        total += y.numel()
    return correct / max(1, total)


class DynamicQuantization(Callback):
    """After fitting, quantise the model to int8 and measure test accuracy and latency, float vs int8.

    Writes ``quantization.json`` into the trainer's ``default_root_dir`` (rank 0) with the accuracies, the
    median latency of a batch of ``batch_size`` test images, the speed-up and the accuracy change. The trained
    float model is left as it is (the test that follows ``fit`` still evaluates it).

    Args:
        batch_size: images per timed forward pass (1 measures per-request latency).
        repeats: timed passes.

    Example::

        >>> DynamicQuantization(batch_size=1).batch_size
        1
    """

    def __init__(self, batch_size: int = 256, repeats: int = 50) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size: must be at least 1, got {batch_size}")
        if repeats < 1:
            raise ValueError(f"repeats: must be at least 1, got {repeats}")
        self.batch_size = batch_size
        self.repeats = repeats
        self.report: dict[str, float] = {}

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        datamodule: Any = getattr(trainer, "datamodule", None)  # set by a connector: invisible to type checkers
        if not trainer.is_global_zero or datamodule is None:
            return
        datamodule.setup("test")
        model = copy.deepcopy(getattr(pl_module, "model", pl_module)).cpu().eval()
        quantized = quantize_dynamic_int8(model)
        loader = datamodule.test_dataloader()
        x = next(iter(loader))[0][: self.batch_size]
        float_s = measure_latency(model, x, self.repeats)
        int8_s = measure_latency(quantized, x, self.repeats)
        float_acc, int8_acc = _accuracy(model, loader), _accuracy(quantized, loader)
        self.report = {
            "float_test_acc": float_acc,
            "int8_test_acc": int8_acc,
            "accuracy_change": int8_acc - float_acc,
            "float_latency_ms": 1000 * float_s,
            "int8_latency_ms": 1000 * int8_s,
            "speedup": float_s / int8_s,
            "batch_size": self.batch_size,
        }
        path = Path(trainer.default_root_dir) / "quantization.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.report, indent=2) + "\n")
        rank_zero_info(
            f"int8: {self.report['speedup']:.2f}x faster, test accuracy {float_acc:.4f} -> {int8_acc:.4f} ({path})"
        )
