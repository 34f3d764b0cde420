"""The zoo's ``config.json``: the model's description (preprocessing included) and what it was trained for.

Format 2 (written now) holds ``"model"``: :func:`lit_deep.models.describe` of the whole model, a
:class:`~lit_deep.models.Preprocess` layer first. Format 1 (``"architecture"`` + ``"preprocessing"``) is still
read. Either way the model is rebuilt by :func:`lit_deep.models.build`: allow-listed classes only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lit_deep.models import BackboneHead, Preprocess, build, describe

__all__ = ["FORMAT", "assemble", "model_description", "read_config", "zoo_description"]

FORMAT = 2


def assemble(network: BackboneHead, preprocess: Preprocess) -> BackboneHead:
    """``network`` with ``preprocess`` as the first layer of its backbone (same class, same head).

    Parameter names move up by one (``backbone.1.weight`` is the network's ``backbone.0.weight``); the
    preprocessing statistics are ``backbone.0.mean`` / ``backbone.0.std``.

    Example::

        >>> from lit_deep.models import MLP
        >>> model = assemble(MLP(hidden=(4,)), Preprocess())
        >>> type(model).__name__, type(model.backbone[0]).__name__, tuple(model(torch.zeros(2, 28, 28)).shape)
        ('MLP', 'Preprocess', (2, 10))
    """
    if not isinstance(network, BackboneHead):
        raise ValueError(f"network: expected a BackboneHead, got {type(network).__name__}")
    layers = list(network.backbone.children()) if type(network.backbone) is nn.Sequential else [network.backbone]
    return type(network).from_parts(nn.Sequential(preprocess, *layers), network.head, network.feature_dim)


def zoo_description(architecture: dict[str, Any], preprocessing: dict[str, Any]) -> dict[str, Any]:
    """The description of a zoo model from its network's description and its preprocessing settings.

    Built on the ``meta`` device: nothing is allocated.

    Example::

        >>> d = zoo_description({"class_path": "lit_deep.models.MLP", "init_args": {"hidden": [4]}},
        ...                     {"input_shape": [1, 28, 28], "standardize": "per_pixel"})
        >>> d["parts"]["backbone"]["init_args"]["modules"][0]["init_args"]
        {'input_shape': [1, 28, 28], 'per_pixel': True}
    """
    standardize = preprocessing.get("standardize", "none")
    if standardize not in ("none", "per_pixel"):
        raise ValueError(f"preprocessing.standardize: expected 'none' or 'per_pixel', got {standardize!r}")
    with torch.device("meta"):
        network = build(architecture)
        if not isinstance(network, BackboneHead):
            raise ValueError(f"architecture: expected a BackboneHead architecture, got {type(network).__name__}")
        pre = Preprocess(preprocessing.get("input_shape", (1, 28, 28)), per_pixel=standardize == "per_pixel")
        return describe(assemble(network, pre))


def model_description(config: dict[str, Any], where: str = "config.json") -> dict[str, Any]:
    """The model description a parsed ``config.json`` holds (its ``model`` entry, format 2).

    Raises:
        ValueError: for a config without a ``model`` description (format 1, ``architecture`` + ``preprocessing``,
            is no longer read: re-export the folder).

    Example::

        >>> model_description({"model": {"class_path": "torch.nn.Identity"}})["class_path"]
        'torch.nn.Identity'
    """
    if isinstance(config.get("model"), dict):
        return config["model"]
    hint = (
        " (format 1, 'architecture' + 'preprocessing', is not read: re-export it)" if "architecture" in config else ""
    )
    raise ValueError(f"{where}: no model description ('model'){hint}")


def read_config(path: Path, where: str) -> dict[str, Any]:
    """Parse ``config.json`` as data (a JSON object), naming ``where`` in errors.

    Example::

        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "config.json"
        >>> _ = p.write_text("[1]")
        >>> read_config(p, "the test")
        Traceback (most recent call last):
        ...
        ValueError: config.json from the test must hold a JSON object, got list
    """
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"config.json from {where} is not valid JSON ({err})") from err
    if not isinstance(config, dict):
        raise ValueError(f"config.json from {where} must hold a JSON object, got {type(config).__name__}")
    return config
