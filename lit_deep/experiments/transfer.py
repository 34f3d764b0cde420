"""Transfer learning from a zoo model to task B, beside the same architecture trained from scratch.

The book's recipe: reuse model A's hidden layers for task B (sandal vs shirt from 200 images), train the new
head with the reused layers frozen for a few epochs, then unfreeze them at a lower learning rate. Here the
training runs 1cycle (book preset), max-norm on every layer, Nadam, and both models are evaluated on the task-B
test images deterministically and with Monte-Carlo dropout.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import CSVLogger
from torch import nn

from lit_deep.callbacks import FreezeUnfreeze, MaxNorm
from lit_deep.data import FashionMNISTDataModule
from lit_deep.models import BackboneHead, transfer
from lit_deep.modules import Classifier
from lit_deep.schedules import OneCycle
from lit_deep.uncertainty import MCPrediction, calibration_report, deterministic_probs, mc_predict

__all__ = ["Hardware", "TransferConfig", "TransferRun", "build_models", "run_transfer"]


@dataclass(frozen=True)
class TransferConfig:
    """Settings of one transfer experiment (the defaults are the demo's).

    Attributes:
        source_model: the zoo model whose backbone is reused.
        b_classes: task B's classes ``(negative, positive)``: sandal vs shirt by default; ``(0, 2)`` is the
            newer edition's T-shirt/top vs pullover.
        b_train_size: labelled training images of task B.
        epochs: training epochs of each model.
        unfreeze_at_epoch: the reused layers are frozen before this epoch (unless ``phases``).
        phases: instead of ``unfreeze_at_epoch``, ``FreezeUnfreeze``'s metric-driven phases (mappings of
            :class:`lit_deep.callbacks.freeze_unfreeze.Phase` fields), e.g. ``({"unfreeze": "backbone",
            "max_epochs": 8, "monitor": "val_loss", "patience": 2, "restore_best": True},)``.
        lr_factor: the reused layers' rate relative to the head's once unfrozen.
        max_lr: 1cycle's peak rate (Nadam).
        max_norm: the max-norm bound applied to every layer after each step (frozen layers excepted).
        dropout: rate of the alpha dropout before the new head (SELU net), the source of MC-dropout samples.
        mc_samples: Monte-Carlo samples at test time.
        batch_size: training batch size.
    """

    source_model: str = "mlp_selu.fmnist_a"
    b_classes: tuple[int, int] = (5, 6)
    b_train_size: int = 200
    epochs: int = 20
    unfreeze_at_epoch: int = 4
    phases: tuple[Mapping[str, Any], ...] | None = None
    lr_factor: float = 0.1
    max_lr: float = 2e-2
    max_norm: float = 3.0
    dropout: float = 0.1
    mc_samples: int = 100
    batch_size: int = 32


@dataclass
class TransferRun:
    """What one seed produced: per model (``"transfer"``, ``"scratch"``) metrics, predictions and log folders."""

    seed: int
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    mc: dict[str, MCPrediction] = field(default_factory=dict)
    log_dirs: dict[str, Path] = field(default_factory=dict)
    test_images: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None


def build_models(source: BackboneHead, dropout: float, seed: int) -> dict[str, BackboneHead]:
    """The B-on-A model (a copy of ``source``'s backbone, new one-logit head) and its from-scratch twin.

    Both append ``AlphaDropout(dropout)`` to the backbone (SELU nets; active in training, switched on again by
    ``mc_predict(enable_dropout=True)``). The scratch twin has the same architecture, preprocessing and initial
    head, with every backbone Linear layer re-initialised (LeCun normal, the SELU match).

    Example::

        >>> from lit_deep.models import MLP
        >>> models = build_models(MLP(hidden=(8,), activation="selu", seed=0), dropout=0.1, seed=0)
        >>> sorted(models), models["transfer"].head.out_features
        (['scratch', 'transfer'], 1)
    """
    # Same seed: the same new head; the scratch twin re-draws the backbone (same architecture and preprocessing).
    return {
        "transfer": transfer(source, 1, dropout=dropout, seed=seed).train(),  # zoo models come in eval mode
        "scratch": transfer(source, 1, dropout=dropout, reinitialize=True, seed=seed).train(),
    }


@dataclass(frozen=True)
class Hardware:
    """Where the trainings run: Lightning's ``accelerator``, ``devices``, ``num_nodes`` and ``strategy``.

    Under DDP every rank trains on its shard of task B's images (the effective batch is ``devices`` times
    the configured one), then evaluates the synchronised model on all test images; only rank 0 reports.

    Example::

        >>> Hardware(devices=2, strategy="ddp").devices
        2
    """

    accelerator: str = "cpu"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"


def _trainer(
    config: TransferConfig,
    log_dir: Path,
    name: str,
    callbacks: list[pl.Callback],
    progress: bool,
    hardware: Hardware,
) -> pl.Trainer:
    return pl.Trainer(
        accelerator=hardware.accelerator,
        devices=hardware.devices,
        num_nodes=hardware.num_nodes,
        strategy=hardware.strategy,
        max_epochs=config.epochs,
        callbacks=[*callbacks, LearningRateMonitor(logging_interval="step")],
        logger=CSVLogger(log_dir, name=name, version=""),
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
    )


def _evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: TransferConfig, seed: int
) -> tuple[dict[str, float], MCPrediction]:
    model.eval()
    det = calibration_report(deterministic_probs(model, x), y)
    mc = mc_predict(model, x, samples=config.mc_samples, seed=seed, enable_dropout=True)
    mc_report = calibration_report(mc, y)
    metrics = {f"det_{k}": v for k, v in det.items()} | {f"mc_{k}": v for k, v in mc_report.items()}
    return metrics, mc


def run_transfer(
    source: BackboneHead,
    config: TransferConfig,
    seed: int,
    output: str | Path,
    progress: bool = True,
    hardware: Hardware | None = None,
    models: Sequence[str] = ("transfer", "scratch"),
) -> TransferRun:
    """Train the B-on-A model and its scratch twin with one seed and evaluate both on task B's test images.

    Args:
        source: the pretrained model (e.g. ``zoo.load("mlp_selu.fmnist_a")``).
        config: the experiment's settings.
        seed: seeds the new head, the scratch init, the data order and the MC masks.
        output: folder for the CSV logs (``<output>/seed<seed>/<model>/metrics.csv``).
        progress: show Lightning's progress bars.
        hardware: where to train (one CPU process by default; e.g. ``Hardware(devices=2, strategy="ddp")``).
        models: which of ``"transfer"`` and ``"scratch"`` to train (both by default).

    Returns:
        The :class:`TransferRun`.
    """
    run = TransferRun(seed)
    data = FashionMNISTDataModule(
        task="B", b_classes=config.b_classes, b_train_size=config.b_train_size, batch_size=config.batch_size, seed=seed
    )
    data.setup("fit")
    assert data.test_set is not None
    run.test_images, run.test_labels = data.test_set.inputs, data.test_set.targets
    for name, model in build_models(source, config.dropout, seed).items():
        if name not in models:
            continue
        pl.seed_everything(seed, verbose=False)
        callbacks: list[pl.Callback] = [MaxNorm(config.max_norm)]
        if name == "transfer":
            at = None if config.phases else config.unfreeze_at_epoch
            callbacks.insert(0, FreezeUnfreeze("backbone", at, config.lr_factor, phases=config.phases))
        classifier = Classifier(
            model, optimizer="nadam", lr=config.max_lr, schedule=functools.partial(OneCycle, max_lr=config.max_lr)
        )
        log_dir = Path(output) / f"seed{seed}"
        trainer = _trainer(config, log_dir, name, callbacks, progress, hardware or Hardware())
        trainer.fit(classifier, datamodule=data)
        logged = trainer.logger.log_dir if trainer.logger else None
        run.log_dirs[name] = Path(logged) if logged else log_dir
        run.metrics[name], run.mc[name] = _evaluate(classifier.model, run.test_images, run.test_labels, config, seed)
    return run


def summarize(runs: list[TransferRun]) -> dict[str, dict[str, tuple[float, float]]]:
    """Mean and standard deviation over seeds of every metric, per model.

    Example::

        >>> runs = [TransferRun(s, {"scratch": {"mc_accuracy": a}}) for s, a in ((0, 0.9), (1, 0.8))]
        >>> mean, std = summarize(runs)["scratch"]["mc_accuracy"]
        >>> round(mean, 2), round(std, 4)
        (0.85, 0.0707)
    """
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for model in runs[0].metrics:
        out[model] = {}
        for key in runs[0].metrics[model]:
            values = torch.tensor([r.metrics[model][key] for r in runs], dtype=torch.float64)
            std = float(values.std()) if len(values) > 1 else 0.0
            out[model][key] = (float(values.mean()), std)
    return out


def metrics_table(summary: dict[str, dict[str, tuple[float, float]]], seeds: int) -> str:
    """A plain-text table of the summary (accuracy in %, NLL, ECE; mean +- std over ``seeds`` seeds)."""
    lines = [f"{'model':<9} {'pass':<14} {'accuracy %':>16} {'NLL':>15} {'ECE':>15}   ({seeds} seed(s))"]
    for model, values in summary.items():
        for kind, label in (("det", "deterministic"), ("mc", "MC dropout")):
            acc, nll_, ece = (values[f"{kind}_{m}"] for m in ("accuracy", "nll", "ece"))
            lines.append(
                f"{model:<9} {label:<14} {100 * acc[0]:>8.2f} +- {100 * acc[1]:<5.2f} "
                f"{nll_[0]:>7.4f} +- {nll_[1]:<5.3f}{ece[0]:>7.4f} +- {ece[1]:.3f}"
            )
    return "\n".join(lines)
