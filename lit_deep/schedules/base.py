"""The closed-form scheduler base class and the "total steps from the Trainer" context.

Every lit_deep schedule computes each parameter group's rate from the step count alone::

    lr_i(t) = rate(t, base_lrs[i]) * param_groups[i].get("lr_scale", 1.0)

``base_lrs[i]`` is the group's base rate (the optimizer's initial rate, or ``max_lr`` for 1cycle) and
``lr_scale`` a per-group factor that other components may change mid-run (``FreezeUnfreeze`` sets it when it
unfreezes a group); the new scale applies from the next ``step()``. ``lr_scale`` lives in the optimizer's
param groups, so the optimizer's ``state_dict`` (and Lightning's checkpoints) carry it, and resuming is exact
because nothing depends on the previous rate.
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal, get_args

from torch import Tensor
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from lit_deep._validate import check_choice, check_int, check_positive  # check_positive: re-exported

__all__ = [
    "INTERVALS",
    "Interval",
    "ScheduleFactory",
    "ClosedFormLR",
    "check_interval",
    "check_positive",
    "default_total_steps",
    "resolve_total_steps",
]

#: A callable ``optimizer -> scheduler``: ``functools.partial(OneCycle, max_lr=0.05)``, a scheduler class, or
#: what LightningCLI builds from ``{class_path: lit_deep.schedules.OneCycle, init_args: {max_lr: 0.05}}``.
ScheduleFactory = Callable[[Optimizer], LRScheduler]

#: How often Lightning steps a schedule: every optimizer step or every epoch.
Interval = Literal["step", "epoch"]
INTERVALS: tuple[str, ...] = get_args(Interval)
_TOTAL_STEPS: contextvars.ContextVar[Callable[[], int | float] | None] = contextvars.ContextVar(
    "lit_deep_total_steps", default=None
)


@contextmanager
def default_total_steps(provider: Callable[[], int | float] | None) -> Iterator[None]:
    """Within this block, a schedule built with ``total_steps=None`` takes its length from ``provider()``.

    ``Classifier`` wraps its call of the schedule factory in this block with the Trainer's
    ``estimated_stepping_batches``; the provider is only called when a schedule needs it.

    Example::

        >>> with default_total_steps(lambda: 120):
        ...     resolve_total_steps(None)
        120
    """
    token = _TOTAL_STEPS.set(provider)
    try:
        yield
    finally:
        _TOTAL_STEPS.reset(token)


def resolve_total_steps(total_steps: int | None) -> int:
    """``total_steps`` itself, or the enclosing :func:`default_total_steps` provider's value; checked ``>= 2``.

    Raises:
        ValueError: when ``total_steps`` is not an integer >= 2, or is ``None`` outside a provider block.

    Example::

        >>> resolve_total_steps(10)
        10
    """
    if total_steps is None:
        provider = _TOTAL_STEPS.get()
        if provider is None:
            raise ValueError(
                "total_steps: None needs a Lightning Trainer (Classifier uses trainer.estimated_stepping_batches); "
                "give the number of steps explicitly outside one"
            )
        value = provider()
        if isinstance(value, float) and math.isinf(value):
            raise ValueError("total_steps: the Trainer's training length is unbounded; set max_epochs or max_steps")
        total_steps = int(value)
    return int(check_int("total_steps", total_steps, minimum=2))


def check_interval(interval: str) -> str:
    """Validate a Lightning scheduler interval (``"step"`` or ``"epoch"``).

    Example::

        >>> check_interval("step")
        'step'
    """
    return check_choice("interval", interval, INTERVALS)


class ClosedFormLR(LRScheduler):
    """Base class: the rate is a function of ``t = last_epoch`` (the number of ``step()`` calls) and the base rate.

    Subclasses implement :meth:`rate`. ``interval`` tells Lightning how often to step (``"step"``: every
    optimizer step, ``"epoch"``: every epoch). Stepping past any end holds the final value.

    Example::

        >>> import torch
        >>> class Halving(ClosedFormLR):
        ...     def rate(self, t, base):
        ...         return base * 0.5**t
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        >>> sched = Halving(opt)
        >>> opt.step(); sched.step(); opt.step(); sched.step()
        >>> opt.param_groups[0]["lr"]
        0.25
    """

    interval: str = "epoch"

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        super().__init__(optimizer, last_epoch)

    def rate(self, t: int, base: float) -> float:
        """The rate at step ``t`` for a group whose base rate is ``base`` (before ``lr_scale``)."""
        raise NotImplementedError

    def get_lr(self) -> list[float | Tensor]:
        """The rates for step ``last_epoch``: ``rate(t, base_lrs[i]) * lr_scale_i`` for each group."""
        t = max(self.last_epoch, 0)
        return [
            self.rate(t, float(base)) * float(group.get("lr_scale", 1.0))
            for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True)
        ]

    def _get_closed_form_lr(self) -> list[float | Tensor]:
        return self.get_lr()
