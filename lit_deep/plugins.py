"""Trainer plugins: checkpoints written atomically.

Lightning's ``TorchCheckpointIO`` serialises a checkpoint in memory and then writes it straight to its final
name; a full disk or a killed process leaves a truncated file that looks like a valid checkpoint
(``epoch=0-step=20.ckpt``). :class:`AtomicCheckpointIO` writes to a temporary file beside it and renames it,
so a checkpoint either exists whole or not at all. ``lit-deep`` uses it unless another ``CheckpointIO`` is given.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from typing_extensions import override

from lit_deep._io import atomic_write

__all__ = ["AtomicCheckpointIO"]


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` that writes local checkpoints to a temporary file and renames it into place.

    Remote paths (``s3://...`` and other fsspec URLs) go through Lightning's own writer.

    Example::

        >>> import tempfile
        >>> from pathlib import Path
        >>> path = Path(tempfile.mkdtemp()) / "last.ckpt"
        >>> AtomicCheckpointIO().save_checkpoint({"step": torch.tensor(3)}, path)
        >>> torch.load(path, weights_only=True)["step"].item()
        3
    """

    @override
    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike[str], storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, str(path), storage_options)
            return
        atomic_write(path, lambda handle: torch.save(checkpoint, handle))
