"""One epoch of the 300-100 MLP on the real Fashion-MNIST training split, timed three ways in one run.

1. a hand-written PyTorch loop over index-sliced in-memory tensors (the floor),
2. Lightning with ``TensorDataset`` + ``DataLoader`` (per-item collate, the usual way),
3. Lightning with ``FashionMNISTDataModule`` (batches sliced from in-memory tensors).

Every way trains the same architecture from the same initial weights with the same optimizer (Nadam) and
no validation, progress bar or logger. Each configuration is timed ``--repeats`` times, interleaved, and
the median is reported. Run: ``python benchmarks/epoch_time.py``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from lit_deep import Classifier
from lit_deep.data import FashionMNISTDataModule
from lit_deep.models import MLP
from lit_deep.modules import build_optimizer


def hand_loop(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    opt = build_optimizer("nadam", model.parameters(), lr=1e-3)
    model.train()
    start = time.perf_counter()
    order = torch.randperm(x.shape[0])
    for i in range(0, x.shape[0], batch_size):
        idx = order[i : i + batch_size]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def _trainer() -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        limit_val_batches=0,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        logger=False,
    )


class _Timer(pl.Callback):
    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.seconds = time.perf_counter() - self.start


def lightning_epoch(model: torch.nn.Module, train: DataLoader | FashionMNISTDataModule) -> float:
    timer = _Timer()
    trainer = _trainer()
    trainer.callbacks.append(timer)
    classifier = Classifier(model, optimizer="nadam", lr=1e-3)
    if isinstance(train, FashionMNISTDataModule):
        trainer.fit(classifier, datamodule=train)
    else:
        trainer.fit(classifier, train_dataloaders=train)
    return timer.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    base = MLP(hidden=(300, 100), seed=0)
    rows = []
    for batch_size in args.batch_sizes:
        dm = FashionMNISTDataModule(batch_size=batch_size)
        dm.setup("fit")
        assert dm.train_set is not None
        x, y = dm.train_set.inputs, dm.train_set.targets
        loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True)
        times: dict[str, list[float]] = {"hand": [], "tensordataset": [], "datamodule": []}
        lightning_epoch(copy.deepcopy(base), dm)  # warm-up (imports, allocator, first-call overheads)
        for _ in range(args.repeats):
            times["hand"].append(hand_loop(copy.deepcopy(base), x, y, batch_size))
            times["tensordataset"].append(lightning_epoch(copy.deepcopy(base), loader))
            times["datamodule"].append(lightning_epoch(copy.deepcopy(base), dm))
        med = {k: statistics.median(v) for k, v in times.items()}
        rows.append((batch_size, med))
    print(f"\n{'batch':>5} {'hand loop':>10} {'TensorDataset':>14} {'DataModule':>11} {'DM/hand':>8} {'TD/DM':>7}")
    for batch_size, med in rows:
        print(
            f"{batch_size:>5} {med['hand']:>9.2f}s {med['tensordataset']:>13.2f}s {med['datamodule']:>10.2f}s "
            f"{med['datamodule'] / med['hand']:>8.2f} {med['tensordataset'] / med['datamodule']:>7.2f}"
        )
    print("DM/hand: DataModule epoch time over the hand-written loop (goal <= 1.25 at batch 128);")
    print("TD/DM: TensorDataset epoch time over the DataModule's (goal > 1 at batch 32).")


if __name__ == "__main__":
    main()
