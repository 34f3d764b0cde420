"""Learning-rate schedules as ``LRScheduler`` subclasses that take the optimizer first.

1cycle (the book's, PyTorch's and fastai's), power, exponential, piecewise constant and performance scheduling
(:class:`PlateauDecay`). Per-group rates follow the ``lr_scale`` contract (:mod:`lit_deep.schedules.base`);
:mod:`lit_deep.schedules.groups` rescales groups and schedulers when a callback changes a group's rate mid-run.
Plain PyTorch: this package imports neither Lightning nor matplotlib (the plots import it when called).

``Classifier(schedule=...)`` takes a factory ``optimizer -> scheduler`` (``functools.partial(OneCycle,
max_lr=0.05)``, or in a LightningCLI recipe ``schedule: {class_path: lit_deep.schedules.OneCycle, init_args:
{max_lr: 0.05}}``) and returns the Lightning scheduler config itself (per step for 1cycle, per epoch for the
decays unless ``interval="step"``, monitoring ``val_loss`` for ``PlateauDecay``). The learning-rate range test
that needs a Trainer is :func:`lit_deep.callbacks.find_lr`.
"""

from lit_deep.schedules.base import ClosedFormLR, ScheduleFactory
from lit_deep.schedules.decay import ExponentialDecay, PiecewiseConstant, PowerDecay
from lit_deep.schedules.one_cycle import OneCycle
from lit_deep.schedules.plateau import PlateauDecay
from lit_deep.schedules.plot import plot_lr_finder, plot_schedule, schedule_trace

__all__ = [
    "ClosedFormLR",
    "ExponentialDecay",
    "OneCycle",
    "PiecewiseConstant",
    "PlateauDecay",
    "PowerDecay",
    "ScheduleFactory",
    "plot_lr_finder",
    "plot_schedule",
    "schedule_trace",
]
