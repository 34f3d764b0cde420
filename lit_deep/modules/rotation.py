"""Pretraining on an auxiliary task that needs no labels: which of four rotations was applied to an image.

Why this task (the chapter's "pretraining on an auxiliary task"): its labels are free, so every unlabelled
image teaches the backbone; and telling 0 from 90, 180 and 270 degrees requires recognising an item's shape and
parts (a shoe's toe, a shirt's collar), which is what the downstream classifier needs (Gidaris et al., 2018,
"Unsupervised representation learning by predicting image rotations"). Fashion-MNIST's items are all
photographed upright, so the rotation is well defined. The alternative the book mentions, predicting whether
two images share a class, needs the very labels that are scarce.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from lit_deep._device import batch_inputs
from lit_deep._validate import check_int
from lit_deep.modules._optim import OptimizerName
from lit_deep.modules.base import LitDeepModule, Stage
from lit_deep.schedules import ScheduleFactory

__all__ = ["RotationPretext", "rotate_batch"]


def rotate_batch(x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate each image of ``x`` ``[B, C, H, W]`` (square) by a random multiple of 90 degrees.

    Returns:
        ``(rotated, k)``: the images and the number of quarter turns ``k`` in 0..3 (counter-clockwise), ``[B]``.

    Example::

        >>> x = torch.arange(4.0).view(1, 1, 2, 2)
        >>> rotated, k = rotate_batch(x.repeat(8, 1, 1, 1), torch.Generator().manual_seed(0))
        >>> all(torch.equal(rotated[i], torch.rot90(x[0], int(k[i]), dims=(1, 2))) for i in range(8))
        True
    """
    if x.dim() != 4 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"x: expected square images [B, C, H, W], got shape {tuple(x.shape)}")
    # Drawn by the (CPU) generator, so the rotations are the same on every device, then moved to the images'.
    k = torch.randint(0, 4, (x.shape[0],), generator=generator).to(x.device)
    rotated = x.clone()
    for turns in range(1, 4):
        idx = (k == turns).nonzero(as_tuple=True)[0]
        if idx.numel():
            rotated[idx] = torch.rot90(x[idx], turns, dims=(2, 3))
    return rotated, k


class RotationPretext(LitDeepModule):
    """Train ``model`` (4 outputs) to predict the rotation applied to unlabelled images.

    The class labels in the batches are ignored. Logs ``train_loss`` (on the loggers' steps, like every lit_deep
    module), ``val_loss`` (cross-entropy over the 4 rotations) and ``train_acc`` (once per epoch) / ``val_acc``
    (rotation accuracy). Validation rotations are drawn from a fixed seed, so every epoch is scored on the same
    rotated images. Transfer the backbone with :class:`~lit_deep.models.FromCheckpoint` (YAML) or
    :func:`~lit_deep.models.transfer` (Python).

    Args:
        model: a network with 4 outputs (e.g. ``MLP(num_classes=4)``) or its spec.
        optimizer: optimizer name (see :class:`~lit_deep.modules.base.LitDeepModule`).
        lr: learning rate.
        pretext_seed: seed of the training rotations.
        weight_decay: weight decay applied by the optimizer (biases and 1-D parameters excluded).
        schedule: a callable ``optimizer -> scheduler`` (see :mod:`lit_deep.schedules`).
        optimizer_kwargs: extra optimizer arguments.

    Example::

        >>> from lit_deep.models import MLP
        >>> module = RotationPretext(MLP(hidden=(16,), num_classes=4, seed=0))
        >>> loss = module.step((torch.rand(8, 1, 28, 28), torch.zeros(8, dtype=torch.long)), 0, "train")
        >>> bool(loss > 0)
        True
    """

    train_epoch_metrics = ("train_acc",)
    train_progress_metrics = ("train_acc",)

    def __init__(
        self,
        model: nn.Module | dict[str, Any],
        optimizer: OptimizerName = "nadam",
        lr: float = 1e-3,
        pretext_seed: int = 0,
        weight_decay: float = 0.0,
        schedule: ScheduleFactory | None = None,
        optimizer_kwargs: dict[str, Any] | None = None,
    ) -> None:
        check_int("pretext_seed", pretext_seed, minimum=0)
        super().__init__(model, optimizer, lr, weight_decay, schedule, optimizer_kwargs)
        self._generator = torch.Generator().manual_seed(pretext_seed)
        self.train_acc = MulticlassAccuracy(num_classes=4, average="micro", validate_args=False)
        self.val_acc = MulticlassAccuracy(num_classes=4, average="micro", validate_args=False)

    def step(self, batch: Any, batch_idx: int, stage: Stage) -> torch.Tensor:
        """Cross-entropy of the predicted rotation: random rotations in training, seeded by batch otherwise."""
        x = batch_inputs(batch)
        generator = self._generator if stage == "train" else torch.Generator().manual_seed(10_000 + batch_idx)
        rotated, k = rotate_batch(x, generator)
        logits = self(rotated)
        k = k.to(logits.device)
        loss = F.cross_entropy(logits, k)
        acc = getattr(self, f"{stage}_acc")
        acc.update(logits.argmax(-1), k)
        if stage != "train":  # training: train_loss on the loggers' steps, train_acc once per epoch (the base)
            self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
            self.log(f"{stage}_acc", acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss
