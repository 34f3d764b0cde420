"""Shared by the callbacks: selecting modules and parameters by name, pattern or type; rescaling param groups."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn

from lit_deep.schedules import ClosedFormLR

__all__ = [
    "BATCH_NORMS",
    "LAYERS",
    "Selector",
    "as_patterns",
    "as_selectors",
    "matches",
    "mixed_group",
    "reference_group",
    "rescale_groups",
    "resolve_root",
    "scale_scheduler",
    "select_modules",
    "select_parameters",
]

#: A module selector: a qualified name or glob pattern (``"backbone.3"``, ``"backbone.*"``), or a module type.
Selector = str | type[nn.Module]
#: The layers that own weight matrices and kernels: the default targets of ``MaxNorm`` and ``LayerStats``.
LAYERS: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
BATCH_NORMS: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def resolve_root(pl_module: nn.Module) -> nn.Module:
    """The module that names are relative to: ``pl_module.model`` when it is a module (``Classifier``), else itself.

    Example::

        >>> wrapper = nn.Module()
        >>> wrapper.model = nn.Linear(2, 1)
        >>> resolve_root(wrapper) is wrapper.model
        True
    """
    model = getattr(pl_module, "model", None)
    return model if isinstance(model, nn.Module) else pl_module


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


def _class_path(name: str) -> type[nn.Module] | None:
    """The ``nn.Module`` subclass a class path such as ``"torch.nn.Linear"`` names (YAML recipes), else ``None``."""
    module_name, _, attr = name.rpartition(".")
    if not module_name or not attr.isidentifier() or not attr[:1].isupper():
        return None  # "backbone.3", "head": module names, not classes
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError):
        return None
    return cls if isinstance(cls, type) and issubclass(cls, nn.Module) else None


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
        selectors.append((_class_path(item) or item) if isinstance(item, str) else item)
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


# ----------------------------------------------------------------------------- optimizer parameter groups
def reference_group(groups: Sequence[dict[str, Any]], frozen: set[int]) -> int | None:
    """The index of the group whose rate unfrozen groups follow: ``"head"``, else the first never-frozen group.

    Example::

        >>> a, b = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
        >>> reference_group([{"params": [a]}, {"params": [b]}], frozen={id(a)})
        1
    """
    names = [group.get("name") for group in groups]
    if "head" in names:
        return names.index("head")
    for index, group in enumerate(groups):
        if group["params"] and not any(id(p) in frozen for p in group["params"]):
            return index
    return None


def mixed_group(groups: Sequence[dict[str, Any]], params: set[int]) -> str | None:
    """The name (or index) of a group holding some, but not only, parameters of ``params``; ``None`` if none.

    Example::

        >>> a, b = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
        >>> mixed_group([{"params": [a, b], "name": "all"}], {id(a)})
        'all'
    """
    for index, group in enumerate(groups):
        inside = sum(id(p) in params for p in group["params"])
        if 0 < inside < len(group["params"]):
            return str(group.get("name", index))
    return None


def scale_scheduler(scheduler: Any, index: int, reference: int, factor: float) -> None:
    """Make group ``index`` of a PyTorch scheduler follow group ``reference`` times ``factor`` from now on.

    lit_deep's closed-form schedules read the group's ``lr_scale`` and ``ReduceLROnPlateau`` multiplies the
    current rate, so neither needs more. Closed-form PyTorch schedulers keep their rates in ``base_lrs``
    (``LambdaLR``, ``CosineAnnealingLR``, ...), ``max_lrs`` (``CyclicLR``) or in the group itself
    (``OneCycleLR``: ``initial_lr``, ``max_lr``, ``min_lr``); those entries are scaled.

    Example::

        >>> opt = torch.optim.SGD([{"params": [nn.Parameter(torch.zeros(1))]} for _ in range(2)], lr=1.0)
        >>> sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0)
        >>> scale_scheduler(sched, 1, 0, 0.1)
        >>> sched.base_lrs
        [1.0, 0.1]
    """
    if isinstance(scheduler, (ClosedFormLR, torch.optim.lr_scheduler.ReduceLROnPlateau)):
        return
    for attribute in ("base_lrs", "max_lrs"):
        values = getattr(scheduler, attribute, None)
        if isinstance(values, list) and len(values) > max(index, reference):
            values[index] = values[reference] * factor
    groups = scheduler.optimizer.param_groups
    for key in ("initial_lr", "max_lr", "min_lr"):
        if key in groups[index] and key in groups[reference]:
            groups[index][key] = groups[reference][key] * factor


def rescale_groups(trainer: pl.Trainer, params: set[int], ever_frozen: set[int], factor: float) -> list[str]:
    """Give the groups holding ``params`` the reference group's current rate times ``factor`` (once).

    Sets each such group's ``lr`` and ``lr_scale`` (read by lit_deep's schedules) from the reference group
    (:func:`reference_group`; the group itself when there is none) and rescales the schedulers' per-group
    rates (:func:`scale_scheduler`).

    Returns:
        The names (or indices) of the groups changed.
    """
    changed = []
    for optimizer in trainer.optimizers:
        groups = optimizer.param_groups
        ref = reference_group(groups, ever_frozen)
        schedulers = [c.scheduler for c in trainer.lr_scheduler_configs if c.scheduler.optimizer is optimizer]
        for index, group in enumerate(groups):
            if not any(id(p) in params for p in group["params"]):
                continue
            source = groups[ref] if ref is not None else group
            group["lr"] = float(source["lr"]) * factor
            group["lr_scale"] = float(source.get("lr_scale", 1.0)) * factor
            for scheduler in schedulers:
                scale_scheduler(scheduler, index, index if ref is None else ref, factor)
            changed.append(str(group.get("name", index)))
    return changed
