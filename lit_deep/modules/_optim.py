"""Optimizers by name with the book's (Keras's) settings, and parameter grouping."""

from __future__ import annotations

import sys
from collections.abc import Collection, Iterable, Mapping
from typing import Any, Literal, get_args

import torch
from torch import nn

from lit_deep._validate import check_positive

__all__ = [
    "OPTIMIZERS",
    "OptimizerName",
    "build_optimizer",
    "check_optimizer_name",
    "param_groups",
    "penalised_weights",
]

#: The optimizers by name (the choices LightningCLI lists for ``optimizer``).
OptimizerName = Literal["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamax", "nadam", "adamw"]

# name -> (torch class, default kwargs). Keras's epsilon is 1e-7 (PyTorch 1e-8), its RMSprop rho is 0.9
# (PyTorch's alpha defaults to 0.99) and its Adagrad accumulator starts at 0.1 (PyTorch 0); the book's momentum
# is 0.9. PyTorch's Adam and NAdam add ``weight_decay * w`` to the gradient (L2 under another name) unless
# ``decoupled_weight_decay`` is set; lit_deep's ``weight_decay`` means decoupled decay (AdamW), so it is set.
OPTIMIZERS: dict[str, tuple[type[torch.optim.Optimizer], dict[str, Any]]] = {
    "sgd": (torch.optim.SGD, {}),
    "momentum": (torch.optim.SGD, {"momentum": 0.9}),
    "nesterov": (torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
    "adagrad": (torch.optim.Adagrad, {"eps": 1e-7, "initial_accumulator_value": 0.1}),
    "rmsprop": (torch.optim.RMSprop, {"alpha": 0.9, "eps": 1e-7}),
    "adam": (torch.optim.Adam, {"betas": (0.9, 0.999), "eps": 1e-7, "decoupled_weight_decay": True}),
    "adamax": (torch.optim.Adamax, {"betas": (0.9, 0.999), "eps": 1e-7}),
    "nadam": (torch.optim.NAdam, {"betas": (0.9, 0.999), "eps": 1e-7, "decoupled_weight_decay": True}),
    "adamw": (torch.optim.AdamW, {"betas": (0.9, 0.999), "eps": 1e-7}),
}
assert set(OPTIMIZERS) == set(get_args(OptimizerName))


def check_optimizer_name(name: Any) -> str:
    """``name`` when it is an optimizer name of :data:`OPTIMIZERS` or a dotted class path (checked when built).

    Raises:
        ValueError: naming ``optimizer`` and the value.

    Example::

        >>> check_optimizer_name("nadam"), check_optimizer_name("torch.optim.ASGD")
        ('nadam', 'torch.optim.ASGD')
    """
    if not isinstance(name, str) or (name not in OPTIMIZERS and "." not in name):
        raise ValueError(f"optimizer: must be one of {sorted(OPTIMIZERS)} or a class path, got {name!r}")
    return name


def _resolve_class(name: str) -> tuple[type[torch.optim.Optimizer], dict[str, Any]]:
    if name in OPTIMIZERS:
        return OPTIMIZERS[name]
    if "." in name:
        # Looked up, never imported: a checkpoint's hyper-parameters are data. torch.optim's classes, or a class
        # of a module the program has already imported (a user's own optimizer).
        module_name, _, attr = name.rpartition(".")
        module = sys.modules.get(module_name)
        cls = getattr(module, attr, None) if module is not None else None
        if cls is None:
            raise ValueError(
                f"optimizer: {name!r} is not a class of an imported module (import the module that defines it first)"
            )
        if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
            raise ValueError(f"optimizer: {name!r} is not a torch.optim.Optimizer subclass")
        return cls, {}
    raise ValueError(f"optimizer: must be one of {sorted(OPTIMIZERS)} or a class path, got {name!r}")


def param_groups(
    model: nn.Module, weight_decay: float = 0.0, splits: Mapping[str, Collection[str]] | None = None
) -> list[dict[str, Any]]:
    """Split trainable and frozen parameters into named groups: ``head``, ``backbone`` and ``other``.

    With ``weight_decay > 0`` each section is split once more so that biases and 1-D parameters (BatchNorm,
    PReLU slopes) get no decay: ``backbone`` / ``backbone_no_decay``. Empty groups are left out. The names
    show up in Lightning's ``LearningRateMonitor``.

    Args:
        model: the network (a :class:`~lit_deep.models.BackboneHead` gets the two named sections).
        weight_decay: decoupled weight decay for the weight matrices.
        splits: extra sections, ``{section name: qualified parameter names}``; those parameters leave their
            default section (``FreezeUnfreeze`` uses it to give each unfreezing milestone its own groups).

    Returns:
        A list of optimizer parameter-group dicts with a ``name`` key.

    Example::

        >>> from lit_deep.models import MLP
        >>> [g["name"] for g in param_groups(MLP(hidden=(4,)), weight_decay=0.1)]
        ['head', 'head_no_decay', 'backbone', 'backbone_no_decay']
    """
    owner = {name: section for section, names in (splits or {}).items() for name in names}
    sections: dict[str, list[nn.Parameter]] = {"head": [], "backbone": [], "other": []}
    for name, param in model.named_parameters():
        section = name.split(".", 1)[0]
        default = section if section in ("head", "backbone") else "other"
        sections.setdefault(owner.get(name, default), []).append(param)
    groups = []
    for section, params in sections.items():
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        if weight_decay > 0:
            if decay:
                groups.append({"params": decay, "name": section, "weight_decay": weight_decay})
            if no_decay:
                groups.append({"params": no_decay, "name": f"{section}_no_decay", "weight_decay": 0.0})
        elif params:
            groups.append({"params": params, "name": section, "weight_decay": 0.0})
    return groups


def build_optimizer(
    name: str,
    groups: list[dict[str, Any]] | Iterable[nn.Parameter],
    lr: float,
    weight_decay: float = 0.0,
    **kwargs: Any,
) -> torch.optim.Optimizer:
    """Build an optimizer by name with the book's settings.

    Args:
        name: ``sgd``, ``momentum`` (SGD with momentum 0.9), ``nesterov``, ``adagrad``, ``rmsprop`` (rho 0.9),
            ``adam``, ``adamax``, ``nadam``, ``adamw``, or a class path such as ``"torch.optim.ASGD"``.
        groups: parameter groups or parameters.
        lr: learning rate.
        weight_decay: default weight decay for groups that do not set theirs. Decoupled (``w -= lr * wd * w``)
            for ``adam``, ``nadam`` and ``adamw``; ``sgd``, ``momentum``, ``nesterov``, ``rmsprop``, ``adagrad``
            and ``adamax`` only have PyTorch's coupled form (``wd * w`` added to the gradient, i.e. an l2 penalty
            of ``wd / 2``).
        **kwargs: extra optimizer arguments, overriding the defaults.

    Returns:
        The optimizer.

    Raises:
        ValueError: for an unknown name or a non-positive learning rate.

    Example::

        >>> opt = build_optimizer("rmsprop", [nn.Parameter(torch.zeros(2))], lr=0.001)
        >>> type(opt).__name__, opt.defaults["alpha"], opt.defaults["eps"]
        ('RMSprop', 0.9, 1e-07)
    """
    check_positive("lr", lr)
    cls, defaults = _resolve_class(name)
    options = {**defaults, **kwargs}
    if weight_decay:
        options["weight_decay"] = weight_decay
    try:
        return cls(groups, lr=lr, **options)  # type: ignore[call-arg]  # every torch optimizer takes lr
    except TypeError as err:
        raise ValueError(f"optimizer_kwargs: {cls.__name__} rejected {options}: {err}") from err


def penalised_weights(model: nn.Module) -> list[nn.Parameter]:
    """The parameters that l1/l2 penalties apply to: weight matrices and kernels (2-D or more).

    Biases and 1-D parameters (BatchNorm, PReLU slopes) are excluded, as Keras's ``kernel_regularizer``.

    Example::

        >>> len(penalised_weights(nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))))
        1
    """
    return [p for p in model.parameters() if p.dim() >= 2]
