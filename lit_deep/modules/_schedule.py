"""Turning a schedule factory into Lightning's ``lr_scheduler`` config (what ``LitDeepModule`` returns)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torch.optim.lr_scheduler import ReduceLROnPlateau as TorchPlateau

from lit_deep._validate import check_choice
from lit_deep.schedules.base import INTERVALS, ScheduleFactory, default_total_steps

if TYPE_CHECKING:
    import lightning.pytorch as pl

__all__ = ["lightning_scheduler_config", "trainer_total_steps"]


def trainer_total_steps(module: pl.LightningModule) -> int:
    """The number of optimizer steps the module's Trainer will take: ``trainer.estimated_stepping_batches``.

    It accounts for ``max_epochs``, ``max_steps``, ``limit_train_batches``, ``accumulate_grad_batches`` and,
    under DDP, each rank's shard. Under ``fast_dev_run`` (1 step) it returns at least 2, so that a 1cycle
    recipe can be smoke-tested.

    Raises:
        ValueError: when the module is not attached to a Trainer.

    Example::

        >>> import lightning.pytorch as pl
        >>> trainer_total_steps(pl.LightningModule())
        Traceback (most recent call last):
        ...
        ValueError: total_steps: the module is not attached to a Trainer; give total_steps explicitly
    """
    try:
        trainer = module.trainer
    except RuntimeError as err:
        raise ValueError("total_steps: the module is not attached to a Trainer; give total_steps explicitly") from err
    total = trainer.estimated_stepping_batches
    if getattr(trainer, "fast_dev_run", False):  # set by a connector: invisible to type checkers
        total = max(total, 2)
    return total  # type: ignore[return-value]  # inf is rejected by resolve_total_steps


def lightning_scheduler_config(
    schedule: ScheduleFactory, optimizer: Optimizer, total_steps: Callable[[], int | float] | None = None
) -> dict[str, Any]:
    """Build the scheduler with ``schedule(optimizer)`` and return Lightning's ``lr_scheduler`` dict.

    ``interval`` is the scheduler's own ``interval`` attribute (``"step"`` for :class:`OneCycle`, what the
    decays were given, ``"epoch"`` for schedulers without one); a ``PlateauDecay`` (or PyTorch's
    ``ReduceLROnPlateau``) is stepped every epoch with its ``monitor`` attribute (default ``"val_loss"``).

    Args:
        schedule: the factory.
        optimizer: the optimizer to schedule.
        total_steps: called when a schedule was built with ``total_steps=None``.

    Returns:
        ``{"scheduler", "interval"[, "monitor"]}``.

    Raises:
        ValueError: when ``schedule`` is not callable or does not return an ``LRScheduler``.

    Example::

        >>> import functools, torch
        >>> from lit_deep.schedules import OneCycle
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
        >>> config = lightning_scheduler_config(functools.partial(OneCycle, max_lr=0.1), opt, lambda: 50)
        >>> config["interval"], config["scheduler"].total_steps
        ('step', 50)
    """
    if not callable(schedule):
        raise ValueError(
            "schedule: expected a callable optimizer -> scheduler such as functools.partial(OneCycle, max_lr=0.05),"
            f" got {type(schedule).__name__}"
        )
    with default_total_steps(total_steps):
        scheduler = schedule(optimizer)
    if not isinstance(scheduler, LRScheduler):
        raise ValueError(f"schedule: returned {type(scheduler).__name__}, not a torch LRScheduler")
    if isinstance(scheduler, TorchPlateau):
        return {"scheduler": scheduler, "interval": "epoch", "monitor": getattr(scheduler, "monitor", "val_loss")}
    interval = getattr(scheduler, "interval", "epoch")
    check_choice("schedule.interval", interval, INTERVALS)
    return {"scheduler": scheduler, "interval": interval}
