"""Cheap training-step logging for the library's LightningModules.

Every ``self.log`` call costs Lightning a fraction of a millisecond of bookkeeping (more when the value is
a torchmetrics ``Metric``, whose whole state it walks). For the 300-100 MLP at batch 32, logging the loss on
every step made the epoch 1.4x longer (2.12 against 1.51 times a hand-written loop, benchmarks/epoch_time.py),
so the modules log the step loss only where someone reads it and their training metrics once per epoch.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import lightning.pytorch as pl
import torch
from torchmetrics import Metric

__all__ = ["log_train_epoch_metrics", "log_train_loss"]


def log_train_loss(module: pl.LightningModule, loss: torch.Tensor, batch_idx: int) -> None:
    """Log ``train_loss`` on the steps Lightning sends to the loggers and on each epoch's last step.

    Those are the steps where ``Trainer(log_every_n_steps=n)`` writes, by Lightning's own test (the count of
    batches that stepped, plus one, divisible by ``n``, or the trainer about to stop), so the loggers see the
    same rows as with logging on every step; the progress bar and ``trainer.callback_metrics`` show the
    latest logged value. ``log_every_n_steps=1`` logs every step.

    Example::

        >>> from lit_deep import Classifier
        >>> from lit_deep.models import MLP
        >>> clf = Classifier(MLP(input_shape=(4,), hidden=(8,), num_classes=2, seed=0))
        >>> data = torch.utils.data.TensorDataset(torch.randn(12, 4), torch.arange(12) % 2)
        >>> trainer = pl.Trainer(max_epochs=1, logger=False, log_every_n_steps=2, enable_checkpointing=False,
        ...                      enable_progress_bar=False, enable_model_summary=False)
        >>> trainer.fit(clf, torch.utils.data.DataLoader(data, batch_size=4))  # 3 steps: logs at steps 1 and 2
        >>> "train_loss" in trainer.callback_metrics
        True
    """
    trainer = module.trainer
    every: int = getattr(trainer, "log_every_n_steps", 50)  # set by Lightning's logger connector, not declared
    # Lightning's _LoggerConnector.should_update_logs, on the counter it uses (global_step counts optimizer
    # steps instead, which differs under manual optimization or with several optimizers).
    stepped: int = getattr(trainer.fit_loop.epoch_loop, "_batches_that_stepped", trainer.global_step)
    to_loggers = bool(every) and ((stepped + 1) % every == 0 or trainer.should_stop)
    if to_loggers or batch_idx + 1 == trainer.num_training_batches:
        module.log("train_loss", loss.detach(), on_step=True, on_epoch=False, prog_bar=True)


def log_train_epoch_metrics(module: pl.LightningModule, names: Sequence[str], prog_bar: Collection[str] = ()) -> None:
    """Log the epoch values of training metrics updated every step, then reset them (call at epoch end).

    ``Metric.compute()`` reduces over DDP ranks itself; a metric with no update this epoch (e.g.
    ``limit_train_batches=0``) is reset without being logged.

    Example::

        >>> from lit_deep import Classifier
        >>> from lit_deep.models import MLP
        >>> clf = Classifier(MLP(input_shape=(4,), hidden=(8,), num_classes=2, seed=0))
        >>> log_train_epoch_metrics(clf, ["train_acc"])  # nothing updated yet: nothing logged
        >>> clf.train_acc.update_count
        0
    """
    for name in names:
        metric: Metric = getattr(module, name)
        if metric.update_count:
            # compute() already gathers every rank's state; sync_dist would only average equal values.
            module.log(name, metric.compute(), prog_bar=name in prog_bar, sync_dist=True)
        metric.reset()
