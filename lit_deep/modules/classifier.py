"""The Classifier LightningModule: any ``nn.Module``, the book's optimizers, penalties and metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import Optimizer
from torchmetrics import MeanMetric
from torchmetrics.classification import BinaryAccuracy, MulticlassAccuracy

from lit_deep.modules._optim import OPTIMIZERS, build_optimizer, param_groups, penalised_weights
from lit_deep.modules._spec import build_model, model_spec

__all__ = ["Classifier", "ScheduleFactory"]

#: A callable that turns the optimizer into a learning-rate scheduler (the LightningCLI form of a schedule).
ScheduleFactory = Callable[[Optimizer], Any]
_STAGES = ("train", "val", "test")


def _num_outputs(model: nn.Module) -> int | None:
    head = getattr(model, "head", None)
    if isinstance(head, nn.Linear):
        return head.out_features
    last = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            last = module
    return last.out_features if last is not None else None


class Classifier(pl.LightningModule):
    """Train any ``nn.Module`` classifier the book's way.

    Loss: cross-entropy on the logits. A model with a single output is treated as a binary classifier with a
    sigmoid and binary cross-entropy (targets 0/1); with two outputs, the two-logit softmax form is used. Both
    log the same metrics: accuracy and NLL (mean cross-entropy, in nats) for ``train``, ``val`` and ``test``
    (``train_acc``, ``val_nll``, ...), computed with torchmetrics so that under DDP every image counts once.

    Penalties ``l1`` and ``l2`` are added to the loss over weight matrices and kernels only (not biases, not
    BatchNorm), as Keras's ``kernel_regularizer`` (``l2 * sum(w**2)``). They are not decoupled weight decay
    (``weight_decay``, applied by the optimizer and equal to l2 only for plain SGD); ``train_loss`` and
    ``val_loss`` include the penalty, as Keras's losses do, while ``*_nll`` do not.

    Args:
        model: the network, or a ``{"class_path", "init_args"}`` spec (what checkpoints store).
        optimizer: ``sgd``, ``momentum``, ``nesterov``, ``adagrad``, ``rmsprop``, ``adam``, ``adamax``, ``nadam``,
            ``adamw`` (the book's settings, see :data:`~lit_deep.modules._optim.OPTIMIZERS`) or a class path.
        lr: learning rate.
        l1: l1 penalty factor.
        l2: l2 penalty factor.
        weight_decay: decoupled weight decay (biases and 1-D parameters excluded).
        schedule: a callable ``optimizer -> scheduler`` (see :mod:`lit_deep.schedules`).
        optimizer_kwargs: extra optimizer arguments.
        class_names: names of the classes, for reports.

    Example::

        >>> from lit_deep.models import MLP
        >>> clf = Classifier(MLP(hidden=(16,), num_classes=3, seed=0), optimizer="momentum", lr=0.01, l2=1e-4)
        >>> opt = clf.configure_optimizers()
        >>> type(opt).__name__, opt.defaults["momentum"], clf.num_outputs
        ('SGD', 0.9, 3)
    """

    def __init__(
        self,
        model: nn.Module | dict[str, Any],
        optimizer: str = "nadam",
        lr: float = 1e-3,
        l1: float = 0.0,
        l2: float = 0.0,
        weight_decay: float = 0.0,
        schedule: ScheduleFactory | None = None,
        optimizer_kwargs: dict[str, Any] | None = None,
        class_names: list[str] | None = None,
    ) -> None:
        super().__init__()
        if not lr > 0:
            raise ValueError(f"lr: must be positive, got {lr}")
        for name, value in (("l1", l1), ("l2", l2), ("weight_decay", weight_decay)):
            if value < 0:
                raise ValueError(f"{name}: must be non-negative, got {value}")
        if optimizer not in OPTIMIZERS and "." not in optimizer:
            raise ValueError(f"optimizer: expected one of {sorted(OPTIMIZERS)} or a class path, got {optimizer!r}")
        self.model = build_model(model) if isinstance(model, dict) else model
        if not isinstance(self.model, nn.Module):
            raise ValueError(f"model: expected an nn.Module, got {type(model).__name__}")
        self.save_hyperparameters(ignore=["model", "schedule"])
        spec = model_spec(self.model)
        if spec is not None:
            # Checkpoints rebuild the architecture from this spec: load_from_checkpoint needs no model argument.
            self.hparams["model"] = spec
        self.optimizer_name = optimizer
        self.lr = lr
        self.l1 = l1
        self.l2 = l2
        self.weight_decay = weight_decay
        self.schedule = schedule
        self.optimizer_kwargs = dict(optimizer_kwargs or {})
        self.class_names = class_names
        outputs = _num_outputs(self.model)
        self.num_outputs = outputs if outputs is not None else 0
        self.binary = self.num_outputs == 1
        self._penalised = penalised_weights(self.model)
        for stage in _STAGES:
            acc = (
                BinaryAccuracy(validate_args=False)
                if self.binary
                else MulticlassAccuracy(num_classes=max(2, self.num_outputs), average="micro", validate_args=False)
            )
            setattr(self, f"{stage}_acc", acc)
            setattr(self, f"{stage}_nll", MeanMetric())

    # ----------------------------------------------------------------- forward and loss
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The model's logits."""
        return self.model(x)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``[B, C]`` from logits (a single logit becomes ``[1 - p, p]``).

        Example::

            >>> from lit_deep.models import MLP
            >>> Classifier(MLP(hidden=(4,), num_classes=1)).probabilities(torch.zeros(1, 1)).tolist()
            [[0.5, 0.5]]
        """
        if self.binary:
            p = torch.sigmoid(logits.squeeze(-1))
            return torch.stack([1 - p, p], dim=-1)
        return logits.softmax(dim=-1)

    def _per_sample_nll(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.binary:
            return F.binary_cross_entropy_with_logits(logits.squeeze(-1), y.float(), reduction="none")
        return F.cross_entropy(logits, y, reduction="none")

    def penalty(self) -> torch.Tensor | float:
        """The l1/l2 penalty over weight matrices (0.0 when both factors are 0)."""
        if not (self.l1 or self.l2):
            return 0.0
        total: torch.Tensor | float = 0.0
        for weight in self._penalised:
            if self.l1:
                total = total + self.l1 * weight.abs().sum()
            if self.l2:
                total = total + self.l2 * weight.pow(2).sum()
        return total

    def _shared_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        nll = self._per_sample_nll(logits, y)
        loss = nll.mean() + self.penalty()
        preds = (logits.squeeze(-1) > 0).long() if self.binary else logits.argmax(dim=-1)
        acc, mean_nll = getattr(self, f"{stage}_acc"), getattr(self, f"{stage}_nll")
        acc.update(preds, y)
        mean_nll.update(nll.detach())
        batch_size = y.shape[0]
        self.log(f"{stage}_acc", acc, on_step=False, on_epoch=True, prog_bar=stage != "test", batch_size=batch_size)
        self.log(f"{stage}_nll", mean_nll, on_step=False, on_epoch=True, batch_size=batch_size)
        return loss

    # ----------------------------------------------------------------- Lightning hooks
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """One training step: the loss with penalties."""
        loss = self._shared_step(batch, "train")
        self.log("train_loss", loss.detach(), on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        """Update the validation metrics."""
        self._shared_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        """Log ``val_loss``: the validation NLL plus the penalty (what Keras calls ``val_loss``)."""
        penalty = self.penalty()
        penalty_value = float(penalty.detach()) if isinstance(penalty, torch.Tensor) else penalty
        # val_nll.compute() is already reduced over ranks; sync_dist averages identical values (no-op, no warning).
        self.log("val_loss", self.val_nll.compute() + penalty_value, prog_bar=True, sync_dist=True)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        """Update the test metrics."""
        self._shared_step(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        """Class probabilities ``[B, C]`` for a batch ``x`` or ``(x, y)``."""
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.probabilities(self(x))

    # ----------------------------------------------------------------- optimisation
    def param_groups(self) -> list[dict[str, Any]]:
        """The optimizer's named parameter groups (``head``, ``backbone``, ``other``; see ``param_groups``)."""
        return param_groups(self.model, self.weight_decay)

    def configure_optimizers(self) -> Any:
        """The optimizer over named parameter groups, with the schedule's Lightning config when one is set."""
        optimizer = build_optimizer(
            self.optimizer_name, self.param_groups(), self.lr, self.weight_decay, **self.optimizer_kwargs
        )
        scheduler_config = self.scheduler_config(optimizer)
        if scheduler_config is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": scheduler_config}

    def scheduler_config(self, optimizer: Optimizer) -> dict[str, Any] | None:
        """The Lightning ``lr_scheduler`` config for ``self.schedule`` (``None`` without a schedule)."""
        if self.schedule is None:
            return None
        scheduler = self.schedule(optimizer)
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            return {"scheduler": scheduler, "interval": "epoch", "monitor": "val_loss"}
        return {"scheduler": scheduler, "interval": getattr(scheduler, "interval", "epoch")}
