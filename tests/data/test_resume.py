"""Resuming with FashionMNISTDataModule through the Python API: the sampler's position, the generators, 1cycle."""

from __future__ import annotations

import functools
import random
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from lit_deep import Classifier
from lit_deep.data import DistributedBatchSampler, FashionMNISTDataModule
from lit_deep.data._batches import ResumableLoader
from lit_deep.models import MLP
from lit_deep.schedules import OneCycle
from tests.conftest import FakeFMNIST


class Killed(Exception):
    pass


class KillAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, idx: int) -> None:
        if trainer.global_step == self.step:
            raise Killed


def _fit(data: FakeFMNIST, root: Path, kill: int | None = None, ckpt_path: str | None = None) -> dict[str, Any]:
    """3 epochs of 5 steps (40 images, batch 8): MC-style dropout, augmentation and 1cycle's total steps."""
    pl.seed_everything(0)
    model = MLP(hidden=(16,), activation="selu", dropout=0.3, dropout_kind="alpha")
    # 1cycle asks trainer.estimated_stepping_batches in configure_optimizers, which builds the training loader
    # before Lightning restores the loops (Lightning issue #20550): the DataModule hands it the position itself.
    classifier = Classifier(model, optimizer="nadam", lr=0.01, schedule=functools.partial(OneCycle, max_lr=0.01))
    dm = FashionMNISTDataModule(str(data.path), val_size=20, batch_size=8, augment=True, max_shift=1)
    saver = ModelCheckpoint(dirpath=root, save_last=True, every_n_train_steps=3)
    callbacks: list[Callback] = [saver] + ([KillAt(kill)] if kill is not None else [])
    trainer = pl.Trainer(
        max_epochs=3,
        callbacks=callbacks,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
    )
    trainer.fit(classifier, datamodule=dm, ckpt_path=ckpt_path)
    return {k: v.clone() for k, v in classifier.state_dict().items()}


@pytest.mark.filterwarnings("error:You're resuming from a checkpoint that ended before the epoch ended")
def test_mid_epoch_resume_with_augmentation_and_one_cycle_is_bitwise(make_fmnist, tmp_path):
    data = make_fmnist(n_train=60)
    full = _fit(data, tmp_path / "full")
    with pytest.raises(Killed):
        _fit(data, tmp_path / "killed", kill=8)  # last.ckpt after step 6: epoch 1, batch 1 of 5
    assert torch.load(tmp_path / "killed" / "last.ckpt", weights_only=True)["global_step"] == 6
    resumed = _fit(data, tmp_path / "killed", ckpt_path=str(tmp_path / "killed" / "last.ckpt"))
    for name, value in full.items():
        assert torch.equal(resumed[name], value), name


def test_datamodule_state_holds_the_position_and_leaves_the_global_generators_alone(tiny_fmnist, tmp_path):
    dm = FashionMNISTDataModule(str(tiny_fmnist.path), val_size=10, batch_size=8, augment=True)
    dm.setup("fit")
    batches = iter(dm.train_dataloader())
    next(batches)
    torch.save(dm.state_dict(), tmp_path / "state.pt")
    expected = [x for x, _ in batches]
    fresh = FashionMNISTDataModule(str(tiny_fmnist.path), val_size=10, batch_size=8, augment=True)
    fresh.setup("fit")
    before = (torch.random.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    fresh.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert torch.equal(torch.random.get_rng_state(), before[0])  # the process's generators are not the data's
    assert (np.random.get_state()[1] == before[1]).all() and random.getstate() == before[2]
    resumed = [x for x, _ in fresh.train_dataloader()]
    assert len(resumed) == len(expected) == 6  # 50 images, batch 8: 7 batches, one consumed
    for a, b in zip(resumed, expected, strict=True):
        assert torch.equal(a, b)  # same images, same augmentation


def test_sampler_resumes_only_the_saved_epoch():
    sampler = DistributedBatchSampler(20, 4, shuffle=True, seed=1)
    sampler.set_epoch(2)
    it = iter(sampler)
    next(it), next(it)
    state = sampler.state_dict()
    assert (state["epoch"], state["batches"]) == (2, 2)
    same_epoch = DistributedBatchSampler(20, 4, shuffle=True, seed=1)
    same_epoch.load_state_dict(state)
    same_epoch.set_epoch(2)
    assert [b.tolist() for b in same_epoch] == [b.tolist() for b in it]
    next_epoch = DistributedBatchSampler(20, 4, shuffle=True, seed=1)
    next_epoch.load_state_dict(state)
    next_epoch.set_epoch(3)
    assert len(list(next_epoch)) == 5  # another epoch: a whole one


def test_end_of_epoch_position_gives_the_whole_next_epoch():
    sampler = DistributedBatchSampler(10, 4, shuffle=True)
    assert len(list(sampler)) == 3
    resumed = DistributedBatchSampler(10, 4, shuffle=True)
    resumed.load_state_dict(sampler.state_dict())
    resumed.set_epoch(1)
    assert len(list(resumed)) == 3


def test_mid_epoch_position_with_other_settings_is_refused():
    sampler = DistributedBatchSampler(20, 4, shuffle=True)
    it = iter(sampler)
    next(it)
    other = DistributedBatchSampler(20, 5, shuffle=True)
    with pytest.raises(ValueError, match=r"batch_size: the checkpoint stopped in the middle of epoch 0 with batch_s"):
        other.load_state_dict(sampler.state_dict())


def test_loader_uses_its_own_generator():
    loader = ResumableLoader(torch.utils.data.TensorDataset(torch.zeros(4)), DistributedBatchSampler(4, 2))  # type: ignore[arg-type]
    state = torch.get_rng_state()
    iter(loader)
    assert torch.equal(torch.get_rng_state(), state)  # a plain DataLoader draws its base seed from the global RNG
