"""The chapter's multilayer perceptron, configurable in every way the chapter varies it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

from torch import nn

from lit_deep._validate import (
    check_bool,
    check_choice,
    check_int,
    check_non_negative,
    check_probability,
    check_seed,
    check_shape,
)
from lit_deep.models._base import (
    ACTIVATIONS,
    DEFAULT_INIT,
    DROPOUT_KINDS,
    Activation,
    BackboneHead,
    DropoutKind,
    check_parameter_count,
    flat_size,
    make_activation,
    make_batch_norm,
    make_dropout,
    new_head,
    seeded,
)
from lit_deep.nn.init import INIT_SCHEMES, InitScheme, init_weights

__all__ = ["MLP"]

#: Where an MLP puts BatchNormalization: before or after each hidden layer's activation.
BatchNormPlace = Literal["before", "after"]
_BN_PLACES = (None, *get_args(BatchNormPlace))


def _dropout_rates(dropout: float | Sequence[float], n_linear: int) -> list[float]:
    if isinstance(dropout, (str, bytes)) or not isinstance(dropout, Sequence):
        return [check_probability("dropout", dropout)] * n_linear  # refuses a bool, a string, nan
    if len(dropout) != n_linear:
        raise ValueError(
            f"dropout: a sequence needs one rate per Linear layer ({n_linear}: input, each hidden, output), "
            f"got {len(dropout)}"
        )
    return [check_probability(f"dropout[{i}]", p) for i, p in enumerate(dropout)]


class MLP(BackboneHead):
    """A fully connected classifier: ``Flatten -> [Dropout] Linear -> [BN] act [BN] -> ... -> [Dropout] Linear``.

    Shapes: input ``[B, *input_shape]``, output logits ``[B, num_classes]``.

    Book semantics where PyTorch's defaults differ: leaky ReLU slope 0.2; PReLU with one slope per neuron
    initialised to 0 (Keras); BatchNorm with Keras's momentum 0.99 (PyTorch ``momentum=0.01``) and epsilon
    1e-3; hidden weights drawn by the Keras initialisers (truncated normals) and biases zeroed; the output
    layer initialised Glorot-uniform (Keras's ``Dense`` default).

    Args:
        input_shape: shape of one input.
        hidden: widths of the hidden layers.
        num_classes: number of outputs.
        activation: one of ``relu, leaky_relu, prelu, rrelu, elu, selu, tanh, sigmoid, gelu, silu``.
        init: an :data:`~lit_deep.nn.INIT_SCHEMES` key for the hidden layers; ``None`` picks the matching
            scheme (He for the ReLU family and ELU, LeCun for SELU, Glorot for tanh/sigmoid).
        batch_norm: ``None``; ``"before"``: BN between the Linear layer (then built without bias, BN's shift
            replaces it) and the activation; ``"after"``: BN after the activation.
        input_batch_norm: normalise the flattened inputs with a BN layer first.
        dropout: a rate applied before every Linear layer (the book's placement, input included), or one rate
            per Linear layer (``len(hidden) + 1`` values; 0 means no dropout layer there).
        dropout_kind: ``"standard"``, ``"alpha"`` (for SELU), ``"mc"`` or ``"mc_alpha"`` (always on, for MC
            dropout).
        leaky_slope: negative slope of ``leaky_relu``.
        seed: seed the initialisation, leaving the global generator as it was (``None`` uses the global one).

    Example::

        >>> import torch
        >>> net = MLP(hidden=(300, 100), activation="selu", seed=0)
        >>> tuple(net(torch.rand(2, 1, 28, 28)).shape), net.head.in_features, len(list(net.parameters()))
        ((2, 10), 100, 6)
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 28, 28),
        hidden: Sequence[int] = (300, 100),
        num_classes: int = 10,
        activation: Activation = "relu",
        init: InitScheme | None = None,
        batch_norm: BatchNormPlace | None = None,
        input_batch_norm: bool = False,
        dropout: float | Sequence[float] = 0.0,
        dropout_kind: DropoutKind = "standard",
        leaky_slope: float = 0.2,
        seed: int | None = None,
    ) -> None:
        input_shape = check_shape("input_shape", input_shape, min_length=1)
        hidden = list(check_shape("hidden", hidden))
        check_int("num_classes", num_classes, minimum=1)
        check_choice("activation", activation, ACTIVATIONS)
        check_choice("init", init, (None, *sorted(INIT_SCHEMES)))
        check_choice("batch_norm", batch_norm, _BN_PLACES)
        check_bool("input_batch_norm", input_batch_norm)
        check_choice("dropout_kind", dropout_kind, DROPOUT_KINDS)
        rates = _dropout_rates(dropout, len(hidden) + 1)
        leaky_slope = check_non_negative("leaky_slope", leaky_slope)
        seed = check_seed("seed", seed)
        in_features = flat_size(tuple(input_shape))
        widths = [in_features, *hidden]
        check_parameter_count(  # arithmetic, before any layer is allocated
            [("hidden", a, b, a * b + b) for a, b in zip(widths, hidden, strict=False)]
            + [("num_classes", widths[-1], num_classes, widths[-1] * num_classes + num_classes)]
        )
        with seeded(seed) as generator:
            in_features = flat_size(tuple(input_shape))
            layers: list[nn.Module] = [nn.Flatten()]
            if input_batch_norm:
                layers.append(make_batch_norm(in_features))
            width = in_features
            for rate, units in zip(rates, hidden, strict=False):
                if rate > 0:
                    layers.append(make_dropout(dropout_kind, rate))
                layers.append(nn.Linear(width, units, bias=batch_norm != "before"))
                if batch_norm == "before":
                    layers.append(make_batch_norm(units))
                layers.append(make_activation(activation, units, leaky_slope))
                if batch_norm == "after":
                    layers.append(make_batch_norm(units))
                width = units
            if rates[-1] > 0:
                layers.append(make_dropout(dropout_kind, rates[-1]))
            backbone = nn.Sequential(*layers)
            init_weights(backbone, init or DEFAULT_INIT[activation], generator)
            head = new_head(width, num_classes, generator)
        super().__init__(backbone, head, feature_dim=width)
