"""Trainer plugins: checkpoints written atomically.

Lightning's ``TorchCheckpointIO`` serialises a checkpoint in memory and then writes it straight to its final
name; a full disk or a killed process leaves a truncated file that looks like a valid checkpoint
(``epoch=0-step=20.ckpt``). :class:`AtomicCheckpointIO` serialises into a fresh temporary file beside it
(:func:`lit_deep._io.atomic_file`) and renames it, so a checkpoint either exists whole or not at all, and a
failed write is one line naming the checkpoint. ``lit-deep`` uses it unless another ``CheckpointIO`` is given.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from typing_extensions import override

from lit_deep._io import WriteError, atomic_file

__all__ = ["AtomicCheckpointIO"]

#: Free space (bytes) under which a failed zip write is reported as a full disk.
_NEARLY_FULL = 1 << 20


def _zip_write_error(path: Path, err: RuntimeError) -> WriteError:
    """The zip writer's failure as one line naming the checkpoint and the likely cause.

    torch reports a short write (a full disk) as ``RuntimeError: [enforce fail at inline_container.cc:...]
    unexpected pos``.
    """
    try:
        fs = os.statvfs(path.parent)
        full = fs.f_bavail * fs.f_frsize < _NEARLY_FULL
    except (OSError, AttributeError):  # no statvfs on Windows
        full = False
    if full:
        return WriteError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    reason = " ".join(str(err).split()).split("] ", 1)[-1]  # drop "[enforce fail at inline_container.cc:672]"
    return WriteError(errno.EIO, f"the checkpoint writer failed ({reason})", str(path))


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` that writes local checkpoints to a temporary file and renames it into place.

    Remote paths (``s3://...`` and other fsspec URLs) go through Lightning's own writer.

    Raises:
        WriteError: (an ``OSError``) naming the checkpoint, for an ``OSError`` or a failed zip write (a full
            disk); the previous checkpoint of that name is kept and no temporary file is left.

    Example::

        >>> import tempfile
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
        path = Path(path)
        try:
            with atomic_file(path, "wb") as handle:
                torch.save(checkpoint, handle)  # straight into the temporary file, no copy in memory
        except RuntimeError as err:  # the temporary file is already removed
            if "inline_container" not in str(err) and "PytorchStreamWriter" not in str(err):
                raise  # not the zip writer: a bug to see in full
            raise _zip_write_error(path, err) from err
