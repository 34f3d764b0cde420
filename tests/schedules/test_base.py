"""The closed-form base class and the total-steps provider."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lit_deep.schedules import ClosedFormLR, OneCycle
from lit_deep.schedules.base import check_interval, check_positive, default_total_steps, resolve_total_steps


def test_provider_is_scoped_and_lazy() -> None:
    calls = []
    with default_total_steps(lambda: calls.append(1) or 30):
        assert resolve_total_steps(12) == 12
        assert calls == []
        assert resolve_total_steps(None) == 30
    with pytest.raises(ValueError, match="total_steps: None needs a Lightning Trainer"):
        resolve_total_steps(None)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (float("inf"), "total_steps: the Trainer's training length is unbounded"),
        (1, "total_steps: must be an integer >= 2, got 1"),
    ],
)
def test_provider_values_are_checked(value: float, match: str) -> None:
    with default_total_steps(lambda: value), pytest.raises(ValueError, match=match):
        resolve_total_steps(None)


def test_argument_checks() -> None:
    with pytest.raises(ValueError, match="total_steps: must be an integer >= 2, got True"):
        resolve_total_steps(True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="interval: must be one of"):
        check_interval("batch")
    with pytest.raises(ValueError, match="x: must be a finite number > 0, got nan"):
        check_positive("x", float("nan"))


def test_subclass_contract_and_checkpoint_state_loads_weights_only(tmp_path: Path) -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(NotImplementedError):
        ClosedFormLR(opt)
    sched = OneCycle(opt, 0.1, 20, preset="fastai")
    path = tmp_path / "state.pt"
    torch.save({"scheduler": sched.state_dict(), "optimizer": opt.state_dict()}, path)
    state = torch.load(path, weights_only=True)  # plain values only: loads without unpickling classes
    assert state["scheduler"]["total_steps"] == 20
