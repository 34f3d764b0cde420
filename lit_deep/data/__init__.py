"""Fashion-MNIST: IDX files, locating and verifying the data, and the LightningDataModule."""

from lit_deep.data._batches import BatchSampler, TensorBatches
from lit_deep.data._idx import IDXError, read_idx, write_idx
from lit_deep.data.datamodule import TASKS, FashionMNISTDataModule
from lit_deep.data.fashion_mnist import CLASS_NAMES, DataNotFoundError, load_fashion_mnist, locate_fashion_mnist

__all__ = [
    "CLASS_NAMES",
    "TASKS",
    "BatchSampler",
    "DataNotFoundError",
    "FashionMNISTDataModule",
    "IDXError",
    "TensorBatches",
    "load_fashion_mnist",
    "locate_fashion_mnist",
    "read_idx",
    "write_idx",
]
