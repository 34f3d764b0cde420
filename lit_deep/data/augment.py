"""Batch-level data augmentation for 28x28 images: random shifts and horizontal flips, vectorised."""

from __future__ import annotations

import torch

from lit_deep._validate import check_int, check_probability

__all__ = ["RandomShiftFlip"]


class RandomShiftFlip:
    """Random shifts and horizontal flips of a whole batch at once (no per-image Python loop).

    Each image is shifted by up to ``max_shift`` pixels in each direction and flipped horizontally with
    probability ``flip_p``.
    Shapes: ``[B, C, H, W] -> [B, C, H, W]``; vacated pixels take ``fill`` (the background value: 0 for
    [0, 1]-scaled images, ``-mean/std`` per pixel when standardised).

    Args:
        max_shift: largest shift in pixels (0 disables shifting).
        flip_p: probability of a horizontal flip (Fashion-MNIST items are left-right symmetric enough).
        seed: seed of the transform's own generator (so augmentation does not consume the global RNG).

    Example::

        >>> aug = RandomShiftFlip(max_shift=0, flip_p=1.0)
        >>> aug(torch.arange(4.0).view(1, 1, 2, 2)).view(-1).tolist()
        [1.0, 0.0, 3.0, 2.0]
    """

    def __init__(self, max_shift: int = 2, flip_p: float = 0.5, seed: int = 0) -> None:
        check_int("max_shift", max_shift, minimum=0)
        check_probability("flip_p", flip_p, upper_inclusive=True)
        check_int("seed", seed, minimum=0)
        self.max_shift = max_shift
        self.flip_p = flip_p
        self.generator = torch.Generator().manual_seed(seed)
        self.fill: torch.Tensor | float = 0.0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Augment a batch ``[B, C, H, W]``."""
        b, _, h, w = x.shape
        if self.flip_p > 0:
            flip = (torch.rand(b, generator=self.generator) < self.flip_p).to(x.device)
            x = torch.where(flip.view(b, 1, 1, 1), x.flip(-1), x)
        if self.max_shift == 0:
            return x
        s = self.max_shift
        # Drawn by the CPU generator (the same augmentations on every device), used on the batch's device.
        dy = torch.randint(-s, s + 1, (b, 1, 1), generator=self.generator).to(x.device)
        dx = torch.randint(-s, s + 1, (b, 1, 1), generator=self.generator).to(x.device)
        rows = torch.arange(h, device=x.device).view(1, h, 1) - dy  # source row of each output row
        cols = torch.arange(w, device=x.device).view(1, 1, w) - dx
        valid = ((rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)).unsqueeze(1)
        flat_index = (rows.clamp(0, h - 1) * w + cols.clamp(0, w - 1)).view(b, 1, h * w).expand(-1, x.shape[1], -1)
        shifted = x.reshape(b, x.shape[1], h * w).gather(2, flat_index).view_as(x)
        fill = self.fill if isinstance(self.fill, float) else self.fill.to(x.device).expand_as(x)
        return torch.where(valid, shifted, fill)
