"""The selector language of lit_deep's callbacks: which layers and parameters a callback acts on.

Callbacks such as ``FreezeUnfreeze(modules=...)``, ``MaxNorm(modules=...)`` and ``LayerStats(modules=...)``
take selectors, relative to the module's root model (:func:`~lit_deep.callbacks.root_module`):

* a **qualified name** of a submodule or parameter: ``"backbone"``, ``"backbone.3"``, ``"head.weight"``;
  a module selects all its descendants;
* a **glob pattern** (``fnmatch``, case-sensitive) over those names: ``"backbone.*"``, ``"*.bias"``;
* a **layer type**: the class itself from Python (``nn.Linear``), or in YAML its class path
  (``torch.nn.Linear``, ``lit_deep.nn.MCDropout``), looked up in an allow-list (:func:`layer_type`), never
  imported;
* a list of any of these.

In a LightningCLI recipe::

    trainer:
      callbacks:
        - class_path: lit_deep.callbacks.MaxNorm
          init_args:
            max_value: 3.0
            modules: [torch.nn.Linear]          # every Linear layer
        - class_path: lit_deep.callbacks.FreezeUnfreeze
          init_args:
            modules: backbone                    # everything under .model.backbone
            unfreeze_at_epoch: {3: "backbone.[4-9]*", 6: "backbone"}   # top layers first, then the rest

and the same from Python::

    >>> from lit_deep.callbacks import FreezeUnfreeze, MaxNorm
    >>> MaxNorm(3.0, modules=[nn.Linear]).bounds
    {<class 'torch.nn.modules.linear.Linear'>: 3.0}
    >>> FreezeUnfreeze(modules="backbone", unfreeze_at_epoch={3: "backbone.[4-9]*", 6: "backbone"}).milestones
    {3: ('backbone.[4-9]*',), 6: ('backbone',)}

A selector that matches nothing is an error naming the argument, so a typo does not silently select nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase
from typing import Any

from torch import nn

from lit_deep.models import DescriptionError
from lit_deep.models.description import resolve_class

__all__ = [
    "BATCH_NORMS",
    "LAYERS",
    "Selector",
    "as_patterns",
    "as_selectors",
    "layer_type",
    "matches",
    "select_modules",
    "select_parameters",
]

#: A module selector: a qualified name or glob pattern (``"backbone.3"``, ``"backbone.*"``), or a module type.
Selector = str | type[nn.Module]
#: The layers that own weight matrices and kernels: the default targets of ``MaxNorm`` and ``LayerStats``.
LAYERS: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
#: The batch-normalisation layers (``FreezeUnfreeze``'s ``bn`` argument acts on them).
BATCH_NORMS: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def as_patterns(value: Any, argument: str) -> tuple[str, ...]:
    """A name or a sequence of names as a tuple of non-empty strings.

    Raises:
        ValueError: for anything else, naming ``argument``.

    Example::

        >>> as_patterns("backbone", "modules"), as_patterns(["backbone.1", "head"], "modules")
        (('backbone',), ('backbone.1', 'head'))
    """
    patterns = (value,) if isinstance(value, str) else value
    if not isinstance(patterns, Sequence) or isinstance(patterns, str) or not patterns:
        raise ValueError(
            f"{argument}: expected a module name, a glob pattern or a non-empty list of them, got {value!r}"
        )
    if not all(isinstance(p, str) and p for p in patterns):
        raise ValueError(f"{argument}: every name must be a non-empty string, got {value!r}")
    return tuple(patterns)


def layer_type(name: str, argument: str = "modules") -> type[nn.Module] | None:
    """The layer type a class path names (``"torch.nn.Linear"``, ``"lit_deep.nn.MCDropout"``), else ``None``.

    Only a dotted name whose last part is capitalised is read as a type; ``"backbone.3"`` and ``"head"`` are
    module names. Types are looked up in the allow-list of :func:`lit_deep.models.resolve_class` (``torch.nn``
    layers, lit_deep's layers and architectures, registered classes): a YAML recipe is data, nothing is imported.

    Raises:
        ValueError: for a class path outside the allow-list, naming ``argument``.

    Example::

        >>> layer_type("torch.nn.Conv2d"), layer_type("backbone.3")
        (<class 'torch.nn.modules.conv.Conv2d'>, None)
    """
    module_name, _, attr = name.rpartition(".")
    if not module_name or not attr.isidentifier() or not attr[:1].isupper():
        return None  # "backbone.3", "head": module names, not classes
    try:
        return resolve_class(name, argument)
    except DescriptionError:
        raise ValueError(
            f"{argument}: {name!r} is not a known layer type (torch.nn layers, lit_deep's layers and architectures, "
            "classes registered with lit_deep.models.register_model); pass the class itself from Python"
        ) from None


def as_selectors(value: Any, argument: str) -> tuple[Selector, ...]:
    """A selector (name, pattern, ``nn.Module`` subclass or its class path) or a sequence of them, as a tuple.

    Raises:
        ValueError: for anything else, naming ``argument``.

    Example::

        >>> as_selectors(nn.Linear, "modules"), as_selectors(["head", "torch.nn.Conv2d"], "modules")
        ((<class 'torch.nn.modules.linear.Linear'>,), ('head', <class 'torch.nn.modules.conv.Conv2d'>))
    """
    items = (value,) if isinstance(value, (str, type)) else value
    if not isinstance(items, Sequence) or not items:
        raise ValueError(f"{argument}: expected a module name, pattern, module type or a non-empty list, got {value!r}")
    selectors: list[Selector] = []
    for item in items:
        valid_type = isinstance(item, type) and issubclass(item, nn.Module)
        if not (valid_type or (isinstance(item, str) and item)):
            raise ValueError(f"{argument}: {item!r} is neither a non-empty name/pattern nor an nn.Module subclass")
        selectors.append((layer_type(item, argument) or item) if isinstance(item, str) else item)
    return tuple(selectors)


def matches(name: str, patterns: Iterable[str]) -> bool:
    """Whether ``name`` or one of its enclosing modules' names matches a pattern (``fnmatch``, case-sensitive).

    So ``"backbone"`` selects ``backbone.3.weight``; ``"*.bias"`` selects every bias.

    Example::

        >>> matches("backbone.3.weight", ["backbone"]), matches("head.weight", ["backbone*"])
        (True, False)
    """
    parts = name.split(".")
    prefixes = [".".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatchcase(prefix, pattern) for pattern in patterns for prefix in prefixes)


def _check_all_match(names: Sequence[str], patterns: Iterable[str], argument: str, root: nn.Module) -> None:
    for pattern in patterns:
        if not any(matches(name, (pattern,)) for name in names):
            examples = ", ".join(repr(n) for n in names[:4])
            raise ValueError(
                f"{argument}: {pattern!r} matches no submodule or parameter of {type(root).__name__} "
                f"(names look like {examples})"
            )


def select_parameters(root: nn.Module, patterns: Sequence[str], argument: str) -> dict[str, nn.Parameter]:
    """The parameters of ``root`` selected by name patterns (see :func:`matches`), by qualified name.

    Raises:
        ValueError: when a pattern matches nothing, naming ``argument``.

    Example::

        >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
        >>> list(select_parameters(net, ["2"], "modules"))
        ['2.weight', '2.bias']
    """
    named = dict(root.named_parameters())
    module_names = [name for name, _ in root.named_modules() if name]
    _check_all_match(module_names + list(named), patterns, argument, root)
    return {name: p for name, p in named.items() if matches(name, patterns)}


def select_modules(root: nn.Module, selectors: Sequence[Selector], argument: str) -> dict[str, nn.Module]:
    """The submodules of ``root`` selected by name patterns (with their descendants) or by type.

    Raises:
        ValueError: when a selector matches nothing, naming ``argument``.

    Example::

        >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
        >>> list(select_modules(net, [nn.Linear], "modules")), list(select_modules(net, ["1"], "modules"))
        (['0', '2'], ['1'])
    """
    named = [(name, module) for name, module in root.named_modules() if name]
    patterns = [s for s in selectors if isinstance(s, str)]
    types = tuple(s for s in selectors if isinstance(s, type))
    _check_all_match([name for name, _ in named], patterns, argument, root)
    for cls in types:
        if not any(isinstance(module, cls) for _, module in named):
            raise ValueError(f"{argument}: {type(root).__name__} has no {cls.__name__} layer")
    return {
        name: module
        for name, module in named
        if (types and isinstance(module, types)) or (patterns and matches(name, patterns))
    }
