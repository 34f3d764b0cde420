"""The demo's figures: training curves, learning-rate traces and the most uncertain test images."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from lit_deep._io import save_figure  # noqa: E402

__all__ = ["plot_curves", "plot_lr", "plot_uncertain", "read_metrics"]


def read_metrics(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """The ``(step, value)`` series of a CSVLogger's ``metrics.csv``, by column name."""
    series: dict[str, list[tuple[int, float]]] = {}
    with open(log_dir / "metrics.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            step = int(row.get("step") or 0)
            for key, value in row.items():
                if key not in ("step", "epoch") and value not in ("", None):
                    series.setdefault(key, []).append((step, float(value)))
    return series


def plot_curves(log_dirs: dict[str, Path], path: Path) -> Path:
    """Training loss per step and validation accuracy per epoch, one line per model."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for name, log_dir in log_dirs.items():
        series = read_metrics(log_dir)
        if "train_loss" in series:
            steps, values = zip(*series["train_loss"], strict=True)
            ax_loss.plot(steps, values, label=name, alpha=0.8)
        if "val_acc" in series:
            steps, values = zip(*series["val_acc"], strict=True)
            ax_acc.plot(steps, [100 * v for v in values], marker="o", label=name)
    ax_loss.set(xlabel="step", ylabel="training loss", yscale="log", title="Training loss")
    ax_acc.set(xlabel="step", ylabel="validation accuracy (%)", title="Validation accuracy (task B)")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=110)  # atomic: a crash never leaves half a PNG
    plt.close(fig)
    return path


def plot_lr(log_dirs: dict[str, Path], path: Path) -> Path:
    """The learning rate of every parameter group per step (from ``LearningRateMonitor``)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, log_dir in log_dirs.items():
        for key, points in sorted(read_metrics(log_dir).items()):
            if key.startswith("lr-"):
                steps, values = zip(*points, strict=True)
                ax.plot(steps, values, label=f"{name}: {key.split('/', 1)[-1]}")
    ax.set(xlabel="step", ylabel="learning rate", yscale="log", title="1cycle with FreezeUnfreeze")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)  # atomic: a crash never leaves half a PNG
    plt.close(fig)
    return path


def plot_uncertain(
    images: torch.Tensor,
    labels: torch.Tensor,
    probs: torch.Tensor,
    std: torch.Tensor,
    order: torch.Tensor,
    class_names: Sequence[str],
    path: Path,
) -> Path:
    """A grid of the test images at ``order`` with their true class and MC probability (mean +- std)."""
    count = len(order)
    cols = min(count, 6)
    rows = (count + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, index in zip(axes.flat, order.tolist(), strict=False):
        ax.imshow(images[index].reshape(28, 28).numpy(), cmap="binary")
        top = int(probs[index].argmax())
        ax.set_title(
            f"true: {class_names[int(labels[index])]}\n"
            f"{class_names[top]} {probs[index, top]:.2f}+-{std[index, top]:.2f}",
            fontsize=8,
        )
    fig.suptitle("Most uncertain test images (MC dropout)")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)  # atomic: a crash never leaves half a PNG
    plt.close(fig)
    return path
