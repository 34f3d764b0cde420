"""A small convolutional classifier for 1x28x28 images."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from lit_deep._validate import check_bool, check_choice, check_int, check_probability, check_seed, check_shape
from lit_deep.models._base import (
    ACTIVATIONS,
    DEFAULT_INIT,
    DROPOUT_KINDS,
    Activation,
    BackboneHead,
    DropoutKind,
    check_parameter_count,
    make_activation,
    make_batch_norm,
    make_dropout,
    new_head,
    seeded,
)
from lit_deep.nn.init import INIT_SCHEMES, InitScheme, init_weights

__all__ = ["CNN"]


class CNN(BackboneHead):
    """Conv blocks (``[Conv3x3 -> BN -> act] x convs_per_block -> MaxPool2``), then a dense layer and the head.

    Shapes: input ``[B, C, H, W]`` (default ``[B, 1, 28, 28]``), output logits ``[B, num_classes]``.
    The backbone ends with ``Flatten -> [Dropout] -> Linear(dense) -> [BN] -> act -> [Dropout]``, the head is
    the output Linear layer. BatchNorm uses Keras's momentum and epsilon (see :class:`~lit_deep.models.MLP`).

    Args:
        input_shape: shape of one input ``(C, H, W)``.
        channels: output channels of each conv block (each block halves the resolution).
        convs_per_block: conv layers per block.
        dense: width of the dense layer before the head (0 for none).
        num_classes: number of outputs.
        activation: activation name (see :class:`~lit_deep.models.MLP`).
        batch_norm: BN after every conv (and the dense layer), before the activation.
        dropout: rate of the dropout layers before and after the dense layer.
        conv_dropout: rate of channel dropout after each block.
        dropout_kind: ``"standard"``, ``"mc"`` (always on) and the alpha variants for the dense part.
        init: initialisation scheme; ``None`` picks the activation's match.
        seed: seed the initialisation, leaving the global generator as it was (``None`` uses the global one).

    Example::

        >>> import torch
        >>> net = CNN(channels=(8, 16), dense=32, seed=0)
        >>> tuple(net(torch.rand(2, 1, 28, 28)).shape), net.feature_dim
        ((2, 10), 32)
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 28, 28),
        channels: Sequence[int] = (32, 64, 128),
        convs_per_block: int = 2,
        dense: int = 256,
        num_classes: int = 10,
        activation: Activation = "relu",
        batch_norm: bool = True,
        dropout: float = 0.3,
        conv_dropout: float = 0.0,
        dropout_kind: DropoutKind = "standard",
        init: InitScheme | None = None,
        seed: int | None = None,
    ) -> None:
        input_shape = check_shape("input_shape", input_shape, length=3)
        channels = check_shape("channels", channels, min_length=1)
        check_int("convs_per_block", convs_per_block, minimum=1)
        check_int("dense", dense, minimum=0)  # 0: no dense layer
        check_int("num_classes", num_classes, minimum=1)
        check_choice("activation", activation, ACTIVATIONS)
        check_bool("batch_norm", batch_norm)
        dropout = check_probability("dropout", dropout)
        conv_dropout = check_probability("conv_dropout", conv_dropout)
        check_choice("dropout_kind", dropout_kind, DROPOUT_KINDS)
        check_choice("init", init, (None, *sorted(INIT_SCHEMES)))
        seed = check_seed("seed", seed)
        in_ch, height, width = (int(s) for s in input_shape)
        sizes, fan_in, h, w = [], in_ch, height, width  # arithmetic, before any layer is allocated
        for out_ch in channels:
            for _ in range(convs_per_block):
                sizes.append(("channels", fan_in * 9, out_ch, fan_in * 9 * out_ch + out_ch))
                fan_in = out_ch
            h, w = h // 2, w // 2
        flat = fan_in * max(h, 0) * max(w, 0)
        if dense > 0:
            sizes.append(("dense", flat, dense, flat * dense + dense))
            flat = dense
        check_parameter_count([*sizes, ("num_classes", flat, num_classes, flat * num_classes + num_classes)])
        with seeded(seed) as generator:
            in_ch, height, width = (int(s) for s in input_shape)
            layers: list[nn.Module] = []
            for out_ch in channels:
                for _ in range(convs_per_block):
                    layers.append(nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=not batch_norm))
                    if batch_norm:
                        layers.append(make_batch_norm(out_ch, spatial=True))
                    layers.append(make_activation(activation, out_ch))
                    in_ch = out_ch
                layers.append(nn.MaxPool2d(2))
                height, width = height // 2, width // 2
                if conv_dropout > 0:
                    layers.append(make_dropout(dropout_kind, conv_dropout, spatial=True))
            if height < 1 or width < 1:
                raise ValueError(f"channels: {len(channels)} pooling blocks shrink {tuple(input_shape)} below 1x1")
            layers.append(nn.Flatten())
            features = in_ch * height * width
            if dense > 0:
                if dropout > 0:
                    layers.append(make_dropout(dropout_kind, dropout))
                layers.append(nn.Linear(features, dense, bias=not batch_norm))
                if batch_norm:
                    layers.append(make_batch_norm(dense))
                layers.append(make_activation(activation, dense))
                features = dense
            if dropout > 0:
                layers.append(make_dropout(dropout_kind, dropout))
            backbone = nn.Sequential(*layers)
            init_weights(backbone, init or DEFAULT_INIT[activation], generator)
            head = new_head(features, num_classes, generator)
        super().__init__(backbone, head, feature_dim=features)
