"""Running sums over samples, so that ``mc_predict`` never holds ``[T, N, C]`` unless asked to."""

from __future__ import annotations

import torch

from lit_deep.uncertainty.prediction import MCPrediction
from lit_deep.uncertainty.scores import predictive_entropy

__all__ = ["SampleStats", "to_probs"]


def to_probs(logits: torch.Tensor) -> torch.Tensor:
    """Probabilities ``[R, C]`` from logits ``[R, C]`` (softmax) or ``[R]`` / ``[R, 1]`` (sigmoid, as ``[1-p, p]``).

    Logits narrower than float32 (bf16, float16) are cast to float32 first; autocast is off for the softmax.

    Example::

        >>> to_probs(torch.zeros(1, 1)).tolist(), to_probs(torch.zeros(1, 2)).tolist()
        ([[0.5, 0.5]], [[0.5, 0.5]])
        >>> to_probs(torch.zeros(1, 2, dtype=torch.bfloat16)).dtype
        torch.float32
    """
    if logits.dim() not in (1, 2):
        raise ValueError(f"model: expected logits [N, C] (or [N] / [N, 1] for binary), got {tuple(logits.shape)}")
    # float32 at least (bf16 / float16 models, autocast), and no autocast around the softmax itself.
    wide = logits.to(torch.promote_types(logits.dtype, torch.float32))
    with torch.autocast(logits.device.type, enabled=False):
        if logits.dim() == 1 or logits.shape[1] == 1:
            p = torch.sigmoid(wide.reshape(-1))
            return torch.stack([1 - p, p], dim=-1)
        return wide.softmax(dim=-1)


class SampleStats:
    """Sums over samples of ``p``, ``p**2``, the per-sample entropy and the argmax votes, on the samples' device.

    The sums are float64 (float32 on devices without float64, such as MPS); results are ``dtype``, float32 at
    least.

    Args:
        images: ``S``, rows of the chunk.
        classes: ``C``.
        dtype: dtype of the results (widened to float32 if narrower).
        device: where the sums live (the device of the samples passed to :meth:`update`).

    Example::

        >>> stats = SampleStats(1, 2)
        >>> stats.update(torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]]))
        >>> stats.result().variation_ratio.tolist()
        [0.5]
    """

    def __init__(
        self,
        images: int,
        classes: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        self.dtype = torch.promote_types(dtype, torch.float32)
        self.count = 0
        device = torch.device("cpu") if device is None else torch.device(device)
        self.wide = torch.float32 if device.type == "mps" else torch.float64
        self.sum = torch.zeros(images, classes, dtype=self.wide, device=device)
        self.sum_sq = torch.zeros(images, classes, dtype=self.wide, device=device)
        self.sum_entropy = torch.zeros(images, dtype=self.wide, device=device)
        self.votes = torch.zeros(images, classes, dtype=torch.int64, device=device)

    def update(self, probs: torch.Tensor) -> None:
        """Add samples ``[t, S, C]`` (moved to the sums' device if elsewhere)."""
        probs = probs.to(self.sum.device)
        wide = probs.to(self.wide)
        self.count += probs.shape[0]
        self.sum += wide.sum(dim=0)
        self.sum_sq += wide.square().sum(dim=0)
        self.sum_entropy += predictive_entropy(wide).sum(dim=0)
        winners = probs.argmax(dim=-1).T  # [S, t]
        self.votes.scatter_add_(1, winners, torch.ones_like(winners))

    def result(self) -> MCPrediction:
        """The fields of :class:`MCPrediction` (without ``samples``)."""
        dtype = self.dtype
        mean = self.sum / self.count
        std = (self.sum_sq / self.count - mean.square()).clamp_min(0.0).sqrt()
        entropy = predictive_entropy(mean)
        mutual_info = (entropy - self.sum_entropy / self.count).clamp_min(0.0)
        variation_ratio = 1.0 - self.votes.max(dim=1).values.to(self.wide) / self.count
        return MCPrediction(
            mean.to(dtype),
            std.to(dtype),
            entropy.to(dtype),
            mutual_info.to(dtype),
            variation_ratio.to(dtype),
            mean.argmax(dim=1),
        )
