"""The phases of ``FreezeUnfreeze``: each ends at a maximum number of epochs or earlier on a monitored metric."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, get_args

from lit_deep._validate import check_bool, check_choice, check_int, check_non_negative, check_positive
from lit_deep.callbacks.select import as_patterns

__all__ = ["Mode", "Phase", "improved", "phases"]

#: Whether the monitored metric improves downwards (``"min"``, a loss) or upwards (``"max"``, an accuracy).
Mode = Literal["min", "max"]
_MODES: tuple[str, ...] = get_args(Mode)


@dataclass(frozen=True)
class Phase:
    """One phase of training before an unfreezing: how long it may last, when it ends early, what it unfreezes.

    The phase trains what is trainable when it starts; it ends after ``max_epochs`` epochs, or earlier once the
    validation metric ``monitor`` has not improved by more than ``min_delta`` for ``patience`` validation runs
    in a row; the next training epoch then starts by unfreezing ``unfreeze``. With ``restore_best`` the weights
    of the phase's best validation run are put back first.

    Args:
        unfreeze: the modules unfrozen when the phase ends (names or patterns, like ``FreezeUnfreeze``'s).
        max_epochs: the most epochs the phase lasts, >= 1 (without ``monitor``: exactly this many).
        monitor: the logged validation metric that ends the phase early (``"val_loss"``), or ``None``.
        patience: validation runs without improvement that end the phase, >= 1.
        min_delta: the least change that counts as an improvement, >= 0.
        mode: ``"min"`` (a loss) or ``"max"`` (an accuracy).
        restore_best: load the weights of the phase's best validation run before unfreezing (needs ``monitor``).
        lr_factor: the unfrozen groups' rate relative to the head's; ``None`` takes ``FreezeUnfreeze``'s.

    Raises:
        ValueError: one line naming the bad field, ``phase.<field>`` (``phases[i].<field>`` through :func:`phases`).

    Example::

        >>> Phase("backbone.3", max_epochs=5, monitor="val_loss", patience=2).mode
        'min'
    """

    unfreeze: str | Sequence[str]
    max_epochs: int
    monitor: str | None = None
    patience: int = 3
    min_delta: float = 0.0
    mode: Mode = "min"
    restore_best: bool = False
    lr_factor: float | None = None

    def __post_init__(self) -> None:
        name = "phase"
        if self.monitor is not None and (not isinstance(self.monitor, str) or not self.monitor):
            raise ValueError(f"{name}.monitor: must be None or a metric name, got {self.monitor!r}")
        restore = check_bool(f"{name}.restore_best", self.restore_best)
        if restore and self.monitor is None:
            raise ValueError(f"{name}.restore_best: needs a monitor (the best of what?), got monitor=None")
        factor = self.lr_factor
        values = {
            "unfreeze": as_patterns(self.unfreeze, f"{name}.unfreeze"),
            "max_epochs": check_int(f"{name}.max_epochs", self.max_epochs, minimum=1),
            "patience": check_int(f"{name}.patience", self.patience, minimum=1),
            "min_delta": check_non_negative(f"{name}.min_delta", self.min_delta),
            "mode": check_choice(f"{name}.mode", self.mode, _MODES),
            "restore_best": restore,
            "lr_factor": None if factor is None else check_positive(f"{name}.lr_factor", factor),
        }
        for key, value in values.items():  # normalised: patterns as a tuple, numbers as float
            object.__setattr__(self, key, value)

    def config(self) -> dict[str, Any]:
        """The phase as plain data (the YAML form), for the checkpoint key.

        Example::

            >>> Phase("backbone", 4).config()["unfreeze"]
            ['backbone']
        """
        config = asdict(self)
        config["unfreeze"] = list(self.unfreeze)
        return config


_FIELDS = {f.name for f in fields(Phase)}


def phases(specs: Sequence[Phase | Mapping[str, Any]] | None) -> list[Phase]:
    """The phases of ``specs``: :class:`Phase` objects or plain mappings of their fields (the YAML form).

    Raises:
        ValueError: for an empty list, an entry that is neither, an unknown or missing field, or a bad value,
            naming ``phases[i]``.

    Example::

        >>> [p.unfreeze for p in phases([{"unfreeze": "backbone.3", "max_epochs": 5, "monitor": "val_loss"}])]
        [('backbone.3',)]
    """
    if specs is None:
        return []
    if isinstance(specs, (str, Mapping)) or not isinstance(specs, Sequence) or not specs:
        raise ValueError(f"phases: must be None or a non-empty list of phases, got {specs!r}")
    result = []
    for i, spec in enumerate(specs):
        name = f"phases[{i}]"
        if isinstance(spec, Phase):  # checked when it was built
            result.append(spec)
            continue
        if not isinstance(spec, Mapping):
            raise ValueError(f"{name}: must be a Phase or a mapping of its fields, got {spec!r}")
        unknown = sorted(set(spec) - _FIELDS)
        if unknown:
            raise ValueError(f"{name}: unknown fields {unknown}; a phase has {sorted(_FIELDS)}")
        missing = [f for f in ("unfreeze", "max_epochs") if f not in spec]
        if missing:
            raise ValueError(f"{name}: missing {missing} (a phase needs what it unfreezes and its max_epochs)")
        try:
            result.append(Phase(**spec))
        except ValueError as error:  # the same one line, naming phases[i] instead of phase
            raise type(error)(str(error).replace("phase.", f"{name}.", 1)) from None
    return result


def improved(value: float, best: float | None, mode: str, min_delta: float) -> bool:
    """Whether ``value`` beats ``best`` by more than ``min_delta`` (a first finite value always does; NaN never).

    Example::

        >>> improved(0.5, 0.6, "min", 0.0), improved(0.59, 0.6, "min", 0.05), improved(0.7, None, "max", 0.0)
        (True, False, True)
    """
    if math.isnan(value):
        return False
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta
