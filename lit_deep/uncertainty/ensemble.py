"""Deep ensembles (Lakshminarayanan et al., 2017): the mean of several networks' probabilities."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader

from lit_deep._device import batch_inputs, to_model_device
from lit_deep._validate import check_int, check_seed
from lit_deep.uncertainty._accumulate import SampleStats, to_probs
from lit_deep.uncertainty.ood import deterministic_probs
from lit_deep.uncertainty.predict import mc_predict
from lit_deep.uncertainty.prediction import MCPrediction

__all__ = ["Ensemble"]


class Ensemble(nn.Module):
    """Several models (e.g. trained from different seeds) whose prediction is the mean of their probabilities.

    ``forward`` returns ``log(mean_m softmax(f_m(x)))`` ``[N, C]``, logits whose softmax is the ensemble's
    probabilities, so the ensemble drops in wherever a classifier's logits are expected. :meth:`predict`
    returns an :class:`MCPrediction` whose spread and mutual information are taken across members (and across
    MC samples when ``mc_samples > 0``: every member is sampled ``T`` times and the ``M * T`` samples are pooled).

    Args:
        models: the members (at least one ``nn.Module``), each returning logits of the same classes.

    Example::

        >>> a, b = nn.Linear(2, 2), nn.Linear(2, 2)
        >>> for m, sign in ((a, 1.0), (b, -1.0)):
        ...     _ = m.weight.data.copy_(sign * torch.eye(2)); _ = m.bias.data.zero_()
        >>> pred = Ensemble([a, b]).predict(torch.tensor([[3.0, 0.0]]))
        >>> [round(p, 4) for p in pred.probs[0].tolist()], round(pred.mutual_info.item(), 4)
        ([0.5, 0.5], 0.5023)
    """

    def __init__(self, models: Sequence[nn.Module]) -> None:
        super().__init__()
        models = list(models)
        if not models or not all(isinstance(m, nn.Module) for m in models):
            raise ValueError(
                f"models: expected a non-empty list of nn.Modules, got {[type(m).__name__ for m in models]}"
            )
        self.members = nn.ModuleList(models)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log of the mean of the members' probabilities (``[N, C]``)."""
        probs = torch.stack([to_probs(m(x)) for m in self.members]).mean(dim=0)
        return probs.clamp_min(torch.finfo(probs.dtype).tiny).log()

    def predict(
        self,
        inputs: torch.Tensor | DataLoader,
        mc_samples: int = 0,
        seed: int | None = None,
        enable_dropout: bool = False,
        batch_size: int = 1024,
    ) -> MCPrediction:
        """The ensemble's prediction with uncertainty across members (and MC samples).

        Args:
            inputs: ``[N, ...]`` or a DataLoader of ``x`` or ``(x, y, ...)`` batches.
            mc_samples: ``T``; 0 uses one deterministic pass per member (eval mode, every dropout off).
            seed: the MC seed (member ``m`` uses ``seed + m``); ``None`` draws one.
            enable_dropout: switch on ordinary dropout for MC sampling (see :func:`mc_predict`).
            batch_size: images per chunk.

        Returns:
            The :class:`MCPrediction` over the ``M`` (or ``M * T``) pooled samples.

        Raises:
            ValueError: for ``mc_samples < 0``.
        """
        check_int("mc_samples", mc_samples, minimum=0)
        check_seed("seed", seed)
        # Results on the inputs' device for a tensor, the ensemble's (first member's) device for a DataLoader.
        if isinstance(inputs, torch.Tensor):
            x, device = inputs, inputs.device
        else:
            x = torch.cat([to_model_device(self, _first(b)) for b in inputs])
            device = x.device
        if mc_samples and seed is None:
            seed = int(torch.randint(0, 2**62, ()))
        stats: SampleStats | None = None
        for m, member in enumerate(self.members):
            if mc_samples:
                assert seed is not None
                pred = mc_predict(member, x, mc_samples, seed + m, batch_size, enable_dropout, return_samples=True)
                assert pred.samples is not None
                samples = pred.samples
            else:
                samples = deterministic_probs(member, x, batch_size).unsqueeze(0)
            stats = stats or SampleStats(samples.shape[1], samples.shape[2], samples.dtype, device)
            stats.update(samples)
        assert stats is not None
        return stats.result()


def _first(batch: object) -> torch.Tensor:
    out = batch_inputs(batch)
    if not isinstance(out, torch.Tensor):
        raise ValueError(f"inputs: expected DataLoader batches of tensors, got {type(out).__name__}")
    return out
