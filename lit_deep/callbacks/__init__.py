"""Lightning callbacks: freezing correct under DDP, max-norm, layer statistics, pruning, int8, temperature, conformal.

Also the learning-rate range test before ``fit`` (:func:`find_lr`).

What a callback may rely on in the LightningModule is :class:`TrainableModule` (:mod:`lit_deep.callbacks.contract`);
which layers a callback acts on is said in the selector language of :mod:`lit_deep.callbacks.select`.
"""

from lit_deep.callbacks.conformal import ConformalPrediction
from lit_deep.callbacks.contract import TrainableModule
from lit_deep.callbacks.freeze_unfreeze import FreezeUnfreeze
from lit_deep.callbacks.layer_stats import LayerStats
from lit_deep.callbacks.lr_finder import find_lr
from lit_deep.callbacks.max_norm import MaxNorm
from lit_deep.callbacks.pruning import MagnitudePruning
from lit_deep.callbacks.quantization import DynamicQuantization
from lit_deep.callbacks.temperature import TemperatureScaling

__all__ = [
    "ConformalPrediction",
    "DynamicQuantization",
    "FreezeUnfreeze",
    "LayerStats",
    "MagnitudePruning",
    "MaxNorm",
    "TemperatureScaling",
    "TrainableModule",
    "find_lr",
]
