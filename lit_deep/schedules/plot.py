"""Pictures of schedules (rate and momentum over training) and of the learning-rate range test."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from lit_deep.schedules.base import ScheduleFactory, default_total_steps

__all__ = ["ScheduleTrace", "plot_lr_finder", "plot_schedule", "schedule_trace"]


@dataclass(frozen=True)
class ScheduleTrace:
    """The rate and momentum a schedule sets at each step ``t = 0 .. steps - 1`` (one param group)."""

    name: str
    lr: list[float]
    momentum: list[float]


def schedule_trace(
    schedule: ScheduleFactory, total_steps: int, lr: float = 0.01, steps: int | None = None
) -> ScheduleTrace:
    """Run ``schedule`` on a one-parameter SGD optimizer (momentum 0.9, rate ``lr``) and record it.

    Args:
        schedule: a factory ``optimizer -> scheduler`` (built with ``total_steps`` when it leaves it ``None``).
        total_steps: the schedule's length, in its own unit (optimizer steps or epochs).
        lr: the optimizer's rate (the base of the decays).
        steps: how many steps to record (default ``total_steps``).

    Returns:
        The :class:`ScheduleTrace`.

    Example::

        >>> import functools
        >>> from lit_deep.schedules import OneCycle
        >>> trace = schedule_trace(functools.partial(OneCycle, max_lr=0.05, preset="torch"), 10)
        >>> round(max(trace.lr), 6), round(min(trace.momentum), 6)
        (0.05, 0.85)
    """
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=lr, momentum=0.9)
    with default_total_steps(lambda: total_steps):
        scheduler = schedule(optimizer)
    rates, momenta = [], []
    for _ in range(total_steps if steps is None else steps):
        group = optimizer.param_groups[0]
        rates.append(float(group["lr"]))
        momenta.append(float(group["betas"][0] if "betas" in group else group.get("momentum", 0.0)))
        optimizer.step()  # no gradient: a no-op that keeps PyTorch's step-order check quiet
        scheduler.step()
    return ScheduleTrace(type(scheduler).__name__, rates, momenta)


def plot_schedule(
    schedule: ScheduleFactory, total_steps: int, path: str | Path, lr: float = 0.01, title: str | None = None
) -> Path:
    """Save a PNG of the rate (and, when it varies, the momentum) ``schedule`` sets over ``total_steps`` steps.

    Args:
        schedule: a factory ``optimizer -> scheduler``.
        total_steps: the schedule's length.
        path: where to write the PNG (folders are created).
        lr: the optimizer's rate (the base of the decays).
        title: the figure's title (default: the scheduler's class name).

    Returns:
        The path written.

    Example::

        >>> import functools, tempfile
        >>> from lit_deep.schedules import OneCycle
        >>> out = plot_schedule(functools.partial(OneCycle, max_lr=0.05), 100, f"{tempfile.mkdtemp()}/1cycle.png")
        >>> out.stat().st_size > 1000
        True
    """
    from matplotlib.figure import Figure

    trace = schedule_trace(schedule, total_steps, lr=lr)
    cycles = max(trace.momentum) > min(trace.momentum)
    fig = Figure(figsize=(7, 5.5 if cycles else 3.5), layout="constrained")
    axes = fig.subplots(2 if cycles else 1, 1, sharex=True, squeeze=False)[:, 0]
    steps = range(len(trace.lr))
    axes[0].plot(steps, trace.lr, color="tab:blue")
    axes[0].set_ylabel("learning rate")
    if cycles:
        axes[1].plot(steps, trace.momentum, color="tab:orange")
        axes[1].set_ylabel("momentum")
    axes[-1].set_xlabel("step")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(title or trace.name)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out


def plot_lr_finder(lrs: Sequence[float], losses: Sequence[float], chosen: float, path: str | Path) -> Path:
    """Save the range test's loss against the rate (log scale) with the chosen rate marked.

    Example::

        >>> import tempfile
        >>> out = plot_lr_finder([1e-4, 1e-3, 1e-2, 1e-1], [2.3, 2.0, 1.5, 4.0], 1e-3, f"{tempfile.mkdtemp()}/f.png")
        >>> out.suffix
        '.png'
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    ax.plot(lrs, losses, color="tab:blue")
    ax.axvline(chosen, color="tab:red", linestyle="--", label=f"chosen rate {chosen:.3g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("loss (smoothed)")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out
