"""The result of Monte-Carlo dropout prediction: predictive mean, spread and uncertainty scores."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch

__all__ = ["MCPrediction"]

# Per-image fields (first dimension N), in the order `pack` lays them out.
_CLASS_FIELDS = ("probs", "std")
_SCALAR_FIELDS = ("entropy", "mutual_info", "variation_ratio", "prediction")


def _entropy(probs: torch.Tensor) -> torch.Tensor:
    # scores.predictive_entropy, here so that prediction.py does not import scores.py (which imports this file)
    return -torch.special.xlogy(probs, probs).sum(dim=-1)


@dataclass
class MCPrediction:
    """What :func:`~lit_deep.uncertainty.mc_predict` returns for ``N`` inputs, ``C`` classes and ``T`` samples.

    Entropies are in nats (natural logarithm).

    Attributes:
        probs: ``[N, C]`` predictive mean: the average over the samples of the softmax.
        std: ``[N, C]`` standard deviation of the per-sample probabilities (population form, divided by ``T``,
            as the book's ``y_probas.std(axis=0)``).
        entropy: ``[N]`` predictive entropy ``H[p] = -sum_c p_c log p_c`` of ``probs``.
        mutual_info: ``[N]`` mutual information (BALD): ``H[probs]`` minus the mean entropy of the per-sample
            probabilities; >= 0 (rounding below 0 is clipped).
        variation_ratio: ``[N]`` ``1 - (votes of the most frequent per-sample argmax) / T``.
        prediction: ``[N]`` int64 ``argmax`` of ``probs``.
        samples: ``[T, N, C]`` per-sample probabilities, or ``None`` unless asked for.

    Example::

        >>> pred = MCPrediction.from_samples(torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]]))
        >>> pred.probs.tolist(), round(pred.mutual_info.item(), 4), pred.variation_ratio.tolist(), len(pred)
        ([[0.5, 0.5]], 0.6931, [0.5], 1)
    """

    probs: torch.Tensor
    std: torch.Tensor
    entropy: torch.Tensor
    mutual_info: torch.Tensor
    variation_ratio: torch.Tensor
    prediction: torch.Tensor
    samples: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.probs.shape[0])

    @property
    def num_classes(self) -> int:
        """``C``, the number of classes."""
        return int(self.probs.shape[1])

    @classmethod
    def from_samples(cls, samples: torch.Tensor, keep_samples: bool = False) -> MCPrediction:
        """Compute every field from stacked per-sample probabilities ``[T, N, C]`` (the plain formulas).

        Args:
            samples: ``[T, N, C]`` probabilities (each row sums to 1).
            keep_samples: store ``samples`` in the result.

        Returns:
            The prediction.

        Raises:
            ValueError: if ``samples`` is not a 3-D tensor with ``T, N, C >= 1``.

        Example::

            >>> MCPrediction.from_samples(torch.tensor([[[0.25, 0.75]], [[0.75, 0.25]]])).std.tolist()
            [[0.25, 0.25]]
        """
        if samples.dim() != 3 or min(samples.shape) < 1:
            raise ValueError(f"samples: expected a [T, N, C] tensor, got shape {tuple(samples.shape)}")
        wide = samples.double()
        probs = wide.mean(dim=0)
        std = wide.std(dim=0, correction=0)
        entropy = _entropy(probs)
        mutual_info = (entropy - _entropy(wide).mean(dim=0)).clamp_min(0.0)
        votes = torch.nn.functional.one_hot(samples.argmax(dim=-1), samples.shape[-1]).sum(dim=0)
        variation_ratio = 1.0 - votes.max(dim=-1).values.double() / samples.shape[0]
        dtype = samples.dtype
        return cls(
            probs.to(dtype),
            std.to(dtype),
            entropy.to(dtype),
            mutual_info.to(dtype),
            variation_ratio.to(dtype),
            probs.argmax(dim=-1),
            samples if keep_samples else None,
        )

    def select(self, rows: torch.Tensor | slice) -> MCPrediction:
        """The prediction for a subset of the inputs (``samples`` indexed along its second dimension).

        Example::

            >>> pred = MCPrediction.from_samples(torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]))
            >>> pred.select(slice(1, 2)).prediction.tolist()
            [1]
        """
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "samples"}
        picked = {name: value[rows] for name, value in values.items()}
        samples = self.samples[:, rows] if self.samples is not None else None
        return MCPrediction(**picked, samples=samples)

    def to(self, device: torch.device | str | None) -> MCPrediction:
        """The same prediction with every tensor on ``device`` (``self`` for ``None`` or where they are already).

        Example::

            >>> pred = MCPrediction.from_samples(torch.tensor([[[1.0, 0.0]]]))
            >>> pred.to("cpu") is pred, pred.to(None) is pred
            (True, True)
        """
        if device is None or self.probs.device == torch.device(device):
            return self
        moved = {f.name: getattr(self, f.name).to(device) for f in fields(self) if f.name != "samples"}
        return MCPrediction(**moved, samples=None if self.samples is None else self.samples.to(device))

    @classmethod
    def cat(cls, parts: Sequence[MCPrediction]) -> MCPrediction:
        """Concatenate predictions along the input dimension (``samples`` kept only if every part has it).

        Raises:
            ValueError: for an empty sequence.

        Example::

            >>> one = MCPrediction.from_samples(torch.tensor([[[1.0, 0.0]]]))
            >>> len(MCPrediction.cat([one, one]))
            2
        """
        if not parts:
            raise ValueError("parts: need at least one MCPrediction to concatenate")
        values = {f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in fields(cls) if f.name != "samples"}
        samples = None
        if all(p.samples is not None for p in parts):
            samples = torch.cat([p.samples for p in parts if p.samples is not None], dim=1)
        return cls(**values, samples=samples)

    def pack(self) -> torch.Tensor:
        """All per-image fields but ``samples`` as one float64 ``[N, 2C + 4]`` tensor (for collectives).

        Example::

            >>> MCPrediction.from_samples(torch.tensor([[[1.0, 0.0]]])).pack().shape
            torch.Size([1, 8])
        """
        columns = [getattr(self, name).double() for name in _CLASS_FIELDS]
        columns += [getattr(self, name).double().unsqueeze(1) for name in _SCALAR_FIELDS]
        return torch.cat(columns, dim=1)

    @classmethod
    def unpack(cls, packed: torch.Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> MCPrediction:
        """Inverse of :meth:`pack`.

        Example::

            >>> pred = MCPrediction.from_samples(torch.tensor([[[0.3, 0.7]]]))
            >>> MCPrediction.unpack(pred.pack(), 2).probs.tolist() == pred.probs.tolist()
            True
        """
        c = num_classes
        if packed.dim() != 2 or packed.shape[1] != 2 * c + len(_SCALAR_FIELDS):
            raise ValueError(f"packed: expected [N, {2 * c + 4}] for {c} classes, got {tuple(packed.shape)}")
        scalars = packed[:, 2 * c :]
        return cls(
            packed[:, :c].to(dtype),
            packed[:, c : 2 * c].to(dtype),
            scalars[:, 0].to(dtype),
            scalars[:, 1].to(dtype),
            scalars[:, 2].to(dtype),
            scalars[:, 3].round().long(),
        )
