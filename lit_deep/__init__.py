"""lit_deep: the craft of training deep networks as PyTorch Lightning plugins, with a pretrained zoo."""

from lit_deep._warnings import LitDeepWarning
from lit_deep.modules.classifier import Classifier

__version__ = "0.1.0"

__all__ = ["Classifier", "LitDeepWarning", "__version__"]
