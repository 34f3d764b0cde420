"""The model zoo: pretrained Fashion-MNIST models published as Hugging Face Hub repos.

``list_models()`` names them; ``load(name, num_classes=None, revision=None, cache_dir=None)`` downloads one
through ``huggingface_hub``, checks its SHA-256, rebuilds it from ``config.json`` and returns a plain
``nn.Module`` (eval mode, preprocessing attached). See :mod:`lit_deep.zoo.registry` for the table.
"""

from lit_deep.zoo._build import ARCHITECTURES, Preprocess, ZooModel, build_architecture
from lit_deep.zoo._hub import Fetched, ZooDownloadError, ZooIntegrityError, shipped_copy
from lit_deep.zoo.api import download, info, load
from lit_deep.zoo.registry import (
    DEFAULT_NAMESPACE,
    NAMESPACE_ENV,
    REGISTRY,
    Preprocessing,
    UnknownModelError,
    ZooEntry,
    get_entry,
    list_models,
)

__all__ = [
    "ARCHITECTURES",
    "DEFAULT_NAMESPACE",
    "NAMESPACE_ENV",
    "REGISTRY",
    "Fetched",
    "Preprocess",
    "Preprocessing",
    "UnknownModelError",
    "ZooDownloadError",
    "ZooEntry",
    "ZooIntegrityError",
    "ZooModel",
    "build_architecture",
    "download",
    "get_entry",
    "info",
    "list_models",
    "load",
    "shipped_copy",
]
