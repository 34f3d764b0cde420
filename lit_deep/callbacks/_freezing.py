"""What ``FreezeUnfreeze`` needs beyond selection: its milestone and rate arguments, and DDP's wrapper rebuilt."""

from __future__ import annotations

import gc
from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy, ParallelStrategy, XLAStrategy
from torch.nn.parallel import DistributedDataParallel

from lit_deep._validate import check_int, check_positive
from lit_deep.callbacks.select import as_patterns

__all__ = ["Milestones", "check_strategy", "lr_factors", "milestones", "rewrap_ddp"]

#: ``{epoch: names}``: the modules unfrozen at the start of each epoch.
Milestones = Mapping[int, str | Sequence[str]]


def _check_epoch(epoch: Any, argument: str) -> int:
    return check_int(argument, epoch, minimum=0)


def milestones(unfreeze_at_epoch: int | Milestones | None, modules: tuple[str, ...]) -> dict[int, tuple[str, ...]]:
    """The milestones ``{epoch: patterns}`` of ``unfreeze_at_epoch`` (one epoch unfreezes ``modules``).

    Raises:
        ValueError: for an empty mapping, an epoch that is not an integer >= 0, or epochs out of order.

    Example::

        >>> milestones(3, ("backbone",)), milestones({4: "backbone.3", 8: ["backbone"]}, ("backbone",))
        ({3: ('backbone',)}, {4: ('backbone.3',), 8: ('backbone',)})
    """
    if unfreeze_at_epoch is None:
        return {}
    if isinstance(unfreeze_at_epoch, Mapping):
        items = list(unfreeze_at_epoch.items())
    else:
        items = [(unfreeze_at_epoch, modules)]
    if not items:
        raise ValueError("unfreeze_at_epoch: empty milestones {}; use None to keep the modules frozen")
    epochs = [_check_epoch(epoch, "unfreeze_at_epoch") for epoch, _ in items]
    if epochs != sorted(epochs):
        raise ValueError(f"unfreeze_at_epoch: milestones out of order, epochs {epochs} must increase")
    return {epoch: as_patterns(names, "unfreeze_at_epoch") for epoch, names in items}


def _check_factor(value: Any, epoch: int | None = None) -> float:
    return check_positive("lr_factor" if epoch is None else f"lr_factor[{epoch}]", value)


def lr_factors(lr_factor: float | Mapping[int, float], epochs: Sequence[int]) -> dict[int, float]:
    """One rate factor per milestone epoch: a number applies to every milestone, a mapping names each one.

    Raises:
        ValueError: for a factor that is not a finite number > 0, or a mapping whose epochs are not exactly the
            milestones' epochs.

    Example::

        >>> lr_factors(0.1, [4, 8]), lr_factors({4: 0.1, 8: 0.01}, [4, 8])
        ({4: 0.1, 8: 0.1}, {4: 0.1, 8: 0.01})
    """
    if not isinstance(lr_factor, Mapping):
        factor = _check_factor(lr_factor)
        return dict.fromkeys(epochs, factor)
    if not epochs:
        raise ValueError(
            f"lr_factor: a factor per milestone ({dict(lr_factor)!r}) needs milestones, but unfreeze_at_epoch is None"
        )
    factors = {_check_epoch(epoch, "lr_factor"): _check_factor(value, epoch) for epoch, value in lr_factor.items()}
    unknown = sorted(set(factors) - set(epochs))
    if unknown:
        raise ValueError(f"lr_factor: epochs {unknown} are not milestones of unfreeze_at_epoch (epochs {list(epochs)})")
    missing = [epoch for epoch in epochs if epoch not in factors]
    if missing:
        raise ValueError(
            f"lr_factor: no factor for the milestones at epochs {missing}; give one per milestone "
            f"(epochs {list(epochs)}) or a single number"
        )
    return {epoch: factors[epoch] for epoch in epochs}


def check_strategy(trainer: pl.Trainer) -> None:
    """Refuse a parallel strategy whose wrapper cannot be rebuilt at unfreezing (only plain DDP's can).

    DeepSpeed and XLA subclass ``DDPStrategy`` but build their own engines, which a rebuilt DDP wrapper would not
    reach: they are refused by class, as FSDP and the other parallel strategies are. A DDP strategy with a stateful
    communication hook (``ddp_comm_state``, e.g. PowerSGD) is refused too: rebuilding the wrapper would register
    the hook again with the old per-bucket state.

    Raises:
        ValueError: one line naming the strategy and what to use instead.

    Example::

        >>> check_strategy(pl.Trainer(accelerator="cpu", devices=1, logger=False)) is None  # single device: fine
        True
    """
    strategy = trainer.strategy
    name = type(strategy).__name__
    plain_ddp = isinstance(strategy, DDPStrategy) and not isinstance(strategy, (DeepSpeedStrategy, XLAStrategy))
    if isinstance(strategy, (ParallelStrategy, DeepSpeedStrategy, XLAStrategy)) and not plain_ddp:
        raise ValueError(
            f"unfreeze_at_epoch: unfreezing under {name} is not supported (its wrapper or engine is built once, for "
            "the parameters that require gradients then); use a single device or strategy='ddp', or "
            "unfreeze_at_epoch=None to freeze only"
        )
    # Lightning keeps the hook's state only under this name (DDPStrategy(ddp_comm_state=...)); a test pins it.
    if plain_ddp and getattr(strategy, "_ddp_comm_state", None) is not None:
        raise ValueError(
            "unfreeze_at_epoch: a DDP communication hook with state (ddp_comm_state, e.g. PowerSGD) cannot follow the "
            "wrapper rebuilt at unfreezing (its per-bucket state is stale); use a stateless hook or none"
        )


def rewrap_ddp(trainer: pl.Trainer) -> bool:
    """Wrap the LightningModule in a new ``DistributedDataParallel`` built by the strategy; ``False`` if not DDP.

    DDP chooses the parameters it all-reduces when it is built: those that require gradients then. After
    unfreezing, a new wrapper (``DDPStrategy.configure_ddp``, with the strategy's own arguments) all-reduces the
    newly trainable parameters too; its constructor first broadcasts rank 0's parameters and buffers, which
    are already equal on every rank. Every rank must call this at the same point (DDP's constructor is a
    collective). The optimizers hold the parameters themselves, not the wrapper, so they stay as they are.

    Example::

        >>> rewrap_ddp(pl.Trainer(accelerator="cpu", devices=1, logger=False))  # no DDP wrapper to rebuild
        False
    """
    strategy = trainer.strategy
    if not (isinstance(strategy, DDPStrategy) and isinstance(strategy.model, DistributedDataParallel)):
        return False
    strategy.model = strategy.lightning_module
    strategy.configure_ddp()
    # The old wrapper's reducer keeps autograd hooks on the parameters until it is destroyed; it is unreachable
    # now but may sit in a reference cycle, so collect it here rather than at some later step.
    gc.collect()
    return True
