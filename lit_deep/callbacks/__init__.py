"""Lightning callbacks: freezing that stays correct under DDP, max-norm, per-layer statistics, pruning, int8."""

from lit_deep.callbacks.freeze_unfreeze import FreezeUnfreeze
from lit_deep.callbacks.layer_stats import LayerStats
from lit_deep.callbacks.max_norm import MaxNorm
from lit_deep.callbacks.pruning import MagnitudePruning, sparsity
from lit_deep.callbacks.quantization import DynamicQuantization, measure_latency, quantize_dynamic_int8

__all__ = [
    "DynamicQuantization",
    "FreezeUnfreeze",
    "LayerStats",
    "MagnitudePruning",
    "MaxNorm",
    "measure_latency",
    "quantize_dynamic_int8",
    "sparsity",
]
