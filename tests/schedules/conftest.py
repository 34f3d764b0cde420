"""Helpers for schedule tests that run a real Trainer: an lr recorder and tiny Classifier/DataModule factories."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from lit_deep import Classifier
from lit_deep.data import FashionMNISTDataModule
from lit_deep.models import MLP


@pytest.fixture(autouse=True)
def one_thread() -> Any:
    """Tiny models gain nothing from intra-op threads; on a shared 2-core machine they only contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class LRRecorder(Callback):
    """Record, for every optimizer step t (= global_step before the step), each group's rate and momentum."""

    def __init__(self) -> None:
        self.lrs: dict[int, list[float]] = {}
        self.momenta: dict[int, list[float]] = {}

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, idx: int) -> None:
        groups = trainer.optimizers[0].param_groups
        self.lrs[trainer.global_step] = [float(g["lr"]) for g in groups]
        self.momenta[trainer.global_step] = [float(g["betas"][0] if "betas" in g else g["momentum"]) for g in groups]


def tiny_classifier(schedule: Any, optimizer: str = "sgd", lr: float = 0.01) -> Classifier:
    return Classifier(MLP(hidden=(8,), num_classes=10, seed=0), optimizer=optimizer, lr=lr, schedule=schedule)


def tiny_trainer(tmp_path: Any, callbacks: list[Callback], **kwargs: Any) -> pl.Trainer:
    options: dict[str, Any] = {
        "accelerator": "cpu",
        "devices": 1,
        "max_epochs": 3,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "limit_val_batches": 0,
        "num_sanity_val_steps": 0,
        "default_root_dir": str(tmp_path),
        "callbacks": callbacks,
    }
    options.update(kwargs)
    return pl.Trainer(**options)


@pytest.fixture
def tiny_data(tiny_fmnist: Any) -> FashionMNISTDataModule:
    """40 training images in 5 batches of 8, 20 validation images."""
    return FashionMNISTDataModule(str(tiny_fmnist.path), batch_size=8, val_size=20, eval_batch_size=10)
