"""Dynamic int8 quantisation for low-latency inference, measured: speed-up and accuracy change."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torch.utils.data import DataLoader
from typing_extensions import override

from lit_deep._io import write_json
from lit_deep._validate import check_int
from lit_deep.nn.compression import measure_latency, quantize_dynamic_int8

__all__ = ["DynamicQuantization"]


def _whole_split(loader: Any, batch_size: int) -> Iterator[Any]:
    """Every batch of the loader's dataset, whatever this rank's DDP shard.

    Slices of a dataset that takes them (lit_deep's in-memory data), else a plain DataLoader over it.
    """
    dataset = loader.dataset
    try:
        dataset[0:1]
    except Exception:  # noqa: BLE001 - any map-style dataset: let a DataLoader batch it
        yield from DataLoader(dataset, batch_size=batch_size)
        return
    for start in range(0, len(dataset), batch_size):
        yield dataset[start : start + batch_size]


@torch.inference_mode()
def _accuracy(model: nn.Module, batches: Iterable[Any]) -> float:
    correct = total = 0
    for x, y in batches:
        logits = model(x)
        pred = (logits.squeeze(-1) > 0).long() if logits.shape[-1] == 1 else logits.argmax(-1)
        correct += int((pred == y).sum())
        total += y.numel()
    return correct / max(1, total)


class DynamicQuantization(Callback):
    """After fitting, quantise the model to int8 and measure test accuracy and latency, float vs int8.

    Writes ``quantization.json`` into the trainer's ``default_root_dir`` (rank 0, on the CPU where dynamic int8
    runs; the accuracies over the whole test split, not rank 0's DDP shard) with the accuracies, the
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
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.repeats = check_int("repeats", repeats, minimum=1)
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
        size = max(self.batch_size, 256)
        float_acc = _accuracy(model, _whole_split(loader, size))
        int8_acc = _accuracy(quantized, _whole_split(loader, size))
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
        write_json(path, self.report, indent=2)
        rank_zero_info(
            f"int8: {self.report['speedup']:.2f}x faster, test accuracy {float_acc:.4f} -> {int8_acc:.4f} ({path})"
        )
