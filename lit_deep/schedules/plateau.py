"""Performance scheduling: cut the rate when a monitored validation metric stops improving (Keras semantics)."""

from __future__ import annotations

from typing import Literal, get_args

from torch.optim import Optimizer
from torch.optim import lr_scheduler as torch_schedulers

from lit_deep._validate import check_choice, check_int, check_non_negative, check_probability

__all__ = ["PlateauDecay", "PlateauMode"]

#: Whether the monitored metric should fall (a loss) or rise (an accuracy).
PlateauMode = Literal["min", "max"]
_MODES: tuple[str, ...] = get_args(PlateauMode)


class PlateauDecay(torch_schedulers.ReduceLROnPlateau):
    """Multiply the rate by ``factor`` when ``monitor`` has not improved for ``patience`` epochs.

    The book's "performance scheduling". Named apart from PyTorch's ``ReduceLROnPlateau`` because its ``patience``
    counts differently (below). Keras's ``ReduceLROnPlateau`` as the book uses it (``factor=0.5, patience=5`` on
    ``val_loss``), built on PyTorch's class. Where the two differ, Keras wins: ``patience`` counts the epochs
    without improvement *including* the one that triggers the cut (PyTorch's ``patience=5`` cuts at the 6th bad
    epoch; this class passes ``patience - 1`` to it, so ``self.patience`` is PyTorch's count and
    ``self.keras_patience`` the argument); ``min_delta`` is an absolute improvement threshold (PyTorch's default is
    relative); and every cut happens however small (PyTorch's ``eps`` skips cuts below 1e-8). Cooldown counting
    follows PyTorch. ``monitor`` and ``interval`` tell ``Classifier`` how Lightning must step it: once per epoch,
    with the logged metric.

    Args:
        optimizer: the optimizer.
        monitor: the logged metric to watch (``Classifier`` logs ``val_loss``, ``val_acc``, ``val_nll``).
        mode: ``"min"`` (loss-like) or ``"max"`` (accuracy-like).
        factor: multiplier of the rate at a cut, in (0, 1).
        patience: epochs without improvement before a cut.
        min_delta: smallest change that counts as an improvement (absolute).
        cooldown: epochs to wait after a cut before counting again.
        min_lr: floor of the rate.

    Raises:
        ValueError: for a factor outside (0, 1), a negative patience, ``min_delta``, ``cooldown`` or ``min_lr``,
            an unknown mode or an empty monitor name.

    Example::

        >>> import torch
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.02, momentum=0.9)
        >>> sched = PlateauDecay(opt)
        >>> for val_loss in [1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.95]:
        ...     sched.step(val_loss)
        >>> opt.param_groups[0]["lr"]  # cut at the 5th epoch without improvement
        0.01
    """

    interval = "epoch"

    def __init__(
        self,
        optimizer: Optimizer,
        monitor: str = "val_loss",
        mode: PlateauMode = "min",
        factor: float = 0.5,
        patience: int = 5,
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
    ) -> None:
        if not monitor:
            raise ValueError(f"monitor: must name a logged metric, got {monitor!r}")
        check_choice("mode", mode, _MODES)
        check_probability("factor", factor, lower_inclusive=False)
        check_int("patience", patience, minimum=0)
        check_int("cooldown", cooldown, minimum=0)
        check_non_negative("min_delta", min_delta)
        check_non_negative("min_lr", min_lr)
        self.monitor = monitor
        self.keras_patience = int(patience)
        super().__init__(
            optimizer,
            mode=mode,
            factor=factor,
            patience=max(int(patience), 1) - 1,
            threshold=min_delta,
            threshold_mode="abs",
            cooldown=cooldown,
            min_lr=min_lr,
            eps=0.0,  # Keras has no smallest cut (PyTorch skips cuts below 1e-8 by default)
        )
