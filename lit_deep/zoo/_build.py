"""Rebuilding a zoo model from its ``config.json``: the architecture with its preprocessing as first layer."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from lit_deep.models import CNN, MLP, Autoencoder, BackboneHead
from lit_deep.models._base import new_head

__all__ = ["ARCHITECTURES", "Preprocess", "ZooModel", "build_architecture"]

#: The classes a ``config.json`` may name. A downloaded config never imports anything else.
ARCHITECTURES: dict[str, type[BackboneHead]] = {
    "lit_deep.models.MLP": MLP,
    "lit_deep.models.CNN": CNN,
    "lit_deep.models.Autoencoder": Autoencoder,
}


class Preprocess(nn.Module):
    """Turn raw images into what the network saw at training time.

    uint8 images are divided by 255; float images are taken as [0, 1] pixels. A missing channel axis is
    added (``[B, H, W] -> [B, 1, H, W]``). Then ``(x - mean) / std`` with the buffers ``mean`` and ``std``
    (per pixel, shape ``input_shape``, for standardised models; ``0`` and ``1``, shape ``[1]``, otherwise).
    The buffers are saved with the weights, so the SHA-256 of ``model.safetensors`` covers them.

    Shapes: ``[B, *input_shape]`` or ``[B, H, W]`` (single channel) -> ``[B, *input_shape]`` float32.

    Args:
        input_shape: the shape of one image ``(C, H, W)``.
        per_pixel: hold per-pixel statistics (filled by loading the weights).

    Example::

        >>> pre = Preprocess((1, 2, 2), per_pixel=True)
        >>> _ = pre.mean.fill_(0.5), pre.std.fill_(0.25)
        >>> pre(torch.full((1, 2, 2), 255, dtype=torch.uint8)).view(-1).tolist()
        [2.0, 2.0, 2.0, 2.0]
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, input_shape: tuple[int, ...] = (1, 28, 28), per_pixel: bool = False) -> None:
        super().__init__()
        self.input_shape = tuple(int(s) for s in input_shape)
        stats_shape = self.input_shape if per_pixel else (1,)
        self.register_buffer("mean", torch.zeros(stats_shape))
        self.register_buffer("std", torch.ones(stats_shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scale, reshape and standardise a batch (see the class docstring)."""
        if x.dtype == torch.uint8:
            x = x.float().div(255.0)
        elif not x.is_floating_point():
            raise ValueError(f"x: expected uint8 or float images, got dtype {x.dtype}")
        if x.dim() == len(self.input_shape) and self.input_shape[0] == 1 and tuple(x.shape[1:]) == self.input_shape[1:]:
            x = x.unsqueeze(1)
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"x: expected images of shape [B, {', '.join(map(str, self.input_shape))}] (or [B, H, W] for one "
                f"channel), got {list(x.shape)}"
            )
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        """Show the input shape and whether the statistics are per pixel."""
        return f"input_shape={self.input_shape}, per_pixel={tuple(self.mean.shape) != (1,)}"


def build_architecture(architecture: dict[str, Any]) -> BackboneHead:
    """Build the bare network a config names (allow-listed classes only, never an arbitrary import).

    Raises:
        ValueError: for an unknown ``class_path`` or arguments the class rejects.

    Example::

        >>> net = build_architecture({"class_path": "lit_deep.models.MLP", "init_args": {"hidden": [8]}})
        >>> net.head.out_features
        10
    """
    if not isinstance(architecture, dict) or architecture.get("class_path") not in ARCHITECTURES:
        known = ", ".join(ARCHITECTURES)
        got = architecture.get("class_path") if isinstance(architecture, dict) else architecture
        raise ValueError(f"architecture: class_path must be one of {known}, got {got!r}")
    cls = ARCHITECTURES[architecture["class_path"]]
    try:
        return cls(**architecture.get("init_args", {}))
    except TypeError as err:
        raise ValueError(
            f"architecture: {cls.__name__} rejected init_args {architecture.get('init_args')}: {err}"
        ) from err


class ZooModel(BackboneHead):
    """A zoo model: the architecture of ``config["architecture"]`` with a :class:`Preprocess` layer first.

    ``backbone`` is ``Sequential(Preprocess, *architecture.backbone)``, ``head`` the architecture's head (an
    autoencoder's head is its decoder). With ``num_classes`` the head is a fresh Linear layer instead: the
    transfer-learning starting point. :meth:`spec` lets a :class:`~lit_deep.Classifier` checkpoint rebuild the
    model without any download (the weights come from the checkpoint).

    Args:
        config: the parsed ``config.json``.
        num_classes: give the model a new classification head with this many outputs.

    Example::

        >>> config = {"name": "demo", "architecture": {"class_path": "lit_deep.models.MLP",
        ...           "init_args": {"hidden": [8], "num_classes": 3}}, "preprocessing": {"input_shape": [1, 28, 28],
        ...           "standardize": "none"}}
        >>> model = ZooModel(config, num_classes=2)
        >>> tuple(model(torch.zeros(4, 28, 28, dtype=torch.uint8)).shape), model.spec()["init_args"]["num_classes"]
        ((4, 2), 2)
    """

    # replace_head() copies the whole model (keeping spec()) when this is False; an autoencoder zoo model turns
    # into a classifier on its encoder the same way.
    is_autoencoder = False

    def __init__(self, config: dict[str, Any], num_classes: int | None = None) -> None:
        if not isinstance(config, dict) or "architecture" not in config or "preprocessing" not in config:
            raise ValueError("config: expected a zoo config.json with 'architecture' and 'preprocessing'")
        net = build_architecture(config["architecture"])
        pre_cfg = config["preprocessing"]
        if pre_cfg.get("standardize", "none") not in ("none", "per_pixel"):
            raise ValueError(f"config: preprocessing.standardize must be 'none' or 'per_pixel', got {pre_cfg!r}")
        pre = Preprocess(tuple(pre_cfg.get("input_shape", (1, 28, 28))), pre_cfg.get("standardize") == "per_pixel")
        backbone = nn.Sequential(pre, *net.backbone.children())
        super().__init__(backbone, net.head, net.feature_dim)
        self.zoo_config: dict[str, Any] = copy.deepcopy(config)
        self.name: str = str(config.get("name", "zoo-model"))
        #: where the weights came from: "hub", "shipped", or "config" (built, not loaded)
        self.zoo_source: str = "config"
        self._pretrained_head = self._head_signature(net.head)
        if num_classes is not None:
            self.reset_head(num_classes)

    @staticmethod
    def _head_signature(head: nn.Module) -> tuple[Any, ...]:
        return tuple((n, tuple(p.shape)) for n, p in head.state_dict().items())

    @property
    def preprocess(self) -> Preprocess:
        """The preprocessing layer (``backbone[0]``)."""
        layer = next(iter(self.backbone.children()))
        assert isinstance(layer, Preprocess)
        return layer

    def reset_head(self, num_classes: int, generator: torch.Generator | None = None) -> ZooModel:
        """Replace the head in place by a fresh Glorot-uniform Linear layer; returns ``self``.

        Raises:
            ValueError: for ``num_classes < 1``.
        """
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ValueError(f"num_classes: must be a positive integer, got {num_classes!r}")
        self.head = new_head(self.feature_dim, num_classes, generator)
        return self

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's features ``[B, feature_dim]`` (an autoencoder's codings)."""
        return self.backbone(x)

    def spec(self) -> dict[str, Any]:
        """``{"class_path", "init_args"}`` rebuilding this model's architecture (not its weights)."""
        same_head = self._head_signature(self.head) == self._pretrained_head
        num_classes = None if same_head else getattr(self.head, "out_features", None)
        if not same_head and num_classes is None:
            raise ValueError(f"spec: cannot describe a replaced head of type {type(self.head).__name__}")
        return {
            "class_path": "lit_deep.zoo.ZooModel",
            "init_args": {"config": copy.deepcopy(self.zoo_config), "num_classes": num_classes},
        }
