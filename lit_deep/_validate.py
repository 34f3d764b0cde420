"""The argument checks every layer of lit_deep shares: one function per kind of check, one wording.

Each check returns the value (converted where that is its job: ``check_positive`` returns a ``float``,
``check_shape`` a ``tuple``), so a constructor reads ``self.lr = check_positive("lr", lr)``.

The rules, the same for every check:

* The message is ``"<name>: must be <what>, got <value!r>"``, where ``<what>`` states the whole requirement
  (``"an integer >= 1"``, ``"a finite number > 0"``, ``"None or an integer >= 0"``), whatever was wrong.
* A value of the wrong **type** (``2.5`` or ``True`` for an integer, ``"8"`` for a number, ``123`` for a path)
  raises :class:`ArgumentTypeError`, a ``TypeError``. It also derives from ``ValueError``, so callers (and the
  CLI's one-line error report) that caught the ``ValueError`` these checks raised before keep working.
* A value of the right type but outside the allowed range or set raises ``ValueError``.
* ``bool`` is never a number here (``True`` is refused where an integer or a float is expected), ``nan`` is
  never accepted, and ``inf`` is accepted only where a check says so (``finite=False``: "no limit").

The wordings (``name`` stands for the argument):

=============================================  ============================================
check                                          ``<what>``
=============================================  ============================================
``check_int(n, v, minimum=1)``                 ``an integer >= 1``
``check_int(n, v, 1, 9)``                      ``an integer in [1, 9]``
``check_int(n, v, 0, optional=True)``          ``None or an integer >= 0``
``check_seed(n, v)``                           ``None or an integer >= 0``
``check_positive(n, v)``                       ``a finite number > 0`` (``finite=False``: ``a number > 0``)
``check_non_negative(n, v)``                   ``a finite number >= 0`` (``finite=False``: ``a number >= 0``)
``check_probability(n, v)``                    ``a number in [0, 1)`` (the interval as asked)
``check_bool(n, v)``                           ``True or False``
``check_choice(n, v, ("a", "b"))``             ``one of ('a', 'b')``
``check_path(n, v)``                           ``a path (str or os.PathLike)``
``check_shape(n, v, length=3)``                ``a sequence of 3 integers >= 1``
``check_targets(n, y, rows, classes)``         ``integer class indices ...`` (a tensor; below)
=============================================  ============================================

``check_targets`` is the one check of class labels (metrics, calibrators, training steps): an integer tensor
``[rows]`` in ``[0, classes)``; float labels are refused, never truncated. It imports torch when called.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Collection, Sequence
from typing import Any, TypeVar

__all__ = [
    "ArgumentTypeError",
    "check_bool",
    "check_choice",
    "check_device",
    "check_int",
    "check_non_negative",
    "check_path",
    "check_positive",
    "check_probability",
    "check_seed",
    "check_shape",
    "check_targets",
]

_T = TypeVar("_T")


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type: a ``TypeError`` (and a ``ValueError``, which the checks raised before).

    Example::

        >>> issubclass(ArgumentTypeError, TypeError), issubclass(ArgumentTypeError, ValueError)
        (True, True)
    """


def _message(name: str, what: str, value: Any) -> str:
    return f"{name}: must be {what}, got {value!r}"


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _int_what(minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f"an integer in [{minimum}, {maximum}]"
    if minimum is not None:
        return f"an integer >= {minimum}"
    if maximum is not None:
        return f"an integer <= {maximum}"
    return "an integer"


def check_int(
    name: str, value: Any, minimum: int | None = None, maximum: int | None = None, optional: bool = False
) -> Any:
    """``value`` as an ``int`` when it is an integer (not a ``bool``) in ``[minimum, maximum]``.

    Args:
        name: the argument, first in the message.
        value: what the caller gave.
        minimum: the smallest value allowed (``None``: no bound).
        maximum: the largest value allowed (``None``: no bound).
        optional: also accept ``None`` (returned as is).

    Returns:
        ``int(value)`` (a NumPy integer becomes an ``int``), or ``None``.

    Raises:
        ArgumentTypeError: for a float, a string, a bool: ``"<name>: must be an integer >= 1, got 2.5"``.
        ValueError: for an integer out of bounds: ``"<name>: must be an integer >= 1, got 0"``.

    Example::

        >>> check_int("every_n_steps", 5, minimum=1)
        5
        >>> try:
        ...     check_int("every_n_steps", 0, minimum=1)
        ... except ValueError as err:
        ...     print(err)
        every_n_steps: must be an integer >= 1, got 0
        >>> try:
        ...     check_int("batch_size", True, minimum=1)
        ... except TypeError as err:
        ...     print(err)
        batch_size: must be an integer >= 1, got True
    """
    if optional and value is None:
        return None
    what = _int_what(minimum, maximum)
    if optional:
        what = f"None or {what}"
    if not _is_int(value):
        raise ArgumentTypeError(_message(name, what, value))
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(_message(name, what, value))
    return int(value)


def check_seed(name: str, value: Any) -> int | None:
    """``value`` when it is ``None`` (draw a seed) or a seed: an integer >= 0 (not a ``bool``).

    Raises:
        ArgumentTypeError: for a float, a string, a bool.
        ValueError: for a negative integer.

    Example::

        >>> check_seed("seed", 0), check_seed("seed", None)
        (0, None)
        >>> try:
        ...     check_seed("seed", -1)
        ... except ValueError as err:
        ...     print(err)
        seed: must be None or an integer >= 0, got -1
    """
    result: int | None = check_int(name, value, minimum=0, optional=True)
    return result


def _real(name: str, value: Any, what: str) -> float:
    """``float(value)`` for a real number (not a bool, not nan), else the error naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(_message(name, what, value))
    number = float(value)
    if math.isnan(number):
        raise ValueError(_message(name, what, value))
    return number


def _signed(name: str, value: Any, finite: bool, strict: bool) -> float:
    """The body of :func:`check_positive` (``strict``: > 0) and :func:`check_non_negative` (>= 0)."""
    what = f"{'a finite number' if finite else 'a number'} {'>' if strict else '>='} 0"
    number = _real(name, value, what)
    if (number <= 0 if strict else number < 0) or (finite and math.isinf(number)):
        raise ValueError(_message(name, what, value))
    return number


def check_positive(name: str, value: Any, finite: bool = True) -> float:
    """``float(value)`` when it is a real number > 0 (a learning rate, a factor, a norm bound).

    Args:
        name: the argument, first in the message.
        value: what the caller gave.
        finite: refuse ``inf`` (the default); ``False`` where ``inf`` means "no limit".

    Raises:
        ArgumentTypeError: for a string, a bool, ``None``: ``"<name>: must be a finite number > 0, got '1'"``.
        ValueError: for ``nan``, a number <= 0, or ``inf`` when ``finite``.

    Example::

        >>> check_positive("lr", 1), check_positive("max_elements", float("inf"), finite=False)
        (1.0, inf)
        >>> try:
        ...     check_positive("lr", 0)
        ... except ValueError as err:
        ...     print(err)
        lr: must be a finite number > 0, got 0
    """
    return _signed(name, value, finite, strict=True)


def check_non_negative(name: str, value: Any, finite: bool = True) -> float:
    """``float(value)`` when it is a real number >= 0 (a penalty, a weight decay, a shift).

    Args:
        name: the argument, first in the message.
        value: what the caller gave.
        finite: refuse ``inf`` (the default); ``False`` where ``inf`` means "no limit".

    Raises:
        ArgumentTypeError: for a string, a bool, ``None``.
        ValueError: for ``nan``, a negative number, or ``inf`` when ``finite``.

    Example::

        >>> check_non_negative("l2", 0), check_non_negative("weight_decay", 1e-4)
        (0.0, 0.0001)
        >>> try:
        ...     check_non_negative("l2", float("nan"))
        ... except ValueError as err:
        ...     print(err)
        l2: must be a finite number >= 0, got nan
    """
    return _signed(name, value, finite, strict=False)


def check_probability(name: str, value: Any, upper_inclusive: bool = False, lower_inclusive: bool = True) -> float:
    """``float(value)`` when it is a real number in ``[0, 1)`` (a dropout rate; the ends as asked).

    Args:
        name: the argument, first in the message.
        value: what the caller gave.
        upper_inclusive: allow 1 (a flip probability) rather than refuse it (a dropout rate).
        lower_inclusive: allow 0 (the default) rather than refuse it (a fraction that must be positive).

    Raises:
        ArgumentTypeError: for a string, a bool, ``None``.
        ValueError: for ``nan`` or a number outside the interval.

    Example::

        >>> check_probability("dropout", 0.5), check_probability("flip_p", 1, upper_inclusive=True)
        (0.5, 1.0)
        >>> try:
        ...     check_probability("dropout", 1.0)
        ... except ValueError as err:
        ...     print(err)
        dropout: must be a number in [0, 1), got 1.0
    """
    what = f"a number in {'[' if lower_inclusive else '('}0, 1{']' if upper_inclusive else ')'}"
    number = _real(name, value, what)
    above = number >= 0 if lower_inclusive else number > 0
    below = number <= 1 if upper_inclusive else number < 1
    if not (above and below):
        raise ValueError(_message(name, what, value))
    return number


def check_bool(name: str, value: Any) -> bool:
    """``value`` when it is a ``bool`` (not ``1``, not ``"yes"``).

    Raises:
        ArgumentTypeError: for anything else.

    Example::

        >>> check_bool("standardize", False)
        False
        >>> try:
        ...     check_bool("standardize", "yes")
        ... except TypeError as err:
        ...     print(err)
        standardize: must be True or False, got 'yes'
    """
    if not isinstance(value, bool):
        raise ArgumentTypeError(_message(name, "True or False", value))
    return value


def check_device(name: str, value: Any) -> Any:
    """``value`` as a :class:`torch.device` when it names one that this machine has (``"cpu"``, ``"cuda:0"``, ...).

    Raises:
        ValueError: for a string that names no device type, or a device this machine does not have.
        ArgumentTypeError: for anything but a string or a ``torch.device``.

    Example::

        >>> check_device("device", "cpu")
        device(type='cpu')
        >>> try:
        ...     check_device("device", "gpu0")
        ... except ValueError as err:
        ...     print(err)
        device: must be a torch device such as 'cpu' or 'cuda:0', got 'gpu0'
    """
    import torch  # here: the other checks do not need torch

    if not isinstance(value, (str, torch.device)):
        raise ArgumentTypeError(_message(name, "a torch device or its name", value))
    try:
        device = torch.device(value)
    except RuntimeError:
        raise ValueError(_message(name, "a torch device such as 'cpu' or 'cuda:0'", value)) from None
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise ValueError(f"{name}: {str(device)!r} is not available here ({torch.cuda.device_count()} CUDA devices)")
    return device


def check_choice(name: str, value: _T, choices: Collection[Any]) -> _T:
    """``value`` when it is one of ``choices`` (the values of a ``Literal`` type).

    The type hints of the choice arguments are ``Literal`` types, so LightningCLI lists and checks the choices;
    this is the same check for the Python API. A value of another type is a wrong value here (``ValueError``):
    the choices may mix types (``None`` and strings).

    Raises:
        ValueError: ``"<name>: must be one of <choices>, got <value!r>"``.

    Example::

        >>> try:
        ...     check_choice("loss", "l1", ("mse", "bce"))
        ... except ValueError as err:
        ...     print(err)
        loss: must be one of ('mse', 'bce'), got 'l1'
    """
    try:
        known = value in choices
    except TypeError:  # an unhashable value against a set or a mapping
        known = False
    if not known:
        raise ValueError(_message(name, f"one of {tuple(choices)}", value))
    return value


def check_path(name: str, value: Any, optional: bool = False) -> Any:
    """``value`` when it is a path: a ``str`` or an ``os.PathLike`` (or ``None`` with ``optional``).

    Whether the path exists is the caller's question; this check catches a number or a list given for a path
    when the object is built, not when it first reads the path.

    Raises:
        ArgumentTypeError: ``"<name>: must be a path (str or os.PathLike), got 123"``.

    Example::

        >>> check_path("data_dir", "data")
        'data'
        >>> try:
        ...     check_path("data_dir", 123)
        ... except TypeError as err:
        ...     print(err)
        data_dir: must be a path (str or os.PathLike), got 123
    """
    if optional and value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        what = "a path (str or os.PathLike)"
        raise ArgumentTypeError(_message(name, f"None or {what}" if optional else what, value))
    return value


def check_shape(
    name: str, value: Any, length: int | None = None, min_length: int = 0, minimum: int = 1
) -> tuple[int, ...]:
    """``tuple(value)`` when it is a sequence of integers >= ``minimum`` (an input shape, layer widths).

    Args:
        name: the argument, first in the message.
        value: a list or tuple (not a string); its items ints, not bools or floats.
        length: the exact number of items (``None``: any number >= ``min_length``).
        min_length: the fewest items allowed.
        minimum: the smallest item allowed.

    Raises:
        ArgumentTypeError: for a non-sequence or an item that is not an integer (``(4.5,)``, ``(True,)``).
        ValueError: for the wrong number of items or an item below ``minimum``.

    Example::

        >>> check_shape("input_shape", [1, 28, 28], length=3)
        (1, 28, 28)
        >>> try:
        ...     check_shape("input_shape", (1, -1, 28), length=3)
        ... except ValueError as err:
        ...     print(err)
        input_shape: must be a sequence of 3 integers >= 1, got (1, -1, 28)
    """
    if length is not None:
        what = f"a sequence of {length} integers >= {minimum}"
    elif min_length == 1:
        what = f"a non-empty sequence of integers >= {minimum}"
    elif min_length > 1:
        what = f"a sequence of at least {min_length} integers >= {minimum}"
    else:
        what = f"a sequence of integers >= {minimum}"
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not all(_is_int(v) for v in value):
        raise ArgumentTypeError(_message(name, what, value))
    size_ok = len(value) == length if length is not None else len(value) >= min_length
    if not size_ok or any(v < minimum for v in value):
        raise ValueError(_message(name, what, value))
    return tuple(int(v) for v in value)


def check_targets(name: str, value: Any, rows: int | None, classes: int) -> Any:
    """``value`` as an int64 tensor of class indices ``[rows]`` in ``[0, classes)`` (the labels of ``classes``).

    Float labels are refused, not truncated (``0.7`` would silently become class 0); a label ``>= classes``
    is named here rather than failing inside a loss (``IndexError: Target 3 is out of bounds``, or a
    device-side assert on CUDA).

    Args:
        name: the argument, first in the message.
        value: a tensor of an integer dtype (not bool).
        rows: the number of labels expected (``None``: any 1-D tensor).
        classes: the number of classes (``2`` for a model with one output).

    Raises:
        ArgumentTypeError: for something that is not a tensor, or a floating-point, complex or bool dtype.
        ValueError: for the wrong shape or an index outside ``[0, classes)``.

    Example::

        >>> import torch
        >>> check_targets("targets", torch.tensor([0, 2], dtype=torch.int32), 2, 3).dtype
        torch.int64
        >>> try:
        ...     check_targets("targets", torch.tensor([0, 3]), 2, 3)
        ... except ValueError as err:
        ...     print(err)
        targets: class indices must be in [0, 3) (3 classes), got values in [0, 3]
    """
    import torch

    if not isinstance(value, torch.Tensor):
        raise ArgumentTypeError(f"{name}: must be a tensor of integer class indices, got {type(value).__name__}")
    if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
        raise ArgumentTypeError(
            f"{name}: must be integer class indices (an integer dtype, not truncated floats), got dtype {value.dtype}"
        )
    if value.dim() != 1 or (rows is not None and value.shape[0] != rows):
        expected = f"({rows},)" if rows is not None else "[N]"
        raise ValueError(f"{name}: expected shape {expected} to match the predictions, got {tuple(value.shape)}")
    if value.numel():
        low, high = int(value.min()), int(value.max())
        if low < 0 or high >= classes:
            raise ValueError(
                f"{name}: class indices must be in [0, {classes}) ({classes} classes), got values in [{low}, {high}]"
            )
    return value.long()
