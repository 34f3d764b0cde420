"""Describing a model as ``{"class_path": ..., "init_args": ...}`` and building it back."""

from __future__ import annotations

import importlib
from typing import Any

from torch import nn

__all__ = ["build_model", "model_spec"]


def model_spec(model: nn.Module) -> dict[str, Any] | None:
    """The spec that rebuilds ``model``'s architecture, or ``None`` for an arbitrary module.

    A module describes itself with a ``spec()`` method (zoo models) or a ``config`` dict of its constructor
    arguments (the lit_deep architectures).

    Example::

        >>> from lit_deep.models import MLP
        >>> model_spec(MLP(hidden=(8,)))["class_path"]
        'lit_deep.models.mlp.MLP'
    """
    spec = getattr(model, "spec", None)
    if callable(spec):
        return spec()
    config = getattr(model, "config", None)
    if isinstance(config, dict):
        cls = type(model)
        return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": dict(config)}
    return None


def build_model(spec: dict[str, Any]) -> nn.Module:
    """Build a module from a ``{"class_path", "init_args"}`` spec (the LightningCLI form).

    Raises:
        ValueError: when the spec is malformed or names something that is not an ``nn.Module``.

    Example::

        >>> build_model({"class_path": "torch.nn.Linear", "init_args": {"in_features": 2, "out_features": 3}})
        Linear(in_features=2, out_features=3, bias=True)
    """
    if not isinstance(spec, dict) or "class_path" not in spec:
        raise ValueError(f"model: expected an nn.Module or a dict with 'class_path', got {spec!r}")
    path = spec["class_path"]
    if "." not in path:
        path = f"lit_deep.models.{path}"
    module_name, _, attr = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"model: cannot import class_path {spec['class_path']!r} ({err})") from err
    builder = getattr(cls, "from_spec", None)
    model = builder(spec) if callable(builder) else cls(**spec.get("init_args", {}))
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: {spec['class_path']!r} built a {type(model).__name__}, not an nn.Module")
    return model
