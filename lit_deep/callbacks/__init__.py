"""Lightning callbacks: freezing that stays correct under DDP, max-norm, per-layer statistics, pruning, int8.

What a callback may rely on in the LightningModule is :class:`TrainableModule` (:mod:`lit_deep.callbacks.contract`);
which layers a callback acts on is said in the selector language of :mod:`lit_deep.callbacks.select`.
"""

from lit_deep.callbacks.contract import TrainableModule, root_module
from lit_deep.callbacks.freeze_unfreeze import FreezeUnfreeze
from lit_deep.callbacks.layer_stats import LayerStats
from lit_deep.callbacks.max_norm import MaxNorm
from lit_deep.callbacks.pruning import MagnitudePruning
from lit_deep.callbacks.quantization import DynamicQuantization

__all__ = [
    "DynamicQuantization",
    "FreezeUnfreeze",
    "LayerStats",
    "MagnitudePruning",
    "MaxNorm",
    "TrainableModule",
    "root_module",
]
