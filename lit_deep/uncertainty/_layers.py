"""Which layers are stochastic, and the context that runs a model with keyed dropout masks.

Inside :func:`mc_mode` every module is in eval mode except the dropout layers that are switched on, and
each stochastic dropout layer's ``forward`` is replaced (an instance attribute, removed afterwards) by one
that takes its mask from a :class:`~lit_deep.uncertainty._masks.MaskSampler`. Modes and forwards are
restored exactly on exit, also when the body raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import torch
from torch import nn

from lit_deep.nn.dropout import TORCH_DROPOUT_LAYERS, MCAlphaDropout, MCDropout, apply_mask
from lit_deep.uncertainty._masks import MaskSampler

__all__ = ["ALWAYS_ON", "SWITCHABLE", "dropout_off", "keyed_dropout", "mc_mode", "stochastic_layers"]

#: Always-on Monte-Carlo layers (stochastic in eval mode).
ALWAYS_ON: tuple[type[nn.Module], ...] = (MCDropout, MCAlphaDropout)
#: PyTorch's dropout layers, stochastic only in train mode; switched on with ``enable_dropout=True``.
SWITCHABLE: tuple[type[nn.Module], ...] = TORCH_DROPOUT_LAYERS
_FEATURE = (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.FeatureAlphaDropout)
_ALPHA = (nn.AlphaDropout, nn.FeatureAlphaDropout)


def stochastic_layers(model: nn.Module, enable_dropout: bool) -> list[nn.Module]:
    """The dropout layers that make ``model`` stochastic (rate > 0), in ``model.modules()`` order.

    Example::

        >>> net = nn.Sequential(nn.Dropout(0.1), MCDropout(0.2), nn.Dropout(0.0))
        >>> len(stochastic_layers(net, False)), len(stochastic_layers(net, True))
        (1, 2)
    """
    kinds = ALWAYS_ON + SWITCHABLE if enable_dropout else ALWAYS_ON
    return [m for m in model.modules() if isinstance(m, kinds) and float(getattr(m, "p", 0.0)) > 0]


def keyed_dropout(
    x: torch.Tensor, sampler: MaskSampler, p: float, feature: bool, alpha: bool, name: str
) -> torch.Tensor:
    """Dropout of ``x`` with the sampler's next keyed mask (see :mod:`lit_deep.uncertainty._masks`).

    ``x`` holds ``samples * images`` rows (sample-major) or ``images`` rows (the deterministic part ran once:
    the result is broadcast over the samples); the result holds ``samples * images`` rows. ``feature`` drops
    whole channels (``Dropout1d/2d/3d``), ``alpha`` is alpha dropout. ``name`` names the layer in errors.

    Example::

        >>> sampler = MaskSampler(0)
        >>> sampler.begin_chunk(torch.arange(2))
        >>> sampler.begin_samples(3)
        >>> keyed_dropout(torch.ones(2, 4), sampler, 0.5, False, False, "Dropout").shape
        torch.Size([6, 4])
    """
    samples, images = sampler.samples, sampler.images
    if x.shape[0] == samples * images:
        x = x.view(samples, images, *x.shape[1:])
    elif x.shape[0] == images:
        x = x.unsqueeze(0)  # the deterministic prefix ran once: broadcast it over the samples
    else:
        raise ValueError(
            f"model: a {name} layer received {x.shape[0]} rows for {images} images x "
            f"{samples} samples; mc_predict needs layers that keep the batch dimension"
        )
    if feature and x.dim() < 4:
        raise ValueError(f"model: {name} needs [N, C, ...] inputs, got {x.dim() - 1} dims")
    if feature:  # one draw per channel: a small mask, broadcast over the channel's values
        shape = tuple(x.shape[2:3]) + (1,) * (x.dim() - 3)
        out = apply_mask(x, sampler.mask(shape, p, x.dtype, x.device), p, alpha=alpha)
    else:  # the masks are drawn on x's device, straight into the output
        out = sampler.dropout(x, p, alpha=alpha)
    return out.reshape(samples * images, *out.shape[2:])


def _masked_forward(layer: nn.Module, sampler: MaskSampler) -> Callable[[torch.Tensor], torch.Tensor]:
    feature = isinstance(layer, _FEATURE)
    alpha = isinstance(layer, _ALPHA)
    p = float(getattr(layer, "p", 0.0))
    name = type(layer).__name__

    def forward(x: torch.Tensor) -> torch.Tensor:
        return keyed_dropout(x, sampler, p, feature, alpha, name)

    return forward


@contextmanager
def _patched(
    model: nn.Module, forwards: dict[nn.Module, Callable[[torch.Tensor], torch.Tensor]], train: list[nn.Module]
) -> Iterator[None]:
    """Eval mode but ``train`` in train mode, ``forwards`` installed; every mode and forward restored on exit."""
    modes = {module: module.training for module in model.modules()}
    saved = {layer: vars(layer).get("forward") for layer in forwards}
    try:
        model.eval()
        for layer in train:
            layer.train()
        for layer, forward in forwards.items():
            layer.forward = forward
        yield
    finally:
        for layer, previous in saved.items():
            if previous is None:
                vars(layer).pop("forward", None)
            else:
                layer.forward = previous
        for module, training in modes.items():
            module.training = training


def mc_mode(
    model: nn.Module, layers: list[nn.Module], enable_dropout: bool, sampler: MaskSampler
) -> AbstractContextManager[None]:
    """Eval mode for everything but ``layers``, whose forwards draw from ``sampler``; restored on exit.

    With ``enable_dropout`` PyTorch's dropout layers among ``layers`` are in train mode inside.

    Example::

        >>> net = nn.Sequential(nn.BatchNorm1d(2), nn.Dropout(0.5)).train()
        >>> with mc_mode(net, stochastic_layers(net, True), True, MaskSampler(0)):
        ...     [m.training for m in net.modules()]
        [False, False, True]
        >>> [m.training for m in net.modules()], "forward" in vars(net[1])
        ([True, True, True], False)
    """
    train = [layer for layer in layers if enable_dropout and not isinstance(layer, ALWAYS_ON)]
    return _patched(model, {layer: _masked_forward(layer, sampler) for layer in layers}, train)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def dropout_off(model: nn.Module) -> AbstractContextManager[None]:
    """Eval mode, and the always-on MC layers replaced by the identity: one deterministic pass; restored on exit.

    Example::

        >>> net = nn.Sequential(MCDropout(0.5)).train()
        >>> with dropout_off(net):
        ...     net(torch.ones(3)).tolist()
        [1.0, 1.0, 1.0]
        >>> net.training, "forward" in vars(net[0])
        (True, False)
    """
    return _patched(model, {m: _identity for m in model.modules() if isinstance(m, ALWAYS_ON)}, [])
