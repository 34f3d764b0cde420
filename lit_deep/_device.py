"""Where a model's work runs: its device, the inputs of a batch, batches moved there (one helper each)."""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import nn

__all__ = ["batch_inputs", "model_device", "to_model_device"]


def batch_inputs(batch: Any) -> Any:
    """The inputs of a DataLoader batch: ``batch[0]`` of an ``(x, y, ...)`` tuple or list, else the batch itself.

    Example::

        >>> x = torch.ones(2, 3)
        >>> batch_inputs((x, torch.zeros(2))) is x, batch_inputs(x) is x
        (True, True)
    """
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def model_device(model: nn.Module) -> torch.device | None:
    """The device of the model's first parameter (or buffer); ``None`` for a model without either.

    Example::

        >>> model_device(nn.Linear(2, 2)), model_device(nn.ReLU())
        (device(type='cpu'), None)
    """
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        return tensor.device
    return None


def to_model_device(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` on the model's device (``x`` itself when it is there already or the model has no tensors).

    Example::

        >>> x = torch.ones(2)
        >>> to_model_device(nn.Linear(2, 2), x) is x
        True
    """
    device = model_device(model)
    return x if device is None or x.device == device else x.to(device)
