"""How lit_deep's LightningModules hold their model: built from a description, described in the checkpoint.

:class:`DescribedModel` is mixed into ``Classifier``, ``AutoencoderModule`` and ``RotationPretext``:

* ``model`` may be a module or its description (:func:`lit_deep.models.build`, allow-listed classes only);
* ``hparams["model"]`` holds :func:`lit_deep.models.describe` of it, so a checkpoint reloads with
  ``load_from_checkpoint(path)`` and no model argument (a module that cannot be described is left out: pass
  ``model=`` when reloading);
* the checkpoint does not name LightningCLI's instantiator, so reloading calls the class with plain data and
  :func:`~lit_deep.models.build` alone turns the description into modules;
* ``load_from_checkpoint`` checks the description against the allow-list and the state dict's shapes before
  Lightning constructs anything.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import IO, Any

import lightning.pytorch as pl
import torch
from torch import nn

from lit_deep.models import DescriptionError, build, check_description, describe_or_none

__all__ = ["DescribedModel", "check_checkpoint"]


def check_checkpoint(checkpoint_path: str | os.PathLike[str] | IO[bytes]) -> None:
    """Refuse a checkpoint whose model description is not allow-listed or does not fit its weights.

    It is read as data (``weights_only=True``); the model is built on the ``meta`` device only.

    Raises:
        DescriptionError: naming the checkpoint and the offending entry.

    Example::

        >>> import tempfile
        >>> path = tempfile.mkdtemp() + "/hostile.ckpt"
        >>> torch.save({"state_dict": {}, "hyper_parameters": {"model": {"class_path": "os.system"}}}, path)
        >>> try:
        ...     check_checkpoint(path)
        ... except DescriptionError as err:
        ...     print(str(err).split(" is not")[0].split(": ", 1)[1])
        model.class_path: 'os.system'
    """
    if not isinstance(checkpoint_path, (str, os.PathLike)):
        return  # a file object: Lightning reads it once; the model argument is then built by build() itself
    try:
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # not a zip archive (legacy format): mmap is not available
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    hparams = state.get("hyper_parameters") if isinstance(state, dict) else None
    where = f"checkpoint {os.fspath(checkpoint_path)!r}"
    for key in _NEVER_SAVED:
        if isinstance(hparams, dict) and key in hparams:
            # lit_deep never saves these; LightningCLI would hand them to jsonargparse, which imports by name.
            raise DescriptionError(f"{where}: hyper-parameter {key!r} is not one lit_deep saves; nothing was run")
    class_path = hparams.get("_class_path") if isinstance(hparams, dict) else None
    if class_path is not None and not _imported_module_class(class_path):
        raise DescriptionError(
            f"{where}: _class_path {class_path!r} is not a LightningModule of an imported module; nothing was run"
        )
    description = hparams.get("model") if isinstance(hparams, dict) else None
    if description is None:
        return
    try:
        check_description(description)
        weights = state.get("state_dict") or {}
        expected = {k.removeprefix("model."): tuple(v.shape) for k, v in weights.items() if k.startswith("model.")}
        build(description, expected, f"the weights in {os.fspath(checkpoint_path)}")
    except DescriptionError as err:
        raise DescriptionError(f"{where}: {err}") from None  # the context is in the message


#: hyper-parameters a lit_deep checkpoint never holds (stripped on save, or ignored) and that name code to import.
_NEVER_SAVED = ("_instantiator", "schedule")


def _imported_module_class(path: Any) -> bool:
    """Whether ``path`` names a LightningModule subclass of a module already imported (looked up, not imported)."""
    if not isinstance(path, str) or "." not in path:
        return False
    module_name, _, name = path.rpartition(".")
    module = sys.modules.get(module_name)
    cls = getattr(module, name, None) if module is not None else None
    return isinstance(cls, type) and issubclass(cls, pl.LightningModule)


class DescribedModel(pl.LightningModule):
    """A LightningModule whose ``model`` is described in its hyper-parameters (see the module docstring).

    Example::

        >>> from lit_deep.models import MLP
        >>> class Module(DescribedModel):
        ...     def __init__(self, model):
        ...         super().__init__()
        ...         self.set_model(model)
        >>> Module({"class_path": "MLP", "init_args": {"hidden": [4]}}).hparams["model"]["init_args"]["hidden"]
        [4]
    """

    model: nn.Module

    def set_model(self, model: nn.Module | dict[str, Any]) -> None:
        """Build ``model`` if it is a description, keep it as ``self.model`` and its description in ``hparams``.

        Call it after ``save_hyperparameters(ignore=["model", ...])``.

        Raises:
            ValueError: for something that is neither an ``nn.Module`` nor a valid description.
        """
        if isinstance(model, dict):
            model = build(model)
        if not isinstance(model, nn.Module):
            raise ValueError(f"model: expected an nn.Module or its description, got {type(model).__name__}")
        self.model = model
        description = describe_or_none(model)
        if description is not None:
            self.hparams["model"] = description
        else:
            self.hparams.pop("model", None)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Drop LightningCLI's instantiator from the saved hyper-parameters: reloading passes plain data."""
        hparams = checkpoint.get("hyper_parameters")
        if isinstance(hparams, dict):
            hparams.pop("_instantiator", None)

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: str | Path | IO[Any], *args: Any, **kwargs: Any) -> Any:
        """Lightning's ``load_from_checkpoint``, after :func:`check_checkpoint` (unless ``model=`` is passed)."""
        check_checkpoint(checkpoint_path)
        return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)
