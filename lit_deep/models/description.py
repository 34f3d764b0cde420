"""One way to describe a model: :func:`describe` writes it as data, :func:`build` makes it again.

A description is plain JSON data, the LightningCLI form ``{"class_path": ..., "init_args": {...}}``. It is what
Classifier hyper-parameters and checkpoints, LightningCLI recipes, the zoo's ``config.json`` and the Hub hold.

* **Compact**: a module constructed by an allow-listed class whose recorded constructor arguments still rebuild
  it is written as that call: ``{"class_path": "lit_deep.models.MLP", "init_args": {"hidden": [300, 100], ...}}``.
* **By parts**: a :class:`~lit_deep.models.BackboneHead` changed after construction (a new head, a dropout layer
  appended to the backbone) is written as ``{"class_path": <its class>, "parts": {"backbone": ..., "head": ...,
  "feature_dim": ...}}``; ``nn.Sequential`` as ``{"class_path": "torch.nn.Sequential", "init_args": {"modules":
  [...]}}``; torch.nn layers (and the MC dropout layers) by the constructor arguments they keep as attributes.
  Parameter-free layers (dropout, activations, preprocessing) are part of the description, so they come back.

:func:`describe` checks its result: the description, built on the ``meta`` device (no memory), must give the
same ``repr`` and the same state-dict names and shapes as the module, or it raises.

**Nothing read is executed.** :func:`build` first checks the whole description: every ``class_path`` must be a
registered class (lit_deep's architectures and layers, classes registered with
:func:`~lit_deep.models.register_model`) or a layer of ``torch.nn``, found by a table lookup, never imported by
name; anything else (``builtins.print``, ``subprocess.Popen``, a class that is not an ``nn.Module``) is refused
with one error before any constructor runs. With ``expected`` shapes (a checkpoint's state dict, a safetensors
header) it builds on the ``meta`` device first and refuses a description whose shapes disagree, before
allocating anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from lit_deep.models._base import BackboneHead
from lit_deep.models._record import canonical_path, recorded_init_args, registered_class
from lit_deep.nn.dropout import MCAlphaDropout, MCDropout

__all__ = [
    "DescriptionError",
    "build",
    "check_description",
    "check_fits",
    "describe",
    "describe_or_none",
    "resolve_class",
    "state_shapes",
]

Description = dict[str, Any]
#: Classes that read a file or download when constructed (``FromCheckpoint``, ``Pretrained``) are described by
#: their parts as the class that rebuilds them, :class:`BackboneHead`; older descriptions that name them are read
#: as that class. A fixed table of names: nothing is imported.
_BY_PARTS_ALIASES = {
    "lit_deep.zoo.Pretrained",
    "lit_deep.zoo.pretrained.Pretrained",
    "lit_deep.models.FromCheckpoint",
    "lit_deep.models.transfer.FromCheckpoint",
}
#: torch.nn classes a description may not name (wrappers of other modules, process groups).
_TORCH_DENIED = {
    "DataParallel",
    "Module",
    "ModuleDict",
    "ModuleList",
    "ParameterList",
    "ParameterDict",
    # clone a layer num_layers times: a short description could ask for unbounded work
    "Transformer",
    "TransformerEncoder",
    "TransformerDecoder",
}
_LIT_DEEP_LAYERS = (MCDropout, MCAlphaDropout)
_MAX_DEPTH = 64
_MAX_NODES = 10_000
_SKIPPED_ARGS = {"device", "dtype"}


class DescriptionError(ValueError):
    """A model description that is malformed, names a class outside the allow-list, or does not fit."""


# ----------------------------------------------------------------------------------------------- resolution
def _resolve(path: Any, where: str) -> type[nn.Module]:
    if not isinstance(path, str) or not path:
        raise DescriptionError(f"{where}.class_path: expected a class path string, got {path!r}")
    if "." not in path:  # the short form of LightningCLI recipes: lit_deep's architectures
        path = f"lit_deep.models.{path}"
    if path in _BY_PARTS_ALIASES:
        path = canonical_path(BackboneHead)
    cls = registered_class(path)
    if cls is None and path.startswith("torch.nn."):
        name = path.rsplit(".", 1)[1]
        candidate = getattr(nn, name, None)
        if (
            isinstance(candidate, type)
            and issubclass(candidate, nn.Module)
            and name not in _TORCH_DENIED
            and path in (f"torch.nn.{name}", f"{candidate.__module__}.{candidate.__qualname__}")
        ):
            cls = candidate
    if cls is None:
        for layer in _LIT_DEEP_LAYERS:
            if path in (canonical_path(layer), f"{layer.__module__}.{layer.__qualname__}"):
                cls = layer
    if cls is None:
        raise DescriptionError(
            f"{where}.class_path: {path!r} is not an allowed model class (lit_deep's architectures and layers, "
            "torch.nn layers, or a class registered with lit_deep.models.register_model); nothing was run"
        )
    return cls


def resolve_class(path: str, where: str = "model") -> type[nn.Module]:
    """The allow-listed ``nn.Module`` class a class path names, found by table lookup (nothing is imported).

    The allow-list of :func:`build`: lit_deep's architectures and layers, ``torch.nn`` layers, and classes
    registered with :func:`~lit_deep.models.register_model`; a bare name is one of lit_deep's architectures.

    Raises:
        DescriptionError: for any other path, naming ``where``.

    Example::

        >>> resolve_class("torch.nn.Linear"), resolve_class("MLP").__name__
        (<class 'torch.nn.modules.linear.Linear'>, 'MLP')
    """
    return _resolve(path, where)


# ----------------------------------------------------------------------------------------------- checking
def check_description(description: Any, where: str = "model") -> None:
    """Check a whole description without constructing anything.

    Raises:
        DescriptionError: naming the first offending entry (its path in the description).

    Example::

        >>> try:
        ...     check_description({"class_path": "subprocess.Popen", "init_args": {"args": ["id"]}})
        ... except DescriptionError as err:
        ...     print(str(err).split(" (")[0])
        model.class_path: 'subprocess.Popen' is not an allowed model class
    """
    nodes = [0]
    _check(_plain(description), where, 0, nodes)


def _plain(value: Any) -> Any:
    """Nested jsonargparse ``Namespace`` objects (LightningCLI parses a checkpoint's description into them) as dicts."""
    if type(value).__module__.startswith("jsonargparse") and callable(getattr(value, "as_dict", None)):
        return _plain(value.as_dict())
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _is_description(value: Any) -> bool:
    return isinstance(value, dict) and "class_path" in value


def _check(description: Any, where: str, depth: int, nodes: list[int]) -> None:
    nodes[0] += 1
    if depth > _MAX_DEPTH or nodes[0] > _MAX_NODES:
        raise DescriptionError(f"{where}: the description is nested deeper than {_MAX_DEPTH} or too large")
    if not _is_description(description):
        raise DescriptionError(f"{where}: expected a dict with 'class_path', got {type(description).__name__}")
    extra = set(description) - {"class_path", "init_args", "parts"}
    if extra or ("init_args" in description and "parts" in description):
        raise DescriptionError(f"{where}: unexpected keys {sorted(extra) or ['init_args', 'parts']}")
    cls = _resolve(description["class_path"], where)
    key = "parts" if "parts" in description else "init_args"
    named = description["class_path"]
    by_parts = getattr(cls, "describe_by_parts", False) or (isinstance(named, str) and named in _BY_PARTS_ALIASES)
    if key == "init_args" and by_parts:
        # FromCheckpoint / Pretrained read files or download: data rebuilds them from their parts only.
        raise DescriptionError(
            f"{where}: {description['class_path']} is rebuilt from its parts, not constructed from data"
        )
    args = description.get(key, {})
    if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
        raise DescriptionError(f"{where}.{key}: expected a mapping of argument names, got {args!r}")
    if key == "parts" and (not issubclass(cls, BackboneHead) or set(args) != {"backbone", "head", "feature_dim"}):
        raise DescriptionError(f"{where}.parts: only a BackboneHead has parts (backbone, head, feature_dim)")
    for name, value in args.items():
        if name in _SKIPPED_ARGS and value is not None:  # a device would allocate during the meta-device check
            raise DescriptionError(f"{where}.{key}.{name}: only None is allowed in a description, got {value!r}")
        _check_value(value, f"{where}.{key}.{name}", depth + 1, nodes)


def _check_value(value: Any, where: str, depth: int, nodes: list[int]) -> None:
    if depth > _MAX_DEPTH:
        raise DescriptionError(f"{where}: the description is nested deeper than {_MAX_DEPTH}")
    if _is_description(value):
        _check(value, where, depth, nodes)
    elif isinstance(value, (list, tuple)):
        nodes[0] += len(value)
        if nodes[0] > _MAX_NODES:
            raise DescriptionError(f"{where}: the description is too large (more than {_MAX_NODES} entries)")
        for i, item in enumerate(value):
            _check_value(item, f"{where}[{i}]", depth + 1, nodes)
    elif isinstance(value, dict):
        for k, item in value.items():
            if not isinstance(k, str):
                raise DescriptionError(f"{where}: keys must be strings, got {k!r}")
            _check_value(item, f"{where}.{k}", depth + 1, nodes)
    elif not (value is None or isinstance(value, (bool, int, float, str, nn.Module))):
        raise DescriptionError(f"{where}: expected JSON data, got {type(value).__name__}")


# ----------------------------------------------------------------------------------------------- building
def _value(value: Any, torch_layer: bool) -> Any:
    if isinstance(value, nn.Module):  # already built (LightningCLI instantiates nested modules itself)
        return value
    if _is_description(value):
        return _instantiate(value)
    if isinstance(value, (list, tuple)):
        items = [_value(v, torch_layer) for v in value]
        return tuple(items) if torch_layer else items
    if isinstance(value, dict):
        return {k: _value(v, torch_layer) for k, v in value.items()}
    return value


def _instantiate(description: Description) -> nn.Module:
    cls = _resolve(description["class_path"], "model")
    torch_layer = cls.__module__.startswith("torch.nn.")
    if "parts" in description:
        parts = {k: _value(v, False) for k, v in description["parts"].items()}
        return cls.from_parts(parts["backbone"], parts["head"], int(parts["feature_dim"]))  # type: ignore[attr-defined]
    args = {k: _value(v, torch_layer) for k, v in description.get("init_args", {}).items()}
    if cls is nn.Sequential:
        modules = args.get("modules", [])
        if isinstance(modules, dict):
            from collections import OrderedDict

            return nn.Sequential(OrderedDict(modules))
        return nn.Sequential(*modules)
    try:
        model = cls(**args)
    except DescriptionError:
        raise
    except TypeError as err:
        raise DescriptionError(
            f"model: {description['class_path']} rejected its init_args {sorted(args)}: {err}"
        ) from err
    except ValueError as err:  # the class's own argument check (e.g. a size past MAX_PARAMETERS), before allocation
        raise DescriptionError(f"model: {description['class_path']}: {err}") from err
    if not isinstance(model, nn.Module):  # pragma: no cover - the allow-list holds nn.Module subclasses only
        raise DescriptionError(f"model: {description['class_path']} built a {type(model).__name__}")
    return model


def state_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """The names and shapes of ``model``'s state dict (parameters and persistent buffers).

    Example::

        >>> state_shapes(nn.Linear(2, 3))
        {'weight': (3, 2), 'bias': (3,)}
    """
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _compare(expected: Mapping[str, tuple[int, ...]], actual: Mapping[str, tuple[int, ...]], source: str) -> None:
    missing = sorted(set(actual) - set(expected))
    unexpected = sorted(set(expected) - set(actual))
    wrong = [
        f"{k}: {tuple(expected[k])} != {actual[k]}" for k in actual if k in expected and tuple(expected[k]) != actual[k]
    ]
    if missing or unexpected or wrong:
        details = "; ".join(
            part
            for part in (
                f"missing {missing[:5]}" if missing else "",
                f"unexpected {unexpected[:5]}" if unexpected else "",
                f"shapes differ ({', '.join(wrong[:5])})" if wrong else "",
            )
            if part
        )
        raise DescriptionError(f"model: the description does not fit {source}: {details}; nothing was allocated")


def build(
    description: Description,
    expected: Mapping[str, tuple[int, ...]] | None = None,
    source: str = "the weights",
) -> nn.Module:
    """Build a module from its description (see the module docstring for what is allowed).

    Args:
        description: ``{"class_path", "init_args"}`` (or ``"parts"``), as :func:`describe` writes it.
        expected: state-dict names and shapes the model must have (a checkpoint's, a safetensors header's); the
            model is first built on the ``meta`` device and refused, before any allocation, if they differ.
        source: what ``expected`` comes from, for the error message.

    Returns:
        The module, freshly initialised (load the weights next, strictly).

    Raises:
        DescriptionError: for a malformed description, a class outside the allow-list, arguments the class
            rejects, or shapes that disagree with ``expected``.

    Example::

        >>> build({"class_path": "torch.nn.Linear", "init_args": {"in_features": 2, "out_features": 3}})
        Linear(in_features=2, out_features=3, bias=True)
    """
    description = _plain(description)
    if expected is not None:
        check_fits(description, expected, source)
    else:
        check_description(description)
    return _instantiate(description)


def check_fits(description: Description, expected: Mapping[str, tuple[int, ...]], source: str = "the weights") -> None:
    """Check a description and that the model it builds has exactly the state-dict shapes ``expected``.

    The model is built on the ``meta`` device only: nothing is allocated, whatever sizes the description names.

    Raises:
        DescriptionError: for a malformed or refused description, or shapes that disagree with ``expected``.

    Example::

        >>> linear = {"class_path": "torch.nn.Linear", "init_args": {"in_features": 200000, "out_features": 200000}}
        >>> try:
        ...     check_fits(linear, {"weight": (3, 2), "bias": (3,)}, "model.safetensors")
        ... except DescriptionError as err:
        ...     print(str(err)[:60])
        model: the description does not fit model.safetensors: shape
    """
    description = _plain(description)
    check_description(description)
    with torch.device("meta"):
        _compare(expected, state_shapes(_instantiate(description)), source)


# ----------------------------------------------------------------------------------------------- describing
def _data(value: Any, where: str) -> Any:
    if isinstance(value, nn.Module):
        return describe(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise DescriptionError(f"{where}: {value} is not JSON data")
        return value
    if isinstance(value, (list, tuple, torch.Size)):
        return [_data(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _data(v, f"{where}.{k}") for k, v in value.items()}
    raise DescriptionError(f"{where}: cannot describe a {type(value).__name__} as data")


def _torch_layer_args(module: nn.Module) -> dict[str, Any]:
    """A torch.nn (or MC dropout) layer's constructor arguments, read from the attributes it keeps."""
    import inspect

    args: dict[str, Any] = {}
    for name, param in inspect.signature(type(module).__init__).parameters.items():
        if name == "self" or name in _SKIPPED_ARGS or name.startswith("_"):
            continue
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        if name == "bias":  # a Parameter or None on the layer, a flag in the constructor
            bias = getattr(module, "bias", None)
            args[name] = bias if isinstance(bias, bool) else bias is not None
        elif hasattr(module, name) and not isinstance(getattr(module, name), (torch.Tensor, nn.Module)):
            args[name] = getattr(module, name)
        elif param.default is inspect.Parameter.empty:
            raise DescriptionError(f"model: cannot read argument {name!r} of {type(module).__name__}")
    return args


def _candidate(module: nn.Module) -> Description:
    cls = type(module)
    path = canonical_path(cls)
    if cls is nn.Sequential:
        names = [name for name, _ in module.named_children()]
        children = [describe(child) for child in module.children()]
        plain = names == [str(i) for i in range(len(names))]
        return {
            "class_path": path,
            "init_args": {"modules": children if plain else dict(zip(names, children, strict=True))},
        }
    recorded = recorded_init_args(module)
    if recorded is not None and registered_class(path) is cls and not getattr(cls, "describe_by_parts", False):
        return {"class_path": path, "init_args": _data(recorded, f"model ({path})")}
    if isinstance(module, BackboneHead) and registered_class(path) is cls:
        return _parts(module)
    if cls.__module__.startswith("torch.nn.modules.") or cls in _LIT_DEEP_LAYERS:
        return {"class_path": path, "init_args": _data(_torch_layer_args(module), f"model ({path})")}
    raise DescriptionError(
        f"model: cannot describe a {cls.__module__}.{cls.__qualname__}: decorate the class with "
        "lit_deep.models.register_model (before creating the instance) to store and rebuild it"
    )


def _parts(model: BackboneHead) -> Description:
    cls = BackboneHead if getattr(type(model), "describe_by_parts", False) else type(model)
    return {
        "class_path": canonical_path(cls),
        "parts": {"backbone": describe(model.backbone), "head": describe(model.head), "feature_dim": model.feature_dim},
    }


def _same(description: Description, module: nn.Module) -> bool:
    with torch.device("meta"):
        try:
            rebuilt = _instantiate(description)
        except (DescriptionError, TypeError, ValueError):
            return False
    same_repr = repr(rebuilt) == repr(module)
    if getattr(type(module), "describe_by_parts", False):  # rebuilt as a BackboneHead: compare what it holds
        same_repr = repr(rebuilt).partition("(")[2] == repr(module).partition("(")[2]
    return same_repr and state_shapes(rebuilt) == state_shapes(module)


def describe(model: nn.Module) -> Description:
    """The description that rebuilds ``model``'s architecture (not its weights).

    Raises:
        DescriptionError: for a module no description rebuilds (an unregistered class, an argument that is not
            data).

    Example::

        >>> from lit_deep.models import MLP
        >>> net = MLP(hidden=(8,), num_classes=3)
        >>> describe(net)["init_args"]["hidden"], repr(build(describe(net))) == repr(net)
        ([8], True)
        >>> net.head = nn.Linear(8, 2)  # changed after construction: described by its parts
        >>> sorted(describe(net)["parts"]), build(describe(net)).head.out_features
        (['backbone', 'feature_dim', 'head'], 2)
    """
    if not isinstance(model, nn.Module):
        raise DescriptionError(f"model: expected an nn.Module, got {type(model).__name__}")
    description = _candidate(model)
    if _same(description, model):
        return description
    if isinstance(model, BackboneHead) and registered_class(canonical_path(type(model))) is type(model):
        description = _parts(model)
        if _same(description, model):
            return description
    raise DescriptionError(
        f"model: the description of {type(model).__name__} does not rebuild it (a layer whose constructor arguments "
        "are not kept as attributes?); register its class with lit_deep.models.register_model"
    )


def describe_or_none(model: nn.Module) -> Description | None:
    """:func:`describe`, or ``None`` for a module that cannot be described.

    Example::

        >>> class Custom(nn.Module):
        ...     pass
        >>> describe_or_none(Custom()) is None
        True
    """
    try:
        return describe(model)
    except DescriptionError:
        return None
