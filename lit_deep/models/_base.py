"""The backbone/head contract shared by every architecture, and the layer factories they use."""

from __future__ import annotations

import contextlib
import math
from collections import OrderedDict
from collections.abc import Iterator
from typing import ClassVar, Literal, get_args

import torch
from torch import nn
from typing_extensions import Self

from lit_deep._validate import check_choice, check_probability
from lit_deep.models._record import RecordsInit
from lit_deep.nn.dropout import MCAlphaDropout, MCDropout
from lit_deep.nn.init import InitScheme, glorot_uniform_

__all__ = [
    "ACTIVATIONS",
    "DROPOUT_KINDS",
    "Activation",
    "BackboneHead",
    "DropoutKind",
    "MAX_PARAMETERS",
    "check_parameter_count",
    "make_activation",
    "make_batch_norm",
    "make_dropout",
    "new_head",
    "seeded",
]

#: The activations by name (the choices LightningCLI lists for ``activation``).
Activation = Literal["relu", "leaky_relu", "prelu", "rrelu", "elu", "selu", "tanh", "sigmoid", "gelu", "silu"]
#: The dropout layers by name: ``nn.Dropout``, ``nn.AlphaDropout`` and their Monte-Carlo forms.
DropoutKind = Literal["standard", "alpha", "mc", "mc_alpha"]
ACTIVATIONS: tuple[str, ...] = get_args(Activation)
DROPOUT_KINDS: tuple[str, ...] = get_args(DropoutKind)
# The init each activation calls for when the user does not choose (He for ReLU-like units and ELU,
# LeCun for SELU, Glorot for the saturating ones), as the chapter recommends.
DEFAULT_INIT: dict[str, InitScheme] = {
    "relu": "he_normal",
    "leaky_relu": "he_normal",
    "prelu": "he_normal",
    "rrelu": "he_normal",
    "elu": "he_normal",
    "gelu": "he_normal",
    "silu": "he_normal",
    "selu": "lecun_normal",
    "tanh": "glorot_uniform",
    "sigmoid": "glorot_uniform",
}
# Keras BatchNormalization defaults (momentum 0.99 of the old value = PyTorch momentum 0.01, epsilon 1e-3).
BN_MOMENTUM = 0.01
BN_EPS = 1e-3


def make_activation(name: str, width: int, leaky_slope: float = 0.2) -> nn.Module:
    """Build an activation layer by name.

    ``leaky_relu`` uses the book's slope 0.2 (PyTorch defaults to 0.01, Keras to 0.3); ``prelu`` learns one
    slope per neuron initialised to 0 (Keras ``PReLU``; PyTorch defaults to one shared slope of 0.25).

    Args:
        name: one of :data:`ACTIVATIONS`.
        width: number of units (for PReLU's per-neuron slopes).
        leaky_slope: slope of leaky ReLU for negative inputs.

    Returns:
        The activation module.

    Raises:
        ValueError: for an unknown name.

    Example::

        >>> make_activation("leaky_relu", 3)(torch.tensor([-1.0, 2.0])).tolist()
        [-0.20000000298023224, 2.0]
    """
    if name == "relu":
        return nn.ReLU()
    if name == "leaky_relu":
        return nn.LeakyReLU(leaky_slope)
    if name == "prelu":
        return nn.PReLU(num_parameters=width, init=0.0)
    if name == "rrelu":
        return nn.RReLU()
    if name == "elu":
        return nn.ELU(alpha=1.0)
    if name == "selu":
        return nn.SELU()
    if name == "tanh":
        return nn.Tanh()
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "gelu":
        return nn.GELU()
    if name == "silu":
        return nn.SiLU()
    check_choice("activation", name, ACTIVATIONS)
    raise AssertionError(name)  # unreachable: ACTIVATIONS lists the names above


def make_batch_norm(width: int, spatial: bool = False) -> nn.BatchNorm1d | nn.BatchNorm2d:
    """A BatchNorm layer with Keras's momentum and epsilon (``BatchNorm2d`` over channels when ``spatial``).

    Example::

        >>> bn = make_batch_norm(4, spatial=True)
        >>> type(bn).__name__, bn.eps, bn.momentum
        ('BatchNorm2d', 0.001, 0.01)
    """
    return (nn.BatchNorm2d if spatial else nn.BatchNorm1d)(width, eps=BN_EPS, momentum=BN_MOMENTUM)


def make_dropout(kind: str, p: float, spatial: bool = False) -> nn.Module:
    """Build a dropout layer of a kind.

    Args:
        kind: ``"standard"`` (``nn.Dropout``), ``"alpha"`` (``nn.AlphaDropout``, for SELU nets), ``"mc"`` or
            ``"mc_alpha"`` (the always-on Monte-Carlo layers).
        p: dropout rate in [0, 1).
        spatial: drop whole channels (``Dropout2d``) for standard dropout in conv nets.

    Returns:
        The dropout layer.

    Raises:
        ValueError: for an unknown kind or a rate outside [0, 1).

    Example::

        >>> type(make_dropout("mc_alpha", 0.1)).__name__
        'MCAlphaDropout'
    """
    p = check_probability("dropout", p)
    check_choice("dropout_kind", kind, DROPOUT_KINDS)
    if kind == "standard":
        return nn.Dropout2d(p) if spatial else nn.Dropout(p)
    if kind == "alpha":
        return nn.AlphaDropout(p)
    if kind == "mc":
        return MCDropout(p)
    if kind == "mc_alpha":
        return MCAlphaDropout(p)
    raise AssertionError(kind)  # unreachable: checked above


class BackboneHead(RecordsInit, nn.Sequential):
    """A network split into ``backbone`` (feature extractor) and ``head`` (the output layer).

    It is an ``nn.Sequential`` of exactly these two children, so ``forward(x) = head(backbone(x))`` and
    parameter names read ``backbone.<i>.weight`` / ``head.weight``. Subclasses (MLP, CNN, Autoencoder) have their
    constructor arguments recorded, which :func:`~lit_deep.models.describe` writes into checkpoints and
    ``config.json``; :meth:`from_parts` rebuilds any of them from a backbone and a head.

    Args:
        backbone: everything but the output layer.
        head: the output layer.
        feature_dim: the number of features the backbone emits (the head's input size).

    Example::

        >>> net = BackboneHead(nn.Flatten(), nn.Linear(4, 2), feature_dim=4)
        >>> tuple(net(torch.zeros(3, 2, 2)).shape)
        (3, 2)
    """

    backbone: nn.Module
    head: nn.Module
    #: describe instances by their parts, never by their constructor arguments (whose call may download)
    describe_by_parts: ClassVar[bool] = False

    def __init__(self, backbone: nn.Module, head: nn.Module, feature_dim: int) -> None:
        super().__init__(OrderedDict(backbone=backbone, head=head))
        self.feature_dim = feature_dim

    @classmethod
    def from_parts(cls, backbone: nn.Module, head: nn.Module, feature_dim: int) -> Self:
        """An instance of this class made of ``backbone`` and ``head`` (its constructor is not called).

        Example::

            >>> from lit_deep.models import MLP
            >>> net = MLP.from_parts(nn.Flatten(), nn.Linear(784, 2), 784)
            >>> type(net).__name__, net.num_classes
            ('MLP', 2)
        """
        model = cls.__new__(cls)
        init = BackboneHead.__init__
        getattr(init, "__wrapped__", init)(model, backbone, head, feature_dim)  # unwrapped: records nothing
        return model

    @property
    def num_classes(self) -> int:
        """The number of outputs of the head (for a Linear head)."""
        head = self.head
        if isinstance(head, nn.Linear):
            return head.out_features
        raise AttributeError(f"{type(self).__name__}.head is a {type(head).__name__}, not a Linear layer")


def new_head(feature_dim: int, num_classes: int, generator: torch.Generator | None = None) -> nn.Linear:
    """A fresh output layer: Glorot-uniform weights (Keras's default for ``Dense``) and zero bias.

    Example::

        >>> new_head(8, 3).bias.tolist()
        [0.0, 0.0, 0.0]
    """
    head = nn.Linear(feature_dim, num_classes)
    with torch.no_grad():
        glorot_uniform_(head.weight, generator)
        head.bias.zero_()
    return head


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[torch.Generator | None]:
    """A generator seeded with ``seed`` for a model's initialisation, the global CPU generator left as it was.

    Layers draw PyTorch's default initialisation from the global generator when they are built; the seeded
    initialisation then overwrites it. Inside this context those draws happen on a fork of the global state
    (``torch.random.fork_rng``), so building a seeded model does not move the global generator. With
    ``seed=None`` it yields ``None`` and changes nothing: the layers and the initialisation use the global one.

    Example::

        >>> before = torch.random.get_rng_state()
        >>> with seeded(0) as generator:
        ...     layer = nn.Linear(3, 2)
        >>> torch.equal(before, torch.random.get_rng_state()), generator.initial_seed()
        (True, 0)
    """
    if seed is None:
        yield None
        return
    with torch.random.fork_rng(devices=[]):
        yield torch.Generator().manual_seed(seed)


#: The most parameters a model built here may have (2**31, 8 GiB of float32 weights, before gradients and optimizer
#: state): a typo such as ``hidden: [200000, 200000]`` (4e10 parameters) is refused before anything is allocated.
MAX_PARAMETERS = 2**31


def _sci(count: int) -> str:
    """``count`` as ``4.0e10``."""
    mantissa, exponent = f"{count:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def check_parameter_count(layers: list[tuple[str, int, int, int]]) -> int:
    """Refuse, before allocation, a model whose layers hold more than :data:`MAX_PARAMETERS` parameters.

    Args:
        layers: ``(argument, fan_in, fan_out, parameters)`` of each weight layer; ``argument`` is the constructor
            argument that sets its size, for the message.

    Returns:
        The total number of parameters of ``layers``.

    Raises:
        ValueError: naming the argument and the size of the first layer past the limit, or the total.

    Example::

        >>> check_parameter_count([("hidden", 784, 300, 784 * 300 + 300)])
        235500
        >>> check_parameter_count([("hidden", 784, 200_000, 0), ("hidden", 200_000, 200_000, 200_000**2)])
        Traceback (most recent call last):
        ...
        ValueError: hidden: a 200000 x 200000 layer is 4.0e10 parameters, more than the 2.1e9 limit (MAX_PARAMETERS)
    """
    total = 0
    for argument, fan_in, fan_out, count in layers:
        if count > MAX_PARAMETERS:
            raise ValueError(
                f"{argument}: a {fan_in} x {fan_out} layer is {_sci(count)} parameters, more than the "
                f"{_sci(MAX_PARAMETERS)} limit (MAX_PARAMETERS)"
            )
        total += count
    if total > MAX_PARAMETERS:
        names = ", ".join(dict.fromkeys(argument for argument, *_ in layers))
        raise ValueError(f"{names}: the model is {_sci(total)} parameters, more than the {_sci(MAX_PARAMETERS)} limit")
    return total


def flat_size(shape: tuple[int, ...]) -> int:
    """The number of features of one input of ``shape``.

    Example::

        >>> flat_size((1, 28, 28))
        784
    """
    return math.prod(shape)
