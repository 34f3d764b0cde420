"""Fixtures of the recipe tests."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from lit_deep.models import MLP
from lit_deep.modules import RotationPretext


@pytest.fixture(scope="module")
def pretext_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained rotation-pretext checkpoint (300-100 ELU MLP), the source ``rotation_finetune`` needs."""
    path = tmp_path_factory.mktemp("pretext") / "backbone.ckpt"
    module = RotationPretext(MLP(hidden=(300, 100), activation="elu", num_classes=4, seed=0))
    trainer = pl.Trainer(max_steps=0, logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(path, weights_only=True)
    assert torch.load(path, weights_only=True)["hyper_parameters"]["model"]["class_path"].endswith("MLP")
    return path
