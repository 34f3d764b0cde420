"""Weight initialisers with Keras semantics.

PyTorch lacks LeCun and fan-avg variance scaling, and its ``trunc_normal_`` cuts at absolute bounds. Keras's
``VarianceScaling`` draws from a normal truncated at two standard deviations whose stddev is divided by
0.87962566 (the std of a unit normal truncated at +-2) so that the variance is exactly ``scale / fan``.
Note also that for SELU nets the gain is 1 (LeCun), not ``torch.nn.init.calculate_gain('selu')``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, get_args

import torch
from torch import nn

from lit_deep._validate import check_choice, check_positive

__all__ = [
    "InitScheme",
    "INIT_SCHEMES",
    "glorot_normal_",
    "glorot_uniform_",
    "he_normal_",
    "he_uniform_",
    "init_weights",
    "lecun_normal_",
    "lecun_uniform_",
    "variance_scaling_",
]

_TRUNC_STD_CORRECTION = 0.87962566103423978  # std of N(0, 1) truncated to [-2, 2]
_MODES = ("fan_in", "fan_out", "fan_avg")
_DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")


def _fans(tensor: torch.Tensor) -> tuple[int, int]:
    if tensor.dim() < 2:
        raise ValueError(
            f"tensor: variance scaling needs a weight with at least 2 dimensions, got {tuple(tensor.shape)}"
        )
    receptive = math.prod(tensor.shape[2:]) if tensor.dim() > 2 else 1
    # PyTorch stores Linear and Conv weights as (out, in, *kernel).
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


@torch.no_grad()
def variance_scaling_(
    tensor: torch.Tensor,
    scale: float = 1.0,
    mode: str = "fan_in",
    distribution: str = "truncated_normal",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Fill a weight in place so that its variance is ``scale / fan`` (Keras ``VarianceScaling``).

    .. math:: \operatorname{Var}(w) = \frac{scale}{fan}, \quad fan \in \{fan_{in}, fan_{out}, (fan_{in}+fan_{out})/2\}

    Args:
        tensor: a Linear ``(out, in)`` or Conv ``(out, in, *kernel)`` weight.
        scale: the variance numerator (1 for Glorot/LeCun, 2 for He).
        mode: ``"fan_in"``, ``"fan_out"`` or ``"fan_avg"``.
        distribution: ``"truncated_normal"`` (cut at 2 sigma, stddev corrected by 0.87962566),
            ``"untruncated_normal"`` or ``"uniform"`` (on ``[-sqrt(3 var), sqrt(3 var)]``).
        generator: an optional random generator.

    Returns:
        The same tensor, filled.

    Raises:
        ValueError: for a non-positive scale, an unknown mode or distribution, or a 1-D tensor.

    Example::

        >>> w = variance_scaling_(torch.empty(500, 400), scale=2.0, generator=torch.Generator().manual_seed(0))
        >>> round(w.var().item() * 400, 1)
        2.0
    """
    check_positive("scale", scale)
    check_choice("mode", mode, _MODES)
    check_choice("distribution", distribution, _DISTRIBUTIONS)
    fan_in, fan_out = _fans(tensor)
    fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    variance = scale / max(1.0, fan)
    if distribution == "uniform":
        limit = math.sqrt(3.0 * variance)
        return tensor.uniform_(-limit, limit, generator=generator)
    if distribution == "untruncated_normal":
        return tensor.normal_(0.0, math.sqrt(variance), generator=generator)
    std = math.sqrt(variance) / _TRUNC_STD_CORRECTION
    # Draw by inverse CDF on [-2, 2] sigma, so the tensor is filled in one pass without rejection loops.
    low, high = (1 + math.erf(-2 / math.sqrt(2))) / 2, (1 + math.erf(2 / math.sqrt(2))) / 2
    tensor.uniform_(2 * low - 1, 2 * high - 1, generator=generator)
    _erfinv_on_this_thread_(tensor).mul_(std * math.sqrt(2.0))
    return tensor.clamp_(-2 * std, 2 * std)


#: Slices this small run on the calling thread: PyTorch's CPU vector-math kernels (erfinv among them) split
#: their work over the intra-op threads from 2048 elements on.
_SERIAL_SLICE = 1024


def _erfinv_on_this_thread_(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor.erfinv_()`` with the same bits on any number of threads: on CPU, one slice at a time.

    PyTorch's CPU ``erfinv`` is a vector-math kernel (MKL's in the CPU wheels) that splits even a 32 x 784
    weight over the intra-op threads, and the half computed on the worker thread occasionally came back with a
    relative error up to ~7e-5 instead of ~1e-7: two ``MLP(seed=0)`` built with two threads then differed in
    the second half of their first weight. Slices below the kernel's grain keep every element on the calling
    thread, which gives the accurate values, bit for bit those of a single-threaded run (seeded weights
    unchanged). Other devices run their own kernel at once.

    Example::

        >>> x = torch.linspace(-0.9, 0.9, 5000)
        >>> bool((_erfinv_on_this_thread_(x.clone()) - torch.erfinv(x.double())).abs().max() < 1e-6)
        True
    """
    if tensor.device.type != "cpu":
        return tensor.erfinv_()
    work = tensor if tensor.is_contiguous() else tensor.contiguous()
    for piece in work.view(-1).split(_SERIAL_SLICE):
        piece.erfinv_()
    return tensor if work is tensor else tensor.copy_(work)


def glorot_normal_(tensor: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Glorot (Xavier) normal: truncated normal with variance ``1 / fan_avg`` (Keras ``glorot_normal``).

    Example::

        >>> w = glorot_normal_(torch.empty(300, 100), torch.Generator().manual_seed(0))
        >>> round(w.var().item() * 200, 1)
        1.0
    """
    return variance_scaling_(tensor, 1.0, "fan_avg", "truncated_normal", generator)


def glorot_uniform_(tensor: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Glorot (Xavier) uniform on ``[-sqrt(6 / (fan_in + fan_out)), +...]`` (Keras's default initialiser).

    Example::

        >>> w = glorot_uniform_(torch.empty(300, 100))
        >>> bool(w.abs().max() <= (6 / 400) ** 0.5)
        True
    """
    return variance_scaling_(tensor, 1.0, "fan_avg", "uniform", generator)


def he_normal_(tensor: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """He normal: truncated normal with variance ``2 / fan_in`` (for ReLU and its variants, ELU).

    Example::

        >>> w = he_normal_(torch.empty(400, 500), torch.Generator().manual_seed(0))
        >>> round(w.var().item() * 500, 1)
        2.0
    """
    return variance_scaling_(tensor, 2.0, "fan_in", "truncated_normal", generator)


def he_uniform_(tensor: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """He uniform on ``[-sqrt(6 / fan_in), sqrt(6 / fan_in)]``.

    Example::

        >>> w = he_uniform_(torch.empty(10, 6))
        >>> bool(w.abs().max() <= 1.0)
        True
    """
    return variance_scaling_(tensor, 2.0, "fan_in", "uniform", generator)


def lecun_normal_(tensor: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """LeCun normal: truncated normal with variance ``1 / fan_in`` (for SELU self-normalising nets).

    Example::

        >>> w = lecun_normal_(torch.empty(400, 500), torch.Generator().manual_seed(0))
        >>> round(w.var().item() * 500, 1)
        1.0
    """
    return variance_scaling_(tensor, 1.0, "fan_in", "truncated_normal", generator)


def lecun_uniform_(tensor: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """LeCun uniform on ``[-sqrt(3 / fan_in), sqrt(3 / fan_in)]``.

    Example::

        >>> w = lecun_uniform_(torch.empty(10, 3))
        >>> bool(w.abs().max() <= 1.0)
        True
    """
    return variance_scaling_(tensor, 1.0, "fan_in", "uniform", generator)


#: The initialisation schemes by name (the choices LightningCLI lists for ``init``).
InitScheme = Literal[
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "lecun_normal",
    "lecun_uniform",
    "variance_scaling_fan_avg",
    "glorot",
    "he",
    "lecun",
]
INIT_SCHEMES: dict[str, Callable[..., torch.Tensor]] = {
    "glorot_normal": glorot_normal_,
    "glorot_uniform": glorot_uniform_,
    "he_normal": he_normal_,
    "he_uniform": he_uniform_,
    "lecun_normal": lecun_normal_,
    "lecun_uniform": lecun_uniform_,
    "variance_scaling_fan_avg": lambda t, g=None: variance_scaling_(t, 2.0, "fan_avg", "uniform", g),
}
INIT_SCHEMES["glorot"] = glorot_uniform_
INIT_SCHEMES["he"] = he_normal_
INIT_SCHEMES["lecun"] = lecun_normal_
assert set(INIT_SCHEMES) == set(get_args(InitScheme))


@torch.no_grad()
def init_weights(module: nn.Module, scheme: InitScheme, generator: torch.Generator | None = None) -> nn.Module:
    """Initialise every Linear and Conv weight of ``module`` with a scheme and zero their biases.

    Args:
        module: the model (modified in place).
        scheme: a key of :data:`INIT_SCHEMES`: ``glorot_normal``, ``glorot_uniform`` (alias ``glorot``),
            ``he_normal`` (alias ``he``), ``he_uniform``, ``lecun_normal`` (alias ``lecun``), ``lecun_uniform``,
            or ``variance_scaling_fan_avg`` (the book's He-with-fan_avg example: scale 2, fan_avg, uniform).
        generator: an optional random generator.

    Returns:
        The module.

    Raises:
        ValueError: for an unknown scheme.

    Example::

        >>> layer = init_weights(nn.Linear(4, 3), "he_normal")
        >>> layer.bias.tolist()
        [0.0, 0.0, 0.0]
    """
    check_choice("scheme", scheme, sorted(INIT_SCHEMES))
    fill = INIT_SCHEMES[scheme]
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            fill(layer.weight, generator)
            if layer.bias is not None:
                layer.bias.zero_()
    return module
