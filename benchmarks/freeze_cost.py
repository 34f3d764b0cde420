"""What freezing costs while the backbone is frozen, and whether DDP replicas stay equal after unfreezing.

    python benchmarks/freeze_cost.py [--repeats 3] [--batches 60] [--threads 1] [--skip-ddp]

Five arms, the same LightningModule (lit_deep's ``Classifier``, Nadam, batch 64) on the real Fashion-MNIST:
no freezing; lit_deep's ``FreezeUnfreeze("backbone")``, without and with its frozen-feature cache
(``cache_features=True``); Lightning's ``BackboneFinetuning`` (its module exposes
``backbone`` and builds Adam-family optimizers over the parameters that require gradients, as its docs ask);
finetuning-scheduler's ``FinetuningScheduler`` with an explicit two-phase schedule (head, then backbone). Two
models: ``cnn.fmnist`` from the zoo with a new 10-class head, and a 20-layer 1024-wide ReLU MLP whose backbone
dominates. Each fit runs two epochs with the backbone frozen throughout: epoch 0 warms up and measures memory
(and fills the cache), epoch 1 is timed. An epoch is the first ``--batches`` x 64 training images (so that epoch 1
meets the examples epoch 0 cached, reshuffled). Arms are interleaved in every repeat (the order rotates), and the
medians are compared; the cached arm's time is also given against uncached ``FreezeUnfreeze``.

Memory is what autograd keeps for the backward pass: the bytes of the distinct storages it saves during the
forward (``torch.autograd.graph.saved_tensors_hooks``), parameters excluded (they exist anyway); the largest step.

DDP: two CPU processes (gloo) fine-tune the same small BatchNorm MLP with each of the three callbacks (unfreezing
at epoch 1 of 3); the script prints the largest absolute difference of any parameter between the two ranks, and
how far the backbone moved after unfreezing (it must move, or equality would be trivial).

finetuning-scheduler pins Lightning and is never a dependency of lit_deep: run this script from a benchmark
environment that has it (``pip install finetuning-scheduler``); without it, its arm is left out and said so.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import BackboneFinetuning, Callback
from torch import nn

from lit_deep import Classifier, zoo
from lit_deep.callbacks import FreezeUnfreeze
from lit_deep.data import FashionMNISTDataModule
from lit_deep.models import MLP
from lit_deep.modules._optim import build_optimizer

try:
    from finetuning_scheduler import FinetuningScheduler
except ImportError:  # only in a benchmark environment
    FinetuningScheduler = None


OUT = Path("runs/freeze_cost")  # --out
CACHED = "FreezeUnfreeze+cache"


class LitBackbone(Classifier):
    """What BackboneFinetuning and finetuning-scheduler ask for: ``backbone`` and an optimizer over what trains."""

    @property
    def backbone(self) -> nn.Module:
        return self.model.backbone

    def configure_optimizers(self) -> Any:
        return build_optimizer(self.optimizer_name, [p for p in self.parameters() if p.requires_grad], self.lr)


def _fts(module: Classifier, unfreeze_at: int, epochs: int) -> Callback:
    # Epoch-driven phases: the head until `unfreeze_at`, then the backbone too, to the end of the fit (a final
    # phase's max_transition_epoch raises max_epochs to it). restore_best=False: no checkpoint to go back to.
    names = [name for name, _ in module.named_parameters()]
    schedule = {
        0: {"params": [n for n in names if n.startswith("model.head.")], "max_transition_epoch": unfreeze_at},
        1: {"params": [n for n in names if n.startswith("model.backbone.")], "max_transition_epoch": epochs},
    }
    assert FinetuningScheduler is not None
    return FinetuningScheduler(ft_schedule=schedule, epoch_transitions_only=True, restore_best=False)


def arm(name: str, model: nn.Module, unfreeze_at: int, epochs: int) -> tuple[Classifier, list[Callback]]:
    """The LightningModule and callbacks of one arm, unfreezing at the start of epoch ``unfreeze_at``."""
    if name == "none":
        return Classifier(model), []
    if name == "FreezeUnfreeze":
        return Classifier(model), [FreezeUnfreeze("backbone", unfreeze_at_epoch=unfreeze_at)]
    if name == CACHED:
        return Classifier(model), [FreezeUnfreeze("backbone", unfreeze_at_epoch=unfreeze_at, cache_features=True)]
    module = LitBackbone(model)
    if name == "BackboneFinetuning":
        return module, [BackboneFinetuning(unfreeze_backbone_at_epoch=unfreeze_at)]
    return module, [_fts(module, unfreeze_at, epochs)]


class Meter(Callback):
    """Epoch 0: the largest step's autograd-saved bytes (parameters excluded). Epoch 1: time, step by step.

    A step's time is the CPU time of the training thread from ``on_train_batch_start`` to ``on_train_batch_end``
    (forward, backward, optimizer step); the median over steps resists the bursts of other jobs on a shared machine.
    """

    def __init__(self) -> None:
        self.saved_peak = 0
        self.steps: list[float] = []  # CPU seconds of each step of epoch 1
        self.wall = 0.0  # wall seconds of epoch 1
        self.first_wall = 0.0  # wall seconds of epoch 0 (the cached arm fills its cache then)
        self.trainable = 0  # parameters that require gradients in the timed epoch
        self._params: set[int] = set()
        self._seen: dict[int, int] = {}
        self._hooks: Any = None
        self._t0 = 0.0
        self._step0 = 0.0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._params = {p.untyped_storage().data_ptr() for p in pl_module.parameters()}

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in self._params:
            self._seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, i: int) -> None:
        if trainer.current_epoch == 0:
            self._seen = {}
            self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda tensor: tensor)
            self._hooks.__enter__()
        self._step0 = time.thread_time()

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor) -> None:
        if self._hooks is not None:
            self._hooks.__exit__(None, None, None)
            self._hooks = None
            self.saved_peak = max(self.saved_peak, sum(self._seen.values()))

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, i: int
    ) -> None:
        if trainer.current_epoch == 1:
            self.steps.append(time.thread_time() - self._step0)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == 0:
            self.first_wall = time.perf_counter() - self._t0
        if trainer.current_epoch == 1:
            self.wall = time.perf_counter() - self._t0
            self.trainable = sum(p.numel() for p in pl_module.parameters() if p.requires_grad)


def trainer(callbacks: list[Callback], epochs: int, batches: int, **kwargs: Any) -> pl.Trainer:
    """A quiet CPU trainer without validation, logging or checkpoints (finetuning-scheduler writes its schedule)."""
    return pl.Trainer(
        default_root_dir=OUT, accelerator="cpu", max_epochs=epochs, limit_train_batches=batches, limit_val_batches=0,
        num_sanity_val_steps=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=callbacks, **kwargs,
    )  # fmt: skip


def measure(name: str, make_model: Callable[[], nn.Module], data: FashionMNISTDataModule, batches: int) -> Meter:
    """Two frozen epochs of one arm (unfreezing is scheduled when the fit ends)."""
    torch.manual_seed(0)
    module, callbacks = arm(name, make_model(), unfreeze_at=2, epochs=2)
    meter = Meter()
    trainer([*callbacks, meter], 2, batches, devices=1).fit(module, data)
    return meter


MODELS: dict[str, Callable[[], nn.Module]] = {
    "cnn.fmnist": lambda: zoo.load("cnn.fmnist", num_classes=10),
    "mlp-20x1024": lambda: MLP(hidden=(1024,) * 20, num_classes=10, seed=0),
}


def frozen_phase(args: argparse.Namespace, arms: list[str]) -> None:
    """Print the median frozen-phase epoch time and saved memory of every arm, and the ratios."""
    data = FashionMNISTDataModule(args.data_dir, batch_size=64, train_size=args.batches * 64)
    data.setup("fit")
    for model_name, make_model in MODELS.items():
        runs: dict[str, list[Meter]] = {name: [] for name in arms}
        for repeat in range(args.repeats):
            for name in arms[repeat % len(arms) :] + arms[: repeat % len(arms)]:
                meter = measure(name, make_model, data, args.batches)
                runs[name].append(meter)
                step, saved = statistics.median(meter.steps) * 1e3, meter.saved_peak / 2**20
                print(f"  {model_name} {name:>20}: wall {meter.wall:6.2f} s (epoch 0 {meter.first_wall:6.2f} s), "
                      f"median step {step:6.1f} ms CPU, "
                      f"saved {saved:7.2f} MiB, {meter.trainable} trainable", flush=True)  # fmt: skip
        print(f"\n{model_name}: {args.batches} batches of 64, frozen phase, {args.repeats} interleaved fits per arm")
        print("| arm | trainable parameters | epoch 1 wall s (median) | epoch 0 wall s | step CPU ms (median) "
              "| autograd-saved MiB | vs BackboneFinetuning: time, memory | vs FreezeUnfreeze: epoch 1 "
              "wall |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|")
        stats = {
            name: (
                statistics.median(m.wall for m in meters),
                statistics.median(m.first_wall for m in meters),
                statistics.median(t for m in meters for t in m.steps),
                statistics.median(m.saved_peak for m in meters),
            )
            for name, meters in runs.items()
        }
        _, _, ref_step, ref_mem = stats["BackboneFinetuning"]
        ref_wall = stats["FreezeUnfreeze"][0]
        for name, (wall, first, step, mem) in stats.items():
            print(f"| {name} | {runs[name][0].trainable:,} | {wall:.2f} | {first:.2f} | {step * 1e3:.1f} "
                  f"| {mem / 2**20:.2f} | {step / ref_step:.2f}, {mem / ref_mem:.3g} "
                  f"| {wall / ref_wall:.3g} |")  # fmt: skip
        print(flush=True)


# ----------------------------------------------------------------------------- DDP
def ddp_worker(out: Path, data_dir: str | None, arms: list[str]) -> None:
    """Run by each of the two ranks (Lightning relaunches this script): fine-tune with each callback, save."""

    class Save(Callback):
        def __init__(self, tag: str) -> None:
            self.tag = tag

        def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            if trainer.current_epoch == 0:  # the end of the frozen phase
                self.save(trainer, pl_module, "frozen")

        def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            self.save(trainer, pl_module, "final")

        def save(self, trainer: pl.Trainer, pl_module: pl.LightningModule, phase: str) -> None:
            state = {name: p.detach().clone() for name, p in pl_module.model.named_parameters()}
            torch.save(state, out / f"{self.tag}_{phase}_rank{trainer.global_rank}.pt")

    for name in arms:
        module, callbacks = arm(name, MLP(hidden=(32, 16), batch_norm="after", seed=0), unfreeze_at=1, epochs=3)
        fit = trainer([*callbacks, Save(name)], 3, 20, devices=2, strategy="ddp")
        fit.fit(module, FashionMNISTDataModule(data_dir, batch_size=32))
    torch.distributed.destroy_process_group()


def ddp(args: argparse.Namespace, arms: list[str]) -> None:
    """Launch the DDP worker and print the cross-rank differences."""
    out = Path(args.out)
    command = [sys.executable, __file__, "--ddp-worker", str(out), "--arms", *arms]
    if args.data_dir:
        command += ["--data-dir", args.data_dir]
    subprocess.run(command, check=True)
    print("\nDDP, 2 CPU ranks (gloo): small BatchNorm MLP, unfrozen at epoch 1 of 3, 20 batches of 32 per rank")
    print("| callback | max abs difference rank 0 vs rank 1 (all parameters) | backbone moved after unfreezing |")
    print("|---|---|---|")
    for name in arms:
        final = [torch.load(out / f"{name}_final_rank{rank}.pt") for rank in (0, 1)]
        frozen = torch.load(out / f"{name}_frozen_rank0.pt")
        diff = max(float((final[0][k] - final[1][k]).abs().max()) for k in final[0])
        moved = max(float((final[0][k] - frozen[k]).abs().max()) for k in frozen if k.startswith("backbone."))
        print(f"| {name} | {diff:.3g} | {moved:.3g} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, help="folder with the Fashion-MNIST IDX files")
    parser.add_argument("--repeats", type=int, default=3, help="fits per arm and model (interleaved)")
    parser.add_argument("--batches", type=int, default=60, help="training batches of 64 per epoch")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (more make a shared box erratic)")
    parser.add_argument("--skip-ddp", action="store_true", help="only the frozen-phase measurements")
    parser.add_argument("--skip-frozen", action="store_true", help="only the DDP measurements")
    parser.add_argument("--out", default="runs/freeze_cost", help="folder for the DDP runs' parameters")
    parser.add_argument("--ddp-worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--arms", nargs="*", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    global OUT
    OUT = Path(args.ddp_worker or args.out)
    OUT.mkdir(parents=True, exist_ok=True)
    arms = ["none", "FreezeUnfreeze", CACHED, "BackboneFinetuning"]
    if FinetuningScheduler is not None:
        arms.append("FinetuningScheduler")
    if args.ddp_worker:
        ddp_worker(Path(args.ddp_worker), args.data_dir, [a for a in args.arms if a not in ("none", CACHED)])
        return
    print(f"torch {torch.__version__}, lightning {pl.__version__}, {torch.get_num_threads()} thread(s)")
    if FinetuningScheduler is None:
        print("finetuning-scheduler is not installed here: its arm is left out (install it in a benchmark venv)")
    if not args.skip_frozen:
        frozen_phase(args, arms)
    if not args.skip_ddp:
        ddp(args, [a for a in arms if a not in ("none", CACHED)])


if __name__ == "__main__":
    main()
