"""Bad values generated from the public signatures: every checked argument names itself in the error.

For the public constructors and functions below, ``inspect.signature`` and the type hints say which arguments
are integers, real numbers and paths. Each ``int`` argument is given ``True``, ``-1`` and ``2.5``; each
``float`` argument ``nan`` and ``inf``; each path argument a number. The call must raise ``ValueError`` or
``TypeError`` whose message starts with the argument's name. ``EXEMPT`` lists, with the reason, the values an
argument legitimately takes; ``PENDING`` the checks still missing in modules another change is editing.
"""

from __future__ import annotations

import inspect
import os
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import lit_deep.nn as lnn
from lit_deep.data import FashionMNISTDataModule, load_fashion_mnist
from lit_deep.models import CNN, MLP, Autoencoder
from lit_deep.uncertainty import conformal_calibrate, mc_predict

NAN, INF = float("nan"), float("inf")


def _mc_net() -> torch.nn.Module:
    return MLP(hidden=(4,), dropout=0.5, dropout_kind="mc", seed=0)


#: name -> (callable, the required arguments of a valid call). Built lazily: some need tensors or a folder.
TARGETS: dict[str, tuple[Callable[..., Any], Callable[[Path], dict[str, Any]]]] = {
    "MLP": (MLP, lambda tmp: {"hidden": (4,)}),
    "CNN": (CNN, lambda tmp: {"channels": (2,), "dense": 4, "convs_per_block": 1}),
    "Autoencoder": (Autoencoder, lambda tmp: {"hidden": (4,)}),
    "FashionMNISTDataModule": (FashionMNISTDataModule, lambda tmp: {"data_dir": str(tmp)}),
    "load_fashion_mnist": (load_fashion_mnist, lambda tmp: {"data_dir": str(tmp)}),
    "mc_predict": (mc_predict, lambda tmp: {"model": _mc_net(), "inputs": torch.rand(2, 1, 28, 28), "samples": 2}),
    "MCDropout": (lnn.MCDropout, lambda tmp: {}),
    "MCAlphaDropout": (lnn.MCAlphaDropout, lambda tmp: {}),
    "max_norm_": (lnn.max_norm_, lambda tmp: {"weight": torch.ones(2, 2)}),
    "measure_latency": (lnn.measure_latency, lambda tmp: {"model": torch.nn.Linear(2, 2), "x": torch.ones(1, 2)}),
    "variance_scaling_": (lnn.variance_scaling_, lambda tmp: {"tensor": torch.empty(3, 2)}),
    "conformal_calibrate": (
        conformal_calibrate,
        lambda tmp: {"probs": torch.full((4, 2), 0.5), "targets": torch.tensor([0, 1, 0, 1]), "method": "raps"},
    ),
}

#: (target, argument, repr(value)) -> why the value is allowed: skipped here, tested to work below.
EXEMPT: dict[tuple[str, str, str], str] = {
    # max_elements is an int, so inf is not generated; it is listed because it is the one allowed infinity:
    # it bounds the memory of one chunk and inf means "no bound" (test_max_elements_inf_means_no_bound).
    ("mc_predict", "max_elements", "inf"): "inf: no memory bound",
}

#: (target, argument) whose checks live in files another change is editing (lit_deep/data/datamodule.py):
#: the strict xfail flips when FashionMNISTDataModule.__init__ calls check_path("data_dir", data_dir, optional=True).
PENDING: set[tuple[str, str]] = set()


def _kind(hint: Any, name: str) -> str | None:
    """``"int"``, ``"float"``, ``"path"`` or ``None`` for a parameter's type hint."""
    args = set(typing.get_args(hint)) - {type(None)} or {hint}
    if name in ("data_dir", "checkpoint") or any(a is os.PathLike or typing.get_origin(a) is os.PathLike for a in args):
        return "path"
    if args == {int}:
        return "int"
    if args == {float} or args == {int, float}:
        return "float"
    if float in args and all(a in (float, int) or typing.get_origin(a) is not None for a in args):
        return "float"  # float | Sequence[float]: the scalar form
    return None


BAD = {"int": [True, -1, 2.5], "float": [NAN, INF], "path": [123]}


def _cases() -> list[Any]:
    cases = []
    for target, (func, _) in TARGETS.items():
        hints = typing.get_type_hints(func.__init__ if inspect.isclass(func) else func)
        for name in inspect.signature(func).parameters:
            kind = _kind(hints.get(name), name)
            for value in BAD.get(kind, []) if kind else []:
                if (target, name, repr(value)) in EXEMPT:
                    continue
                marks = []
                if (target, name) in PENDING:
                    marks.append(pytest.mark.xfail(strict=True, reason="check pending in a file edited elsewhere"))
                cases.append(pytest.param(target, name, value, id=f"{target}-{name}-{value!r}", marks=marks))
    return cases


CASES = _cases()


def test_the_signatures_give_cases_for_every_target() -> None:
    assert {c.values[0] for c in CASES} == set(TARGETS)
    assert len(CASES) >= 60


def test_max_elements_inf_means_no_bound() -> None:
    net, x = _mc_net(), torch.rand(3, 1, 28, 28)
    bounded = mc_predict(net, x, samples=4, seed=0, max_elements=10_000)
    unbounded = mc_predict(net, x, samples=4, seed=0, max_elements=INF)  # same masks; sums in another order
    assert torch.allclose(unbounded.probs, bounded.probs, atol=1e-6)


@pytest.mark.parametrize(("target", "name", "value"), CASES)
def test_a_bad_value_names_its_argument(target: str, name: str, value: Any, tmp_path: Path) -> None:
    func, required = TARGETS[target]
    kwargs = {**required(tmp_path), name: value}
    with pytest.raises((TypeError, ValueError)) as info:
        func(**kwargs)
    assert str(info.value).startswith(f"{name}: "), str(info.value)
