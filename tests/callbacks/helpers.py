"""Small builders shared by the callback tests: tiny models, loaders and quiet CPU Trainers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader, TensorDataset

from lit_deep import Classifier
from lit_deep.models import MLP

IN_SHAPE = (1, 4, 4)


def tiny_mlp(hidden: tuple[int, ...] = (8, 6), num_classes: int = 3, seed: int = 0, **kwargs: Any) -> MLP:
    """An MLP on 1x4x4 inputs: backbone = Flatten(0), Linear(1), act(2), Linear(3), act(4) for two layers."""
    return MLP(input_shape=IN_SHAPE, hidden=hidden, num_classes=num_classes, seed=seed, **kwargs)


def loader(n: int = 32, batch_size: int = 8, num_classes: int = 3, seed: int = 0, scale: float = 1.0) -> DataLoader:
    """Random inputs ``[n, 1, 4, 4]`` and labels cycling ``0..num_classes-1``, in a fixed order."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *IN_SHAPE, generator=gen) * scale
    return DataLoader(TensorDataset(x, torch.arange(n) % num_classes), batch_size=batch_size)


def make_trainer(root: Path, callbacks: list[Callback], **kwargs: Any) -> pl.Trainer:
    """A quiet CPU Trainer without validation (unless asked), logging or checkpoints (unless asked)."""
    options: dict[str, Any] = {
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "limit_val_batches": 0,
        "num_sanity_val_steps": 0,
        "default_root_dir": root,
        "max_epochs": 2,
    }
    options.update(kwargs)
    return pl.Trainer(callbacks=callbacks, **options)


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every parameter and buffer."""
    return {name: t.detach().clone() for name, t in module.state_dict().items()}


def group_lrs(trainer: pl.Trainer) -> dict[str, float]:
    """The current rate of each named parameter group of the first optimizer."""
    return {group["name"]: group["lr"] for group in trainer.optimizers[0].param_groups}


def classifier(**kwargs: Any) -> Classifier:
    """A Classifier on :func:`tiny_mlp` (keyword arguments go to the Classifier; ``model=`` overrides the MLP)."""
    model = kwargs.pop("model", None) or tiny_mlp()
    return Classifier(model, **kwargs)


def max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], prefix: str = "") -> float:
    """The largest absolute difference between two tensor dicts (over the names starting with ``prefix``)."""
    return max(float((a[k] - b[k]).abs().max()) for k in a if k.startswith(prefix))
