"""1cycle scheduling: the book's definition (Keras ``OneCycleScheduler``), PyTorch's and fastai's, as presets."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, get_args

from torch import Tensor
from torch.optim import Optimizer

from lit_deep.schedules.base import ClosedFormLR, check_positive, resolve_total_steps

__all__ = ["ONE_CYCLE_PRESETS", "OneCycle", "OneCyclePreset", "OneCyclePresetName", "Phase"]


class Phase(NamedTuple):
    """One phase of a 1cycle schedule: its steps and the levels its rate and momentum go between.

    The rate levels are ``"start"`` (``max_lr / div_factor``), ``"peak"`` (``max_lr``) and ``"final"``
    (``start / final_div_factor``); the momentum levels ``"max"`` and ``"base"``.

    Attributes:
        start: the step where the phase begins.
        end: the step where it ends.
        lr_from: the rate level at ``start``.
        lr_to: the rate level at ``end``.
        momentum_from: the momentum level at ``start``.
        momentum_to: the momentum level at ``end``.

    Example::

        >>> Phase(0, 10, "start", "peak", "max", "base").lr_to
        'peak'
    """

    start: float
    end: float
    lr_from: str
    lr_to: str
    momentum_from: str
    momentum_to: str


@dataclass(frozen=True)
class OneCyclePreset:
    """One definition of 1cycle.

    Attributes:
        layout: where the phases lie. ``"book"``: three linear phases, up over ``half`` steps, down to the start
            rate over ``half`` steps, then down to the final rate over the last ``total_steps // 10 + 1`` steps,
            with ``half = (total_steps - last) // 2``. ``"torch"``: ``OneCycleLR``'s two phases, the peak at step
            ``pct_start * total_steps - 1`` and the end at step ``total_steps - 1``. ``"fastai"``: two phases
            over the fraction ``t / total_steps`` of training, the peak at ``pct_start``.
        anneal: ``"linear"`` or ``"cos"`` (cosine) interpolation inside a phase.
        pct_start: share of training spent rising (``None`` for the book's layout, which fixes it).
        div_factor: the start rate is ``max_lr / div_factor``.
        final_div_factor: the final rate is ``start / final_div_factor``.
        cycle_momentum: whether momentum cycles (opposite to the rate) by default.
    """

    layout: str
    anneal: str
    pct_start: float | None
    div_factor: float
    final_div_factor: float
    cycle_momentum: bool


#: The three 1cycle definitions. fastai's final rate is ``max_lr / 1e5`` = ``(max_lr / 25) / 4000``.
#: The 1cycle presets by name: the book's (Keras), PyTorch's ``OneCycleLR`` and fastai's ``fit_one_cycle``.
OneCyclePresetName = Literal["book", "torch", "fastai"]
ONE_CYCLE_PRESETS: dict[str, OneCyclePreset] = {
    "book": OneCyclePreset("book", "linear", None, 10.0, 1000.0, False),
    "torch": OneCyclePreset("torch", "cos", 0.3, 25.0, 1e4, True),
    "fastai": OneCyclePreset("fastai", "cos", 0.25, 25.0, 4000.0, True),
}
assert set(ONE_CYCLE_PRESETS) == set(get_args(OneCyclePresetName))


def _phases(layout: str, total: int, pct_start: float | None) -> list[Phase]:
    if layout == "book":
        last = total // 10 + 1
        half = (total - last) // 2
        return [
            Phase(0, half, "start", "peak", "max", "base"),
            Phase(half, 2 * half, "peak", "start", "base", "max"),
            Phase(2 * half, total, "start", "final", "max", "max"),
        ]
    assert pct_start is not None
    peak = float(pct_start * total) - 1 if layout == "torch" else pct_start * total
    end = total - 1 if layout == "torch" else total
    return [Phase(0.0, peak, "start", "peak", "max", "base"), Phase(peak, end, "peak", "final", "base", "max")]


class OneCycle(ClosedFormLR):
    r"""1cycle scheduling, stepped after every optimizer step (``interval = "step"``).

    ``preset="book"`` is the Keras ``OneCycleScheduler`` of the book, operation for operation: start at
    ``max_lr / 10``, rise linearly to ``max_lr`` over ``half`` steps, fall linearly back over ``half`` steps,
    then fall linearly to ``start / 1000`` over the last ``total_steps // 10 + 1`` steps, with
    ``half = (total_steps - last) // 2``; no momentum cycling. ``"torch"`` equals
    ``torch.optim.lr_scheduler.OneCycleLR``'s defaults (cosine, ``pct_start`` 0.3, ``div_factor`` 25,
    ``final_div_factor`` 1e4, two phases, momentum 0.95 -> 0.85 -> 0.95) and ``"fastai"`` equals
    ``fit_one_cycle`` (cosine, ``pct_start`` 0.25, start ``max_lr / 25``, final ``max_lr / 1e5``, momentum
    0.95 -> 0.85 -> 0.95). Unlike ``OneCycleLR``, stepping past the end holds the final rate instead of raising.

    Momentum cycling sets ``momentum`` (SGD, RMSprop) or ``betas[0]`` (Adam family) of every group, from
    ``max_momentum`` down to ``base_momentum`` while the rate rises and back while it falls.

    Each group's rate is the shape above with ``max_lr`` as the group's base rate, times the group's
    ``lr_scale`` (see :mod:`lit_deep.schedules.base`).

    Args:
        optimizer: the optimizer.
        max_lr: peak rate, one for all groups or one per group; ``None`` takes each group's current rate
            (so ``Classifier(lr=...)`` and the LR finder can set it).
        total_steps: number of optimizer steps; ``None`` inside ``Classifier`` means the Trainer's
            ``estimated_stepping_batches``.
        preset: ``"book"``, ``"torch"`` or ``"fastai"`` (:data:`ONE_CYCLE_PRESETS`).
        pct_start: share of steps spent rising (``torch``/``fastai`` only; the book's layout fixes it).
        div_factor: start rate = ``max_lr / div_factor`` (preset default).
        final_div_factor: final rate = start rate / ``final_div_factor`` (preset default).
        cycle_momentum: cycle momentum (preset default: off for ``book``, on otherwise).
        base_momentum: lowest momentum, reached at the peak rate.
        max_momentum: highest momentum, at the start and the end.
        last_epoch: index of the last step, for PyTorch's resume convention (Lightning restores the
            ``state_dict`` instead).

    Raises:
        ValueError: for ``max_lr <= 0``, ``total_steps < 2``, ``pct_start`` outside (0, 1) or given with
            the book preset, an unknown preset, non-positive factors, momenta outside
            ``0 <= base <= max <= 1``, or momentum cycling on an optimizer with neither ``momentum`` nor ``betas``.

    Example::

        >>> import torch
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.001)
        >>> sched = OneCycle(opt, max_lr=0.05, total_steps=100)  # last = 11, half = 44
        >>> rates = [opt.param_groups[0]["lr"]]
        >>> for _ in range(100):
        ...     opt.step()
        ...     sched.step()
        ...     rates.append(opt.param_groups[0]["lr"])
        >>> rates[0], rates[44], rates[88], rates[100]
        (0.005, 0.05, 0.005, 5e-06)
    """

    interval = "step"

    def __init__(
        self,
        optimizer: Optimizer,
        max_lr: float | Sequence[float] | None = None,
        total_steps: int | None = None,
        preset: OneCyclePresetName = "book",
        *,
        pct_start: float | None = None,
        div_factor: float | None = None,
        final_div_factor: float | None = None,
        cycle_momentum: bool | None = None,
        base_momentum: float = 0.85,
        max_momentum: float = 0.95,
        last_epoch: int = -1,
    ) -> None:
        if preset not in ONE_CYCLE_PRESETS:
            raise ValueError(f"preset: expected one of {sorted(ONE_CYCLE_PRESETS)}, got {preset!r}")
        spec = ONE_CYCLE_PRESETS[preset]
        peaks = self._peaks(optimizer, max_lr)
        self.total_steps = resolve_total_steps(total_steps)
        self.preset = preset
        self.anneal = spec.anneal
        self.pct_start = self._pct_start(spec, pct_start)
        self.div_factor = check_positive("div_factor", spec.div_factor if div_factor is None else div_factor)
        self.final_div_factor = check_positive(
            "final_div_factor", spec.final_div_factor if final_div_factor is None else final_div_factor
        )
        self.cycle_momentum = spec.cycle_momentum if cycle_momentum is None else bool(cycle_momentum)
        self._check_momentum(optimizer, self.cycle_momentum, base_momentum, max_momentum)
        self.base_momentum = float(base_momentum)
        self.max_momentum = float(max_momentum)
        self._use_betas = "betas" in optimizer.defaults
        self._phases = _phases(spec.layout, self.total_steps, self.pct_start)
        self._inclusive_end = spec.layout == "torch"  # OneCycleLR tests step <= end_step, Keras step < end
        if last_epoch == -1:
            for group, peak in zip(optimizer.param_groups, peaks, strict=True):
                group["initial_lr"] = group["lr"] if peak is None else peak
        super().__init__(optimizer, last_epoch)

    @staticmethod
    def _check_momentum(optimizer: Optimizer, cycle: bool, base: float, top: float) -> None:
        if not 0 <= base <= top <= 1:
            raise ValueError(f"base_momentum, max_momentum: need 0 <= base <= max <= 1, got {base}, {top}")
        if cycle and not ("betas" in optimizer.defaults or "momentum" in optimizer.defaults):
            raise ValueError(
                f"cycle_momentum: {type(optimizer).__name__} has neither 'momentum' nor 'betas'; "
                "pass cycle_momentum=False"
            )

    @staticmethod
    def _peaks(optimizer: Optimizer, max_lr: float | Sequence[float] | None) -> list[float | None]:
        n = len(optimizer.param_groups)
        if max_lr is None:
            return [None] * n
        values = list(max_lr) if isinstance(max_lr, Sequence) else [max_lr] * n
        if len(values) != n:
            raise ValueError(f"max_lr: expected one value or {n} (one per param group), got {len(values)}")
        return [check_positive("max_lr", value) for value in values]

    @staticmethod
    def _pct_start(spec: OneCyclePreset, pct_start: float | None) -> float | None:
        if pct_start is None:
            return spec.pct_start
        if spec.pct_start is None:
            raise ValueError(f"pct_start: the book preset's phases are fixed by total_steps, got {pct_start}")
        if not 0 < pct_start < 1:
            raise ValueError(f"pct_start: must lie in (0, 1), got {pct_start}")
        return float(pct_start)

    def _locate(self, t: int) -> Phase:
        for phase in self._phases[:-1]:
            if phase.end > phase.start and (t <= phase.end if self._inclusive_end else t < phase.end):
                return phase
        return self._phases[-1]

    def _interpolate(self, a: float, b: float, t: int, start: float, end: float) -> float:
        if self.anneal == "linear":
            # Keras OneCycleScheduler._interpolate, in the same order of operations.
            return (b - a) * (t - start) / (end - start) + a
        pct = min((t - start) / (end - start), 1.0)
        return b + (a - b) / 2.0 * (math.cos(math.pi * pct) + 1)  # OneCycleLR._annealing_cos

    def rate(self, t: int, base: float) -> float:
        """The rate at step ``t`` for a group whose ``max_lr`` is ``base``."""
        start = base / self.div_factor
        levels = {"start": start, "peak": base, "final": start / self.final_div_factor}
        if t >= self.total_steps:
            return levels["final"]
        phase = self._locate(t)
        return self._interpolate(levels[phase.lr_from], levels[phase.lr_to], t, phase.start, phase.end)

    def momentum(self, t: int) -> float:
        """The momentum (or beta1) at step ``t`` when momentum cycles."""
        levels = {"max": self.max_momentum, "base": self.base_momentum}
        if t >= self.total_steps:
            return levels[self._phases[-1].momentum_to]
        phase = self._locate(t)
        return self._interpolate(levels[phase.momentum_from], levels[phase.momentum_to], t, phase.start, phase.end)

    def state_dict(self) -> dict[str, Any]:
        """The scheduler's state, its phases as plain tuples (checkpoints stay loadable with ``weights_only``)."""
        state = super().state_dict()
        state["_phases"] = [tuple(phase) for phase in self._phases]
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the state saved by :meth:`state_dict` (or by a version whose phases were plain tuples)."""
        super().load_state_dict(state_dict)
        self._phases = [Phase(*phase) for phase in self._phases]

    def get_lr(self) -> list[float | Tensor]:
        """The rates for step ``last_epoch``; also sets the momentum when it cycles."""
        if self.cycle_momentum:
            momentum = self.momentum(max(self.last_epoch, 0))
            for group in self.optimizer.param_groups:
                if self._use_betas:
                    group["betas"] = (momentum, *group["betas"][1:])
                else:
                    group["momentum"] = momentum
        return super().get_lr()
