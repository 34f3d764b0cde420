"""The zoo's ``config.json``: the model's description (preprocessing included) and what it was trained for.

Format 2 (written now) holds ``"model"``: :func:`lit_deep.models.describe` of the whole model, a
:class:`~lit_deep.models.Preprocess` layer first. Format 1 (``"architecture"`` + ``"preprocessing"``) is still
read. Either way the model is rebuilt by :func:`lit_deep.models.build`: allow-listed classes only.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lit_deep.models import BackboneHead, Preprocess, build, describe

__all__ = [
    "FORMAT",
    "MAX_CONFIG_BYTES",
    "TEMPERATURE_RANGE",
    "assemble",
    "config_class_names",
    "config_temperature",
    "model_description",
    "read_config",
    "zoo_description",
]

FORMAT = 2

#: The largest ``config.json`` read (a zoo config is a few kB; the bound is checked before parsing).
MAX_CONFIG_BYTES = 1 << 20

#: The temperatures a ``config.json`` may carry: a fitted temperature is near 1 (the zoo's are 1.1 to 1.2);
#: outside this range the scaled logits are all but constant or overflow (``1e-320`` makes them ``inf``).
TEMPERATURE_RANGE = (1e-3, 1e3)


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
    """Parse ``config.json`` as data (a JSON object); errors name the file and ``where`` it came from.

    The file must be at most :data:`MAX_CONFIG_BYTES` (checked before it is read) and nested shallowly enough
    for Python's JSON parser (a deeper file is refused in one line, not with a ``RecursionError``).

    Example::

        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "config.json"
        >>> _ = p.write_text("[1]")
        >>> try:
        ...     read_config(p, "the test")
        ... except ValueError as err:
        ...     print(str(err).replace(str(p.parent), "<dir>"))
        <dir>/config.json (the test): must hold a JSON object, got list
        >>> _ = p.write_text("[" * 100_000)
        >>> try:
        ...     read_config(p, "the test")
        ... except ValueError as err:
        ...     print(str(err).replace(str(p.parent), "<dir>"))
        <dir>/config.json (the test): nested too deeply to parse
    """
    name = f"{path} ({where})"
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ValueError(f"{name}: {size} bytes, more than the {MAX_CONFIG_BYTES} allowed")
        with path.open("rb") as handle:  # at most the bound, whatever the file grew to since stat
            data = handle.read(MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            raise ValueError(f"{name}: more than the {MAX_CONFIG_BYTES} bytes allowed")
        config = json.loads(data.decode("utf-8"))
    except RecursionError:
        raise ValueError(f"{name}: nested too deeply to parse") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{name}: not valid JSON ({err})") from err
    if not isinstance(config, dict):
        raise ValueError(f"{name}: must hold a JSON object, got {type(config).__name__}")
    return config


def config_temperature(config: dict[str, Any], path: str | Path) -> float | None:
    """The ``temperature`` of a parsed ``config.json`` (``None`` if absent), checked against what it describes.

    A temperature divides the logits: it must be a finite number in :data:`TEMPERATURE_RANGE`.

    Raises:
        ValueError: ``"<path>: temperature must be a finite number in [0.001, 1000], got 1e-320"``, naming the
            file (the value came from it, not from an argument).

    Example::

        >>> config_temperature({"temperature": 1.1}, "config.json"), config_temperature({}, "config.json")
        (1.1, None)
        >>> try:
        ...     config_temperature({"temperature": 1e-320}, "zoo/m/config.json")
        ... except ValueError as err:
        ...     print(err)
        zoo/m/config.json: temperature must be a finite number in [0.001, 1000], got 1e-320
    """
    value = config.get("temperature")
    if value is None:
        return None
    low, high = TEMPERATURE_RANGE
    number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    if not (math.isfinite(number) and low <= number <= high):
        raise ValueError(f"{path}: temperature must be a finite number in [{low:g}, {high:g}], got {value!r}")
    return number


def config_class_names(config: dict[str, Any], path: str | Path, classes: int | None) -> tuple[str, ...]:
    """The ``class_names`` of a parsed ``config.json`` (``()`` if absent or empty), one per class of the head.

    Args:
        config: the parsed file.
        path: the file, named in errors.
        classes: the classes of the model's head (``max(2, outputs)``: one output is a binary classifier);
            ``None``: unknown (a head that is not a Linear layer), only the type is checked.

    Raises:
        ValueError: for names that are not a list of strings, or not one per class, naming the file.

    Example::

        >>> config_class_names({"class_names": ["cat", "dog"]}, "config.json", 2)
        ('cat', 'dog')
        >>> try:
        ...     config_class_names({"class_names": ["a", "b", "c"]}, "zoo/m/config.json", 10)
        ... except ValueError as err:
        ...     print(err)
        zoo/m/config.json: class_names must be 10 names, one per output of the model's head, got 3: ['a', 'b', 'c']
    """
    names = config.get("class_names")
    if names is None or names == []:
        return ()
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{path}: class_names must be a list of strings, got {names!r}")
    if classes is not None and len(names) != classes:
        raise ValueError(
            f"{path}: class_names must be {classes} names, one per output of the model's head, "
            f"got {len(names)}: {names!r}"[:400]
        )
    return tuple(names)
