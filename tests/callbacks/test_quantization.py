"""DynamicQuantization: int8 after fit, measured on the whole test split (not one DDP shard)."""

from __future__ import annotations

import json

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lit_deep import Classifier
from lit_deep.callbacks import DynamicQuantization
from lit_deep.callbacks.quantization import _whole_split
from lit_deep.data import DistributedBatchSampler, FashionMNISTDataModule
from lit_deep.data._batches import TensorBatches
from lit_deep.models import MLP


def test_whole_split_reads_every_image_of_a_sharded_loader() -> None:
    data = TensorBatches(torch.arange(10.0).reshape(10, 1), torch.arange(10))
    shard = DataLoader(data, sampler=DistributedBatchSampler(10, 3, num_replicas=2, rank=1), batch_size=None)
    assert sum(len(y) for _, y in shard) < 10  # this rank's shard only
    seen = torch.cat([y for _, y in _whole_split(shard, 4)])
    assert seen.tolist() == list(range(10))
    plain = DataLoader(TensorDataset(torch.zeros(5, 1), torch.arange(5)), batch_size=2)
    assert torch.cat([y for _, y in _whole_split(plain, 2)]).tolist() == [0, 1, 2, 3, 4]


def test_after_fit_it_writes_accuracies_and_latencies(tiny_fmnist, tmp_path) -> None:
    dm = FashionMNISTDataModule(str(tiny_fmnist.path), batch_size=16, val_size=10)
    callback = DynamicQuantization(batch_size=4, repeats=2)
    trainer = pl.Trainer(
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
        callbacks=[callback],
    )
    trainer.fit(Classifier(MLP(hidden=(8,), seed=0)), dm)
    report = json.loads((tmp_path / "quantization.json").read_text())
    assert report == pytest.approx(callback.report)
    assert 0 <= report["float_test_acc"] <= 1 and report["speedup"] > 0 and report["batch_size"] == 4
    with pytest.raises(ValueError, match="repeats: must be an integer >= 1, got 0"):
        DynamicQuantization(repeats=0)
