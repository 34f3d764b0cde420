"""The learning-rate range test before ``fit``, and the rule that turns its curve into a rate.

The rule (the book: "about 10 times lower than the point where the loss starts to climb"): take the rate at
the minimum of the range test's smoothed loss (after its first 10 points), which is where the loss turns
upward, and divide it by 10.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn

from lit_deep._warnings import LitDeepWarning
from lit_deep.schedules.plot import plot_lr_finder

if TYPE_CHECKING:
    import lightning.pytorch as pl

__all__ = ["LRFinderResult", "apply_found_lr", "find_lr", "suggest_lr"]


@dataclass(frozen=True)
class LRFinderResult:
    """What the range test found.

    Attributes:
        lrs: the rates tried, in order.
        losses: the smoothed training loss at each rate.
        min_loss_lr: the rate at the lowest loss.
        lr: the rate chosen by the rule (``min_loss_lr / divisor``).
        target: what was set: ``"schedule.max_lr"`` or ``"lr"`` (see :func:`apply_found_lr`).
        plot: the saved loss-vs-rate PNG, if any.
    """

    lrs: list[float]
    losses: list[float]
    min_loss_lr: float
    lr: float
    target: str
    plot: Path | None


def suggest_lr(lrs: Sequence[float], losses: Sequence[float], divisor: float = 10.0, skip_begin: int = 10) -> float:
    """The rate at the lowest finite loss, divided by ``divisor``, leaving out the first ``skip_begin`` points.

    Lightning's smoothed loss is biased low over the first steps (its bias correction counts one step too
    many), and its own suggestion skips the first 10 points as well.

    Raises:
        ValueError: for mismatched lengths, no finite loss after ``skip_begin`` points, ``divisor <= 0`` or a
            negative ``skip_begin``.

    Example::

        >>> suggest_lr([1e-4, 1e-3, 1e-2, 1e-1, 1.0], [2.3, 2.1, 1.2, 1.5, float("nan")], skip_begin=0)
        0.001
    """
    if len(lrs) != len(losses):
        raise ValueError(f"losses: expected one loss per rate ({len(lrs)}), got {len(losses)}")
    if not divisor > 0:
        raise ValueError(f"divisor: must be > 0, got {divisor}")
    if skip_begin < 0:
        raise ValueError(f"skip_begin: must be >= 0, got {skip_begin}")
    finite = [(loss, lr) for lr, loss in list(zip(lrs, losses, strict=True))[skip_begin:] if math.isfinite(loss)]
    if not finite:
        raise ValueError(
            f"losses: no finite loss after the first {skip_begin} of {len(losses)} points; lower min_lr or "
            "raise num_training"
        )
    best = min(finite)[1]
    if best == max(lr for _, lr in finite):
        rank_zero_warn(
            f"lr finder: the loss was still falling at the largest rate tried ({best:.3g}); widen max_lr",
            category=LitDeepWarning,
        )
    return best / divisor


def apply_found_lr(module: pl.LightningModule, lr: float) -> str:
    """Give the module the found rate: 1cycle's ``max_lr`` when the schedule has one, else ``module.lr``.

    A schedule that is a ``functools.partial`` with a ``max_lr`` keyword (what LightningCLI builds from
    ``class_path: lit_deep.schedules.OneCycle``, or ``partial(OneCycle, max_lr=...)``) gets ``max_lr = lr``;
    otherwise ``module.lr`` (and ``hparams["lr"]``) is set, which is also what a ``OneCycle`` built with
    ``max_lr=None`` peaks at.

    Returns:
        ``"schedule.max_lr"`` or ``"lr"``.

    Example::

        >>> import functools, lightning.pytorch as pl
        >>> from lit_deep.schedules import OneCycle
        >>> module = pl.LightningModule()
        >>> module.schedule, module.lr = functools.partial(OneCycle, max_lr=0.05), 0.001
        >>> apply_found_lr(module, 0.02), module.schedule.keywords["max_lr"], module.lr
        ('schedule.max_lr', 0.02, 0.001)
    """
    schedule = getattr(module, "schedule", None)
    if isinstance(schedule, functools.partial) and "max_lr" in schedule.keywords:
        setattr(module, "schedule", functools.partial(schedule, max_lr=lr))  # noqa: B010  (nn.Module typing)
        return "schedule.max_lr"
    setattr(module, "lr", lr)  # noqa: B010
    if "lr" in module.hparams:
        module.hparams["lr"] = lr
    return "lr"


#: The points :func:`suggest_lr` leaves out (Lightning's smoothed loss is biased low over the first steps).
_SKIP_BEGIN = 10


def _check_data_lasted(trainer: pl.Trainer, steps: int, num_training: int, name: str) -> None:
    """Refuse a range test cut short by the data (too few batches for the epochs), not by a diverging loss.

    Lightning's ``lr_find`` runs at most ``max_epochs`` epochs: a loader of 7 batches gives 7 rates whatever
    ``num_training`` is, so the advice is more batches, not more steps.
    """
    batches = trainer.num_training_batches
    epochs = trainer.max_epochs
    if steps > _SKIP_BEGIN or steps >= num_training or not math.isfinite(batches) or epochs is None or epochs < 0:
        return
    accumulate = max(1, int(getattr(trainer, "accumulate_grad_batches", 1)))
    if steps < int(batches) * max(1, epochs) // accumulate:
        return  # stopped early by the loss (it diverged): suggest_lr says what to do
    raise ValueError(
        f"{name}: the training data has only {int(batches)} batches per epoch, so the range test took {steps} "
        f"steps in {epochs} epoch(s) (num_training={num_training} cannot be reached; more than {_SKIP_BEGIN} are "
        "needed): use more data or a smaller batch_size, or give the Trainer more max_epochs"
    )


def find_lr(
    trainer: pl.Trainer,
    module: pl.LightningModule,
    datamodule: pl.LightningDataModule | None = None,
    *,
    train_dataloaders: Any = None,
    min_lr: float = 1e-5,
    max_lr: float = 10.0,
    num_training: int = 100,
    divisor: float = 10.0,
    plot_path: str | Path | None = None,
) -> LRFinderResult | None:
    """Run Lightning's range test (``Tuner.lr_find``), choose a rate by the rule and apply it to ``module``.

    The rates grow exponentially from ``min_lr`` to ``max_lr`` (the book's range, 1e-5 to 10) over
    ``num_training`` steps; Lightning stops early once the loss exceeds 4x its best and restores the weights
    afterwards. Call it before ``trainer.fit``. Skipped (``None``) under ``fast_dev_run``.

    Args:
        trainer: a Trainer that has not fitted yet.
        module: the LightningModule (a ``Classifier``).
        datamodule: the data (or ``train_dataloaders``).
        train_dataloaders: training data when there is no datamodule.
        min_lr: smallest rate tried.
        max_lr: largest rate tried.
        num_training: number of steps (rates) tried.
        divisor: the rule's divisor.
        plot_path: where to save the loss-vs-rate PNG (written by global rank 0 only).

    Returns:
        The :class:`LRFinderResult`, or ``None`` when skipped.

    Raises:
        ValueError: when the data ran out before more than 10 rates were tried (it names the batches per epoch:
            a larger ``num_training`` cannot help), or no rate gave a finite loss (:func:`suggest_lr`).

    Example::

        >>> import functools, tempfile, torch, lightning.pytorch as pl
        >>> from lit_deep.schedules import OneCycle
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> from lit_deep import Classifier
        >>> from lit_deep.models import MLP
        >>> x = torch.randn(160, 4); data = DataLoader(TensorDataset(x, (x[:, 0] > 0).long()), batch_size=8)
        >>> clf = Classifier(MLP((4,), (8,), 2, seed=0), "sgd", schedule=functools.partial(OneCycle, max_lr=1.0))
        >>> trainer = pl.Trainer(max_epochs=2, logger=False, enable_progress_bar=False, enable_model_summary=False,
        ...                      enable_checkpointing=False, default_root_dir=tempfile.mkdtemp())
        >>> result = find_lr(trainer, clf, num_training=30, min_lr=1e-3, max_lr=100.0, train_dataloaders=data)
        >>> result.target, clf.schedule.keywords["max_lr"] == result.lr == result.min_loss_lr / 10
        ('schedule.max_lr', True)
    """
    from lightning.pytorch.tuner import Tuner

    if getattr(trainer, "fast_dev_run", False):
        rank_zero_info("lr finder: skipped under fast_dev_run")
        return None
    finder = Tuner(trainer).lr_find(
        module,
        train_dataloaders=train_dataloaders,
        datamodule=datamodule,
        min_lr=min_lr,
        max_lr=max_lr,
        num_training=num_training,
        update_attr=False,
    )
    assert finder is not None
    lrs = [float(v) for v in finder.results["lr"]]
    losses = [float(v) for v in finder.results["loss"]]
    _check_data_lasted(trainer, len(lrs), num_training, "datamodule" if datamodule is not None else "train_dataloaders")
    lr = suggest_lr(lrs, losses, divisor)
    target = apply_found_lr(module, lr)
    plot = None
    if plot_path is not None and trainer.is_global_zero:
        plot = plot_lr_finder(lrs, losses, lr, plot_path)
    rank_zero_info(f"lr finder: loss lowest at {lr * divisor:.4g}; set {target} = {lr:.4g}")
    return LRFinderResult(lrs, losses, lr * divisor, lr, target, plot)
