"""``mc_predict(..., stochastic="all")``: every stochastic op of any model sampled, normalisation statistics frozen.

Dropout written as ``F.dropout(p=self.p if self.training else 0.0)`` (Hugging Face transformers' attention
probabilities), ``F.scaled_dot_product_attention(dropout_p=...)`` gated by ``self.training`` (timm's attention) or
stochastic depth (``drop_path``) exists only while its module is in training mode, so no mask keyed by layer can
reach it. This mode puts every module in training mode except normalisation layers that keep running statistics
(BatchNorm and friends stay in eval mode: their statistics are used, not updated) and runs the whole model
``samples`` times, drawing from torch's own generators.

Seeding: sample ``t`` of a chunk whose first dataset index is ``i`` runs with the generators seeded by a hash of
``(seed, i, t)`` inside ``torch.random.fork_rng`` (the process's generators are left as they were). Results are
reproducible for the same ``seed``, inputs and ``batch_size``; unlike the default mode they depend on how the
inputs are chunked, since an op's draws for one image depend on the rest of its batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from lit_deep._device import to_model_device
from lit_deep.uncertainty._accumulate import SampleStats, to_probs
from lit_deep.uncertainty._masks import mix64
from lit_deep.uncertainty.prediction import MCPrediction

__all__ = ["every_op_prediction", "every_op_train_mode", "logits_of"]


def _keeps_running_stats(module: nn.Module) -> bool:
    return getattr(module, "track_running_stats", False) and getattr(module, "running_mean", None) is not None


@contextmanager
def every_op_train_mode(model: nn.Module) -> Iterator[None]:
    """Training mode for every module but normalisation layers with running statistics; restored on exit.

    Example::

        >>> net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.Dropout(0.1)).eval()
        >>> with every_op_train_mode(net):
        ...     [m.training for m in net]
        [True, False, True]
        >>> [m.training for m in net]
        [False, False, False]
    """
    modes = {module: module.training for module in model.modules()}
    try:
        model.train()
        for module in model.modules():
            if _keeps_running_stats(module):
                module.eval()
        yield
    finally:
        for module, training in modes.items():
            module.training = training


def logits_of(output: Any) -> torch.Tensor:
    """The logits of a model's output: a tensor, a ``ModelOutput``-like object's ``logits``, or a tuple's first.

    Example::

        >>> from types import SimpleNamespace
        >>> logits_of(SimpleNamespace(logits=torch.zeros(1, 2))).shape, logits_of((torch.ones(1, 3),)).shape
        (torch.Size([1, 2]), torch.Size([1, 3]))
    """
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise ValueError(f"model: expected logits (a tensor, or an output with .logits), got {type(output).__name__}")


def _seed(seed: int, first_index: int, sample: int) -> int:
    """The generator seed of one (chunk, sample): SplitMix64 of the three, chained."""
    return mix64(mix64(mix64(seed) ^ first_index) ^ sample) & (2**62 - 1)


def every_op_prediction(
    model: nn.Module,
    x: torch.Tensor,
    indices: torch.Tensor,
    samples: int,
    seed: int,
    batch_size: int,
    keep_samples: bool,
) -> MCPrediction:
    """The prediction of one batch ``x`` with every stochastic op sampled (see the module docstring).

    Raises:
        ValueError: when no sample differs from another: nothing in the model is stochastic in training mode.
    """
    parts: list[MCPrediction] = []
    for lo in range(0, x.shape[0], batch_size):
        chunk = to_model_device(model, x[lo : lo + batch_size])
        device = chunk.device
        stats: SampleStats | None = None
        kept: list[torch.Tensor] = []
        for t in range(samples):
            key = _seed(seed, int(indices[lo]), t)
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.random.default_generator.manual_seed(key)
                if device.type == "cuda":
                    torch.cuda.manual_seed(key)  # the current device's generator, restored by fork_rng
                probs = to_probs(logits_of(model(chunk))).unsqueeze(0)
            if stats is None:
                stats = SampleStats(chunk.shape[0], probs.shape[-1], probs.dtype, probs.device)
            stats.update(probs)
            kept += [probs] if keep_samples else []
        assert stats is not None
        result = stats.result()
        parts.append(MCPrediction(**{**vars(result), "samples": torch.cat(kept) if keep_samples else None}))
    prediction = MCPrediction.cat(parts)
    if samples > 1 and float(prediction.std.max()) == 0.0:
        raise ValueError(
            f"model: {type(model).__name__} gave the same output on every sample in training mode: it has no "
            "stochastic op to sample (stochastic='all' found none)"
        )
    return prediction
