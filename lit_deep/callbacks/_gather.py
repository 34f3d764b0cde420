"""Gathering rows of different lengths from every DDP rank (padded ``all_gather`` on the training device)."""

from __future__ import annotations

import lightning.pytorch as pl
import torch

__all__ = ["gather_rows"]


def gather_rows(module: pl.LightningModule, rows: torch.Tensor) -> torch.Tensor:
    """Every rank's ``rows`` (the first dimension may differ by rank), concatenated in rank order.

    A collective (call on every rank). The tensors are padded to the longest rank's length and gathered on the
    module's device (the strategy's: NCCL refuses CPU tensors); the result stays there. A single process gets
    ``rows`` back.

    Example::

        >>> module = pl.LightningModule()
        >>> trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
        >>> trainer.strategy.connect(module)
        >>> module.trainer = trainer
        >>> gather_rows(module, torch.arange(3)).tolist()
        [0, 1, 2]
    """
    if module.trainer.world_size == 1:
        return rows
    counts = module.all_gather(torch.tensor(rows.shape[0], device=module.device))
    assert isinstance(counts, torch.Tensor)
    padded = torch.zeros(int(counts.max()), *rows.shape[1:], dtype=rows.dtype, device=module.device)
    padded[: rows.shape[0]] = rows.to(module.device)
    gathered = module.all_gather(padded)
    assert isinstance(gathered, torch.Tensor)
    return torch.cat([gathered[r, : int(n)] for r, n in enumerate(counts.reshape(-1).tolist())])
