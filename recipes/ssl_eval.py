"""The self-supervised backbone, evaluated: linear probe and fine-tune against the same CNN from scratch.

Four arms on the same data, seeds, head initialisation, optimizer (Nadam, 1cycle) and epochs:

* ``probe``: the pretrained backbone frozen (``FreezeUnfreeze`` never unfreezing, BatchNorm in eval mode), a new
  linear head trained;
* ``finetune``: the pretrained backbone with a new head, frozen for ``unfreeze_at_epoch`` epochs, then trained at
  ``lr_factor`` times the head's rate;
* ``scratch``: the same architecture freshly initialised (He normal), everything trained;
* ``random_probe``: that fresh backbone frozen and a linear head trained (the fair baseline of ``probe``).

Two downstream tasks: task B (sandal vs shirt, the DataModule's first 200 task-B training images) and all ten
classes with the first 1,000 labelled images of the training split (file images 5,000-5,999; not balanced by
design: 87 to 111 per class).
Every arm trains a fixed budget (no early stopping: the last epoch is the model). Whatever is chosen is chosen on
the validation split (the training file's first 5,000 images) with one selection seed (100), never on the test
split: by default the fine-tune's ``lr_factor`` (0.1 or 1.0); ``--lrs`` adds peak rates to try for every arm (the
default is one rate, 3e-3, for all, fixed beforehand: a wider grid did not fit this machine's time budget). The
chosen settings then run on the evaluation seeds 0..4, scored on the test split only. Writes
``recipes/results/ssl_eval.json`` and prints a markdown table.

Run: ``python recipes/ssl_eval.py --ckpt runs/zoo/rotation_cnn.fmnist/checkpoints/last.ckpt --seeds 5``
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from lit_deep import Classifier
from lit_deep.callbacks import FreezeUnfreeze
from lit_deep.data import FashionMNISTDataModule
from lit_deep.models import BackboneHead, build, read_checkpoint, transfer
from lit_deep.schedules import OneCycle

HERE = Path(__file__).resolve().parent
ARMS = ("probe", "finetune", "scratch", "random_probe")
LABELS = {
    "probe": "linear probe (pretrained, frozen)",
    "finetune": "fine-tune (pretrained)",
    "scratch": "scratch (same CNN)",
    "random_probe": "linear probe (random, frozen)",
}


@dataclass(frozen=True)
class Downstream:
    """One downstream task: the DataModule's arguments and the training budget every arm gets."""

    name: str
    label: str
    data: dict[str, Any]
    epochs: int
    batch_size: int


TASKS = (
    Downstream("B", "task B: sandal vs shirt, 200 labels", {"task": "B", "b_train_size": 200}, 20, 32),
    Downstream("1k", "10 classes, 1,000 labels", {"task": "full", "train_size": 1000}, 10, 32),
)


@dataclass(frozen=True)
class Setting:
    """What is chosen on the validation split for one arm: the peak rate and (fine-tune) the backbone's factor."""

    lr: float
    lr_factor: float = 1.0
    unfreeze_at_epoch: int = 2


@dataclass
class Result:
    """One training run: its setting, seed, accuracies and wall time."""

    arm: str
    seed: int
    setting: Setting
    val_acc: float | None = None
    test_acc: float | None = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def build_model(arm: str, source: BackboneHead, description: dict[str, Any], num_classes: int, seed: int) -> Any:
    """The arm's network: the pretrained backbone or a fresh one (same description, new seed), a new head.

    The head is drawn from ``seed`` first, so every arm of one seed starts from the same head.
    """
    if arm in ("probe", "finetune"):
        return transfer(source, num_classes, seed=seed).train()
    fresh = build({**description, "init_args": {**description["init_args"], "seed": 10_000 + seed}})
    return transfer(fresh, num_classes, seed=seed).train()


def callbacks(arm: str, setting: Setting) -> list[pl.Callback]:
    """Freezing: none (scratch), for ever (probes) or until ``unfreeze_at_epoch`` (fine-tune)."""
    if arm == "scratch":
        return []
    if arm == "finetune":
        return [FreezeUnfreeze("backbone", setting.unfreeze_at_epoch, setting.lr_factor)]
    return [FreezeUnfreeze("backbone", None)]


def run(
    arm: str,
    task: Downstream,
    setting: Setting,
    seed: int,
    source: BackboneHead,
    description: dict[str, Any],
    data_dir: str | None = None,
    test: bool = True,
    val_size: int = 5000,
) -> Result:
    """Train one arm with one seed on ``task``; score the validation split (``test=False``) or the test split."""
    started = time.perf_counter()
    # Evaluation batches of 100: one thread scores 1,000-image batches ~40 % slower (cache misses).
    data = FashionMNISTDataModule(
        data_dir,
        batch_size=task.batch_size,
        val_size=val_size,
        augment=True,
        seed=seed,
        eval_batch_size=100,
        **task.data,
    )
    data.setup("fit")
    pl.seed_everything(seed, verbose=False)
    model = build_model(arm, source, description, data.num_classes, seed)
    classifier = Classifier(
        model, optimizer="nadam", lr=setting.lr, schedule=functools.partial(OneCycle, max_lr=setting.lr)
    )
    quiet: dict[str, Any] = {"logger": False, "enable_progress_bar": False, "enable_model_summary": False}
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=task.epochs,
        callbacks=callbacks(arm, setting),
        enable_checkpointing=False,
        limit_val_batches=0,  # no per-epoch validation: the budget is fixed, the last epoch is the model
        **quiet,
    )
    trainer.fit(classifier, datamodule=data)
    evaluator = pl.Trainer(accelerator="cpu", devices=1, **quiet)
    result = Result(arm, seed, setting)
    if test:  # an evaluation run: the setting is already chosen, only the test split is scored
        result.test_acc = float(evaluator.test(classifier, datamodule=data, verbose=False)[0]["test_acc"])
    else:  # a selection run: the validation split only
        result.val_acc = float(evaluator.validate(classifier, datamodule=data, verbose=False)[0]["val_acc"])
    result.seconds = round(time.perf_counter() - started, 1)
    return result


def candidates(arm: str, lrs: list[float], lr_factors: list[float]) -> list[Setting]:
    """The grid searched on the validation split: every rate, and for the fine-tune every backbone factor."""
    factors = lr_factors if arm == "finetune" else [1.0]
    return [Setting(lr, factor) for lr, factor in itertools.product(lrs, factors)]


def select(arm: str, task: Downstream, grid: list[Setting], seed: int, **kwargs: Any) -> tuple[Setting, list[Result]]:
    """The setting with the best validation accuracy (ties: the first), from one run each on ``seed``."""
    if len(grid) == 1:
        return grid[0], []
    tried = [run(arm, task, setting, seed, test=False, **kwargs) for setting in grid]
    best = max(tried, key=lambda r: r.val_acc or 0.0)  # max keeps the first of equal values
    return best.setting, tried


def summary(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def evaluate(
    source: BackboneHead,
    description: dict[str, Any],
    tasks: tuple[Downstream, ...] = TASKS,
    seeds: int = 5,
    lrs: tuple[float, ...] = (3e-3,),
    lr_factors: tuple[float, ...] = (1.0,),
    select_seed: int = 100,
    arms: tuple[str, ...] = ARMS,
    **kwargs: Any,
) -> dict[str, Any]:
    """Select each arm's setting on validation, then train it on ``seeds`` seeds and score the test split."""
    out: dict[str, Any] = {"seeds": seeds, "select_seed": select_seed, "tasks": []}
    for task in tasks:
        entry: dict[str, Any] = {"name": task.name, "label": task.label, "epochs": task.epochs, "arms": {}}
        entry["batch_size"] = task.batch_size
        for arm in arms:
            grid = candidates(arm, list(lrs), list(lr_factors))
            chosen, tried = select(arm, task, grid, select_seed, source=source, description=description, **kwargs)
            runs = [
                run(arm, task, chosen, seed, source=source, description=description, **kwargs) for seed in range(seeds)
            ]
            test = summary([r.test_acc for r in runs if r.test_acc is not None])
            entry["arms"][arm] = {
                "setting": asdict(chosen),
                "selection": [{"setting": asdict(r.setting), "val_acc": r.val_acc} for r in tried],
                "per_seed": [{"seed": r.seed, "test_acc": r.test_acc, "seconds": r.seconds} for r in runs],
                "test_acc": test,
            }
            print(f"{task.name} {arm}: {chosen} test {100 * test[0]:.2f} ± {100 * test[1]:.2f}", flush=True)
        out["tasks"].append(entry)
    return out


def markdown(results: dict[str, Any]) -> str:
    """The table: test accuracy % (mean ± std over seeds) of every arm on every task, with its chosen setting."""
    lines = ["| task | model | test accuracy % | peak lr (backbone ×) | seeds |", "|---|---|---|---|---|"]
    for task in results["tasks"]:
        for arm, values in task["arms"].items():
            (test, test_std), setting = values["test_acc"], values["setting"]
            lr = f"{setting['lr']:g}" + (f" (× {setting['lr_factor']:g})" if arm == "finetune" else "")
            lines.append(
                f"| {task['label']} | {LABELS[arm]} | {100 * test:.2f} ± {100 * test_std:.2f} | {lr} "
                f"| {len(values['per_seed'])} |"
            )
    return "\n".join(lines)


def merge(paths: list[Path]) -> dict[str, Any]:
    """One result from several runs of this script (e.g. one process per task or per arm): tasks and arms joined."""
    parts = [json.loads(p.read_text()) for p in paths]
    merged = {k: v for k, v in parts[0].items() if k != "tasks"}
    tasks: dict[str, dict[str, Any]] = {}
    for task in (task for part in parts for task in part["tasks"]):
        tasks.setdefault(task["name"], {**task, "arms": {}})["arms"].update(task["arms"])
    for task in tasks.values():  # the table's order, whatever the processes' order
        task["arms"] = {arm: task["arms"][arm] for arm in ARMS if arm in task["arms"]}
    merged["tasks"] = list(tasks.values())
    merged["seconds"] = sum(part.get("seconds", 0.0) for part in parts)
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default="runs/zoo/rotation_cnn.fmnist/checkpoints/last.ckpt")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--lrs", type=float, nargs="+", default=[3e-3], help="peak rates tried on validation")
    parser.add_argument("--lr-factors", type=float, nargs="+", default=[0.1, 1.0], help="fine-tune factors tried")
    parser.add_argument("--tasks", nargs="+", default=[t.name for t in TASKS], choices=[t.name for t in TASKS])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--merge", type=Path, nargs="+", help="merge these result files into --output instead")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "ssl_eval.json")
    args = parser.parse_args()
    if args.merge:
        results = merge(args.merge)
    else:
        checkpoint = read_checkpoint(args.ckpt, require_model=True)
        assert checkpoint.description is not None
        started = time.perf_counter()
        tasks = tuple(t for t in TASKS if t.name in args.tasks)
        results = evaluate(
            checkpoint.model(),
            checkpoint.description,
            tasks,
            args.seeds,
            tuple(args.lrs),
            tuple(args.lr_factors),
            arms=tuple(args.arms),
            data_dir=args.data_dir,
        )
        results |= {"checkpoint": str(args.ckpt), "seconds": round(time.perf_counter() - started, 1)}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))
    print(f"wrote {args.output} ({results['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
