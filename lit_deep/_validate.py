"""The argument checks every layer of lit_deep shares: one ValueError format, naming the argument and the value.

Each check returns the value (converted where that is its job), so a constructor reads
``self.lr = check_positive("lr", lr)``. Messages keep the wording the library has always used
(``"lr: must be positive, got 0"``), so tests and users see the same text as before the checks were shared.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any, TypeVar

__all__ = ["check_choice", "check_int", "check_non_negative", "check_positive"]

_T = TypeVar("_T")


def check_int(name: str, value: Any, minimum: int | None = None, optional: bool = False) -> Any:
    """``value`` when it is an ``int`` (not a ``bool``) ``>= minimum`` (or ``None`` with ``optional``).

    Raises:
        ValueError: ``"<name>: must be an integer >= <minimum>, got <value>"``.

    Example::

        >>> check_int("every_n_steps", 5, minimum=1)
        5
        >>> try:
        ...     check_int("every_n_steps", 0, minimum=1)
        ... except ValueError as err:
        ...     print(err)
        every_n_steps: must be an integer >= 1, got 0
    """
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
        bound = f" >= {minimum}" if minimum is not None else ""
        raise ValueError(f"{name}: must be an integer{bound}, got {value!r}")
    return value


def check_positive(name: str, value: Any) -> Any:
    """``value`` when it is a number > 0 (the learning rate, a factor).

    Raises:
        ValueError: ``"<name>: must be positive, got <value>"``.

    Example::

        >>> try:
        ...     check_positive("lr", 0)
        ... except ValueError as err:
        ...     print(err)
        lr: must be positive, got 0
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or math.isnan(value):
        raise ValueError(f"{name}: must be positive, got {value}")
    return value


def check_non_negative(name: str, value: Any) -> Any:
    """``value`` when it is a number >= 0 (a penalty, a weight decay).

    Raises:
        ValueError: ``"<name>: must be non-negative, got <value>"``.

    Example::

        >>> check_non_negative("l2", 0.0), check_non_negative("weight_decay", 1e-4)
        (0.0, 0.0001)
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name}: must be non-negative, got {value}")
    return value


def check_choice(name: str, value: _T, choices: Collection[Any]) -> _T:
    """``value`` when it is one of ``choices`` (the values of a ``Literal`` type).

    The type hints of the choice arguments are ``Literal`` types, so LightningCLI lists and checks the choices;
    this is the same check for the Python API.

    Raises:
        ValueError: ``"<name>: expected one of <choices>, got <value>"``.

    Example::

        >>> try:
        ...     check_choice("loss", "l1", ("mse", "bce"))
        ... except ValueError as err:
        ...     print(err)
        loss: expected one of ('mse', 'bce'), got 'l1'
    """
    if value not in choices:
        raise ValueError(f"{name}: expected one of {tuple(choices)}, got {value!r}")
    return value
