"""A run stopped at any step and resumed from its checkpoint follows the uninterrupted learning-rate trace."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from lit_deep.data import FashionMNISTDataModule
from lit_deep.schedules import OneCycle, PowerDecay
from tests.schedules.conftest import LRRecorder, tiny_classifier, tiny_trainer

pytestmark = [
    pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`"),
    pytest.mark.filterwarnings("ignore:You're resuming from a checkpoint that ended before the epoch ended"),
]


class ScaleBackbone(Callback):
    """Set the backbone group's lr_scale at one step (what FreezeUnfreeze does when it unfreezes)."""

    def __init__(self, step: int, scale: float) -> None:
        self.step, self.scale = step, scale

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, idx: int) -> None:
        if trainer.global_step == self.step:
            for group in trainer.optimizers[0].param_groups:
                if group["name"] == "backbone":
                    group["lr_scale"] = self.scale


def test_resume_from_every_kind_of_step_checkpoint(tmp_path: Path, tiny_data: FashionMNISTDataModule) -> None:
    """OneCycle with total_steps from the Trainer; checkpoints after every step; lr_scale changed at step 4."""
    schedule = functools.partial(OneCycle, max_lr=0.1)
    full = LRRecorder()
    checkpoints = ModelCheckpoint(tmp_path / "ckpt", filename="{step}", every_n_train_steps=1, save_top_k=-1)
    trainer = tiny_trainer(tmp_path, [full, checkpoints, ScaleBackbone(4, 0.5)], enable_checkpointing=True)
    trainer.fit(tiny_classifier(schedule), datamodule=tiny_data)
    assert len(full.lrs) == 15
    head, backbone = full.lrs[6]
    assert backbone == pytest.approx(0.5 * head)  # the scale applies from step 5 on
    assert full.lrs[4][0] == full.lrs[4][1]
    for step in (3, 7, 10, 14):  # before the scale change, mid-epoch, an epoch boundary, the last step
        resumed = LRRecorder()
        again = tiny_trainer(tmp_path / f"r{step}", [resumed])
        again.fit(tiny_classifier(schedule), datamodule=tiny_data, ckpt_path=tmp_path / "ckpt" / f"step={step}.ckpt")
        assert sorted(resumed.lrs) == list(range(step, 15))
        for t, rates in resumed.lrs.items():
            if step > 4 or t <= 4:  # a resumed run before step 4 has no ScaleBackbone: traces differ after it
                assert rates == full.lrs[t], (step, t)
        assert again.lr_scheduler_configs[0].scheduler.last_epoch == again.global_step == 15


def test_resume_after_max_steps_with_explicit_total(tmp_path: Path, tiny_data: FashionMNISTDataModule) -> None:
    """Stop with max_steps=6, save, resume to 15: torch preset with Adam, so beta1 cycles too."""
    schedule = functools.partial(OneCycle, max_lr=0.01, total_steps=15, preset="torch")
    full = LRRecorder()
    tiny_trainer(tmp_path, [full], max_epochs=-1, max_steps=15).fit(
        tiny_classifier(schedule, optimizer="adam"), datamodule=tiny_data
    )
    first = tiny_trainer(tmp_path / "a", [], max_epochs=-1, max_steps=6)
    first.fit(tiny_classifier(schedule, optimizer="adam"), datamodule=tiny_data)
    first.save_checkpoint(tmp_path / "stopped.ckpt")
    resumed = LRRecorder()
    second = tiny_trainer(tmp_path / "b", [resumed], max_epochs=-1, max_steps=15)
    second.fit(tiny_classifier(schedule, optimizer="adam"), datamodule=tiny_data, ckpt_path=tmp_path / "stopped.ckpt")
    assert sorted(resumed.lrs) == list(range(6, 15))
    for t in resumed.lrs:
        assert resumed.lrs[t] == full.lrs[t]
        assert resumed.momenta[t] == full.momenta[t]


def test_resume_epoch_interval_decay(tmp_path: Path, tiny_data: FashionMNISTDataModule) -> None:
    schedule = functools.partial(PowerDecay, s=1.0, c=2.0)
    full = LRRecorder()
    checkpoints = ModelCheckpoint(tmp_path / "ckpt", filename="{epoch}", save_top_k=-1)
    tiny_trainer(tmp_path, [full, checkpoints], enable_checkpointing=True, max_epochs=4).fit(
        tiny_classifier(schedule), datamodule=tiny_data
    )
    resumed = LRRecorder()
    tiny_trainer(tmp_path / "r", [resumed], max_epochs=4).fit(
        tiny_classifier(schedule), datamodule=tiny_data, ckpt_path=tmp_path / "ckpt" / "epoch=1.ckpt"
    )
    assert sorted(resumed.lrs) == list(range(10, 20))
    assert all(resumed.lrs[t] == full.lrs[t] for t in resumed.lrs)
    assert full.lrs[19][0] == pytest.approx(0.01 / (1 + 3) ** 2)
