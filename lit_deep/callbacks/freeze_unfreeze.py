"""Freeze reused layers, then unfreeze them at a lower learning rate: the book's transfer recipe, DDP-safe."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torch.optim import Optimizer
from typing_extensions import override

from lit_deep.callbacks._helpers import (
    BATCH_NORMS,
    as_patterns,
    matches,
    mixed_group,
    rescale_groups,
    resolve_root,
    select_parameters,
)

__all__ = ["FreezeUnfreeze"]

_BN_MODES = ("eval", "train")
Milestones = Mapping[int, str | Sequence[str]]


def _milestones(unfreeze_at_epoch: int | Milestones | None, modules: tuple[str, ...]) -> dict[int, tuple[str, ...]]:
    if unfreeze_at_epoch is None:
        return {}
    items = (
        list(unfreeze_at_epoch.items()) if isinstance(unfreeze_at_epoch, Mapping) else [(unfreeze_at_epoch, modules)]
    )
    if not items:
        raise ValueError("unfreeze_at_epoch: empty milestones {}; use None to keep the modules frozen")
    for epoch, _ in items:
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"unfreeze_at_epoch: epochs must be integers >= 0, got {epoch!r}")
    epochs = [epoch for epoch, _ in items]
    if epochs != sorted(epochs):
        raise ValueError(f"unfreeze_at_epoch: milestones out of order, epochs {epochs} must increase")
    return {epoch: as_patterns(names, "unfreeze_at_epoch") for epoch, names in items}


class FreezeUnfreeze(Callback):
    """Train with ``modules`` frozen, then unfreeze them (at once or top down) with a lower learning rate.

    The book's transfer recipe: reuse a pretrained model's lower layers, train the new head while they are
    frozen (a random head's large gradients would wreck them), then unfreeze and continue at a lower rate.

    **Frozen, and still correct under DDP.** Parameters are never switched to ``requires_grad=False``: DDP only
    synchronises the parameters that required gradients when it wrapped the model, so flipping the flag later
    lets replicas diverge (Lightning's ``BaseFinetuning``, issue #20340). Every parameter stays trainable; while
    frozen, its gradient is dropped (set to ``None``) in ``on_before_optimizer_step``, after DDP's all-reduce.
    The optimizer then skips it: no update, no weight decay, no momentum or Adam state, so it stays bitwise
    unchanged. The price is the backward pass through frozen layers.

    **BatchNorm.** ``bn="eval"`` (Keras's semantics for frozen layers) puts frozen BatchNorm layers in inference
    mode at every training batch: they normalise with, and do not update, their running statistics.
    ``bn="train"`` (Lightning's ``train_bn=False``) keeps batch statistics: the running statistics keep moving
    (per rank under DDP) while the affine parameters stay frozen. Dropout in frozen layers stays active.

    **Learning rate.** At the unfreezing epoch the newly trainable parameters' groups get the current rate of the
    ``"head"`` group (else the first never-frozen group) times ``lr_factor``, once; the schedule then carries
    on: the group's ``lr_scale`` is set for lit_deep's schedules, ``ReduceLROnPlateau`` and the chainable
    PyTorch schedulers multiply the new rate, and closed-form PyTorch schedulers (``LambdaLR``, ``OneCycleLR``,
    ``CyclicLR``, ...) get their base rates for that group scaled. This needs the unfrozen parameters in groups
    of their own: ``Classifier`` makes them (this callback fills its ``param_group_splits`` in ``setup``, so a
    milestone ``"backbone.3"`` becomes the groups ``backbone.3`` and ``backbone.3_no_decay``); for another
    LightningModule, group them in ``configure_optimizers`` or use ``lr_factor=1.0`` (rates left alone).

    Names are relative to ``pl_module.model`` when the LightningModule has such a module (``Classifier``),
    else to the LightningModule; a name selects a module with its descendants; glob patterns (``fnmatch``)
    work too. The state (the milestones already applied) is saved in checkpoints: resuming after unfreezing does
    not freeze again. Lightning's ``LearningRateFinder`` may run in the same fit (it runs without the other
    callbacks, so its range test trains every layer, and restores the model afterwards).

    Args:
        modules: the layers to freeze: a name (``"backbone"``), a pattern (``"backbone.*"``) or a list.
        unfreeze_at_epoch: the epoch at whose start ``modules`` are unfrozen; ``None`` never unfreezes; or
            milestones ``{epoch: names}`` that unfreeze gradually, top down (``{4: "backbone.3", 8: "backbone"}``):
            each unfreezes what it selects that is still frozen.
        lr_factor: the unfrozen groups' rate relative to the head's (the book lowers it), > 0.
        bn: ``"eval"`` or ``"train"``: the mode of frozen BatchNorm layers.

    Raises:
        ValueError: for a bad argument; at fit start for a name or pattern matching nothing, freezing every
            parameter, or a milestone that unfreezes nothing new (milestones out of order).

    Example::

        >>> import torch
        >>> from lightning.pytorch import Trainer
        >>> from lit_deep import Classifier
        >>> from lit_deep.models import MLP
        >>> clf = Classifier(MLP(input_shape=(4,), hidden=(8,), num_classes=2, seed=0), optimizer="sgd", lr=0.5)
        >>> before = clf.model.backbone[1].weight.clone()
        >>> data = torch.utils.data.TensorDataset(torch.randn(8, 4), torch.arange(8) % 2)
        >>> trainer = Trainer(max_epochs=2, callbacks=[FreezeUnfreeze("backbone", unfreeze_at_epoch=1, lr_factor=0.5)],
        ...                   logger=False, enable_checkpointing=False, enable_progress_bar=False,
        ...                   enable_model_summary=False, limit_train_batches=1, limit_val_batches=0)
        >>> trainer.fit(clf, torch.utils.data.DataLoader(data, batch_size=4))
        >>> [(group["name"], group["lr"]) for group in trainer.optimizers[0].param_groups]
        [('head', 0.5), ('backbone', 0.25)]
        >>> torch.equal(before, clf.model.backbone[1].weight)  # trained in epoch 1 only
        False
    """

    def __init__(
        self,
        modules: str | Sequence[str] = "backbone",
        unfreeze_at_epoch: int | Milestones | None = 4,
        lr_factor: float = 0.1,
        bn: str = "eval",
    ) -> None:
        super().__init__()
        self.modules = as_patterns(modules, "modules")
        self.milestones = _milestones(unfreeze_at_epoch, self.modules)
        if isinstance(lr_factor, bool) or not isinstance(lr_factor, (int, float)) or not 0 < lr_factor < math.inf:
            raise ValueError(f"lr_factor: must be a finite number > 0, got {lr_factor!r}")
        self.lr_factor = float(lr_factor)
        if bn not in _BN_MODES:
            raise ValueError(f"bn: expected one of {_BN_MODES}, got {bn!r}")
        self.bn = bn
        self._frozen: dict[str, nn.Parameter] = {}  # every parameter frozen at the start, by name
        self._unfreezes: dict[int, dict[str, nn.Parameter]] = {}  # milestone epoch -> parameters it unfreezes
        self._bn_layers: dict[str, nn.Module] = {}  # BatchNorm layers inside `modules`
        self._done: set[int] = set()  # milestones applied
        self._frozen_now: list[nn.Parameter] = []
        self._frozen_bn_now: list[nn.Module] = []

    @property
    def frozen_parameters(self) -> list[str]:
        """The names of the parameters frozen now (empty before fit)."""
        now = {id(p) for p in self._frozen_now}
        return [name for name, p in self._frozen.items() if id(p) in now]

    @property
    def unfrozen_epochs(self) -> list[int]:
        """The milestones already applied."""
        return sorted(self._done)

    # ----------------------------------------------------------------- hooks
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        root = resolve_root(pl_module)
        self._frozen = select_parameters(root, self.modules, "modules")
        frozen_ids = {id(p) for p in self._frozen.values()}
        if all(id(p) in frozen_ids for p in pl_module.parameters()):
            raise ValueError(f"modules: {list(self.modules)} freezes every parameter of the model; nothing would train")
        self._unfreezes = self._resolve_milestones(root)
        self._bn_layers = {
            name: m for name, m in root.named_modules() if isinstance(m, BATCH_NORMS) and matches(name, self.modules)
        }
        splits = getattr(pl_module, "param_group_splits", None)
        if isinstance(splits, dict):  # Classifier: each milestone gets groups of its own (setup precedes optimizers)
            for epoch, params in self._unfreezes.items():
                splits[",".join(self.milestones[epoch])] = list(params)
        self._refresh()

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._refresh()  # after a checkpoint's state was loaded
        if self.lr_factor != 1.0:
            self._check_groups(trainer.optimizers)

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for epoch in self.milestones:
            if epoch <= trainer.current_epoch and epoch not in self._done:
                self._unfreeze(trainer, pl_module, epoch)

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        # Lightning may switch modes around validation and at fit start (model.train()): re-apply each batch (cheap).
        if self.bn == "eval":
            for layer in self._frozen_bn_now:
                layer.train(False)

    @override
    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Optimizer
    ) -> None:
        # Gradients are final here (after accumulation and DDP's all-reduce); the optimizer skips grad-less params.
        for param in self._frozen_now:
            param.grad = None

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"unfrozen_at": sorted(self._done)}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._done = set(state_dict.get("unfrozen_at", []))
        self._refresh()

    # ----------------------------------------------------------------- helpers
    def _resolve_milestones(self, root: nn.Module) -> dict[int, dict[str, nn.Parameter]]:
        taken: set[str] = set()
        result = {}
        for epoch, patterns in self.milestones.items():
            selected = select_parameters(root, patterns, "unfreeze_at_epoch")
            new = {name: p for name, p in selected.items() if name in self._frozen and name not in taken}
            if not new:
                raise ValueError(
                    f"unfreeze_at_epoch: the milestone at epoch {epoch} ({list(patterns)}) unfreezes nothing that is "
                    "still frozen (milestones out of order? they go top down, e.g. {4: 'backbone.3', 8: 'backbone'})"
                )
            taken.update(new)
            result[epoch] = new
        return result

    def _refresh(self) -> None:
        unfrozen = {name for epoch in self._done for name in self._unfreezes.get(epoch, {})}
        self._frozen_now = [p for name, p in self._frozen.items() if name not in unfrozen]
        done_patterns = [pattern for epoch in self._done for pattern in self.milestones.get(epoch, ())]
        self._frozen_bn_now = [m for name, m in self._bn_layers.items() if not matches(name, done_patterns)]

    def _check_groups(self, optimizers: list[Optimizer]) -> None:
        for epoch, params in self._unfreezes.items():
            if epoch in self._done:
                continue
            ids = {id(p) for p in params.values()}
            for optimizer in optimizers:
                group = mixed_group(optimizer.param_groups, ids)
                if group is not None:
                    raise ValueError(
                        f"lr_factor: {self.lr_factor} needs the parameters unfrozen at epoch {epoch} "
                        f"({list(self.milestones[epoch])}) in parameter groups of their own, but group {group!r} "
                        "mixes them with others; use lit_deep's Classifier (param_group_splits), group them in "
                        "configure_optimizers, or set lr_factor=1.0"
                    )

    def _unfreeze(self, trainer: pl.Trainer, pl_module: pl.LightningModule, epoch: int) -> None:
        ids = {id(p) for p in self._unfreezes[epoch].values()}
        ever_frozen = {id(p) for p in self._frozen.values()}
        changed = rescale_groups(trainer, ids, ever_frozen, self.lr_factor) if self.lr_factor != 1.0 else []
        self._done.add(epoch)
        was_frozen = self._frozen_bn_now
        self._refresh()
        for layer in was_frozen:  # Lightning restores each submodule's own mode after validation: reset it here
            if layer not in self._frozen_bn_now:
                layer.train(pl_module.training)
        rates = f"; groups {changed} at the head's rate x {self.lr_factor}" if changed else ""
        rank_zero_info(
            f"FreezeUnfreeze: epoch {trainer.current_epoch}: unfroze {list(self.milestones[epoch])} "
            f"({len(ids)} parameters){rates}"
        )
