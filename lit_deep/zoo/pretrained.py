"""A pretrained backbone with a new head as a class with plain arguments: the form a YAML recipe can name."""

from __future__ import annotations

import os
from typing import ClassVar

from lit_deep.models import BackboneHead, read_checkpoint, transfer

__all__ = ["Pretrained", "load_source"]


def load_source(source: str, revision: str | None = None) -> BackboneHead:
    """The model a transfer starts from: a checkpoint file, a registered zoo name or a Hub repo id.

    Raises:
        ValueError: for a checkpoint without a lit_deep model, or an unknown name (with close matches).

    Example::

        >>> try:
        ...     load_source("mlp.fmnst")
        ... except ValueError as err:
        ...     print(str(err).split(" or ")[0])
        name: no zoo model 'mlp.fmnst'; did you mean 'mlp.fmnist'
    """
    from lit_deep.zoo.api import load

    if not isinstance(source, str) or not source:
        raise ValueError(f"name: expected a zoo name, a Hub repo id or a checkpoint path, got {source!r}")
    if source.endswith(".ckpt") or os.path.isfile(source):
        model = read_checkpoint(source, require_model=True).model()
        if not isinstance(model, BackboneHead):
            raise ValueError(f"name: the model in {source!r} has no backbone/head")
        return model
    return load(source, revision=revision)


class Pretrained(BackboneHead):
    """The backbone of a pretrained model (a copy) with a new head: :func:`lit_deep.models.transfer` for YAML.

    ``model: {class_path: lit_deep.zoo.Pretrained, init_args: {name: mlp_selu.fmnist_a, num_classes: 1}}``.
    ``name`` is a zoo name, any Hub repo id in the lit_deep format (``owner/name[@revision]``), or a lit_deep
    checkpoint file. ``dropout`` appends a dropout layer to the backbone (alpha dropout for SELU backbones), the
    source of MC-dropout samples; ``reinitialize=True`` keeps the architecture and preprocessing but re-draws the
    backbone's weights: the from-scratch twin of a transfer run. Checkpoints describe every layer (dropout
    included), so they reload and resume without any download.

    Args:
        name: zoo name, Hub repo id or checkpoint path.
        num_classes: outputs of a new head (``None`` keeps the pretrained head).
        revision: Hub revision (default: the registry's pin, ``main`` for other repos).
        dropout: rate of the dropout layer appended to the backbone (0: none).
        reinitialize: re-draw the backbone's weights.
        seed: seed of the new head and of the re-initialisation.
        cut: keep the backbone's first ``cut`` layers only (a depth :func:`lit_deep.zoo.rank` scores; needs
            ``num_classes``).

    Example::

        >>> Pretrained("mlp_selu.fmnist_a", num_classes=0)
        Traceback (most recent call last):
        ...
        ValueError: num_classes: must be a positive integer or None, got 0
    """

    describe_by_parts: ClassVar[bool] = True

    def __init__(
        self,
        name: str,
        num_classes: int | None = None,
        revision: str | None = None,
        dropout: float = 0.0,
        reinitialize: bool = False,
        seed: int | None = None,
        cut: int | None = None,
    ) -> None:
        if num_classes is not None and (
            isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1
        ):
            raise ValueError(f"num_classes: must be a positive integer or None, got {num_classes!r}")
        source = load_source(name, revision)
        model = transfer(source, num_classes, dropout=dropout, reinitialize=reinitialize, seed=seed, cut=cut).train()
        super().__init__(model.backbone, model.head, model.feature_dim)
        self.zoo_name = name
