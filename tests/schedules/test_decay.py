"""PowerDecay, ExponentialDecay, PiecewiseConstant: closed forms, lr_scale, resume, errors, bounds."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.optim.lr_scheduler import LRScheduler

from lit_deep.schedules import ExponentialDecay, PiecewiseConstant, PowerDecay


def make_optimizer(lr: float = 0.01, groups: int = 1) -> torch.optim.Optimizer:
    return torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(1))]} for _ in range(groups)], lr=lr)


def rates(scheduler: LRScheduler, steps: int) -> list[float]:
    out = []
    for _ in range(steps):
        out.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.optimizer.step()
        scheduler.step()
    return out


def test_power_decay_closed_form() -> None:
    lr0, s, c = 0.01, 1_000, 1.0
    got = rates(PowerDecay(make_optimizer(lr0), s=s, c=c), 3_001)
    for t in (0, 1, 500, 1_000, 2_000, 3_000):
        assert got[t] == pytest.approx(lr0 / (1 + t / s) ** c, rel=1e-12)
    # Keras SGD(lr=0.01, decay=1e-4), the book's power scheduling: lr0 / (1 + decay * iterations)
    keras = PowerDecay(make_optimizer(lr0), s=10_000, interval="step")
    assert keras.rate(12_345, lr0) == pytest.approx(0.01 / (1 + 1e-4 * 12_345), rel=1e-12)
    squared = rates(PowerDecay(make_optimizer(lr0), s=4, c=2.0), 9)
    assert squared[4] == pytest.approx(lr0 / 4)
    assert squared[8] == pytest.approx(lr0 / 9)


def test_exponential_decay_closed_form() -> None:
    got = rates(ExponentialDecay(make_optimizer(0.01), s=20), 41)
    for t in (0, 3, 10, 20, 40):
        assert got[t] == pytest.approx(0.01 * 0.1 ** (t / 20), rel=1e-12)
    assert got[20] == pytest.approx(0.001)
    assert got[40] == pytest.approx(0.0001)


def test_piecewise_constant_is_the_books_function() -> None:
    def book(epoch: int) -> float:  # piecewise_constant_fn from the chapter
        if epoch < 5:
            return 0.01
        if epoch < 15:
            return 0.005
        return 0.001

    got = rates(PiecewiseConstant(make_optimizer(0.5), boundaries=[5, 15], values=[0.01, 0.005, 0.001]), 30)
    assert got == [book(t) for t in range(30)]
    # any values, not only multiplicative steps
    assert rates(PiecewiseConstant(make_optimizer(), [2], [0.001, 0.1]), 4) == [0.001, 0.001, 0.1, 0.1]


@pytest.mark.parametrize(
    "make",
    [
        lambda opt: PowerDecay(opt, s=5),
        lambda opt: ExponentialDecay(opt, s=5),
        lambda opt: PiecewiseConstant(opt, [3, 6], [0.01, 0.004, 0.002]),
    ],
)
def test_lr_scale_and_resume(make: Callable[[torch.optim.Optimizer], LRScheduler]) -> None:
    opt = make_optimizer(0.01, groups=2)
    sched = make(opt)
    reference = [g["lr"] for g in make(make_optimizer(0.01, groups=2)).optimizer.param_groups]
    assert [g["lr"] for g in opt.param_groups] == reference
    for _ in range(4):
        opt.step()
        sched.step()
    unscaled = sched.rate(5, 0.01)
    opt.param_groups[1]["lr_scale"] = 0.5
    opt.step()
    sched.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([unscaled, 0.5 * unscaled], rel=1e-12)
    opt2 = make_optimizer(0.01, groups=2)
    sched2 = make(opt2)
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(sched.state_dict())
    for _ in range(5):
        for o, s in ((opt, sched), (opt2, sched2)):
            o.step()
            s.step()
        assert [g["lr"] for g in opt2.param_groups] == [g["lr"] for g in opt.param_groups]


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda opt: PowerDecay(opt, s=0), "s: must be a finite number > 0, got 0"),
        (lambda opt: PowerDecay(opt, s=-3), "s: must be"),
        (lambda opt: PowerDecay(opt, s=10, c=0), "c: must be"),
        (lambda opt: ExponentialDecay(opt, s=0.0), "s: must be a finite number > 0, got 0.0"),
        (lambda opt: ExponentialDecay(opt, s=20, interval="batch"), "interval: must be one of"),
        (lambda opt: PiecewiseConstant(opt, [15, 5], [0.1, 0.2, 0.3]), r"boundaries: must be strictly increasing"),
        (lambda opt: PiecewiseConstant(opt, [5, 5], [0.1, 0.2, 0.3]), r"boundaries: must be strictly increasing"),
        (
            lambda opt: PiecewiseConstant(opt, [0, 5], [0.1, 0.2, 0.3]),
            r"boundaries: must be a sequence of integers >= 1, got \[0, 5\]",
        ),
        (lambda opt: PiecewiseConstant(opt, [5, 15], [0.1, 0.2]), r"values: need len\(boundaries\) \+ 1 = 3"),
        (lambda opt: PiecewiseConstant(opt, [5], [0.1, -0.2]), r"values\[1\]: must be a finite number >= 0, got -0.2"),
    ],
)
def test_bad_arguments_raise(build: Callable[[torch.optim.Optimizer], LRScheduler], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build(make_optimizer())


@settings(max_examples=100, deadline=None)
@given(
    lr0=st.floats(1e-6, 1.0),
    s=st.floats(0.5, 1e5),
    c=st.floats(0.1, 3.0),
    t=st.integers(0, 10**6),
)
def test_decays_are_positive_bounded_and_non_increasing(lr0: float, s: float, c: float, t: int) -> None:
    for sched in (PowerDecay(make_optimizer(lr0), s=s, c=c), ExponentialDecay(make_optimizer(lr0), s=s)):
        now, later = sched.rate(t, lr0), sched.rate(t + 1, lr0)
        assert 0 <= later <= now <= lr0


@settings(max_examples=100, deadline=None)
@given(
    bounds=st.lists(st.integers(1, 1000), min_size=0, max_size=6, unique=True).map(sorted),
    data=st.data(),
)
def test_piecewise_values_only(bounds: list[int], data: st.DataObject) -> None:
    values = data.draw(st.lists(st.floats(0.0, 1.0), min_size=len(bounds) + 1, max_size=len(bounds) + 1))
    sched = PiecewiseConstant(make_optimizer(), bounds, values)
    t = data.draw(st.integers(0, 2000))
    assert sched.rate(t, 0.01) == values[sum(b <= t for b in bounds)]
