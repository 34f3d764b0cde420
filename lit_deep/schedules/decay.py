"""The book's decay schedules: power, exponential and piecewise constant scheduling."""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from torch.optim import Optimizer

from lit_deep._validate import check_non_negative, check_positive, check_shape
from lit_deep.schedules.base import ClosedFormLR, Interval, check_interval

__all__ = ["ExponentialDecay", "PiecewiseConstant", "PowerDecay"]


class PowerDecay(ClosedFormLR):
    r"""Power scheduling: the rate falls ever more slowly.

    .. math:: \eta(t) = \eta_0 / (1 + t / s)^c

    ``t`` counts ``step()`` calls and ``eta_0`` is the group's initial rate. Keras's ``SGD(lr, decay=d)`` (the
    book's power scheduling) is ``PowerDecay(opt, s=1/d, c=1, interval="step")``.

    Args:
        optimizer: the optimizer.
        s: steps (or epochs) until the rate has fallen to ``eta_0 / 2**c``.
        c: the power.
        interval: ``"epoch"`` or ``"step"``: how often Lightning steps it (``Classifier`` reads this).
        last_epoch: index of the last step, for PyTorch's resume convention.

    Raises:
        ValueError: for ``s <= 0``, ``c <= 0`` or an unknown interval.

    Example::

        >>> import torch
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
        >>> sched = PowerDecay(opt, s=10)
        >>> for _ in range(10):
        ...     opt.step()
        ...     sched.step()
        >>> opt.param_groups[0]["lr"]
        0.005
    """

    def __init__(
        self, optimizer: Optimizer, s: float, c: float = 1.0, interval: Interval = "epoch", last_epoch: int = -1
    ) -> None:
        self.s = check_positive("s", s)
        self.c = check_positive("c", c)
        self.interval = check_interval(interval)
        super().__init__(optimizer, last_epoch)

    def rate(self, t: int, base: float) -> float:
        """``base / (1 + t / s) ** c``."""
        return base / (1 + t / self.s) ** self.c


class ExponentialDecay(ClosedFormLR):
    r"""Exponential scheduling: the rate falls by a factor of 10 every ``s`` steps.

    .. math:: \eta(t) = \eta_0 \cdot 0.1^{t / s}

    ``t`` counts ``step()`` calls and ``eta_0`` is the group's initial rate (the book: ``lr0 = 0.01``,
    ``s = 20`` epochs).

    Args:
        optimizer: the optimizer.
        s: steps (or epochs) per factor of 10.
        interval: ``"epoch"`` or ``"step"``: how often Lightning steps it.
        last_epoch: index of the last step, for PyTorch's resume convention.

    Raises:
        ValueError: for ``s <= 0`` or an unknown interval.

    Example::

        >>> import torch
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
        >>> sched = ExponentialDecay(opt, s=20)
        >>> for _ in range(40):
        ...     opt.step()
        ...     sched.step()
        >>> round(opt.param_groups[0]["lr"], 12)
        0.0001
    """

    def __init__(self, optimizer: Optimizer, s: float, interval: Interval = "epoch", last_epoch: int = -1) -> None:
        self.s = check_positive("s", s)
        self.interval = check_interval(interval)
        super().__init__(optimizer, last_epoch)

    def rate(self, t: int, base: float) -> float:
        """``base * 0.1 ** (t / s)``."""
        return base * 0.1 ** (t / self.s)


class PiecewiseConstant(ClosedFormLR):
    """Piecewise constant scheduling: ``values[k]`` from step ``boundaries[k-1]`` until ``boundaries[k]``.

    The values are the rates themselves (the book's form, as Keras's ``PiecewiseConstantDecay``): any values,
    not only multiplicative steps. The optimizer's own rate is not used; a group's ``lr_scale`` still
    multiplies them. The book: ``boundaries=[5, 15]``, ``values=[0.01, 0.005, 0.001]`` per epoch, i.e. 0.01
    for epochs 0-4, 0.005 for epochs 5-14 and 0.001 afterwards.

    Args:
        optimizer: the optimizer.
        boundaries: strictly increasing step (or epoch) numbers > 0 where the rate changes.
        values: the rates, one more than ``boundaries``, each >= 0.
        interval: ``"epoch"`` or ``"step"``: how often Lightning steps it.
        last_epoch: index of the last step, for PyTorch's resume convention.

    Raises:
        ValueError: for unsorted or non-positive boundaries, ``len(values) != len(boundaries) + 1``, negative
            values or an unknown interval.

    Example::

        >>> import torch
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        >>> sched = PiecewiseConstant(opt, boundaries=[5, 15], values=[0.01, 0.005, 0.001])
        >>> rates = [opt.param_groups[0]["lr"]]
        >>> for _ in range(20):
        ...     opt.step()
        ...     sched.step()
        ...     rates.append(opt.param_groups[0]["lr"])
        >>> rates[4], rates[5], rates[14], rates[15], rates[20]
        (0.01, 0.005, 0.005, 0.001, 0.001)
    """

    def __init__(
        self,
        optimizer: Optimizer,
        boundaries: Sequence[int],
        values: Sequence[float],
        interval: Interval = "epoch",
        last_epoch: int = -1,
    ) -> None:
        self.boundaries = list(check_shape("boundaries", boundaries))
        if any(b >= c for b, c in zip(self.boundaries, self.boundaries[1:], strict=False)):
            raise ValueError(f"boundaries: must be strictly increasing, got {list(boundaries)}")
        if len(values) != len(self.boundaries) + 1:
            raise ValueError(f"values: need len(boundaries) + 1 = {len(self.boundaries) + 1} values, got {len(values)}")
        self.values = [check_non_negative(f"values[{i}]", v) for i, v in enumerate(values)]
        self.interval = check_interval(interval)
        super().__init__(optimizer, last_epoch)

    def rate(self, t: int, base: float) -> float:
        """``values[k]`` where ``k`` is the number of boundaries <= ``t`` (``base`` is not used)."""
        return self.values[bisect.bisect_right(self.boundaries, t)]
