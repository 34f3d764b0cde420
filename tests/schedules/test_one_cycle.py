"""OneCycle: the book's Keras scheduler exactly, OneCycleLR step by step, fastai's formula, momentum, errors."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lit_deep.schedules import OneCycle
from lit_deep.schedules.one_cycle import ONE_CYCLE_PRESETS


def make_optimizer(kind: str = "sgd", lr: float = 0.001, groups: int = 1) -> torch.optim.Optimizer:
    params = [{"params": [torch.nn.Parameter(torch.zeros(1))]} for _ in range(groups)]
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr)
    if kind == "adagrad":
        return torch.optim.Adagrad(params, lr=lr)
    return torch.optim.SGD(params, lr=lr, momentum=0.9)


def run(scheduler: torch.optim.lr_scheduler.LRScheduler, steps: int) -> tuple[list[float], list[float]]:
    """The rate and momentum (or beta1) of group 0 at t = 0 .. steps - 1."""
    opt = scheduler.optimizer
    rates, momenta = [], []
    for _ in range(steps):
        group = opt.param_groups[0]
        rates.append(group["lr"])
        momenta.append(group["betas"][0] if "betas" in group else group["momentum"])
        opt.step()
        scheduler.step()
    return rates, momenta


class KerasOneCycle:
    """The book's OneCycleScheduler (handson-ml2/3, chapter 11), its arithmetic copied line by line."""

    def __init__(self, iterations: int, max_rate: float) -> None:
        self.iterations = iterations
        self.max_rate = max_rate
        self.start_rate = max_rate / 10
        self.last_iterations = iterations // 10 + 1
        self.half_iteration = (iterations - self.last_iterations) // 2
        self.last_rate = self.start_rate / 1000

    def _interpolate(self, iteration: int, iter1: int, iter2: int, rate1: float, rate2: float) -> float:
        return (rate2 - rate1) * (iteration - iter1) / (iter2 - iter1) + rate1

    def rate(self, iteration: int) -> float:
        if iteration < self.half_iteration:
            return self._interpolate(iteration, 0, self.half_iteration, self.start_rate, self.max_rate)
        if iteration < 2 * self.half_iteration:
            return self._interpolate(
                iteration, self.half_iteration, 2 * self.half_iteration, self.max_rate, self.start_rate
            )
        return self._interpolate(iteration, 2 * self.half_iteration, self.iterations, self.start_rate, self.last_rate)


def fastai_rate(t: int, total: int, lr_max: float, pct: float = 0.25) -> tuple[float, float]:
    """fastai's fit_one_cycle: combined_cos(pct, lr_max/25, lr_max, lr_max/1e5) and moms (0.95, 0.85, 0.95)."""
    pos = t / total

    def cos(start: float, end: float, p: float) -> float:  # fastai SchedCos
        return start + (1 + math.cos(math.pi * (1 - p))) * (end - start) / 2

    if pos < pct:
        return cos(lr_max / 25, lr_max, pos / pct), cos(0.95, 0.85, pos / pct)
    p = (pos - pct) / (1 - pct)
    return cos(lr_max, lr_max / 1e5, p), cos(0.85, 0.95, p)


@pytest.mark.parametrize("total", [2, 3, 10, 11, 100, 10_750])
def test_book_preset_equals_keras_exactly(total: int) -> None:
    keras = KerasOneCycle(total, 0.05)
    rates, momenta = run(OneCycle(make_optimizer(), max_lr=0.05, total_steps=total), total)
    assert rates == [keras.rate(t) for t in range(total)]
    assert set(momenta) == {0.9}  # no momentum cycling in the book


def test_book_closed_form_points() -> None:
    total, max_lr = 1000, 0.05
    last = total // 10 + 1
    half = (total - last) // 2
    start, final = max_lr / 10, max_lr / 10 / 1000
    rates, _ = run(OneCycle(make_optimizer(), max_lr=max_lr, total_steps=total), total + 3)
    assert (half, last) == (449, 101)
    expected = {
        0: start,
        half // 2: start + (max_lr - start) * (half // 2) / half,
        half: max_lr,
        half + 100: max_lr + (start - max_lr) * 100 / half,
        2 * half: start,
        2 * half + 50: start + (final - start) * 50 / (total - 2 * half),
        total - 1: start + (final - start) * (total - 1 - 2 * half) / (total - 2 * half),
        total: final,
        total + 2: final,
    }
    for t, value in expected.items():
        assert rates[t] == pytest.approx(value, rel=1e-12), t


@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize("total", [2, 7, 10, 100, 431])
def test_torch_preset_equals_onecyclelr_step_by_step(kind: str, total: int) -> None:
    ours = OneCycle(make_optimizer(kind, groups=2), max_lr=0.1, total_steps=total, preset="torch")
    reference = torch.optim.lr_scheduler.OneCycleLR(make_optimizer(kind, groups=2), max_lr=0.1, total_steps=total)
    for t in range(total):
        for mine, theirs in zip(ours.optimizer.param_groups, reference.optimizer.param_groups, strict=True):
            assert mine["lr"] == pytest.approx(theirs["lr"], rel=1e-12, abs=1e-18), t
            key = "betas" if kind == "adam" else "momentum"
            assert mine[key] == pytest.approx(theirs[key], rel=1e-12), t
        ours.optimizer.step()
        ours.step()
        reference.optimizer.step()
        reference.step()
    # OneCycleLR raises "Tried to step" once past total_steps; ours holds the final rate.
    ours.step()
    ours.step()
    assert ours.get_last_lr()[0] == pytest.approx(0.1 / 25 / 1e4, rel=1e-12)
    with pytest.raises(ValueError, match="Tried to step"):
        reference.step()  # to t = total + 1


@pytest.mark.parametrize("total", [2, 8, 100, 430])
def test_fastai_preset_equals_fit_one_cycle(total: int) -> None:
    rates, momenta = run(OneCycle(make_optimizer("adam"), max_lr=0.01, total_steps=total, preset="fastai"), total + 2)
    for t in range(total + 2):
        lr, mom = fastai_rate(min(t, total), total, 0.01)
        assert rates[t] == pytest.approx(lr, rel=1e-9), t
        assert momenta[t] == pytest.approx(mom, rel=1e-9), t


def test_torch_closed_form_points_and_momentum() -> None:
    total, max_lr = 1000, 0.1
    rates, momenta = run(OneCycle(make_optimizer(), max_lr=max_lr, total_steps=total, preset="torch"), total + 1)
    peak = 0.3 * total - 1
    assert rates[0] == pytest.approx(max_lr / 25)
    assert rates[int(peak)] == pytest.approx(max_lr)
    assert rates[total - 1] == pytest.approx(max_lr / 25 / 1e4)
    assert rates[total] == rates[total - 1]
    pct = (600 - peak) / (total - 1 - peak)
    assert rates[600] == pytest.approx(max_lr / 25e4 + (max_lr - max_lr / 25e4) / 2 * (math.cos(math.pi * pct) + 1))
    assert (momenta[0], momenta[int(peak)], momenta[total - 1]) == pytest.approx((0.95, 0.85, 0.95))


def test_cycle_momentum_on_the_book_preset_when_asked() -> None:
    total = 100
    rates, momenta = run(OneCycle(make_optimizer(), 0.05, total, cycle_momentum=True), total)
    assert (momenta[0], momenta[44], momenta[88], momenta[99]) == pytest.approx((0.95, 0.85, 0.95, 0.95))
    assert momenta[22] == pytest.approx(0.9)


def test_max_lr_none_takes_the_optimizer_rate_and_per_group_values() -> None:
    sched = OneCycle(make_optimizer(lr=0.2, groups=2), total_steps=10)
    assert sched.get_last_lr() == pytest.approx([0.02, 0.02])
    sched = OneCycle(make_optimizer(groups=2), max_lr=[0.1, 0.01], total_steps=10)
    assert sched.get_last_lr() == pytest.approx([0.01, 0.001])


def test_lr_scale_applies_from_the_next_step_and_survives_state_dicts() -> None:
    total = 50
    keras = KerasOneCycle(total, 0.05)
    opt = make_optimizer(groups=2)
    sched = OneCycle(opt, max_lr=0.05, total_steps=total)
    for _ in range(10):
        opt.step()
        sched.step()
    opt.param_groups[1]["lr_scale"] = 0.1
    assert opt.param_groups[1]["lr"] == keras.rate(10)  # unchanged until the next step
    opt.step()
    sched.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([keras.rate(11), 0.1 * keras.rate(11)], rel=1e-12)
    # Resume: a fresh optimizer and scheduler restored from the state dicts continue identically.
    opt2 = make_optimizer(groups=2)
    sched2 = OneCycle(opt2, max_lr=0.05, total_steps=total)
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(sched.state_dict())
    for _ in range(30):
        opt.step()
        sched.step()
        opt2.step()
        sched2.step()
        assert [g["lr"] for g in opt2.param_groups] == [g["lr"] for g in opt.param_groups]
    assert opt2.param_groups[1]["lr_scale"] == 0.1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_lr": 0.0}, "max_lr: must be a finite number > 0, got 0.0"),
        ({"max_lr": -1.0}, "max_lr"),
        ({"max_lr": [0.1, 0.2]}, "max_lr: expected one value or 1"),
        ({"total_steps": 1}, "total_steps: must be an integer >= 2, got 1"),
        ({"total_steps": 10.5}, "total_steps"),
        ({"preset": "torch", "pct_start": 0.0}, r"pct_start: must lie in \(0, 1\), got 0.0"),
        ({"preset": "fastai", "pct_start": 1.0}, "pct_start"),
        ({"pct_start": 0.3}, "pct_start: the book preset"),
        ({"preset": "keras"}, "preset: expected one of"),
        ({"div_factor": 0}, "div_factor"),
        ({"final_div_factor": -1}, "final_div_factor"),
        ({"base_momentum": 0.96}, "base_momentum, max_momentum"),
    ],
)
def test_bad_arguments_raise(kwargs: dict, match: str) -> None:
    args = {"max_lr": 0.1, "total_steps": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        OneCycle(make_optimizer(), **args)


def test_total_steps_none_outside_a_trainer_and_momentum_without_support() -> None:
    with pytest.raises(ValueError, match="total_steps: None needs a Lightning Trainer"):
        OneCycle(make_optimizer(), max_lr=0.1)
    with pytest.raises(ValueError, match="cycle_momentum: Adagrad has neither 'momentum' nor 'betas'"):
        OneCycle(make_optimizer("adagrad"), max_lr=0.1, total_steps=10, preset="torch")
    sched = OneCycle(make_optimizer("adagrad"), max_lr=0.1, total_steps=10, preset="torch", cycle_momentum=False)
    assert sched.get_last_lr() == pytest.approx([0.004])


@settings(max_examples=150, deadline=None)
@given(
    preset=st.sampled_from(sorted(ONE_CYCLE_PRESETS)),
    max_lr=st.floats(1e-5, 10.0),
    total=st.integers(2, 5000),
    probes=st.lists(st.integers(0, 6000), min_size=1, max_size=8),
)
def test_rates_stay_within_final_and_max(preset: str, max_lr: float, total: int, probes: list[int]) -> None:
    opt = make_optimizer()
    sched = OneCycle(opt, max_lr=max_lr, total_steps=total, preset=preset)
    spec = ONE_CYCLE_PRESETS[preset]
    final = max_lr / spec.div_factor / spec.final_div_factor
    for t in probes:
        rate = sched.rate(t, max_lr)
        assert final * (1 - 1e-9) <= rate <= max_lr * (1 + 1e-9)
        if spec.cycle_momentum:
            assert 0.85 - 1e-12 <= sched.momentum(t) <= 0.95 + 1e-12
        if t >= total:
            assert rate == final


def test_partial_is_a_factory() -> None:
    factory = functools.partial(OneCycle, max_lr=0.1, total_steps=20, preset="fastai")
    assert isinstance(factory(make_optimizer()), OneCycle)


@pytest.mark.parametrize("preset", ["book", "torch", "fastai"])
def test_phases_have_named_fields_and_checkpoints_keep_plain_tuples(preset: str) -> None:
    from lit_deep.schedules.one_cycle import Phase

    sched = OneCycle(make_optimizer(), max_lr=0.1, total_steps=50, preset=preset)
    first = sched._phases[0]
    assert isinstance(first, Phase) and (first.start, first.lr_from, first.lr_to) == (0, "start", "peak")
    assert sched._phases[-1].lr_to == "final" and sched._phases[-1].momentum_to == "max"
    state = sched.state_dict()
    assert all(type(phase) is tuple for phase in state["_phases"])  # loadable with torch.load(weights_only=True)
    for _ in range(7):
        sched.optimizer.step()
        sched.step()
    resumed = OneCycle(make_optimizer(), max_lr=0.1, total_steps=50, preset=preset)
    resumed.load_state_dict(sched.state_dict())
    assert resumed._phases == sched._phases and all(isinstance(p, Phase) for p in resumed._phases)
    assert resumed.rate(30, 0.1) == sched.rate(30, 0.1) and resumed.momentum(30) == sched.momentum(30)
