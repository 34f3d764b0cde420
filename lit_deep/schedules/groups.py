"""Rescaling optimizer parameter groups mid-run, and the schedulers that hold per-group rates.

This is the other half of the ``lr_scale`` contract of :mod:`lit_deep.schedules.base`: when a callback
(``FreezeUnfreeze``) gives a group a new rate in the middle of a run, :func:`rescale_groups` sets the group's
``lr`` and ``lr_scale`` from a reference group, and :func:`scale_scheduler` makes the schedulers that keep
their own copies of per-group rates (PyTorch's ``base_lrs``, ``max_lrs``, ``OneCycleLR``'s ``initial_lr``,
``max_lr``, ``min_lr``) agree. lit_deep's closed-form schedules read ``lr_scale`` and need nothing more.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from lit_deep.schedules.base import ClosedFormLR

if TYPE_CHECKING:
    import lightning.pytorch as pl

__all__ = ["extend_scheduler", "mixed_group", "reference_group", "rescale_groups", "scale_scheduler"]


def reference_group(groups: Sequence[dict[str, Any]], frozen: set[int]) -> int | None:
    """The index of the group whose rate unfrozen groups follow: ``"head"``, else the first never-frozen group.

    Example::

        >>> a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
        >>> reference_group([{"params": [a]}, {"params": [b]}], frozen={id(a)})
        1
    """
    names = [group.get("name") for group in groups]
    if "head" in names:
        return names.index("head")
    for index, group in enumerate(groups):
        if group["params"] and not any(id(p) in frozen for p in group["params"]):
            return index
    return None


def mixed_group(groups: Sequence[dict[str, Any]], params: set[int]) -> str | None:
    """The name (or index) of a group holding some, but not only, parameters of ``params``; ``None`` if none.

    Example::

        >>> a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
        >>> mixed_group([{"params": [a, b], "name": "all"}], {id(a)})
        'all'
    """
    for index, group in enumerate(groups):
        inside = sum(id(p) in params for p in group["params"])
        if 0 < inside < len(group["params"]):
            return str(group.get("name", index))
    return None


def scale_scheduler(scheduler: Any, index: int, reference: int, factor: float) -> None:
    """Make group ``index`` of a PyTorch scheduler follow group ``reference`` times ``factor`` from now on.

    lit_deep's closed-form schedules read the group's ``lr_scale`` and ``ReduceLROnPlateau`` multiplies the
    current rate, so neither needs more. Closed-form PyTorch schedulers keep their rates in ``base_lrs``
    (``LambdaLR``, ``CosineAnnealingLR``, ...), ``max_lrs`` (``CyclicLR``) or in the group itself
    (``OneCycleLR``: ``initial_lr``, ``max_lr``, ``min_lr``); those entries are scaled.

    Example::

        >>> opt = torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(1))]} for _ in range(2)], lr=1.0)
        >>> sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0)
        >>> scale_scheduler(sched, 1, 0, 0.1)
        >>> sched.base_lrs
        [1.0, 0.1]
    """
    if isinstance(scheduler, (ClosedFormLR, torch.optim.lr_scheduler.ReduceLROnPlateau)):
        return
    for attribute in ("base_lrs", "max_lrs"):
        values = getattr(scheduler, attribute, None)
        if isinstance(values, list) and len(values) > max(index, reference):
            values[index] = values[reference] * factor
    groups = scheduler.optimizer.param_groups
    for key in ("initial_lr", "max_lr", "min_lr"):
        if key in groups[index] and key in groups[reference]:
            groups[index][key] = groups[reference][key] * factor


def rescale_groups(trainer: pl.Trainer, params: set[int], ever_frozen: set[int], factor: float) -> list[str]:
    """Give the groups holding ``params`` the reference group's current rate times ``factor`` (once).

    Sets each such group's ``lr`` and ``lr_scale`` (read by lit_deep's schedules) from the reference group
    (:func:`reference_group`; the group itself when there is none) and rescales the schedulers' per-group
    rates (:func:`scale_scheduler`).

    Returns:
        The names (or indices) of the groups changed.

    Example::

        >>> import lightning.pytorch as pl
        >>> trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
        >>> rescale_groups(trainer, set(), set(), 0.1)  # no optimizer yet: nothing to change
        []
    """
    changed = []
    for optimizer in trainer.optimizers:
        groups = optimizer.param_groups
        ref = reference_group(groups, ever_frozen)
        schedulers = [c.scheduler for c in trainer.lr_scheduler_configs if c.scheduler.optimizer is optimizer]
        for index, group in enumerate(groups):
            if not any(id(p) in params for p in group["params"]):
                continue
            source = groups[ref] if ref is not None else group
            group["lr"] = float(source["lr"]) * factor
            group["lr_scale"] = float(source.get("lr_scale", 1.0)) * factor
            for scheduler in schedulers:
                scale_scheduler(scheduler, index, index if ref is None else ref, factor)
            changed.append(str(group.get("name", index)))
    return changed


#: The per-group lists a PyTorch scheduler may keep (its public attributes): base rates (every ``LRScheduler``),
#: ``CyclicLR``'s peaks, ``ReduceLROnPlateau``'s floors, ``LambdaLR``/``MultiplicativeLR``'s functions.
_PER_GROUP_LISTS = ("base_lrs", "max_lrs", "min_lrs", "lr_lambdas")


def extend_scheduler(scheduler: Any, reference: int) -> None:
    """Give a scheduler an entry for a parameter group just appended to its optimizer: group ``reference``'s.

    Each per-group list the scheduler keeps (``base_lrs``, ``max_lrs``, ``min_lrs``, ``lr_lambdas``) that is one
    entry short gets a copy of entry ``reference``; the new group's own keys (``initial_lr``, ``max_lr``,
    ``min_lr`` for ``OneCycleLR``) were copied with the group. :func:`scale_scheduler` can then rescale it.

    Example::

        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        >>> sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0)
        >>> opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 1.0})
        >>> extend_scheduler(sched, 0)
        >>> sched.base_lrs, len(sched.lr_lambdas)
        ([1.0, 1.0], 2)
    """
    groups = len(scheduler.optimizer.param_groups)
    for attribute in _PER_GROUP_LISTS:
        values = getattr(scheduler, attribute, None)
        if isinstance(values, list) and len(values) == groups - 1:
            values.append(values[reference])
