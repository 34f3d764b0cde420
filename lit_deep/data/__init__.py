"""Fashion-MNIST: IDX files, locating and verifying the data, and the LightningDataModule.

The readers import no Lightning; ``FashionMNISTDataModule``, ``TASKS``, ``DistributedBatchSampler`` and
``TensorBatches`` (Lightning) are imported on first use. ``BatchSampler`` is the deprecated name of
``DistributedBatchSampler``.
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any

from lit_deep.data._idx import IDXError, read_idx, write_idx
from lit_deep.data.fashion_mnist import CLASS_NAMES, DataNotFoundError, load_fashion_mnist, locate_fashion_mnist

if TYPE_CHECKING:
    from lit_deep.data._batches import DistributedBatchSampler, TensorBatches
    from lit_deep.data.datamodule import TASKS, FashionMNISTDataModule, Task

__all__ = [
    "CLASS_NAMES",
    "TASKS",
    "DataNotFoundError",
    "DistributedBatchSampler",
    "FashionMNISTDataModule",
    "IDXError",
    "Task",
    "TensorBatches",
    "load_fashion_mnist",
    "locate_fashion_mnist",
    "read_idx",
    "write_idx",
]

#: names imported on first access, from a fixed table.
_LAZY = {
    "DistributedBatchSampler": "lit_deep.data._batches",
    "TensorBatches": "lit_deep.data._batches",
    "TASKS": "lit_deep.data.datamodule",
    "Task": "lit_deep.data.datamodule",
    "FashionMNISTDataModule": "lit_deep.data.datamodule",
}


def __getattr__(name: str) -> Any:
    if name == "BatchSampler":  # the old name: it is a DistributedSampler that yields batches
        warnings.warn("lit_deep.data.BatchSampler is renamed DistributedBatchSampler", DeprecationWarning, stacklevel=2)
        return __getattr__("DistributedBatchSampler")
    if name not in _LAZY:
        raise AttributeError(f"module 'lit_deep.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
