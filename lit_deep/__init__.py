"""lit_deep: the craft of training deep networks as PyTorch Lightning plugins, with a pretrained zoo."""

from typing import TYPE_CHECKING, Any

from lit_deep._warnings import LitDeepWarning
from lit_deep.modules.classifier import Classifier

if TYPE_CHECKING:
    from lit_deep import zoo

__version__ = "0.1.0"

__all__ = ["Classifier", "LitDeepWarning", "__version__", "zoo"]


def __getattr__(name: str) -> Any:
    # `lit_deep.zoo` (huggingface_hub, safetensors) is imported on first use, so `import lit_deep` stays cheap.
    if name == "zoo":
        import importlib

        return importlib.import_module("lit_deep.zoo")
    raise AttributeError(f"module 'lit_deep' has no attribute {name!r}")
