"""What a lit_deep callback may rely on in the LightningModule it acts on: :class:`TrainableModule`.

lit_deep's callbacks work with any ``LightningModule``; with lit_deep's own (every subclass of
:class:`lit_deep.modules.base.LitDeepModule`: ``Classifier``, ``AutoencoderModule``, ``RotationPretext``) they
can do more. The contract between them has three parts:

1. **The root model.** Selectors (:mod:`lit_deep.callbacks.select`) name submodules relative to the module's
   ``.model`` when it is an ``nn.Module``, else relative to the LightningModule itself
   (:func:`root_module`). So ``"backbone.3"`` means ``pl_module.model.backbone[3]`` for a ``Classifier`` and
   the checkpoint's parameter names (``model.backbone.3.weight``) stay those of the plain model.
2. **Parameter-group splits.** A module that has a ``param_group_splits`` dict
   (``{group name: qualified parameter names of the root model}``) builds one optimizer parameter group per
   entry in ``configure_optimizers``. Lightning runs the callbacks' ``setup`` before ``configure_optimizers``,
   so a callback fills it in ``setup`` (``FreezeUnfreeze`` gives each unfreezing milestone its own groups, so
   that it can change their rates alone). Without the attribute, the callback must find the optimizer's
   groups as the user built them (and say so when they mix parameters it must treat differently).
3. **Per-group rate scale.** A callback that changes a group's rate mid-run calls
   :func:`lit_deep.schedules.rescale_groups`: it sets the group's ``lr`` and ``lr_scale``. lit_deep's
   schedules compute ``rate(t) * lr_scale`` from the step count (:mod:`lit_deep.schedules.base`), and
   PyTorch's schedulers' per-group copies of the rate are rescaled, so the change survives the schedule and
   a resumed run (``lr_scale`` is saved in the optimizer's state).

The contract is structural (a :class:`typing.Protocol`): a user's own LightningModule satisfies it by having
the two attributes, with no import from lit_deep.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import nn

__all__ = ["TrainableModule", "root_module"]


@runtime_checkable
class TrainableModule(Protocol):
    """A LightningModule that offers lit_deep's callbacks a root model and parameter-group splits.

    Example::

        >>> from lit_deep import Classifier
        >>> from lit_deep.models import MLP
        >>> isinstance(Classifier(MLP(hidden=(4,))), TrainableModule), isinstance(nn.Linear(2, 1), TrainableModule)
        (True, False)
    """

    #: The network the callbacks' selectors are relative to.
    model: nn.Module
    #: ``{group name: qualified parameter names of model}``: extra optimizer groups, filled in callbacks' ``setup``.
    param_group_splits: dict[str, list[str]]


def root_module(pl_module: nn.Module) -> nn.Module:
    """The module that selector names are relative to: ``pl_module.model`` when it is a module, else itself.

    Example::

        >>> wrapper = nn.Module()
        >>> wrapper.model = nn.Linear(2, 1)
        >>> root_module(wrapper) is wrapper.model, root_module(wrapper.model) is wrapper.model
        (True, True)
    """
    model = getattr(pl_module, "model", None)
    return model if isinstance(model, nn.Module) else pl_module
