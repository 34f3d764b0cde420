"""Temperature scaling (Guo et al., 2017): one scalar ``T`` dividing the logits, fitted to the validation NLL.

``softmax(z / T)`` keeps every prediction (the argmax does not move) and only changes the confidence: ``T > 1``
softens an over-confident network. :func:`fit_temperature` computes the validation logits once (eval mode,
dropout off, MC layers included) and minimises the NLL over ``log T`` with L-BFGS. :class:`Temperature` is the
parameter-free layer that applies it, :class:`TemperatureScaled` wraps a model with it; inside
:func:`~lit_deep.uncertainty.mc_predict` the logits of every sample are divided by ``T`` before the softmax.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from lit_deep._validate import check_int, check_positive
from lit_deep.uncertainty._inputs import check_logits, check_targets
from lit_deep.uncertainty._layers import dropout_off

__all__ = ["Temperature", "TemperatureScaled", "fit_temperature", "logits_and_targets", "temperature_from_logits"]


class Temperature(nn.Module):
    """Divide the input (logits) by a fixed temperature; no parameters. Shapes: any -> the same.

    Args:
        temperature: ``T > 0``.

    Example::

        >>> Temperature(2.0)(torch.tensor([[2.0, -4.0]])).tolist()
        [[1.0, -2.0]]
    """

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        self.temperature = check_positive("temperature", temperature)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        """``logits / T``."""
        return logits / self.temperature

    def extra_repr(self) -> str:
        """The temperature."""
        return f"temperature={self.temperature:.4f}"


class TemperatureScaled(nn.Module):
    """``model`` followed by :class:`Temperature`: the same predictions with calibrated confidence.

    Args:
        model: a network returning logits.
        temperature: ``T > 0`` (e.g. from :func:`fit_temperature`).

    Example::

        >>> net = TemperatureScaled(nn.Linear(2, 2, bias=False), 2.0)
        >>> _ = net.model.weight.data.copy_(torch.eye(2))
        >>> net(torch.tensor([[4.0, 2.0]])).tolist(), net.temperature
        ([[2.0, 1.0]], 2.0)
    """

    def __init__(self, model: nn.Module, temperature: float) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise ValueError(f"model: expected an nn.Module, got {type(model).__name__}")
        self.model = model
        self.scale = Temperature(temperature)

    @property
    def temperature(self) -> float:
        """``T``."""
        return self.scale.temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The model's logits divided by ``T``."""
        return self.scale(self.model(x))


def logits_and_targets(
    model: nn.Module, data: DataLoader | tuple[torch.Tensor, torch.Tensor], batch_size: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``[N, C]`` (or ``[N]`` for one output) of one deterministic pass and the targets ``[N]``.

    Eval mode with every dropout off; modes are restored afterwards. ``data``: a DataLoader of ``(x, y)``
    batches or a tuple ``(x, y)``. The labels must be integer class indices of the model's outputs
    (``0 <= y < C``; ``{0, 1}`` for one output).

    Raises:
        ValueError: for other data, no batches, or labels that are not class indices of the outputs.

    Example::

        >>> z, y = logits_and_targets(nn.Linear(3, 2), (torch.ones(5, 3), torch.zeros(5, dtype=torch.long)))
        >>> tuple(z.shape), tuple(y.shape)
        ((5, 2), (5,))
    """
    if isinstance(data, DataLoader):
        batches: Any = ((b[0], b[1]) for b in data)
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        inputs, labels = data
        batches = ((inputs[i : i + batch_size], labels[i : i + batch_size]) for i in range(0, len(inputs), batch_size))
    else:
        raise ValueError(f"data: expected a DataLoader or a tuple (inputs, targets), got {type(data).__name__}")
    check_int("batch_size", batch_size, minimum=1)
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else None
    logits, targets = [], []
    with dropout_off(model), torch.no_grad():
        for x, y in batches:
            # float inputs take the model's dtype too (a bf16-true or 16-true model multiplies in its own dtype)
            out = model(x.to(device, dtype) if dtype is not None and x.is_floating_point() else x.to(device))
            out = out.squeeze(-1) if out.dim() == 2 and out.shape[1] == 1 else out
            classes = out.shape[1] if out.dim() == 2 else 2
            logits.append(out.float().cpu())
            # Labels are class indices of the model's outputs: floats refused (not truncated), none >= classes.
            targets.append(check_targets(torch.as_tensor(y), out.shape[0], classes).cpu())
    if not logits:
        raise ValueError("data: no batches")
    return torch.cat(logits), torch.cat(targets)


def temperature_from_logits(logits: torch.Tensor, targets: torch.Tensor, max_iter: int = 100) -> float:
    """The temperature minimising ``NLL(softmax(logits / T), targets)`` (sigmoid for ``[N]`` logits).

    L-BFGS over ``log T`` (so ``T`` stays positive), starting at ``T = 1``.

    Args:
        logits: finite ``[N, C]`` logits, or ``[N]`` for one output (binary).
        targets: int ``[N]`` class indices in ``[0, C)`` (``{0, 1}`` for ``[N]`` logits).
        max_iter: L-BFGS iterations, at least 1 (as :class:`~lit_deep.callbacks.TemperatureScaling`).

    Raises:
        ValueError: for NaN or infinite logits, targets that are not class indices of the logits, or
            ``max_iter < 1``.

    Example::

        >>> z = torch.tensor([[4.0, 0.0], [4.0, 0.0], [0.0, 4.0], [4.0, 0.0]])  # confident, one in four wrong
        >>> round(temperature_from_logits(z, torch.tensor([0, 0, 1, 1])), 2)
        3.64
    """
    check_int("max_iter", max_iter, minimum=1)
    logits = check_logits(logits)
    if isinstance(targets, torch.Tensor) and targets.shape[:1] != logits.shape[:1]:
        raise ValueError(
            f"logits: expected [N, C] or [N] matching targets {tuple(targets.shape)}, got {tuple(logits.shape)}"
        )
    classes = logits.shape[1] if logits.dim() == 2 else 2
    z, y = logits.double(), check_targets(targets, logits.shape[0], classes)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        scaled = z / log_t.exp()
        loss = F.binary_cross_entropy_with_logits(scaled, y.double()) if z.dim() == 1 else F.cross_entropy(scaled, y)
        loss.backward()
        return loss

    optimizer.step(closure)
    temperature = float(log_t.detach().exp())
    if not 0 < temperature < math.inf:
        raise ValueError(f"logits: the temperature fit did not converge (T = {temperature}); check the logits")
    return temperature


def fit_temperature(
    model: nn.Module, data: DataLoader | tuple[torch.Tensor, torch.Tensor], batch_size: int = 1024, max_iter: int = 100
) -> float:
    """Fit the temperature of ``model`` on validation data (logits computed once; L-BFGS on the NLL).

    Args:
        model: a network returning logits ``[N, C]`` (or ``[N]`` / ``[N, 1]`` for binary tasks).
        data: a DataLoader of ``(x, y)`` batches, or a tuple ``(x, y)`` of tensors.
        batch_size: rows per forward pass for tensor data.
        max_iter: L-BFGS iterations.

    Returns:
        ``T`` (> 1 softens over-confident predictions).

    Raises:
        ValueError: for data that is neither, without batches, or labels that are not class indices of the
            model's outputs (a label ``>= C`` names the range instead of failing inside the loss).

    Example::

        >>> torch.manual_seed(0) and None
        >>> x = torch.randn(200, 2); y = (x[:, 0] + 0.8 * torch.randn(200) > 0).long()
        >>> over = nn.Linear(2, 2); _ = over.weight.data.copy_(torch.tensor([[-10.0, 0.0], [10.0, 0.0]]))
        >>> fit_temperature(over, (x, y)) > 2
        True
    """
    check_int("max_iter", max_iter, minimum=1)  # before the pass over the data
    return temperature_from_logits(*logits_and_targets(model, data, batch_size), max_iter=max_iter)
