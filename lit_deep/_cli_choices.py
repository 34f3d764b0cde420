"""The choice arguments of lit_deep's classes, read from their ``Literal`` type hints, for ``lit-deep fit --help``.

In LightningCLI's subclass mode ``--help`` shows ``--model CLASS_PATH`` only; a class's own arguments need
``--model.help Classifier``. The choices are the part of them a recipe most often gets wrong, so the ``fit``
help lists them for every class a recipe of lit_deep names; jsonargparse checks them when a recipe is parsed.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable

from lit_deep.callbacks import FreezeUnfreeze
from lit_deep.data import FashionMNISTDataModule
from lit_deep.models import CNN, MLP, Autoencoder, transfer
from lit_deep.modules import AutoencoderModule, Classifier, RotationPretext
from lit_deep.schedules import ExponentialDecay, OneCycle, PiecewiseConstant, PlateauDecay, PowerDecay

__all__ = ["CHOICE_CLASSES", "choice_arguments", "choices_help"]

#: The classes whose choice arguments ``lit-deep fit --help`` lists.
CHOICE_CLASSES: tuple[object, ...] = (
    Classifier,
    AutoencoderModule,
    RotationPretext,
    MLP,
    CNN,
    Autoencoder,
    transfer,
    FashionMNISTDataModule,
    OneCycle,
    PowerDecay,
    ExponentialDecay,
    PiecewiseConstant,
    PlateauDecay,
    FreezeUnfreeze,
)


def _literal_values(hint: object) -> tuple[object, ...]:
    if typing.get_origin(hint) is typing.Literal:
        return typing.get_args(hint)
    values: list[object] = []
    for arg in typing.get_args(hint):  # Optional[Literal[...]], Literal[...] | Literal[...]
        values.extend(_literal_values(arg))
    return tuple(values)


def choice_arguments(objects: Iterable[object] = CHOICE_CLASSES) -> dict[str, dict[str, tuple[object, ...]]]:
    """``{class name: {argument: choices}}`` for the arguments typed with ``Literal`` (``None`` excluded).

    Example::

        >>> choice_arguments([Classifier])["Classifier"]["optimizer"][:3]
        ('sgd', 'momentum', 'nesterov')
    """
    found: dict[str, dict[str, tuple[object, ...]]] = {}
    for obj in objects:
        function = obj.__init__ if isinstance(obj, type) else obj  # type: ignore[misc]
        hints = typing.get_type_hints(function)
        arguments = {name: _literal_values(hint) for name, hint in hints.items() if name != "return"}
        arguments = {name: values for name, values in arguments.items() if values}
        if arguments:
            found[getattr(obj, "__name__", str(obj))] = arguments
    return found


def choices_help() -> str:
    """The epilog of ``lit-deep fit --help``: one line per class with its choice arguments.

    Example::

        >>> "Classifier: optimizer {sgd," in choices_help()
        True
    """
    lines = ["choice arguments of lit_deep's classes (checked when a recipe is parsed):"]
    for name, arguments in choice_arguments().items():
        listed = "; ".join(f"{arg} {{{','.join(str(v) for v in values)}}}" for arg, values in arguments.items())
        lines.append(f"  {name}: {listed}")
    return "\n".join(lines)
