"""Recording constructor arguments and the allow-list of classes a description may name.

A class that inherits :class:`RecordsInit` (every lit_deep architecture does, through
:class:`~lit_deep.models.BackboneHead`) records its constructor arguments in ``RecordsInit.__new__``, which
Python calls once per instantiation with the arguments given to the class: they are bound to the signature of
``__init__``, the defaults applied, and kept on the instance, the way huggingface_hub's ``PyTorchModelHubMixin``
records its ``config``. The classes themselves are left as written (their ``__init__`` is not replaced).
User classes that cannot inherit it are decorated with :func:`register_model`, which wraps their ``__init__``.
Nothing here imports or calls anything by name: classes enter the allow-list by being defined in lit_deep or by
:func:`register_model` in user code.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

__all__ = ["RecordsInit", "canonical_path", "recorded_init_args", "register_model", "registered_class"]

_RECORDED = "_lit_deep_init_args"
_RECORDING = "_lit_deep_recording"
#: class path -> class: the classes a description may name besides torch.nn's layers.
_REGISTRY: dict[str, type[nn.Module]] = {}
_M = TypeVar("_M", bound=type[nn.Module])


def canonical_path(cls: type) -> str:
    """The class path a description writes for ``cls``.

    lit_deep classes are named by their public package (``lit_deep.models.mlp.MLP`` is ``lit_deep.models.MLP``);
    other classes by module and qualified name.

    Example::

        >>> canonical_path(nn.Linear), canonical_path(RecordsInit)
        ('torch.nn.Linear', 'lit_deep.models.RecordsInit')
    """
    module = cls.__module__
    if module.startswith("torch.nn.modules.") and getattr(nn, cls.__name__, None) is cls:
        return f"torch.nn.{cls.__name__}"
    if module.startswith("lit_deep.") and module.count(".") >= 2:
        module = module.rsplit(".", 1)[0]
    return f"{module}.{cls.__qualname__}"


def _wrap_init(cls: type[nn.Module]) -> None:
    init: Callable[..., None] = cls.__dict__["__init__"]
    signature = inspect.signature(init)
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in signature.parameters.values()):
        raise TypeError(f"{cls.__qualname__}: a recorded constructor cannot take *args (name every argument)")

    @functools.wraps(init)
    def __init__(self: nn.Module, *args: Any, **kwargs: Any) -> None:  # noqa: N807 - it replaces __init__
        if self.__dict__.get(_RECORDING):  # a super().__init__ call: the outermost call records
            init(self, *args, **kwargs)
            return
        arguments = _arguments(signature, signature.bind(self, *args, **kwargs))
        object.__setattr__(self, _RECORDING, True)
        try:
            init(self, *args, **kwargs)
        finally:
            object.__setattr__(self, _RECORDING, False)
        object.__setattr__(self, _RECORDED, arguments)

    cls.__init__ = __init__  # type: ignore[method-assign]
    cls.__lit_deep_wrapped__ = True  # type: ignore[attr-defined]


class RecordsInit:
    """Mixin recording the constructor arguments of every subclass; lit_deep's subclasses are allow-listed.

    Example::

        >>> from lit_deep.models import MLP
        >>> recorded_init_args(MLP(hidden=(4,)))["hidden"]
        (4,)
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:  # noqa: D102 - documented on the class
        self = super().__new__(cls)
        signature = _init_signature(cls)  # type: ignore[arg-type]  # classes hash by identity
        try:
            bound = signature.bind(self, *args, **kwargs)
        except TypeError:  # copy/pickle call __new__ without the arguments (then restore __dict__), or a bad call
            return self  # ... which __init__ reports with Python's own message
        object.__setattr__(self, _RECORDED, _arguments(signature, bound))
        return self

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            _init_signature(cls)  # type: ignore[arg-type]  # refuse *args when the class is defined
        if cls.__module__.startswith("lit_deep."):
            _add(cls)  # type: ignore[arg-type]


@functools.cache
def _init_signature(cls: type) -> inspect.Signature:
    signature = inspect.signature(cls.__init__)  # type: ignore[misc]
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in signature.parameters.values()):
        raise TypeError(f"{cls.__qualname__}: a recorded constructor cannot take *args (name every argument)")
    return signature


def _arguments(signature: inspect.Signature, bound: inspect.BoundArguments) -> dict[str, Any]:
    """The bound arguments without ``self``, defaults applied, ``**kwargs`` flattened."""
    bound.apply_defaults()
    arguments = dict(list(bound.arguments.items())[1:])
    for name, param in signature.parameters.items():
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            arguments.update(arguments.pop(name, {}))
    return arguments


def _add(cls: type[nn.Module]) -> None:
    _REGISTRY[canonical_path(cls)] = cls
    _REGISTRY[f"{cls.__module__}.{cls.__qualname__}"] = cls


def register_model(cls: _M) -> _M:
    """Allow descriptions (checkpoints, ``config.json``, YAML) to build ``cls``, and record its arguments.

    Use it as a class decorator on your own ``nn.Module`` so that :func:`~lit_deep.models.describe` and
    :func:`~lit_deep.models.build` handle it. Register before creating instances: only instances created after
    registration have their constructor arguments recorded.

    Raises:
        TypeError: if ``cls`` is not an ``nn.Module`` subclass.

    Example::

        >>> @register_model
        ... class Twice(nn.Module):
        ...     def __init__(self, scale: float = 2.0) -> None:
        ...         super().__init__()
        ...         self.scale = scale
        >>> registered_class(canonical_path(Twice)) is Twice, recorded_init_args(Twice(3.0))
        (True, {'scale': 3.0})
    """
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TypeError(f"register_model: expected an nn.Module subclass, got {cls!r}")
    if "__init__" in cls.__dict__ and not issubclass(cls, RecordsInit) and not cls.__dict__.get("__lit_deep_wrapped__"):
        _wrap_init(cls)  # RecordsInit's subclasses record in __new__
    _add(cls)
    return cls


def registered_class(path: str) -> type[nn.Module] | None:
    """The registered class of ``path``, or ``None``.

    Example::

        >>> registered_class("builtins.print") is None
        True
    """
    return _REGISTRY.get(path)


def recorded_init_args(module: nn.Module) -> dict[str, Any] | None:
    """The arguments ``module`` was constructed with (defaults applied), or ``None`` if none were recorded.

    Example::

        >>> recorded_init_args(nn.Linear(2, 3)) is None
        True
    """
    recorded = module.__dict__.get(_RECORDED)
    return dict(recorded) if isinstance(recorded, dict) else None
