"""Plots: the reliability diagram, the risk-coverage curve (alone or beside it) and the OOD score histogram.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot, no global state, any backend) and saved as PNG
when a path is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from lit_deep._io import save_figure
from lit_deep._validate import check_int
from lit_deep.uncertainty.metrics import ECE_BINS, _checked, expected_calibration_error
from lit_deep.uncertainty.prediction import MCPrediction
from lit_deep.uncertainty.selective import aurc, risk_coverage_curve

if TYPE_CHECKING:  # matplotlib is imported when a figure is drawn, not with the package
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "calibration_figure",
    "reliability_bins",
    "reliability_diagram",
    "risk_coverage_plot",
    "uncertainty_histogram",
]


def reliability_bins(
    probs: MCPrediction | torch.Tensor, targets: torch.Tensor, n_bins: int = ECE_BINS
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per confidence bin: mean confidence, accuracy and count (``n_bins`` equal-width bins of ``(0, 1]``).

    Empty bins have confidence and accuracy 0.

    Returns:
        Three ``[n_bins]`` tensors: confidence, accuracy, count.

    Example::

        >>> conf, acc, count = reliability_bins(torch.tensor([[0.9, 0.1], [0.8, 0.2]]), torch.tensor([0, 1]), 5)
        >>> [round(c, 2) for c in conf.tolist()], acc.tolist(), count.tolist()
        ([0.0, 0.0, 0.0, 0.8, 0.9], [0.0, 0.0, 0.0, 0.0, 1.0], [0, 0, 0, 1, 1])
    """
    check_int("n_bins", n_bins, minimum=1)
    p, y = _checked(probs, targets)
    confidence, predicted = p.max(dim=1)
    # Bin b holds confidences in (b/n, (b+1)/n], as torchmetrics' calibration error does.
    bins = (torch.ceil(confidence * n_bins).long() - 1).clamp(0, n_bins - 1)
    count = torch.bincount(bins, minlength=n_bins)
    conf_sum = torch.zeros(n_bins).index_add_(0, bins, confidence)
    correct = torch.zeros(n_bins).index_add_(0, bins, (predicted == y).float())
    safe = count.clamp_min(1).float()
    return conf_sum / safe, correct / safe, count


def reliability_diagram(
    probs: MCPrediction | torch.Tensor,
    targets: torch.Tensor,
    path: str | Path | None = None,
    n_bins: int = ECE_BINS,
    title: str = "Reliability diagram",
) -> Figure:
    r"""Accuracy against confidence per bin, with the diagonal of perfect calibration and the ECE.

    Args:
        probs: ``[N, C]`` probabilities or an :class:`MCPrediction`.
        targets: ``[N]`` labels.
        path: where to save the PNG (``None``: do not save).
        n_bins: confidence bins (15 by default, as the ECE).
        title: the figure title (the ECE is appended).

    Returns:
        The figure.

    Example::

        >>> import tempfile, os
        >>> out = os.path.join(tempfile.mkdtemp(), "rel.png")
        >>> fig = reliability_diagram(torch.tensor([[0.9, 0.1], [0.3, 0.7]]), torch.tensor([0, 0]), out)
        >>> open(out, "rb").read(4), len(fig.axes)
        (b'\x89PNG', 1)
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5, 4.5))
    _draw_reliability(fig.add_subplot(), probs, targets, n_bins, title)
    return _finish(fig, path)


def _finish(fig: Figure, path: str | Path | None) -> Figure:
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path, format="png", dpi=100)  # atomic, no symlink followed
    return fig


def _draw_reliability(
    ax: Axes, probs: MCPrediction | torch.Tensor, targets: torch.Tensor, n_bins: int, title: str
) -> None:
    confidence, acc, count = reliability_bins(probs, targets, n_bins)
    ece = expected_calibration_error(probs, targets, n_bins)
    width = 1.0 / n_bins
    centers = (torch.arange(n_bins) + 0.5) * width
    filled = count > 0
    x, height = centers[filled].numpy(), acc[filled].numpy()
    low, gap = torch.minimum(acc, confidence)[filled].numpy(), (confidence - acc).abs()[filled].numpy()
    ax.bar(x, height, width=width, edgecolor="black", label="accuracy")
    ax.bar(x, gap, bottom=low, width=width, color="none", edgecolor="tab:red", hatch="//", label="gap to confidence")
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (max probability)", ylabel="accuracy")
    ax.set_title(f"{title}\nECE ({n_bins} bins) = {ece:.4f}")
    ax.legend(loc="upper left")


def _draw_risk_coverage(
    ax: Axes, probs: MCPrediction | torch.Tensor, targets: torch.Tensor, scores: torch.Tensor | None, title: str
) -> None:
    coverage, risk = risk_coverage_curve(probs, targets, scores)
    ax.plot(coverage.numpy(), risk.numpy(), label="selective risk")
    ax.axhline(float(risk[-1]), color="grey", linestyle="--", linewidth=1, label="error rate (full coverage)")
    ax.set(xlim=(0, 1), ylim=(0, max(0.05, 1.1 * float(risk.max()))), xlabel="coverage", ylabel="risk (error rate)")
    ax.set_title(f"{title}\nAURC = {aurc(probs, targets, scores):.4f}")
    ax.legend(loc="upper left")


def risk_coverage_plot(
    probs: MCPrediction | torch.Tensor,
    targets: torch.Tensor,
    path: str | Path | None = None,
    scores: torch.Tensor | None = None,
    title: str = "Risk-coverage curve",
) -> Figure:
    """Selective risk against coverage (:func:`~lit_deep.uncertainty.risk_coverage_curve`), AURC in the title.

    Args:
        probs: ``[N, C]`` probabilities or an :class:`MCPrediction`.
        targets: ``[N]`` labels.
        path: where to save the PNG (``None``: do not save).
        scores: ``[N]`` uncertainty used to rank (default ``1 - max p``).
        title: the figure title.

    Example::

        >>> fig = risk_coverage_plot(torch.tensor([[0.9, 0.1], [0.6, 0.4]]), torch.tensor([0, 1]))
        >>> fig.axes[0].get_xlabel()
        'coverage'
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5, 4.5))
    _draw_risk_coverage(fig.add_subplot(), probs, targets, scores, title)
    return _finish(fig, path)


def calibration_figure(
    probs: MCPrediction | torch.Tensor,
    targets: torch.Tensor,
    path: str | Path | None = None,
    n_bins: int = ECE_BINS,
    scores: torch.Tensor | None = None,
    title: str = "",
) -> Figure:
    """The reliability diagram and the risk-coverage curve side by side (calibration and selective prediction).

    Example::

        >>> fig = calibration_figure(torch.tensor([[0.9, 0.1], [0.3, 0.7]]), torch.tensor([0, 0]), title="MLP")
        >>> [ax.get_xlabel() for ax in fig.axes]
        ['confidence (max probability)', 'coverage']
    """
    check_int("n_bins", n_bins, minimum=1)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 4.5))
    left, right = fig.subplots(1, 2)
    prefix = f"{title}: " if title else ""
    _draw_reliability(left, probs, targets, n_bins, f"{prefix}reliability")
    _draw_risk_coverage(right, probs, targets, scores, f"{prefix}risk-coverage")
    return _finish(fig, path)


def uncertainty_histogram(
    scores_in: torch.Tensor,
    scores_out: torch.Tensor,
    path: str | Path | None = None,
    bins: int = 30,
    label: str = "uncertainty",
) -> Figure:
    """Overlaid density histograms of a score on in-distribution and out-of-distribution inputs.

    Args:
        scores_in: ``[N_in]`` scores of in-distribution inputs.
        scores_out: ``[N_out]`` scores of out-of-distribution inputs.
        path: where to save the PNG (``None``: do not save).
        bins: number of histogram bins (shared by both).
        label: the x-axis label (e.g. ``"mutual information (nats)"``).

    Returns:
        The figure.

    Example::

        >>> fig = uncertainty_histogram(torch.rand(50), torch.rand(20) + 0.5, label="entropy (nats)")
        >>> fig.axes[0].get_xlabel()
        'entropy (nats)'
    """
    check_int("bins", bins, minimum=1)
    if scores_in.dim() != 1 or scores_out.dim() != 1 or not scores_in.numel() or not scores_out.numel():
        raise ValueError("scores_in, scores_out: expected two non-empty 1-D tensors")
    both = torch.cat([scores_in, scores_out]).float()
    low, high = float(both.min()), float(both.max())
    edges = torch.linspace(low, high if high > low else low + 1.0, bins + 1).tolist()
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.5))
    ax = fig.add_subplot()
    ax.hist(scores_in.float().numpy(), bins=edges, density=True, alpha=0.6, label=f"in-distribution ({len(scores_in)})")
    ax.hist(scores_out.float().numpy(), bins=edges, density=True, alpha=0.6, label=f"OOD ({len(scores_out)})")
    ax.set(xlabel=label, ylabel="density")
    ax.legend()
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path, format="png", dpi=100)  # atomic, no symlink followed
    return fig
