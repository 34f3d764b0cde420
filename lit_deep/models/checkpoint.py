"""The one checkpoint reader: a lit_deep (Lightning) checkpoint read as data, checked once, before anything is built.

Every entry point that opens a checkpoint goes through :func:`read_checkpoint`: ``Classifier.load_from_checkpoint``
(and the other lit_deep modules), ``lit-deep fit/validate/test --ckpt_path``, :class:`~lit_deep.models.FromCheckpoint`
and :func:`~lit_deep.models.transfer` sources, ``lit-deep zoo export --ckpt`` and ``lit-deep zoo push
--checkpoint``. It

* reads the file with ``torch.load(weights_only=True, mmap=True)`` (zip format only, as ``torch.save`` and
  Lightning write it), so no pickled object is ever run, and turns every way a file can be unreadable (pickled
  objects, truncated, empty, not a checkpoint) into one :class:`CheckpointError` line naming the file;
* checks the structure (a dict; ``state_dict`` a mapping of names to tensors; ``hyper_parameters`` a dict without
  the keys that name code to import);
* checks the model description against the allow-list and its shapes against the saved tensors on the ``meta``
  device (nothing is allocated for a description that does not fit);
* returns the description, the model's weights, the hyper-parameters and the LightningModule class the
  checkpoint records explicitly (``lit_deep_module``, written by every lit_deep module when it saves).

Lightning is not imported here: the LightningModule class recorded by LightningCLI (``_class_path``) is accepted
only if it names a class of a module already imported whose bases include Lightning's ``LightningModule``.
"""

from __future__ import annotations

import os
import pickle
import sys
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lit_deep.models.description import DescriptionError, build, check_fits

__all__ = ["MODULE_KEY", "Checkpoint", "CheckpointError", "read_checkpoint"]

#: The checkpoint key under which lit_deep's LightningModules record their class (``"lit_deep.modules.Classifier"``).
MODULE_KEY = "lit_deep_module"
#: Hyper-parameters a lit_deep checkpoint never holds and that name code to import (LightningCLI's instantiator,
#: a schedule factory): jsonargparse would import them by name when the checkpoint is reloaded.
_NEVER_SAVED = ("_instantiator", "schedule")
#: The prefix of the network's entries in a lit_deep module's state dict.
_PREFIX = "model."


class CheckpointError(DescriptionError):
    """A checkpoint that cannot be read as data, is malformed, or holds a model that is refused or does not fit.

    A ``ValueError`` (through :class:`~lit_deep.models.DescriptionError`); the message is one line that names the
    file.
    """


@dataclass(frozen=True)
class Checkpoint:
    """What :func:`read_checkpoint` found in a checkpoint, checked.

    Attributes:
        path: the file.
        description: the model description (``hyper_parameters["model"]``), ``None`` when the model could not be
            described when saved (then pass ``model=...`` to ``load_from_checkpoint``).
        weights: the network's tensors (``state_dict`` entries under ``model.``, prefix removed).
        hparams: the LightningModule's hyper-parameters.
        datamodule_hparams: the DataModule's hyper-parameters (empty when none were saved).
        module_class: the LightningModule class path the checkpoint records (``None`` when it records none).
        raw: the whole checkpoint dict (tensors memory-mapped where possible), for Lightning to resume from.
    """

    path: str
    description: dict[str, Any] | None
    weights: dict[str, torch.Tensor]
    hparams: dict[str, Any]
    datamodule_hparams: dict[str, Any]
    module_class: str | None
    raw: dict[str, Any] = field(repr=False)

    def model(self) -> nn.Module:
        """The network rebuilt from the description, its weights loaded strictly.

        Raises:
            CheckpointError: when the checkpoint holds no model description.
        """
        if self.description is None:
            raise CheckpointError(
                f"checkpoint {self.path!r}: the model is not described in the checkpoint (it could not be described "
                "when saved); pass model=... to rebuild it"
            )
        model = build(self.description)
        model.load_state_dict(self.weights, strict=True)
        return model


def _load(path: str) -> Any:
    where = f"checkpoint {path!r}"
    try:
        if not zipfile.is_zipfile(path):  # torch.save's format since 1.6, and Lightning's: the legacy one is not read
            raise CheckpointError(f"{where}: not a zip-format torch checkpoint (truncated, empty or another format)")
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except CheckpointError:
        raise
    except pickle.UnpicklingError as err:
        # torch's message spans many lines and advises weights_only=False: never the right advice for a download.
        first = str(err).strip().splitlines()
        detail = next((line.strip() for line in first if "Unsupported global" in line), "")
        detail = detail.split(" This global")[0].removeprefix("WeightsUnpickler error: ")
        raise CheckpointError(
            f"{where}: holds pickled objects, not plain data ({detail or 'refused by weights_only loading'}); "
            "refused, nothing was run"
        ) from None
    except (EOFError, OSError, RuntimeError, ValueError, MemoryError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{where}: not a readable torch checkpoint (truncated, empty or another format: {reason})"
        ) from None


def _tensors(value: Any, where: str) -> dict[str, torch.Tensor]:
    if not isinstance(value, Mapping):
        raise CheckpointError(
            f"{where}: state_dict: expected a mapping of names to tensors, got {type(value).__name__}"
        )
    for key, tensor in value.items():
        if not isinstance(key, str) or not isinstance(tensor, torch.Tensor):
            raise CheckpointError(
                f"{where}: state_dict: entry {key!r} is a {type(tensor).__name__}, not a tensor named by a string"
            )
    return dict(value)


def _is_lightning_module(path: Any) -> bool:
    """Whether ``path`` names a LightningModule subclass of a module already imported (looked up, not imported)."""
    if not isinstance(path, str) or "." not in path:
        return False
    module_name, _, name = path.rpartition(".")
    module = sys.modules.get(module_name)
    cls = getattr(module, name, None) if module is not None else None
    return isinstance(cls, type) and any(
        base.__name__ == "LightningModule" and base.__module__.split(".")[0] in ("lightning", "pytorch_lightning")
        for base in cls.__mro__
    )


def read_checkpoint(checkpoint: str | os.PathLike[str], *, require_model: bool = False) -> Checkpoint:
    """Read a lit_deep checkpoint as data and check it once (see the module docstring).

    Args:
        checkpoint: the ``.ckpt`` file.
        require_model: refuse a checkpoint without a model description (what transfer and export need).

    Returns:
        The checked :class:`Checkpoint`.

    Raises:
        CheckpointError: one line naming the file: missing, unreadable, pickled, malformed, a class outside the
            allow-list, or a description that does not fit the saved tensors.
        TypeError: when ``checkpoint`` is not a path.

    Example::

        >>> import tempfile
        >>> from lit_deep.models import MLP, describe
        >>> net = MLP(hidden=(4,), num_classes=3, seed=0)
        >>> path = tempfile.mkdtemp() + "/run.ckpt"
        >>> weights = {f"model.{k}": v for k, v in net.state_dict().items()}
        >>> torch.save({"state_dict": weights, "hyper_parameters": {"model": describe(net)}}, path)
        >>> found = read_checkpoint(path)
        >>> found.description["class_path"], torch.equal(found.model().head.weight, net.head.weight)
        ('lit_deep.models.MLP', True)
        >>> torch.save({"state_dict": {}, "hyper_parameters": {"model": {"class_path": "os.system"}}}, path)
        >>> try:
        ...     read_checkpoint(path)
        ... except CheckpointError as err:
        ...     print(str(err).split(" is not")[0].split(": ", 1)[1])
        model.class_path: 'os.system'
    """
    if not isinstance(checkpoint, (str, os.PathLike)):
        raise TypeError(f"checkpoint: expected a file path, got {type(checkpoint).__name__}")
    path = os.fspath(checkpoint)
    where = f"checkpoint {path!r}"
    if not Path(path).is_file():
        raise CheckpointError(f"{where}: no such file")
    state = _load(path)
    if not isinstance(state, dict):
        raise CheckpointError(f"{where}: expected a dict of checkpoint entries, got {type(state).__name__}")
    hparams = state.get("hyper_parameters", {})
    if not isinstance(hparams, Mapping) or not all(isinstance(k, str) for k in hparams):
        raise CheckpointError(
            f"{where}: hyper_parameters: expected a dict of named values, got {type(hparams).__name__}"
        )
    hparams = dict(hparams)
    for key in _NEVER_SAVED:
        if key in hparams:
            raise CheckpointError(
                f"{where}: hyper-parameter {key!r} is not one lit_deep saves; refused, nothing was run"
            )
    class_path = hparams.get("_class_path")
    if class_path is not None and not _is_lightning_module(class_path):
        raise CheckpointError(
            f"{where}: _class_path {class_path!r} is not a LightningModule of an imported module; refused, nothing "
            "was run"
        )
    data_hparams = state.get("datamodule_hyper_parameters") or {}
    if not isinstance(data_hparams, Mapping):
        raise CheckpointError(
            f"{where}: datamodule_hyper_parameters: expected a dict, got {type(data_hparams).__name__}"
        )
    module_class = state.get(MODULE_KEY)
    if module_class is not None and not isinstance(module_class, str):
        raise CheckpointError(f"{where}: {MODULE_KEY}: expected a class path string, got {module_class!r}")
    weights = _tensors(state.get("state_dict", {}), where)
    model_weights = {k.removeprefix(_PREFIX): v for k, v in weights.items() if k.startswith(_PREFIX)}
    description = hparams.get("model")
    if description is None and require_model:
        raise CheckpointError(
            f"{where}: the model is not described in the checkpoint (no hyper_parameters['model']); it holds no "
            "lit_deep model to rebuild"
        )
    if description is not None:
        try:
            check_fits(description, {k: tuple(v.shape) for k, v in model_weights.items()}, f"the weights in {path}")
        except DescriptionError as err:
            raise CheckpointError(f"{where}: {err}") from None  # the context is in the message
    return Checkpoint(path, description, model_weights, hparams, dict(data_hparams), module_class, state)
