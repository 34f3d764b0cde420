"""PlateauDecay with the book's (Keras's) semantics."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lit_deep.schedules import PlateauDecay


def make_optimizer(lr: float = 0.02) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, momentum=0.9)


def keras_rates(metrics: list[float], lr: float, factor: float, patience: int, min_delta: float) -> list[float]:
    """Keras ReduceLROnPlateau.on_epoch_end (mode min, cooldown 0, min_lr 0): the rate after each epoch."""
    best, wait, out = float("inf"), 0, []
    for current in metrics:
        if current < best - min_delta:
            best, wait = current, 0
        else:
            wait += 1
            if wait >= patience:
                lr, wait = lr * factor, 0
        out.append(lr)
    return out


def test_defaults_are_the_books() -> None:
    sched = PlateauDecay(make_optimizer())
    assert (sched.monitor, sched.factor, sched.keras_patience, sched.interval) == ("val_loss", 0.5, 5, "epoch")


@settings(max_examples=100, deadline=None)
@given(
    metrics=st.lists(st.sampled_from([1.0, 0.9, 0.95, 0.89995, 0.8, 1.2]), min_size=1, max_size=40),
    patience=st.integers(0, 6),
    factor=st.sampled_from([0.5, 0.1]),
)
def test_matches_keras(metrics: list[float], patience: int, factor: float) -> None:
    opt = make_optimizer(0.02)
    sched = PlateauDecay(opt, factor=factor, patience=patience)
    got = []
    for value in metrics:
        sched.step(value)
        got.append(opt.param_groups[0]["lr"])
    assert got == pytest.approx(keras_rates(metrics, 0.02, factor, patience, 1e-4))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"factor": 1.0}, r"factor: must be a number in \(0, 1\), got 1.0"),
        ({"factor": 0.0}, "factor"),
        ({"patience": -1}, "patience: must be an integer >= 0, got -1"),
        ({"min_delta": -0.1}, "min_delta"),
        ({"cooldown": -2}, "cooldown"),
        ({"min_lr": -1e-3}, "min_lr"),
        ({"mode": "lowest"}, "mode: must be one of"),
        ({"monitor": ""}, "monitor: must name a logged metric"),
    ],
)
def test_bad_arguments_raise(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        PlateauDecay(make_optimizer(), **kwargs)
