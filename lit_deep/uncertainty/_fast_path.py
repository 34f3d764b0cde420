"""The fast path: run the deterministic prefix of a sequential model once, repeat only the stochastic rest.

A model qualifies when it is an ``nn.Sequential`` whose ``forward`` is ``nn.Sequential``'s own (the library's
MLP and CNN are ``BackboneHead(nn.Sequential)`` with an ``nn.Sequential`` backbone). Nested sequentials are
flattened into one list of layers; the prefix is every layer before the first one that contains a stochastic
dropout layer. Other models run whole, on the input repeated for each sample (the naive loop, batched).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["Plan", "flatten_sequential", "make_plan"]


def flatten_sequential(model: nn.Module) -> list[nn.Module] | None:
    """The layers of a (nested) plain ``nn.Sequential`` in call order, or ``None`` for other models.

    Example::

        >>> net = nn.Sequential(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), nn.ReLU())
        >>> [type(m).__name__ for m in flatten_sequential(net)]
        ['Flatten', 'Linear', 'ReLU']
    """
    if not isinstance(model, nn.Sequential) or type(model).forward is not nn.Sequential.forward:
        return None
    layers: list[nn.Module] = []
    for child in model:
        nested = flatten_sequential(child)
        layers.extend(nested if nested is not None else [child])
    return layers


@dataclass
class Plan:
    """How to run a model: ``prefix`` once per image, then ``suffix`` once per sample.

    Attributes:
        prefix: deterministic layers (empty for the generic path).
        suffix: the rest (``[model]`` for the generic path).
        broadcast: the first suffix layer is itself a dropout layer, which takes the prefix output once and
            broadcasts it over the samples (no ``T``-fold copy of the input).
    """

    prefix: list[nn.Module]
    suffix: list[nn.Module]
    broadcast: bool

    @property
    def fast(self) -> bool:
        """Whether the model runs split (the fast path)."""
        return bool(self.prefix) or self.broadcast

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """The prefix's output ``[S, ...]`` for inputs ``[S, ...]``."""
        for layer in self.prefix:
            x = layer(x)
        return x

    def tail(self, h: torch.Tensor, samples: int) -> torch.Tensor:
        """The suffix's output ``[samples * S, ...]`` (sample-major) for prefix outputs ``h`` ``[S, ...]``."""
        if not self.broadcast:
            h = h.unsqueeze(0).expand(samples, *h.shape).reshape(samples * h.shape[0], *h.shape[1:])
        for layer in self.suffix:
            h = layer(h)
        return h


def make_plan(model: nn.Module, stochastic: list[nn.Module]) -> Plan:
    """Split ``model`` for the fast path when it is sequential, else run it whole.

    Example::

        >>> net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Dropout(0.5), nn.Linear(3, 2))
        >>> plan = make_plan(net, [net[2]])
        >>> len(plan.prefix), len(plan.suffix), plan.broadcast
        (2, 2, True)
    """
    layers = flatten_sequential(model)
    if layers is None:
        return Plan([], [model], broadcast=False)
    chosen = set(stochastic)
    for i, layer in enumerate(layers):
        if any(sub in chosen for sub in layer.modules()):
            return Plan(layers[:i], layers[i:], broadcast=layer in chosen)
    return Plan(layers, [], broadcast=False)
