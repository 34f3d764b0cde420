"""The preprocessing layer of pretrained models: raw images in, what the network saw at training time out."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lit_deep._validate import check_bool, check_shape
from lit_deep.models._record import RecordsInit

__all__ = ["Preprocess"]


class Preprocess(RecordsInit, nn.Module):
    """Turn raw images into what the network saw at training time.

    uint8 images are divided by 255; float images are taken as [0, 1] pixels. A missing channel axis is
    added (``[B, H, W] -> [B, 1, H, W]``). Then ``(x - mean) / std`` with the buffers ``mean`` and ``std``
    (per pixel, shape ``input_shape``, for standardised models; ``0`` and ``1``, shape ``[1]``, otherwise).
    The buffers are saved with the weights, so the SHA-256 of ``model.safetensors`` covers them.

    Shapes: ``[B, *input_shape]`` or ``[B, H, W]`` (single channel) -> ``[B, *input_shape]`` float32.

    Args:
        input_shape: the shape of one image ``(C, H, W)``.
        per_pixel: hold per-pixel statistics (filled by loading the weights).

    Example::

        >>> pre = Preprocess((1, 2, 2), per_pixel=True)
        >>> _ = pre.mean.fill_(0.5), pre.std.fill_(0.25)
        >>> pre(torch.full((1, 2, 2), 255, dtype=torch.uint8)).view(-1).tolist()
        [2.0, 2.0, 2.0, 2.0]
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, input_shape: Sequence[int] = (1, 28, 28), per_pixel: bool = False) -> None:
        super().__init__()
        self.input_shape = check_shape("input_shape", input_shape, min_length=1)
        check_bool("per_pixel", per_pixel)
        stats_shape = self.input_shape if per_pixel else (1,)
        self.register_buffer("mean", torch.zeros(stats_shape))
        self.register_buffer("std", torch.ones(stats_shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scale, reshape and standardise a batch (see the class docstring)."""
        if x.dtype == torch.uint8:
            x = x.float().div(255.0)
        elif not x.is_floating_point():
            raise ValueError(f"x: expected uint8 or float images, got dtype {x.dtype}")
        if x.dim() == len(self.input_shape) and self.input_shape[0] == 1 and tuple(x.shape[1:]) == self.input_shape[1:]:
            x = x.unsqueeze(1)
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"x: expected images of shape [B, {', '.join(map(str, self.input_shape))}] (or [B, H, W] for one "
                f"channel), got {list(x.shape)}"
            )
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        """Show the input shape and whether the statistics are per pixel."""
        return f"input_shape={self.input_shape}, per_pixel={tuple(self.mean.shape) != (1,)}"
