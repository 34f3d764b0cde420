"""One epoch of the 300-100 MLP on the real Fashion-MNIST training split, timed three ways in one run.

1. a hand-written PyTorch loop over index-sliced in-memory tensors (the floor),
2. Lightning with ``TensorDataset`` + ``DataLoader`` (per-item collate, the usual way),
3. Lightning with ``FashionMNISTDataModule`` (batches sliced from in-memory tensors), for three modules:
   a bare ``LightningModule`` (cross-entropy, nothing logged), lit_deep's base ``LitDeepModule`` with the same
   cross-entropy step (its training logging and divergence check), and ``Classifier`` (accuracy and NLL too).

Every way trains the same architecture from the same initial weights with the same optimizer (Nadam) and
no validation, progress bar or logger. Each configuration is timed ``--repeats`` times, interleaved, and
the median is reported; "per step over bare" is (module epoch - bare epoch) / optimizer steps.
Run: ``python benchmarks/epoch_time.py``.
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
from lit_deep.modules._optim import build_optimizer
from lit_deep.modules.base import LitDeepModule, Stage


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
    """The epoch's wall time, and each step's (batch start to batch end: step, backward, optimizer)."""

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.start = time.perf_counter()
        self.steps: list[float] = []

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, *args: object) -> None:
        self.step_start = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, *args: object) -> None:
        self.steps.append(time.perf_counter() - self.step_start)

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.seconds = time.perf_counter() - self.start


class Bare(pl.LightningModule):
    """The floor of a Lightning module: cross-entropy, the optimizer, nothing logged."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self.model(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return build_optimizer("nadam", self.model.parameters(), lr=1e-3)


class Base(LitDeepModule):
    """lit_deep's base module with the bare module's step: what the base itself adds."""

    def step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int, stage: Stage) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self.model(x), y)


MODULES = {
    "bare": Bare,
    "base": lambda model: Base(model, optimizer="nadam", lr=1e-3),
    "classifier": lambda model: Classifier(model, optimizer="nadam", lr=1e-3),
}


STEP_MEDIANS: dict[tuple[int, str], list[float]] = {}


def lightning_epoch(
    model: torch.nn.Module, train: DataLoader | FashionMNISTDataModule, module: str = "classifier"
) -> float:
    timer = _Timer()
    trainer = _trainer()
    trainer.callbacks.append(timer)
    lightning_module = MODULES[module](model)
    if isinstance(train, FashionMNISTDataModule):
        trainer.fit(lightning_module, datamodule=train)
    else:
        trainer.fit(lightning_module, train_dataloaders=train)
    if isinstance(train, FashionMNISTDataModule):  # per-step medians resist the load spikes of a shared machine
        STEP_MEDIANS.setdefault((train.batch_size, module), []).append(statistics.median(timer.steps))
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
        times: dict[str, list[float]] = {"hand": [], "tensordataset": [], "bare": [], "base": [], "datamodule": []}
        lightning_epoch(copy.deepcopy(base), dm)  # warm-up (imports, allocator, first-call overheads)
        for _ in range(args.repeats):
            times["hand"].append(hand_loop(copy.deepcopy(base), x, y, batch_size))
            times["tensordataset"].append(lightning_epoch(copy.deepcopy(base), loader))
            times["bare"].append(lightning_epoch(copy.deepcopy(base), dm, "bare"))
            times["base"].append(lightning_epoch(copy.deepcopy(base), dm, "base"))
            times["datamodule"].append(lightning_epoch(copy.deepcopy(base), dm))
        med = {k: statistics.median(v) for k, v in times.items()}
        rows.append((batch_size, -(-x.shape[0] // batch_size), med))
    print(
        f"\n{'batch':>5} {'hand loop':>10} {'TensorDataset':>14} {'bare':>7} {'base':>7} {'Classifier':>11} "
        f"{'DM/hand':>8} {'TD/DM':>7} {'base-bare':>10} {'clf-bare':>9}"
    )
    for batch_size, steps, med in rows:
        over = {k: 1000 * (med[k] - med["bare"]) / steps for k in ("base", "datamodule")}
        print(
            f"{batch_size:>5} {med['hand']:>9.2f}s {med['tensordataset']:>13.2f}s {med['bare']:>6.2f}s "
            f"{med['base']:>6.2f}s {med['datamodule']:>10.2f}s {med['datamodule'] / med['hand']:>8.2f} "
            f"{med['tensordataset'] / med['datamodule']:>7.2f} {over['base']:>7.3f} ms {over['datamodule']:>6.3f} ms"
        )
    print("Classifier, base and bare all run on the DataModule; DM/hand: Classifier epoch over the hand-written loop;")
    print("TD/DM: TensorDataset epoch time over the DataModule's (goal > 1 at batch 32);")
    print("base-bare, clf-bare: per optimizer step, over a bare LightningModule (goal <= 0.15 ms).")
    print("\nMedian step (batch start to end), median over the repeats, and the excess over the bare module:")
    for batch_size, _, _ in rows:
        step = {m: 1000 * statistics.median(STEP_MEDIANS[(batch_size, m)]) for m in ("bare", "base", "classifier")}
        print(
            f"  batch {batch_size:>3}: bare {step['bare']:.3f} ms, base {step['base']:.3f} ms "
            f"(+{step['base'] - step['bare']:.3f}), Classifier {step['classifier']:.3f} ms "
            f"(+{step['classifier'] - step['bare']:.3f})"
        )


if __name__ == "__main__":
    main()
