"""LitDeepModule: one base for the library's modules; RotationPretext trains like the others now."""

from __future__ import annotations

import functools
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback

from lit_deep.callbacks import TrainableModule
from lit_deep.data import FashionMNISTDataModule
from lit_deep.models import MLP, Autoencoder
from lit_deep.modules import AutoencoderModule, Classifier, RotationPretext
from lit_deep.modules.base import LitDeepModule, Stage
from lit_deep.schedules import OneCycle
from tests.conftest import FakeFMNIST


class _Regressor(LitDeepModule):
    def step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int, stage: Stage) -> torch.Tensor:
        x, y = batch
        return F.mse_loss(self.model(x).squeeze(-1), y)


def _trainer(tmp_path: Path, epochs: int = 1, callbacks: list[Callback] | None = None) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        max_epochs=epochs,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
        callbacks=callbacks or [],
    )


@pytest.mark.parametrize(
    "make",
    [
        lambda: Classifier(MLP(hidden=(4,), seed=0)),
        lambda: AutoencoderModule(Autoencoder(hidden=(8, 4), seed=0)),
        lambda: RotationPretext(MLP(hidden=(4,), num_classes=4, seed=0)),
    ],
)
def test_the_three_modules_share_the_base_and_the_callback_contract(make: object) -> None:
    module = make()  # type: ignore[operator]
    assert isinstance(module, LitDeepModule) and isinstance(module, TrainableModule)
    assert module.param_group_splits == {}
    assert {"optimizer", "lr", "weight_decay", "optimizer_kwargs", "model"} <= set(module.hparams)


@pytest.mark.parametrize("cls", [Classifier, RotationPretext, AutoencoderModule, _Regressor])
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr": 0}, "lr: must be a finite number > 0, got 0"),
        ({"weight_decay": -0.1}, "weight_decay: must be a finite number >= 0, got -0.1"),
        ({"optimizer": "adamm"}, "optimizer: must be one of"),
    ],
)
def test_every_module_checks_the_shared_arguments(cls: type, kwargs: dict, message: str) -> None:
    model = Autoencoder(hidden=(8, 4)) if cls is AutoencoderModule else MLP(hidden=(4,), num_classes=4)
    with pytest.raises(ValueError, match=message):
        cls(model, **kwargs)


def test_a_subclass_needs_only_its_step() -> None:
    module = _Regressor(MLP(input_shape=(3,), hidden=(4,), num_classes=1, seed=0), optimizer="sgd", lr=0.1)
    x, y = torch.randn(16, 3), torch.randn(16)
    trainer = pl.Trainer(max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(module, torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4))
    assert "train_loss" in trainer.callback_metrics
    with pytest.raises(NotImplementedError, match="must implement step"):
        LitDeepModule(MLP(hidden=(4,))).step(None, 0, "train")


def test_rotation_pretext_has_schedule_weight_decay_and_cheap_logging(tiny_fmnist: FakeFMNIST, tmp_path: Path) -> None:
    dm = FashionMNISTDataModule(str(tiny_fmnist.path), val_size=20, batch_size=10)
    module = RotationPretext(
        MLP(hidden=(16,), num_classes=4, seed=0),
        optimizer="adamw",
        lr=0.01,
        weight_decay=0.1,
        schedule=functools.partial(OneCycle, max_lr=0.01),
    )
    logged: list[set[str]] = []

    class Keys(Callback):
        def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
            logged.append(set(trainer.callback_metrics))

    trainer = _trainer(tmp_path, epochs=2, callbacks=[Keys()])
    trainer.fit(module, dm)
    assert {"train_loss", "train_acc", "val_loss", "val_acc"} <= set(trainer.callback_metrics)
    assert "train_loss_step" not in trainer.callback_metrics  # no longer logged on every step
    assert not logged[0]  # 4 steps an epoch, log_every_n_steps=50: the first step logs nothing
    (optimizer,) = trainer.optimizers
    assert type(optimizer).__name__ == "AdamW"
    assert {g["name"]: g["weight_decay"] for g in optimizer.param_groups}["backbone"] == 0.1
    assert trainer.lr_scheduler_configs[0].interval == "step"
