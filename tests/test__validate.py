"""lit_deep._validate: each check's accepted values, its conversion, its exception class and its one wording."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lit_deep._validate import (
    ArgumentTypeError,
    check_bool,
    check_choice,
    check_int,
    check_non_negative,
    check_path,
    check_positive,
    check_probability,
    check_seed,
    check_shape,
)

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda: check_int("n", 3, minimum=1), 3),
        (lambda: check_int("n", np.int64(3), minimum=1), 3),
        (lambda: check_int("n", None, optional=True), None),
        (lambda: check_int("n", 9, 1, 9), 9),
        (lambda: check_seed("seed", 2**70), 2**70),
        (lambda: check_seed("seed", None), None),
        (lambda: check_positive("lr", 1), 1.0),
        (lambda: check_positive("lr", np.float32(0.5)), 0.5),
        (lambda: check_positive("m", INF, finite=False), INF),
        (lambda: check_non_negative("l2", 0), 0.0),
        (lambda: check_non_negative("m", INF, finite=False), INF),
        (lambda: check_probability("p", 0), 0.0),
        (lambda: check_probability("p", 1, upper_inclusive=True), 1.0),
        (lambda: check_bool("b", True), True),
        (lambda: check_choice("c", None, (None, "a")), None),
        (lambda: check_path("d", Path("x")), Path("x")),
        (lambda: check_path("d", None, optional=True), None),
        (lambda: check_shape("s", [1, 28, 28], length=3), (1, 28, 28)),
        (lambda: check_shape("s", ()), ()),
        (lambda: check_shape("s", (0, 2), minimum=0), (0, 2)),
    ],
)
def test_accepted_values_come_back_converted(call: Any, expected: Any) -> None:
    result = call()
    assert result == expected and type(result) is type(expected)


WRONG_TYPE = [
    (lambda: check_int("batch_size", 2.5, minimum=1), "batch_size: must be an integer >= 1, got 2.5"),
    (lambda: check_int("batch_size", "8", minimum=1), "batch_size: must be an integer >= 1, got '8'"),
    (lambda: check_int("batch_size", True, minimum=1), "batch_size: must be an integer >= 1, got True"),
    (lambda: check_int("n", None), "n: must be an integer, got None"),
    (lambda: check_int("n", 1.0, 0, optional=True), "n: must be None or an integer >= 0, got 1.0"),
    (lambda: check_seed("seed", False), "seed: must be None or an integer >= 0, got False"),
    (lambda: check_positive("lr", "1"), "lr: must be a finite number > 0, got '1'"),
    (lambda: check_positive("lr", True), "lr: must be a finite number > 0, got True"),
    (lambda: check_non_negative("l2", None), "l2: must be a finite number >= 0, got None"),
    (lambda: check_probability("p", False), "p: must be a number in [0, 1), got False"),
    (lambda: check_bool("flag", 1), "flag: must be True or False, got 1"),
    (lambda: check_path("data_dir", 123), "data_dir: must be a path (str or os.PathLike), got 123"),
    (lambda: check_path("d", 1, optional=True), "d: must be None or a path (str or os.PathLike), got 1"),
    (lambda: check_shape("hidden", (4.5,)), "hidden: must be a sequence of integers >= 1, got (4.5,)"),
    (lambda: check_shape("hidden", (True,)), "hidden: must be a sequence of integers >= 1, got (True,)"),
    (lambda: check_shape("hidden", "300"), "hidden: must be a sequence of integers >= 1, got '300'"),
    (lambda: check_shape("hidden", 300), "hidden: must be a sequence of integers >= 1, got 300"),
]

WRONG_VALUE = [
    (lambda: check_int("n", 0, minimum=1), "n: must be an integer >= 1, got 0"),
    (lambda: check_int("n", 10, maximum=9), "n: must be an integer <= 9, got 10"),
    (lambda: check_int("n", 0, 1, 9), "n: must be an integer in [1, 9], got 0"),
    (lambda: check_seed("seed", -1), "seed: must be None or an integer >= 0, got -1"),
    (lambda: check_positive("lr", 0), "lr: must be a finite number > 0, got 0"),
    (lambda: check_positive("lr", NAN), "lr: must be a finite number > 0, got nan"),
    (lambda: check_positive("lr", INF), "lr: must be a finite number > 0, got inf"),
    (lambda: check_positive("m", NAN, finite=False), "m: must be a number > 0, got nan"),
    (lambda: check_positive("m", -INF, finite=False), "m: must be a number > 0, got -inf"),
    (lambda: check_non_negative("l2", -0.1), "l2: must be a finite number >= 0, got -0.1"),
    (lambda: check_non_negative("l2", INF), "l2: must be a finite number >= 0, got inf"),
    (lambda: check_non_negative("l2", NAN, finite=False), "l2: must be a number >= 0, got nan"),
    (lambda: check_probability("dropout", 1.0), "dropout: must be a number in [0, 1), got 1.0"),
    (lambda: check_probability("dropout", NAN), "dropout: must be a number in [0, 1), got nan"),
    (lambda: check_probability("tpr", 0, True, False), "tpr: must be a number in (0, 1], got 0"),
    (lambda: check_probability("flip_p", 1.5, True), "flip_p: must be a number in [0, 1], got 1.5"),
    (lambda: check_choice("loss", "l1", ("mse", "bce")), "loss: must be one of ('mse', 'bce'), got 'l1'"),
    (lambda: check_choice("loss", ["mse"], {"mse": 1}), "loss: must be one of ('mse',), got ['mse']"),
    (lambda: check_shape("s", (1, -1, 28), length=3), "s: must be a sequence of 3 integers >= 1, got (1, -1, 28)"),
    (lambda: check_shape("s", (28, 28), length=3), "s: must be a sequence of 3 integers >= 1, got (28, 28)"),
    (lambda: check_shape("s", (), min_length=1), "s: must be a non-empty sequence of integers >= 1, got ()"),
    (lambda: check_shape("s", (1,), min_length=2), "s: must be a sequence of at least 2 integers >= 1, got (1,)"),
]


@pytest.mark.parametrize(("call", "message"), WRONG_TYPE)
def test_a_wrong_type_is_a_type_error(call: Any, message: str) -> None:
    with pytest.raises(ArgumentTypeError) as info:
        call()
    assert str(info.value) == message
    assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError)  # ValueError: compatibility


@pytest.mark.parametrize(("call", "message"), WRONG_VALUE)
def test_a_wrong_value_is_a_value_error_only(call: Any, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        call()
    assert str(info.value) == message
    assert not isinstance(info.value, TypeError)


def test_every_message_has_the_one_shape() -> None:
    for _call, message in WRONG_TYPE + WRONG_VALUE:
        name, _, rest = message.partition(": must be ")
        assert name and rest and ", got " in rest, message


def test_math_inf_is_the_only_infinity() -> None:
    assert check_positive("m", math.inf, finite=False) == math.inf
