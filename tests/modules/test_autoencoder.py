"""AutoencoderModule: reconstruction losses, a real Trainer on tiny data, checkpoints, schedules, bad arguments."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback

from lit_deep.data import FashionMNISTDataModule
from lit_deep.models import Autoencoder
from lit_deep.modules import AutoencoderModule
from lit_deep.schedules import OneCycle
from tests.conftest import FakeFMNIST


def _trainer(tmp_path: Path, epochs: int = 2, callbacks: list[Callback] | None = None) -> pl.Trainer:
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
    ("kwargs", "message"),
    [
        ({"lr": 0.0}, "lr: must be a finite number > 0, got 0.0"),
        ({"weight_decay": -1.0}, "weight_decay: must be a finite number >= 0, got -1.0"),
        ({"optimizer": "bogus"}, "optimizer: must be one of"),
        ({"loss": "l1"}, r"loss: must be one of \('mse', 'bce'\), got 'l1'"),
        ({"model": "not a module"}, "model: expected an nn.Module or its description, got str"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs: dict, message: str) -> None:
    args = {"model": Autoencoder(hidden=(8, 4), seed=0), **kwargs}
    with pytest.raises(ValueError, match=message):
        AutoencoderModule(**args)


@pytest.mark.parametrize("loss", ["mse", "bce"])
def test_loss_is_the_per_pixel_mean(loss: str) -> None:
    module = AutoencoderModule(Autoencoder(hidden=(8, 4), seed=0), loss=loss)
    x = torch.rand(3, 1, 28, 28)
    recon = module(x)
    expected = F.mse_loss(recon, x) if loss == "mse" else F.binary_cross_entropy(recon, x)
    torch.testing.assert_close(module.reconstruction_loss(recon, x).mean(), expected)


def test_fit_lowers_the_reconstruction_error_and_logs_every_stage(tiny_fmnist: FakeFMNIST, tmp_path: Path) -> None:
    dm = FashionMNISTDataModule(str(tiny_fmnist.path), val_size=20, batch_size=10)
    module = AutoencoderModule(Autoencoder(hidden=(32, 8), seed=0), lr=0.01)
    dm.setup("fit")
    assert dm.val_set is not None
    with torch.no_grad():
        x = dm.val_set.inputs
        before = float(module.reconstruction_loss(module(x), x).mean())
    trainer = _trainer(tmp_path, epochs=5)
    trainer.fit(module, dm)
    assert trainer.callback_metrics["val_loss"] < before
    assert {"train_loss", "train_mse", "val_mse"} <= set(trainer.callback_metrics)  # train_mse: once per epoch
    tested = trainer.test(module, dm, verbose=False)[0]
    assert {"test_loss", "test_mse"} <= set(tested)
    recon = trainer.predict(module, dm)[0]
    assert tuple(recon.shape) == (20, 1, 28, 28)


def test_checkpoint_reloads_without_the_model_argument(tiny_fmnist: FakeFMNIST, tmp_path: Path) -> None:
    dm = FashionMNISTDataModule(str(tiny_fmnist.path), val_size=20, batch_size=10)
    module = AutoencoderModule(Autoencoder(hidden=(16, 4), seed=0), loss="bce")
    trainer = _trainer(tmp_path, epochs=1)
    trainer.fit(module, dm)
    trainer.save_checkpoint(tmp_path / "ae.ckpt")
    restored = AutoencoderModule.load_from_checkpoint(tmp_path / "ae.ckpt")
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(restored.eval()(x), module.eval()(x))
    assert restored.loss_name == "bce"


def test_one_cycle_steps_every_batch(tiny_fmnist: FakeFMNIST, tmp_path: Path) -> None:
    class Rates(Callback):
        def __init__(self) -> None:
            self.rates: list[float] = []

        def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object) -> None:
            self.rates.append(trainer.optimizers[0].param_groups[0]["lr"])

    rates = Rates()
    dm = FashionMNISTDataModule(str(tiny_fmnist.path), val_size=20, batch_size=10)
    module = AutoencoderModule(
        Autoencoder(hidden=(8, 4), seed=0), optimizer="sgd", lr=0.1, schedule=lambda opt: OneCycle(opt, max_lr=0.1)
    )
    _trainer(tmp_path, epochs=2, callbacks=[rates]).fit(module, dm)
    # 4 batches x 2 epochs; the rate changes inside the first epoch, so the schedule steps every batch.
    assert len(rates.rates) == 8
    assert rates.rates[:4] == pytest.approx([0.01, 0.04, 0.07, 0.1])
