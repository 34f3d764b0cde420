"""Classifier + Trainer: the Lightning scheduler config, and total_steps from estimated_stepping_batches."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from lit_deep.data import FashionMNISTDataModule
from lit_deep.modules._schedule import lightning_scheduler_config
from lit_deep.schedules import (
    ExponentialDecay,
    OneCycle,
    PiecewiseConstant,
    PlateauDecay,
    PowerDecay,
)
from tests.schedules.conftest import LRRecorder, tiny_classifier, tiny_trainer

ROOT = Path(__file__).resolve().parents[2]


def optimizer() -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01, momentum=0.9)


@pytest.mark.parametrize(
    ("factory", "expected"),
    [
        (functools.partial(OneCycle, max_lr=0.1, total_steps=10), {"interval": "step"}),
        (OneCycle, {"interval": "step"}),  # the class itself: max_lr from the optimizer, total_steps from the provider
        (functools.partial(PowerDecay, s=10), {"interval": "epoch"}),
        (functools.partial(PowerDecay, s=10, interval="step"), {"interval": "step"}),
        (functools.partial(ExponentialDecay, s=20), {"interval": "epoch"}),
        (functools.partial(PiecewiseConstant, boundaries=[5], values=[0.1, 0.01]), {"interval": "epoch"}),
        (PlateauDecay, {"interval": "epoch", "monitor": "val_loss"}),
        (
            functools.partial(PlateauDecay, monitor="val_acc", mode="max"),
            {"interval": "epoch", "monitor": "val_acc"},
        ),
        (functools.partial(torch.optim.lr_scheduler.StepLR, step_size=3), {"interval": "epoch"}),
        (torch.optim.lr_scheduler.ReduceLROnPlateau, {"interval": "epoch", "monitor": "val_loss"}),
    ],
)
def test_lightning_config(factory: Any, expected: dict[str, str]) -> None:
    config = lightning_scheduler_config(factory, optimizer(), total_steps=lambda: 12)
    assert {k: v for k, v in config.items() if k != "scheduler"} == expected


def test_lightning_config_errors() -> None:
    with pytest.raises(ValueError, match="schedule: expected a callable optimizer -> scheduler"):
        lightning_scheduler_config(OneCycle(optimizer(), 0.1, 10), optimizer())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="schedule: returned float, not a torch LRScheduler"):
        lightning_scheduler_config(lambda opt: 0.1, optimizer())  # type: ignore[arg-type,return-value]
    with pytest.raises(ValueError, match="total_steps: the module is not attached to a Trainer"):
        tiny_classifier(functools.partial(OneCycle, max_lr=0.1)).configure_optimizers()


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, 15),  # 5 batches x 3 epochs
        ({"accumulate_grad_batches": 2}, 9),  # ceil(5 / 2) x 3: the last, partial accumulation steps too
        ({"limit_train_batches": 3}, 9),
        ({"limit_train_batches": 0.5}, 6),  # int(5 * 0.5) x 3
        ({"limit_train_batches": 3, "accumulate_grad_batches": 2}, 6),
        ({"max_epochs": 10, "max_steps": 7}, 7),
        ({"max_epochs": -1, "max_steps": 8}, 8),
    ],
)
def test_one_cycle_length_is_the_trainers_optimizer_steps(
    tmp_path: Path, tiny_data: FashionMNISTDataModule, settings: dict[str, Any], expected: int
) -> None:
    recorder = LRRecorder()
    model = tiny_classifier(functools.partial(OneCycle, max_lr=0.1))
    trainer = tiny_trainer(tmp_path, [recorder], **settings)
    trainer.fit(model, datamodule=tiny_data)
    (config,) = trainer.lr_scheduler_configs
    scheduler = config.scheduler
    assert config.interval == "step"
    assert scheduler.total_steps == expected == trainer.global_step == scheduler.last_epoch
    assert sorted(recorder.lrs) == list(range(expected))
    for t, rates in recorder.lrs.items():
        assert rates == pytest.approx([scheduler.rate(t, 0.1)] * 2, rel=1e-12)
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.1 / 10 / 1000)  # ended exactly at the end


def test_epoch_interval_decay_and_plateau_in_a_trainer(tmp_path: Path, tiny_data: FashionMNISTDataModule) -> None:
    recorder = LRRecorder()
    model = tiny_classifier(functools.partial(ExponentialDecay, s=2), lr=0.01)
    tiny_trainer(tmp_path, [recorder], max_epochs=3).fit(model, datamodule=tiny_data)
    per_epoch = [recorder.lrs[5 * epoch][0] for epoch in range(3)]
    assert per_epoch == pytest.approx([0.01 * 0.1 ** (e / 2) for e in range(3)], rel=1e-12)
    assert recorder.lrs[4] == recorder.lrs[0]  # constant within an epoch

    plateau = tiny_classifier(functools.partial(PlateauDecay, patience=1, min_delta=10.0), lr=0.01)
    trainer = tiny_trainer(tmp_path, [], max_epochs=3, limit_val_batches=1.0)
    trainer.fit(plateau, datamodule=tiny_data)
    (config,) = trainer.lr_scheduler_configs
    assert (config.interval, config.monitor) == ("epoch", "val_loss")
    # min_delta=10 makes every epoch after the first a non-improvement: cuts after epochs 2 and 3
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.0025)


DDP_SCRIPT = """
import functools, json, sys
sys.path.insert(0, {root!r})
import lightning.pytorch as pl
from lit_deep.data import FashionMNISTDataModule
from lit_deep.cli import release_process_group
from lit_deep.schedules import OneCycle
from tests.schedules.conftest import LRRecorder, tiny_classifier, tiny_trainer
from pathlib import Path

if __name__ == "__main__":
    data = FashionMNISTDataModule({data!r}, batch_size=8, val_size=20)
    recorder = LRRecorder()
    model = tiny_classifier(functools.partial(OneCycle, max_lr=0.1, preset="torch"))
    trainer = tiny_trainer({out!r}, [recorder], max_epochs=2, devices=2, strategy="ddp",
                           accumulate_grad_batches=3)
    trainer.fit(model, datamodule=data)
    scheduler = trainer.lr_scheduler_configs[0].scheduler
    result = {{"total": scheduler.total_steps, "global_step": trainer.global_step, "last": scheduler.last_epoch,
              "batches": trainer.num_training_batches, "lrs": recorder.lrs}}
    Path({out!r}, f"rank{{trainer.global_rank}}.json").write_text(json.dumps(result))
    release_process_group()  # end gloo before interpreter exit (an exit-time abort otherwise, now and then)
"""


@pytest.mark.ddp
def test_one_cycle_length_under_ddp(tmp_path: Path, make_fmnist: Any) -> None:
    data = make_fmnist(n_train=84)  # 64 training images: 32 per rank, 4 batches of 8 per rank
    script = tmp_path / "ddp_one_cycle.py"
    script.write_text(DDP_SCRIPT.format(root=str(ROOT), data=str(data.path), out=str(tmp_path)))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for rank in ranks:
        assert rank["batches"] == 4
        assert rank["total"] == rank["global_step"] == rank["last"] == 4  # ceil(4 / 3) x 2 epochs
    assert ranks[0]["lrs"] == ranks[1]["lrs"]
    assert len(ranks[0]["lrs"]) == 4
