"""Reusing the backbone of a model trained by this library, from a local Lightning checkpoint."""

from __future__ import annotations

import os
from typing import Any

import torch

from lit_deep.models._base import BackboneHead, replace_head

__all__ = ["FromCheckpoint"]


def _load_source(checkpoint: str | os.PathLike[str]) -> BackboneHead:
    from lit_deep.modules._spec import build_model

    if not os.path.isfile(checkpoint):
        raise ValueError(f"checkpoint: no such file {os.fspath(checkpoint)!r} (train the pretext recipe first)")
    # weights_only: a checkpoint is data; nothing in it is executed.
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    spec = state.get("hyper_parameters", {}).get("model")
    if not isinstance(spec, dict):
        raise ValueError(f"checkpoint: {os.fspath(checkpoint)!r} has no model spec in its hyper-parameters")
    source = build_model(spec)
    if not isinstance(source, BackboneHead):
        raise ValueError(f"checkpoint: the model in {os.fspath(checkpoint)!r} has no backbone/head")
    weights = {k.removeprefix("model."): v for k, v in state["state_dict"].items() if k.startswith("model.")}
    source.load_state_dict(weights, strict=True)
    return source


class FromCheckpoint(BackboneHead):
    """The backbone of a checkpointed lit_deep model (copied) with a new head of ``num_classes`` outputs.

    The YAML-friendly form of ``replace_head(load(checkpoint), num_classes)``: the checkpoint is one written by
    ``lit-deep fit`` for a LightningModule whose ``model`` is a lit_deep architecture (a ``Classifier``, an
    ``AutoencoderModule`` or a ``RotationPretext``). It is read with ``torch.load(weights_only=True)`` and the
    weights are loaded strictly. Checkpoints of the new model store the underlying architecture's spec, so they
    reload without the source checkpoint.

    Args:
        checkpoint: path of the source checkpoint.
        num_classes: outputs of the new head.

    Example::

        >>> import tempfile
        >>> from lit_deep import Classifier
        >>> from lit_deep.models import MLP
        >>> source = Classifier(MLP(hidden=(8,), num_classes=4, seed=0))
        >>> path = tempfile.mkdtemp() + "/source.ckpt"
        >>> torch.save({"state_dict": source.state_dict(), "hyper_parameters": dict(source.hparams)}, path)
        >>> target = FromCheckpoint(path, num_classes=2)
        >>> target.head.out_features, torch.equal(target.backbone[1].weight, source.model.backbone[1].weight)
        (2, True)
    """

    def __init__(self, checkpoint: str, num_classes: int) -> None:
        model = replace_head(_load_source(checkpoint), num_classes)
        super().__init__(model.backbone, model.head, model.feature_dim)
        self._spec = _spec_of(model)

    def spec(self) -> dict[str, Any]:
        """The spec of the underlying architecture (with the new head), for checkpoints."""
        return dict(self._spec)


def _spec_of(model: BackboneHead) -> dict[str, Any]:
    from lit_deep.modules._spec import model_spec

    spec = model_spec(model)
    if spec is None:  # an autoencoder's encoder with a new head: no class rebuilds it from arguments
        raise ValueError("checkpoint: its model cannot be described as a spec; load it in Python with replace_head")
    return spec
