"""Learning-rate schedules as ``LRScheduler`` subclasses that take the optimizer first.

1cycle (the book's, PyTorch's and fastai's), power, exponential, piecewise constant and performance scheduling
(:class:`PlateauDecay`). Per-group rates follow the ``lr_scale`` contract (:mod:`lit_deep.schedules._base`);
:mod:`lit_deep.schedules.groups` rescales groups and schedulers when a callback changes a group's rate mid-run.

``Classifier(schedule=...)`` takes a factory ``optimizer -> scheduler`` (``functools.partial(OneCycle,
max_lr=0.05)``, or in a LightningCLI recipe ``schedule: {class_path: lit_deep.schedules.OneCycle, init_args:
{max_lr: 0.05}}``) and returns the Lightning scheduler config itself (per step for 1cycle, per epoch for the
decays unless ``interval="step"``, monitoring ``val_loss`` for ``PlateauDecay``).
"""

from lit_deep.schedules._base import ClosedFormLR, default_total_steps
from lit_deep.schedules.decay import ExponentialDecay, PiecewiseConstant, PowerDecay
from lit_deep.schedules.groups import mixed_group, reference_group, rescale_groups, scale_scheduler
from lit_deep.schedules.lr_finder import LRFinderResult, apply_found_lr, find_lr, suggest_lr
from lit_deep.schedules.one_cycle import ONE_CYCLE_PRESETS, OneCycle, OneCyclePreset, OneCyclePresetName
from lit_deep.schedules.plateau import PlateauDecay, ReduceLROnPlateau
from lit_deep.schedules.plot import ScheduleTrace, plot_lr_finder, plot_schedule, schedule_trace
from lit_deep.schedules.wiring import ScheduleFactory, lightning_scheduler_config, trainer_total_steps

__all__ = [
    "ONE_CYCLE_PRESETS",
    "ClosedFormLR",
    "ExponentialDecay",
    "LRFinderResult",
    "OneCycle",
    "OneCyclePreset",
    "OneCyclePresetName",
    "PiecewiseConstant",
    "PlateauDecay",
    "PowerDecay",
    "ReduceLROnPlateau",
    "ScheduleFactory",
    "ScheduleTrace",
    "apply_found_lr",
    "default_total_steps",
    "find_lr",
    "lightning_scheduler_config",
    "mixed_group",
    "plot_lr_finder",
    "plot_schedule",
    "reference_group",
    "rescale_groups",
    "scale_scheduler",
    "schedule_trace",
    "suggest_lr",
    "trainer_total_steps",
]
