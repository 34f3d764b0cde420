"""A small residual network for 1x28x28 images (ResNet-20 style: three stages of basic blocks)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
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
from lit_deep.models._record import RecordsInit
from lit_deep.nn.init import INIT_SCHEMES, InitScheme, init_weights

__all__ = ["ResNet", "ResidualBlock"]


class ResidualBlock(RecordsInit, nn.Module):
    """A basic residual block: ``act(BN(conv3x3(act(BN(conv3x3(x))))) + shortcut(x))``.

    The shortcut is the identity, or a strided 1x1 convolution with BatchNorm where the block changes the
    resolution or the width (He et al., 2016, option B). ``zero_init_residual`` starts the block's last
    BatchNorm at scale 0, so that every block begins as the identity (Goyal et al., 2017): deep residual nets
    then train from the first step like shallow ones.

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output.
        stride: stride of the first convolution (2 halves the resolution).
        activation: activation name (see :class:`~lit_deep.models.MLP`).
        zero_init_residual: start the last BatchNorm's scale at 0.

    Example::

        >>> block = ResidualBlock(8, 16, stride=2)
        >>> tuple(block(torch.zeros(2, 8, 28, 28)).shape)
        (2, 16, 14, 14)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        activation: Activation = "relu",
        zero_init_residual: bool = True,
    ) -> None:
        check_int("in_channels", in_channels, minimum=1)
        check_int("out_channels", out_channels, minimum=1)
        check_choice("stride", stride, (1, 2))
        check_choice("activation", activation, ACTIVATIONS)
        check_bool("zero_init_residual", zero_init_residual)
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = make_batch_norm(out_channels, spatial=True)
        self.act1 = make_activation(activation, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = make_batch_norm(out_channels, spatial=True)
        self.act2 = make_activation(activation, out_channels)
        self.zero_init_residual = zero_init_residual
        self.reset_residual_()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                make_batch_norm(out_channels, spatial=True),
            )

    def reset_residual_(self) -> None:
        """Start the block as the identity again (its last BatchNorm's scale at 0), if ``zero_init_residual``."""
        if self.zero_init_residual:
            nn.init.zeros_(self.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102 - documented on the class
        out = self.act1(self.bn1(self.conv1(x)))
        return self.act2(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(BackboneHead):
    """A ResNet-20-style network: a 3x3 stem, stages of :class:`ResidualBlock`, global average pooling, a head.

    Shapes: input ``[B, C, H, W]`` (default ``[B, 1, 28, 28]``), output logits ``[B, num_classes]``. The
    backbone is an ``nn.Sequential`` whose children are ``conv, BN, act`` (the stem), then one child per
    residual block (each stage after the first halves the resolution in its first block), then
    ``AdaptiveAvgPool2d(1), Flatten, [Dropout]``: cut it by child index with
    :func:`~lit_deep.models.transfer` (``len(widths) * blocks + 3`` ends after the last block). With the
    defaults (widths 16-32-64, 3 blocks per stage) it is He et al.'s CIFAR ResNet-20: 0.27 M parameters.
    He initialisation (the chapter's match for ReLU), BatchNorm with Keras's momentum and epsilon (see
    :class:`~lit_deep.models.MLP`), each block's last BatchNorm scale at 0 (``zero_init_residual``).

    Args:
        input_shape: shape of one input ``(C, H, W)``.
        widths: channels of each stage.
        blocks: residual blocks per stage.
        num_classes: number of outputs.
        activation: activation name (see :class:`~lit_deep.models.MLP`).
        dropout: rate of the dropout layer before the head (0 for none).
        dropout_kind: ``"standard"`` or ``"mc"`` (always on) and the alpha variants.
        zero_init_residual: start each block as the identity.
        init: initialisation scheme of the convolutions; ``None`` picks the activation's match.
        seed: seed the initialisation, leaving the global generator as it was (``None`` uses the global one).

    Example::

        >>> net = ResNet(widths=(8, 16), blocks=1, seed=0)
        >>> tuple(net(torch.rand(2, 1, 28, 28)).shape), net.feature_dim, len(net.backbone)
        ((2, 10), 16, 7)
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 28, 28),
        widths: Sequence[int] = (16, 32, 64),
        blocks: int = 3,
        num_classes: int = 10,
        activation: Activation = "relu",
        dropout: float = 0.0,
        dropout_kind: DropoutKind = "standard",
        zero_init_residual: bool = True,
        init: InitScheme | None = None,
        seed: int | None = None,
    ) -> None:
        input_shape = check_shape("input_shape", input_shape, length=3)
        widths = check_shape("widths", widths, min_length=1)
        check_int("blocks", blocks, minimum=1)
        check_int("num_classes", num_classes, minimum=1)
        check_choice("activation", activation, ACTIVATIONS)
        dropout = check_probability("dropout", dropout)
        check_choice("dropout_kind", dropout_kind, DROPOUT_KINDS)
        check_bool("zero_init_residual", zero_init_residual)
        check_choice("init", init, (None, *sorted(INIT_SCHEMES)))
        seed = check_seed("seed", seed)
        in_ch = int(input_shape[0])
        sizes, fan_in = [("widths", in_ch * 9, widths[0], in_ch * 9 * widths[0])], widths[0]
        for out_ch in widths:  # arithmetic, before any layer is allocated
            for _ in range(blocks):
                sizes.append(("widths", fan_in * 9, out_ch, 9 * out_ch * (fan_in + out_ch) + fan_in * out_ch))
                fan_in = out_ch
        check_parameter_count([*sizes, ("num_classes", fan_in, num_classes, fan_in * num_classes + num_classes)])
        with seeded(seed) as generator:
            layers: list[nn.Module] = [
                nn.Conv2d(in_ch, widths[0], 3, padding=1, bias=False),
                make_batch_norm(widths[0], spatial=True),
            ]
            layers.append(make_activation(activation, widths[0]))
            channels = widths[0]
            for stage, out_ch in enumerate(widths):
                for index in range(blocks):
                    stride = 2 if stage > 0 and index == 0 else 1
                    layers.append(ResidualBlock(channels, out_ch, stride, activation, zero_init_residual))
                    channels = out_ch
            layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
            if dropout > 0:
                layers.append(make_dropout(dropout_kind, dropout))
            backbone = nn.Sequential(*layers)
            init_weights(backbone, init or DEFAULT_INIT[activation], generator)
            head = new_head(channels, num_classes, generator)
        super().__init__(backbone, head, feature_dim=channels)
