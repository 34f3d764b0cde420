"""Fashion-MNIST: IDX files, locating and verifying the data, and the LightningDataModule.

The readers import no Lightning; ``FashionMNISTDataModule`` and ``DistributedBatchSampler`` (Lightning) are
imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lit_deep.data._idx import IDXError, read_idx, write_idx
from lit_deep.data.fashion_mnist import CLASS_NAMES, DataNotFoundError, load_fashion_mnist, locate_fashion_mnist

if TYPE_CHECKING:
    from lit_deep.data._batches import DistributedBatchSampler
    from lit_deep.data.datamodule import FashionMNISTDataModule

__all__ = [
    "CLASS_NAMES",
    "DataNotFoundError",
    "DistributedBatchSampler",
    "FashionMNISTDataModule",
    "IDXError",
    "load_fashion_mnist",
    "locate_fashion_mnist",
    "read_idx",
    "write_idx",
]

#: names imported on first access, from a fixed table.
_LAZY = {
    "DistributedBatchSampler": "lit_deep.data._batches",
    "FashionMNISTDataModule": "lit_deep.data.datamodule",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'lit_deep.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
