"""schedule_trace and plot_schedule, plot_lr_finder."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from lit_deep.schedules import (
    ExponentialDecay,
    OneCycle,
    PiecewiseConstant,
    plot_lr_finder,
    plot_schedule,
    schedule_trace,
)


def test_trace_of_the_books_one_cycle() -> None:
    trace = schedule_trace(functools.partial(OneCycle, max_lr=0.05), total_steps=10_750)
    half = (10_750 - (10_750 // 10 + 1)) // 2
    assert trace.name == "OneCycle"
    assert len(trace.lr) == 10_750
    assert (trace.lr[0], trace.lr[half], trace.lr[2 * half]) == pytest.approx((0.005, 0.05, 0.005))
    assert set(trace.momentum) == {0.9}


def test_trace_records_momentum_and_runs_past_the_end() -> None:
    trace = schedule_trace(functools.partial(OneCycle, max_lr=0.1, preset="torch"), 100, steps=120)
    assert trace.momentum[0] == pytest.approx(0.95)
    assert min(trace.momentum) == pytest.approx(0.85, abs=1e-4)
    assert trace.lr[100:] == [trace.lr[99]] * 20
    decay = schedule_trace(functools.partial(ExponentialDecay, s=10), 21, lr=0.1)
    assert decay.lr[20] == pytest.approx(0.001)


@pytest.mark.parametrize(
    ("schedule", "panels"),
    [
        (functools.partial(OneCycle, max_lr=0.05), 1),
        (functools.partial(OneCycle, max_lr=0.05, preset="fastai"), 2),
        (functools.partial(PiecewiseConstant, boundaries=[5, 15], values=[0.01, 0.005, 0.001]), 1),
    ],
)
def test_plot_schedule_writes_a_png(tmp_path: Path, schedule: functools.partial, panels: int) -> None:
    out = plot_schedule(schedule, 50, tmp_path / "sub" / "schedule.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # two panels (rate and momentum) make a taller picture
    height = int.from_bytes(out.read_bytes()[20:24], "big")
    assert height > 500 if panels == 2 else height < 500


def test_plot_lr_finder(tmp_path: Path) -> None:
    out = plot_lr_finder([1e-5, 1e-3, 1e-1, 1.0], [2.3, 2.0, 1.0, 5.0], 0.01, tmp_path / "finder.png")
    assert out.stat().st_size > 1000
