"""The frozen-feature cache on two CPU ranks (gloo): each rank caches its own shard, and training is unchanged."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from lit_deep.data._batches import DistributedBatchSampler
from tests.callbacks.helpers import max_abs_diff
from tests.conftest import write_fake_fmnist

pytestmark = pytest.mark.ddp

SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.callbacks import Callback

    from lit_deep import Classifier
    from lit_deep.callbacks import FreezeUnfreeze, MaxNorm
    from lit_deep.cli import release_process_group
    from lit_deep.data import FashionMNISTDataModule
    from lit_deep.models import CNN

    OUT, DATA = Path(sys.argv[1]), sys.argv[2]


    class Record(Callback):
        # Per rank: the images through the first conv per (stage, epoch), and the parameters at each epoch's end.
        def __init__(self, tag):
            self.tag, self.images, self.params = tag, {}, {}

        def on_fit_start(self, trainer, pl_module):
            def hook(module, args, output):
                key = f"{'val' if trainer.validating else 'train'}{trainer.current_epoch}"
                self.images[key] = self.images.get(key, 0) + args[0].shape[0]

            pl_module.model.backbone[0].register_forward_hook(hook)

        def on_train_epoch_end(self, trainer, pl_module):
            self.params[trainer.current_epoch] = {n: p.detach().clone() for n, p in pl_module.model.named_parameters()}

        def on_train_end(self, trainer, pl_module):
            torch.save({"images": self.images, "params": self.params}, OUT / f"{self.tag}_rank{trainer.global_rank}.pt")


    for cache in (False, True):
        torch.manual_seed(0)
        model = CNN(channels=(4, 8), convs_per_block=1, dense=16, seed=0)
        trainer = pl.Trainer(
            accelerator="cpu", devices=2, strategy="ddp", max_epochs=3, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
            callbacks=[FreezeUnfreeze("backbone", 2, cache_features=cache), MaxNorm(2.0), Record(f"cache{int(cache)}")],
        )
        data = FashionMNISTDataModule(DATA, batch_size=16, val_size=40, eval_batch_size=10)
        trainer.fit(Classifier(model, optimizer="adam", lr=0.01), data)
    release_process_group()
    """
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Uncached and cached fits (2 frozen epochs, 1 unfrozen) on 2 ranks; 160 training images, 40 validation."""
    root = tmp_path_factory.mktemp("ddp_cache")
    data = write_fake_fmnist(root / "data", n_train=200, n_test=10)
    script = root / "ddp_cache.py"
    script.write_text(SCRIPT)
    result = subprocess.run(
        [sys.executable, str(script), str(root), str(data.path)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "cache_features: train: 392 frozen values per example cached" in result.stderr + result.stdout
    return {path.stem: torch.load(path) for path in Path(root).glob("cache*_rank*.pt")}


def _shard(rank: int, epoch: int) -> set[int]:
    """The training images of ``rank`` in ``epoch`` (the DataModule's sampler: 160 images, seed 42)."""
    sampler = DistributedBatchSampler(160, 16, shuffle=True, seed=42, num_replicas=2, rank=rank)
    sampler.set_epoch(epoch)
    return {int(i) for batch in sampler for i in batch}


def test_each_rank_computes_each_of_its_examples_once(runs: dict[str, dict]) -> None:
    probes = 2 + 1 + 2  # the cut's probe runs (two examples, one and two) when each split is cut
    for rank in (0, 1):
        images = runs[f"cache1_rank{rank}"]["images"]
        new_in_epoch_1 = len(_shard(rank, 1) - _shard(rank, 0))  # a rank's shard is drawn anew every epoch
        assert 0 < new_in_epoch_1 < 80
        # 80 training and 20 validation images per rank; epoch 1 computes only the training images new to the rank
        assert images == {"train0": 80 + probes, "val0": 20 + probes, "train1": new_in_epoch_1, "train2": 80, **{
            "val2": 20}}  # fmt: skip
        assert runs[f"cache0_rank{rank}"]["images"]["train1"] == 80


@pytest.mark.parametrize("epoch", [1, 2], ids=["frozen-phase-end", "after-unfreezing"])
def test_cached_and_uncached_ranks_agree(runs: dict[str, dict], epoch: int) -> None:
    states = {name: run["params"][epoch] for name, run in runs.items()}
    assert max_abs_diff(states["cache1_rank0"], states["cache1_rank1"]) == 0.0  # replicas bitwise equal
    assert max_abs_diff(states["cache0_rank0"], states["cache1_rank0"]) <= 1e-5
    assert max_abs_diff(states["cache0_rank0"], states["cache0_rank1"]) == 0.0
    moved = max_abs_diff(runs["cache1_rank0"]["params"][0], states["cache1_rank0"], prefix="head.")
    assert moved > 0  # the head trained
