"""Measuring and shrinking a trained model: weight sparsity, dynamic int8 quantisation, forward latency.

Plain functions on an ``nn.Module`` (used by the ``MagnitudePruning`` and ``DynamicQuantization`` callbacks, and
usable without Lightning). None of them changes the model it is given.
"""

from __future__ import annotations

import copy
import time
import warnings

import torch
from torch import nn

from lit_deep._validate import check_int

__all__ = ["measure_latency", "quantize_dynamic_int8", "sparsity"]

# What torch.ao's dynamic quantisation warns on every call, and nothing else is silenced: the module's
# deprecation notice (torchao replaces it) and the quantized-tensor notice, once per layer.
_QUANTIZATION_NOTICES = (
    (DeprecationWarning, r"torch\.ao\.quantization is deprecated"),
    (UserWarning, r"torch\.quantize_per_tensor, torch\.quantize_per_channel and other quantized tensor"),
)


def sparsity(model: nn.Module) -> float:
    """The fraction of exactly-zero entries over the weight matrices and kernels (2-D or more) of ``model``.

    Example::

        >>> layer = nn.Linear(4, 2)
        >>> with torch.no_grad():
        ...     layer.weight[0] = 0.0
        >>> sparsity(layer)
        0.5
    """
    weights = [p for p in model.parameters() if p.dim() >= 2]
    total = sum(p.numel() for p in weights)
    zeros = sum(int((p == 0).sum()) for p in weights)
    return zeros / total if total else 0.0


def quantize_dynamic_int8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose Linear layers run with int8 weights and dynamically quantised activations.

    PyTorch's ``torch.ao.quantization.quantize_dynamic`` (deprecated in favour of torchao, still shipped);
    CPU only, in eval mode. The original model is not modified. Only torch.ao's own deprecation and
    quantized-tensor notices are silenced; any other warning reaches the caller.

    Example::

        >>> net = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> "quantized.dynamic" in type(quantize_dynamic_int8(net)[0]).__module__, net.training
        (True, True)
    """
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        for category, message in _QUANTIZATION_NOTICES:
            warnings.filterwarnings("ignore", message=message, category=category)
        return quantize_dynamic(copy.deepcopy(model).cpu().eval(), {nn.Linear}, dtype=torch.qint8)


@torch.inference_mode()
def _synchronize(x: torch.Tensor) -> None:
    if x.is_cuda:
        torch.cuda.synchronize(x.device)


def measure_latency(model: nn.Module, x: torch.Tensor, repeats: int = 20) -> float:
    """Median seconds of one forward pass of ``model`` on ``x`` in eval mode (after two warm-up passes).

    The model is timed in eval mode and put back in the mode it came in (its ``training`` flags per submodule).
    On a CUDA device the clock is read after ``torch.cuda.synchronize``: kernels run asynchronously, so an
    unsynchronised timer measures the launch, not the pass.

    Example::

        >>> net = nn.Sequential(nn.Linear(4, 2), nn.Dropout(0.5))
        >>> measure_latency(net, torch.zeros(3, 4), repeats=3) > 0, net.training
        (True, True)
    """
    check_int("repeats", repeats, minimum=1)
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        for _ in range(2):
            model(x)
        times = []
        for _ in range(repeats):
            _synchronize(x)
            start = time.perf_counter()
            model(x)
            _synchronize(x)
            times.append(time.perf_counter() - start)
    finally:
        for module, training in modes.items():
            module.training = training
    return sorted(times)[len(times) // 2]
