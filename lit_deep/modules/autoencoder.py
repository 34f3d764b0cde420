"""The AutoencoderModule LightningModule: train an autoencoder on reconstruction, without labels."""

from __future__ import annotations

from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

from lit_deep._device import batch_inputs
from lit_deep._validate import check_choice
from lit_deep.modules._optim import OptimizerName
from lit_deep.modules.base import LitDeepModule, Stage
from lit_deep.schedules import ScheduleFactory

__all__ = ["RECONSTRUCTION_LOSSES", "AutoencoderModule", "ReconstructionLoss"]

#: The reconstruction losses by name.
ReconstructionLoss = Literal["mse", "bce"]
RECONSTRUCTION_LOSSES: tuple[str, ...] = get_args(ReconstructionLoss)
_STAGES = ("train", "val", "test")


class AutoencoderModule(LitDeepModule):
    """Train a model to reproduce its inputs (unsupervised pretraining); labels in the batches are ignored.

    The loss is the mean squared error between reconstruction and input (``"mse"``, the book's 3rd edition)
    or the binary cross-entropy (``"bce"``, for sigmoid outputs and inputs in [0, 1], the 2nd edition). Both
    are averaged over pixels and images and logged as ``train_loss``, ``val_loss`` and ``test_loss``; the mean
    squared error is also logged as ``*_mse`` whatever the loss. Under DDP the torchmetrics means count every
    image once.

    Shapes: batches ``(x, y)`` or ``x`` with ``x`` ``[B, *input_shape]``; ``predict_step`` returns the
    reconstructions ``[B, *input_shape]``.

    Args:
        model: the autoencoder (e.g. :class:`~lit_deep.models.Autoencoder`), or a ``{"class_path", "init_args"}``
            spec (what checkpoints store).
        optimizer: an optimizer name of :data:`~lit_deep.modules._optim.OPTIMIZERS` or a class path.
        lr: learning rate.
        weight_decay: decoupled weight decay (biases and 1-D parameters excluded).
        schedule: a callable ``optimizer -> scheduler`` (see :mod:`lit_deep.schedules`).
        optimizer_kwargs: extra optimizer arguments.
        loss: ``"mse"`` or ``"bce"``.

    Example::

        >>> from lit_deep.models import Autoencoder
        >>> module = AutoencoderModule(Autoencoder(hidden=(16, 4), seed=0), loss="bce")
        >>> x = torch.rand(3, 1, 28, 28)
        >>> with torch.no_grad():
        ...     recon = module(x)
        ...     loss = module.reconstruction_loss(recon, x).mean()
        >>> tuple(recon.shape), bool(torch.isclose(loss, F.binary_cross_entropy(recon, x)))
        ((3, 1, 28, 28), True)
    """

    train_epoch_metrics = ("train_mse",)

    def __init__(
        self,
        model: nn.Module | dict[str, Any],
        optimizer: OptimizerName = "nadam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        schedule: ScheduleFactory | None = None,
        optimizer_kwargs: dict[str, Any] | None = None,
        loss: ReconstructionLoss = "mse",
    ) -> None:
        self_loss = check_choice("loss", loss, RECONSTRUCTION_LOSSES)
        super().__init__(model, optimizer, lr, weight_decay, schedule, optimizer_kwargs)
        self.loss_name = self_loss
        for stage in _STAGES:
            setattr(self, f"{stage}_mse", MeanMetric())
            if stage != "train":  # the training loss is logged per step, not accumulated
                setattr(self, f"{stage}_recon", MeanMetric())

    def reconstruction_loss(self, recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Per-image loss ``[B]``: the pixel mean of the squared error or of the binary cross-entropy.

        Example::

            >>> module = AutoencoderModule(nn.Identity())
            >>> module.reconstruction_loss(torch.zeros(2, 4), torch.ones(2, 4)).tolist()
            [1.0, 1.0]
        """
        if self.loss_name == "bce":
            per_pixel = F.binary_cross_entropy(recon.clamp(1e-7, 1 - 1e-7), x.clamp(0, 1), reduction="none")
        else:
            per_pixel = (recon - x).pow(2)
        return per_pixel.flatten(1).mean(dim=1)

    def step(self, batch: Any, batch_idx: int, stage: Stage) -> torch.Tensor:
        """The mean reconstruction loss of a batch ``x`` or ``(x, y)``; updates (and off training logs) the metrics."""
        x = batch_inputs(batch)
        recon = self(x)
        per_image = self.reconstruction_loss(recon, x)
        mse = getattr(self, f"{stage}_mse")
        mse.update((recon.detach() - x).pow(2).flatten(1).mean(dim=1))
        if stage != "train":  # training: train_loss per logged step, train_mse per epoch (lit_deep.modules._logging)
            loss_metric = getattr(self, f"{stage}_recon")
            loss_metric.update(per_image.detach())
            batch_size = x.shape[0]
            self.log(f"{stage}_mse", mse, on_step=False, on_epoch=True, batch_size=batch_size)
            self.log(f"{stage}_loss", loss_metric, on_step=False, on_epoch=True, prog_bar=True, batch_size=batch_size)
        return per_image.mean()

    def test_step(self, batch: Any, batch_idx: int) -> None:
        """Update the test metrics."""
        self.step(batch, batch_idx, "test")

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        """Reconstructions of a batch ``x`` or ``(x, y)``."""
        x = batch_inputs(batch)
        return self(x)
