"""A zoo model as a class with plain arguments, for LightningCLI YAML recipes."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lit_deep.models._base import BackboneHead
from lit_deep.nn.init import init_weights

__all__ = ["Pretrained"]


class Pretrained(BackboneHead):
    """``zoo.load(name, num_classes)`` as a model class: the form a YAML recipe can name.

    ``model: {class_path: lit_deep.zoo.pretrained.Pretrained, init_args: {name: mlp_selu.fmnist_a, num_classes: 1}}``
    gives the pretrained backbone (downloaded and verified as :func:`lit_deep.zoo.load` does, a copy) with a new
    head. ``dropout`` appends an ``AlphaDropout`` (SELU backbones) or ``Dropout`` layer to the backbone, the
    source of MC-dropout samples; ``reinitialize=True`` keeps the architecture and preprocessing but re-draws
    every backbone weight (LeCun normal for SELU nets, He otherwise): the from-scratch twin of a transfer run.
    Checkpoints store the zoo config (no download to reload).

    Args:
        name: a zoo model name.
        num_classes: outputs of a new head (``None`` keeps the pretrained head).
        revision: Hub revision (default: the registry's).
        dropout: rate of the dropout layer appended to the backbone (0: none).
        reinitialize: re-draw the backbone's weights.
        seed: seed of the new head and of the re-initialisation.

    Example::

        >>> Pretrained("mlp_selu.fmnist_a", num_classes=0)
        Traceback (most recent call last):
        ...
        ValueError: num_classes: must be a positive integer or None, got 0
    """

    def __init__(
        self,
        name: str,
        num_classes: int | None = None,
        revision: str | None = None,
        dropout: float = 0.0,
        reinitialize: bool = False,
        seed: int | None = None,
    ) -> None:
        from lit_deep.zoo.api import load

        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout: must be in [0, 1), got {dropout}")
        if seed is not None:
            torch.manual_seed(seed)
        model = load(name, num_classes=num_classes, revision=revision).train()
        selu = model.zoo_config["architecture"]["init_args"].get("activation") == "selu"
        if reinitialize:
            init_weights(model.backbone, "lecun_normal" if selu else "he_normal")
        if dropout > 0:
            model.backbone = nn.Sequential(
                *model.backbone.children(), nn.AlphaDropout(dropout) if selu else nn.Dropout(dropout)
            )
        spec = model.spec()  # computed now: a plain dict, not a second registered copy of the modules
        super().__init__(model.backbone, model.head, model.feature_dim)
        self._spec = spec
        self.zoo_name = name

    def spec(self) -> dict[str, Any]:
        """The zoo model's spec (architecture and preprocessing from its config, no weights, no download)."""
        return dict(self._spec)
