"""Magnitude pruning: the sparse-model recipe of the chapter (l1 to push weights to zero, then prune them)."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from typing_extensions import override

from lit_deep._validate import check_int, check_positive
from lit_deep.callbacks.contract import root_module
from lit_deep.callbacks.select import LAYERS
from lit_deep.nn.compression import sparsity

__all__ = ["MagnitudePruning"]


class MagnitudePruning(Callback):
    """Zero the weights whose magnitude is below ``threshold`` and keep them at zero.

    At the start of epoch ``start_epoch`` (or when fitting ends, with ``start_epoch=None``) every Linear/Conv
    weight entry with ``|w| < threshold`` is set to zero; a mask then re-zeroes those entries after every
    optimizer step, so fine-tuning the survivors keeps the sparsity. The achieved sparsity is logged as
    ``sparsity`` and kept in :attr:`achieved`. Biases and BatchNorm are not pruned. The masks are rebuilt from
    the zeros on resume, so the state is the weights themselves.

    Args:
        threshold: entries with ``|w| < threshold`` are pruned (> 0). With an l1 penalty most weights of the
            book's MLP fall below 1e-3.
        start_epoch: the epoch whose start prunes; ``None`` prunes once at the end of fitting.

    Example::

        >>> from lit_deep.models import MLP
        >>> model = MLP(hidden=(8,), seed=0)
        >>> pruner = MagnitudePruning(threshold=0.05)
        >>> 0.0 < pruner.prune(model) < 1.0
        True
    """

    def __init__(self, threshold: float = 1e-3, start_epoch: int | None = None) -> None:
        check_positive("threshold", threshold)
        check_int("start_epoch", start_epoch, minimum=0, optional=True)
        self.threshold = threshold
        self.start_epoch = start_epoch
        self.achieved: float | None = None
        self._masks: list[tuple[torch.Tensor, torch.Tensor]] = []

    @torch.no_grad()
    def prune(self, model: nn.Module) -> float:
        """Prune ``model`` now, remember the masks, and return the achieved sparsity."""
        self._masks = []
        for module in model.modules():
            weight = getattr(module, "weight", None) if isinstance(module, LAYERS) else None
            if isinstance(weight, torch.Tensor):
                keep = weight.abs() >= self.threshold
                weight.mul_(keep)
                self._masks.append((weight, keep))
        self.achieved = sparsity(model)
        return self.achieved

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.start_epoch is not None and trainer.current_epoch >= self.start_epoch and not self._masks:
            self._report(self.prune(root_module(pl_module)), trainer)

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        with torch.no_grad():
            for weight, keep in self._masks:
                weight.mul_(keep)

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.start_epoch is None or not self._masks:
            self._report(self.prune(root_module(pl_module)), trainer)

    @override
    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.achieved is not None:
            pl_module.log("sparsity", self.achieved)

    def _report(self, achieved: float, trainer: pl.Trainer) -> None:
        rank_zero_info(f"MagnitudePruning: {achieved:.1%} of the weights are zero (|w| < {self.threshold:g})")
