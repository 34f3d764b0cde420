"""Epoch time of the 300-100 MLP with and without MaxNorm on every hidden layer, in the same process.

    python benchmarks/callback_overhead.py [--repeats 3] [--limit-batches 1.0] [--threads 1]

One training epoch on the real Fashion-MNIST training split (55,000 images, batch 32: 1,719 steps), Nadam,
no validation, no logger, no progress bar. Plain and MaxNorm epochs alternate (ABBA order, so a drift in the
machine's load hits both alike); the ratio compares the fastest epoch of each. The goal is at most 1.03.
Both wall-clock and process CPU time are printed; the verdict uses CPU time, which other jobs on a shared
machine inflate less. One torch thread by default: on a busy machine, intra-op threads that wait on each
other slow a step tenfold (and make CPU time count spinning).

On a shared machine epoch times still wander by several percent, so the MaxNorm epochs also time the
projection itself (two extra post-step hooks on the optimizer, registered before and after MaxNorm's), and
the script prints that cost against the plain epoch: the overhead without the noise.
"""

from __future__ import annotations

import argparse
import time

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

from lit_deep import Classifier
from lit_deep.callbacks import MaxNorm
from lit_deep.data import FashionMNISTDataModule
from lit_deep.models import MLP


class EpochTimer(Callback):
    """Wall-clock and process CPU seconds of each training epoch."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self._start = (0.0, 0.0)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = (time.perf_counter(), time.process_time())

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.wall.append(time.perf_counter() - self._start[0])
        self.cpu.append(time.process_time() - self._start[1])


class ProjectionTimer(Callback):
    """Process CPU time spent in the optimizer's post-step hooks registered between its two halves.

    List ``ProjectionTimer.start`` before ``MaxNorm`` and ``ProjectionTimer.stop`` after it: step post-hooks
    run in registration order, and each registers its hook in ``on_train_start``.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self._t0 = 0.0
        self.start, self.stop = _Edge(self, first=True), _Edge(self, first=False)


class _Edge(Callback):
    def __init__(self, timer: ProjectionTimer, first: bool) -> None:
        self.timer, self.first = timer, first

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.optimizers[0].register_step_post_hook(self._hook)

    def _hook(self, *args: object) -> None:
        if self.first:
            self.timer._t0 = time.process_time()
        else:
            self.timer.seconds += time.process_time() - self.timer._t0


def one_epoch(data: FashionMNISTDataModule, max_norm: float | None, limit: float) -> dict[str, float]:
    """Wall and CPU seconds of one epoch, CPU seconds in MaxNorm, steps, and the largest hidden row norm."""
    clf = Classifier(MLP(hidden=(300, 100), seed=0), optimizer="nadam", lr=1e-3)
    timer, projection = EpochTimer(), ProjectionTimer()
    callbacks: list[Callback] = [timer]
    if max_norm is not None:
        callbacks += [projection.start, MaxNorm(max_norm, modules="backbone"), projection.stop]
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        limit_train_batches=limit,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
    )
    trainer.fit(clf, data)
    norms = [layer.weight.detach().norm(dim=1).max() for layer in clf.model.backbone if hasattr(layer, "weight")]
    return {
        "wall": timer.wall[0],
        "cpu": timer.cpu[0],
        "projection": projection.seconds,
        "steps": trainer.global_step,
        "largest": float(max(norms)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, help="folder with the Fashion-MNIST IDX files")
    parser.add_argument("--repeats", type=int, default=3, help="epochs of each kind (alternated ABBA)")
    parser.add_argument("--max-value", type=float, default=1.0, help="the max-norm bound r")
    parser.add_argument("--limit-batches", type=float, default=1.0, help="fraction of the epoch (quick checks)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (more make a shared box erratic)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data = FashionMNISTDataModule(args.data_dir, batch_size=32)
    data.setup("fit")
    runs: dict[str, list[dict[str, float]]] = {"plain": [], "max_norm": []}
    order = ["plain", "max_norm", "max_norm", "plain"] * ((args.repeats + 1) // 2)
    for kind in order[: 2 * args.repeats]:
        run = one_epoch(data, args.max_value if kind == "max_norm" else None, args.limit_batches)
        runs[kind].append(run)
        print(
            f"{kind:>9}: wall {run['wall']:6.2f} s, cpu {run['cpu']:6.2f} s, in MaxNorm {run['projection']:5.2f} s "
            f"({run['steps']:.0f} steps, largest hidden row norm {run['largest']:.4f})",
            flush=True,
        )
    steps = runs["plain"][0]["steps"]
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} thread(s), batch 32, {steps:.0f} steps per epoch")
    for label in ("wall", "cpu"):
        plain = min(r[label] for r in runs["plain"])
        constrained = min(r[label] for r in runs["max_norm"])
        print(
            f"{label:>4}: plain {plain:.2f} s, MaxNorm {constrained:.2f} s (fastest of {args.repeats} each), "
            f"extra {(constrained - plain) / steps * 1e6:.0f} us/step, ratio {constrained / plain:.3f}"
        )
    projection = min(r["projection"] for r in runs["max_norm"])
    plain_cpu = min(r["cpu"] for r in runs["plain"])
    print(
        f"time inside MaxNorm: {projection / steps * 1e6:.0f} us/step = {projection / plain_cpu:.1%} of a plain epoch"
    )
    print(
        f"ratio (epoch CPU time) {min(r['cpu'] for r in runs['max_norm']) / plain_cpu:.3f}, "
        f"ratio (plain + time in MaxNorm) {(plain_cpu + projection) / plain_cpu:.3f}  (goal <= 1.03)"
    )
    assert max(r["largest"] for r in runs["max_norm"]) <= args.max_value * (1 + 1e-6), "MaxNorm did not bind"


if __name__ == "__main__":
    main()
