"""lit_deep: the craft of training deep networks as PyTorch Lightning plugins, with a pretrained zoo.

``import lit_deep`` is cheap: ``Classifier`` (Lightning) and ``zoo`` (huggingface_hub) are imported on first use,
so ``lit_deep.models``, ``lit_deep.nn`` and ``lit_deep.data``'s readers serve plain PyTorch users.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lit_deep._version import __version__
from lit_deep._warnings import LitDeepWarning

if TYPE_CHECKING:
    from lit_deep import zoo
    from lit_deep.modules.classifier import Classifier


__all__ = ["Classifier", "LitDeepWarning", "__version__", "zoo"]

#: attribute -> (module, name or None for the module itself), imported on first access.
_LAZY = {"Classifier": ("lit_deep.modules.classifier", "Classifier"), "zoo": ("lit_deep.zoo", None)}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'lit_deep' has no attribute {name!r}")
    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)  # one of the two fixed entries above
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value
