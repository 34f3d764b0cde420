"""Transfer learning, written once: the backbone of a model (a copy) with a new head, dropout and re-initialisation.

:func:`transfer` is the one entry point; :class:`FromCheckpoint` (a local checkpoint) and
:class:`lit_deep.zoo.Pretrained` (a zoo name, a Hub repo or a checkpoint) are its YAML forms,
:func:`lit_deep.zoo.classifier`, :func:`lit_deep.zoo.load` with ``num_classes`` and the demo call it.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import ClassVar, Literal

import torch
from torch import nn

from lit_deep._validate import check_bool, check_choice, check_int, check_probability, check_seed, check_shape
from lit_deep.models._base import DROPOUT_KINDS, BackboneHead, DropoutKind, make_dropout, new_head, seeded
from lit_deep.models._record import recorded_init_args
from lit_deep.models.checkpoint import read_checkpoint
from lit_deep.models.preprocess import Preprocess
from lit_deep.models.resnet import ResidualBlock
from lit_deep.nn.init import init_weights

__all__ = ["FromCheckpoint", "transfer"]

#: Normalisation layers a re-initialised backbone resets (their learnt scale and shift, their running statistics).
_NORMS = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.LayerNorm,
    nn.GroupNorm,
)


def transfer(
    source: nn.Module,
    num_classes: int | None,
    *,
    dropout: float = 0.0,
    dropout_kind: DropoutKind | Literal["auto"] = "auto",
    reinitialize: bool = False,
    seed: int | None = None,
    cut: int | None = None,
    input_shape: Sequence[int] | None = None,
) -> BackboneHead:
    """A new model: a **copy** of ``source.backbone`` (or its first ``cut`` layers, + a dropout layer) and a fresh head.

    The copy matters: sharing the backbone would let training the new model silently change the source (the
    book's lesson about ``clone_model``). The new head is Glorot-uniform with zero bias (Keras's ``Dense``). An
    autoencoder's backbone is its encoder, so a head on the codings is unsupervised pretraining's classifier.

    Args:
        source: a :class:`~lit_deep.models.BackboneHead` (MLP, CNN, Autoencoder, a zoo model, a checkpoint's).
        num_classes: outputs of the new head; ``None`` keeps (a copy of) the source's head.
        dropout: rate of a dropout layer appended to the backbone (0: none), e.g. the MC-dropout source.
        dropout_kind: ``"auto"`` (alpha dropout when the backbone has SELU units, standard otherwise) or one of
            ``standard``, ``alpha``, ``mc``, ``mc_alpha``.
        reinitialize: re-draw every backbone weight (LeCun normal for SELU nets, He otherwise) and reset its
            normalisation layers (and residual blocks to the identity): the from-scratch twin of a transfer run,
            same architecture and preprocessing.
        seed: seed of the new head and of the re-initialisation (``None``: the global generator).
        cut: keep only the backbone's first ``cut`` child modules (``backbone[:cut]``, a ``Sequential``): the
            cut depths :func:`lit_deep.zoo.rank` scores and the zoo cards name. A cut whose output is a feature
            map gets an ``nn.Flatten``; the new head needs ``num_classes``. ``None`` keeps the whole backbone.
        input_shape: the shape of one input ``(C, H, W)``, to size the head after a ``cut``; default the
            source's (its ``Preprocess`` layer or its recorded ``input_shape`` argument).

    Returns:
        A :class:`~lit_deep.models.BackboneHead` (its description holds every layer, dropout included).

    Raises:
        ValueError: for a source without backbone/head or a bad argument (named in the message).

    Example::

        >>> from lit_deep.models import MLP
        >>> source = MLP(hidden=(20,), num_classes=8, activation="selu")
        >>> target = transfer(source, 2, dropout=0.1, seed=0)
        >>> target.head.out_features, type(target.backbone[-1]).__name__
        (2, 'AlphaDropout')
        >>> torch.equal(target.backbone[1].weight, source.backbone[1].weight), target.backbone[1] is source.backbone[1]
        (True, False)
        >>> from lit_deep.models import CNN
        >>> early = transfer(CNN(channels=(4, 8), dense=16), 3, cut=4)  # conv, BN, ReLU, conv: a 4x28x28 map
        >>> early.feature_dim, type(early.backbone[-1]).__name__
        (3136, 'Flatten')
    """
    if not isinstance(source, BackboneHead):
        raise ValueError(
            f"source: expected a model with .backbone and .head (BackboneHead), got {type(source).__name__}"
        )
    check_int("num_classes", num_classes, minimum=1, optional=True)
    dropout = check_probability("dropout", dropout)
    check_choice("dropout_kind", dropout_kind, ("auto", *DROPOUT_KINDS))
    check_bool("reinitialize", reinitialize)
    seed = check_seed("seed", seed)
    features, kept = source.feature_dim, source.backbone
    if cut is not None:
        kept, features = _cut(source, num_classes, cut, input_shape)
    with seeded(seed) as generator:
        # The head is drawn first: a re-initialised twin with the same seed starts from the same head.
        if num_classes is None:
            head = copy.deepcopy(source.head)
        else:
            head = new_head(features, num_classes, generator).to(next(source.parameters()).device)
        backbone = copy.deepcopy(kept)
        selu = any(isinstance(m, nn.SELU) for m in backbone.modules())
        if reinitialize:
            init_weights(backbone, "lecun_normal" if selu else "he_normal", generator)
            modules = list(backbone.modules())
            for module in modules:  # normalisation layers start afresh too (scale 1, shift 0, no statistics)
                if isinstance(module, _NORMS):
                    module.reset_parameters()
            for module in modules:  # then each residual block is the identity again (its last scale 0)
                if isinstance(module, ResidualBlock):
                    module.reset_residual_()
    if dropout > 0:
        kind = ("alpha" if selu else "standard") if dropout_kind == "auto" else dropout_kind
        layers = list(backbone.children()) if type(backbone) is nn.Sequential else [backbone]
        backbone = nn.Sequential(*layers, make_dropout(kind, float(dropout)))
    return BackboneHead(backbone, head, features).train(source.training)


def _source_input_shape(source: BackboneHead) -> tuple[int, ...] | None:
    first = source.backbone[0] if isinstance(source.backbone, nn.Sequential) and len(source.backbone) else None
    if isinstance(first, Preprocess):
        return tuple(first.input_shape)
    recorded = recorded_init_args(source) or {}
    shape = recorded.get("input_shape")
    return tuple(int(s) for s in shape) if isinstance(shape, (list, tuple)) else None


def _cut(
    source: BackboneHead, num_classes: int | None, cut: int, input_shape: Sequence[int] | None
) -> tuple[nn.Sequential, int]:
    """``source.backbone[:cut]`` (with a Flatten after a feature map) and its number of features."""
    backbone = source.backbone
    if not isinstance(backbone, nn.Sequential):
        raise ValueError(f"cut: needs a backbone that is an nn.Sequential, got {type(backbone).__name__}")
    check_int("cut", cut, minimum=1, maximum=len(backbone))
    if num_classes is None:
        raise ValueError(f"num_classes: a cut backbone ({cut}) needs a new head: pass num_classes, got None")
    if input_shape is None:
        input_shape = _source_input_shape(source)
        if input_shape is None:
            raise ValueError(f"input_shape: the source does not record its input shape; pass it with cut={cut}")
    shape = check_shape("input_shape", input_shape, min_length=1)
    kept = nn.Sequential(*list(backbone.children())[:cut])
    with torch.no_grad():  # the output shape, on the meta device: nothing is computed or allocated
        out = copy.deepcopy(kept).to("meta").eval()(torch.zeros(1, *shape, device="meta"))
    if out.dim() > 2:
        kept.append(nn.Flatten())
    return kept, int(out[0].numel())


class FromCheckpoint(BackboneHead):
    """The backbone of a checkpointed lit_deep model (a copy) with a new head: :func:`transfer` for YAML recipes.

    ``model: {class_path: lit_deep.models.FromCheckpoint, init_args: {checkpoint: runs/pretext/last.ckpt,
    num_classes: 10}}``. The checkpoint is one written by ``lit-deep fit`` for a lit_deep LightningModule
    (Classifier, AutoencoderModule, RotationPretext), read by :func:`~lit_deep.models.read_checkpoint`. Checkpoints of
    the new model describe its layers, so they reload without the source checkpoint.

    Args:
        checkpoint: path of the source checkpoint.
        num_classes: outputs of the new head.
        dropout: rate of a dropout layer appended to the backbone.
        reinitialize: re-draw the backbone's weights.
        seed: seed of the new head.

    Example::

        >>> import tempfile
        >>> from lit_deep import Classifier
        >>> from lit_deep.models import MLP
        >>> source = Classifier(MLP(hidden=(8,), num_classes=4, seed=0))
        >>> path = tempfile.mkdtemp() + "/source.ckpt"
        >>> torch.save({"state_dict": source.state_dict(), "hyper_parameters": dict(source.hparams)}, path)
        >>> target = FromCheckpoint(path, num_classes=2)
        >>> target.head.out_features, torch.equal(target.backbone[1].weight, source.model.backbone[1].weight)
        (2, True)
    """

    describe_by_parts: ClassVar[bool] = True

    def __init__(
        self,
        checkpoint: str,
        num_classes: int,
        dropout: float = 0.0,
        reinitialize: bool = False,
        seed: int | None = None,
    ) -> None:
        check_int("num_classes", num_classes, minimum=1)
        source = read_checkpoint(checkpoint, require_model=True).model()
        model = transfer(source, num_classes, dropout=dropout, reinitialize=reinitialize, seed=seed)
        super().__init__(model.backbone, model.head, model.feature_dim)
