"""The model zoo: pretrained Fashion-MNIST models published as Hugging Face Hub repos.

Runtime (this package's top level; imports no Lightning): ``list_models()`` names the registered models;
``load(name_or_repo, num_classes=None, revision=None, cache_dir=None)`` downloads a registered model or any Hub repo
in the lit_deep format through ``huggingface_hub``, verifies it, rebuilds it from ``config.json`` (allow-listed
classes only) and returns a plain ``nn.Module`` (eval mode, preprocessing attached). ``Pretrained`` is the
transfer-learning form for YAML recipes. Release tooling (export, cards, evaluation, push) lives in
:mod:`lit_deep.zoo.release`.
"""

from lit_deep.zoo._hub import Fetched, ZooDownloadError, ZooIntegrityError, shipped_copy
from lit_deep.zoo.api import ZooInfo, download, info, load
from lit_deep.zoo.pretrained import Pretrained, load_source
from lit_deep.zoo.registry import (
    DEFAULT_NAMESPACE,
    NAMESPACE_ENV,
    REGISTRY,
    HubReference,
    PreprocessingSpec,
    UnknownModelError,
    ZooEntry,
    get_entry,
    list_models,
    parse_reference,
)

__all__ = [
    "DEFAULT_NAMESPACE",
    "NAMESPACE_ENV",
    "REGISTRY",
    "Fetched",
    "HubReference",
    "PreprocessingSpec",
    "Pretrained",
    "UnknownModelError",
    "ZooDownloadError",
    "ZooEntry",
    "ZooInfo",
    "ZooIntegrityError",
    "download",
    "get_entry",
    "info",
    "list_models",
    "load",
    "load_source",
    "parse_reference",
    "shipped_copy",
]
