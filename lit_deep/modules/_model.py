"""How lit_deep's LightningModules hold their model: built from a description, described in the checkpoint.

:class:`DescribedModel` is mixed into ``Classifier``, ``AutoencoderModule`` and ``RotationPretext``:

* ``model`` may be a module or its description (:func:`lit_deep.models.build`, allow-listed classes only);
* ``hparams["model"]`` holds :func:`lit_deep.models.describe` of it, so a checkpoint reloads with
  ``load_from_checkpoint(path)`` and no model argument (a module that cannot be described is left out: pass
  ``model=`` when reloading);
* the checkpoint does not name LightningCLI's instantiator, so reloading calls the class with plain data and
  :func:`~lit_deep.models.build` alone turns the description into modules;
* the checkpoint records the LightningModule class under ``lit_deep_module`` (read by the zoo's export);
* ``load_from_checkpoint`` reads the file once through :func:`lit_deep.models.read_checkpoint` (allow-list, shapes,
  structure) before Lightning constructs anything.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from lit_deep._warnings import LitDeepWarning
from lit_deep.models import CheckpointError, build, read_checkpoint
from lit_deep.models.checkpoint import MODULE_KEY
from lit_deep.models.description import describe_or_none
from lit_deep.modules._rng import KEY as RNG_KEY
from lit_deep.modules._rng import gather_rng_states, set_rng_state

__all__ = ["DescribedModel"]


def _attached_trainer(module: pl.LightningModule) -> pl.Trainer | None:
    """The module's Trainer, or ``None`` when it is not attached to one (Lightning's public property raises)."""
    try:
        return module.trainer
    except RuntimeError:
        return None


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
        """Record the module's class and every rank's generator states; drop LightningCLI's instantiator.

        The generator states are gathered from every rank (a collective: Lightning calls this hook on every rank
        when a checkpoint is written) so that each rank resumes its own dropout masks (:mod:`._rng`).
        """
        checkpoint[MODULE_KEY] = f"{type(self).__module__}.{type(self).__qualname__}"
        trainer = _attached_trainer(self)
        if trainer is None:  # saved outside a fit (trainer.save_checkpoint of a connected module): this process
            checkpoint[RNG_KEY] = gather_rng_states(self.all_gather, 1, self.device)
        else:
            checkpoint[RNG_KEY] = gather_rng_states(self.all_gather, trainer.world_size, trainer.strategy.root_device)
        hparams = checkpoint.get("hyper_parameters")
        if isinstance(hparams, dict):
            hparams.pop("_instantiator", None)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore this rank's generator states (saved with the same world size; else one warning, nothing set)."""
        states = checkpoint.get(RNG_KEY)
        trainer = _attached_trainer(self)
        if not isinstance(states, dict) or trainer is None:
            return
        saved = int(states["torch"].shape[0])
        if saved != trainer.world_size:
            rank_zero_warn(
                f"checkpoint: generator states saved by {saved} processes, resuming with {trainer.world_size}: "
                "dropout masks are not restored (resuming is not exact)",
                category=LitDeepWarning,
            )
            return
        set_rng_state({k: v[trainer.global_rank] for k, v in states.items()}, trainer.strategy.root_device)

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: str | Path | IO[Any], *args: Any, **kwargs: Any) -> Any:
        """Lightning's ``load_from_checkpoint``, after :func:`~lit_deep.models.read_checkpoint` checked the file.

        Raises:
            CheckpointError: one line naming the file when it is unreadable, refused, or holds a model that is not
                described in it and no ``model=`` was passed.
        """
        if isinstance(checkpoint_path, (str, os.PathLike)):
            found = read_checkpoint(checkpoint_path)
            if found.description is None and "model" not in kwargs:
                raise CheckpointError(
                    f"checkpoint {found.path!r}: the model is not described in the checkpoint (lit_deep cannot "
                    "describe it, e.g. a transformers or timm model); pass it: "
                    f"{cls.__name__}.load_from_checkpoint(path, model=...)"
                )
        return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)
