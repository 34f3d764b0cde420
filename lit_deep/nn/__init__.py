"""Layers and functions: Keras-style initialisers, Monte-Carlo dropout, max-norm, sparsity and int8 quantisation."""

from lit_deep.nn.compression import measure_latency, quantize_dynamic_int8, sparsity
from lit_deep.nn.constraints import max_norm_
from lit_deep.nn.dropout import MCAlphaDropout, MCDropout
from lit_deep.nn.init import (
    InitScheme,
    glorot_normal_,
    glorot_uniform_,
    he_normal_,
    he_uniform_,
    init_weights,
    lecun_normal_,
    lecun_uniform_,
    variance_scaling_,
)

__all__ = [
    "InitScheme",
    "MCAlphaDropout",
    "MCDropout",
    "glorot_normal_",
    "glorot_uniform_",
    "he_normal_",
    "he_uniform_",
    "init_weights",
    "lecun_normal_",
    "lecun_uniform_",
    "max_norm_",
    "measure_latency",
    "quantize_dynamic_int8",
    "sparsity",
    "variance_scaling_",
]
