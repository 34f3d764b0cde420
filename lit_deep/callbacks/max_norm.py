"""Max-norm regularisation as a callback: bound each neuron's incoming weights after every real optimizer step."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.optim import Optimizer
from torch.utils.hooks import RemovableHandle
from typing_extensions import override

from lit_deep._validate import check_positive
from lit_deep.callbacks.contract import root_module
from lit_deep.callbacks.select import LAYERS, Selector, as_selectors, select_modules

__all__ = ["MaxNorm"]

Selection = Selector | Sequence[Selector] | Mapping[Selector, float]


class MaxNorm(Callback):
    """After every optimizer step that really happened, rescale each neuron's incoming weights to norm <= ``max_value``.

    Keras's ``max_norm`` constraint (see :func:`lit_deep.nn.max_norm_`): a Linear weight ``(out, in)`` is bounded
    per row, a Conv weight ``(out, in, *kernel)`` per output filter, as ``torch.renorm(w, 2, 0, r)`` computes:
    ``w * r / (1e-7 + ||w||)`` for the vectors whose norm exceeds ``r``; the others are left bitwise unchanged.
    Biases and 1-D parameters (BatchNorm) are never touched.

    **When.** The projection runs from a post-step hook on the optimizer itself, so it follows the optimizer's
    real steps only: not on the batches that only accumulate gradients (``accumulate_grad_batches``), not when
    AMP's ``GradScaler`` skips a step over infinite gradients, once per step under manual optimization. As
    Keras applies a constraint to the variables that a step updated, a weight without a gradient at that step
    (frozen by :class:`~lit_deep.callbacks.FreezeUnfreeze`, or not in that optimizer) is left alone. The
    projection is deterministic and local, so DDP replicas stay identical; it costs two passes over each
    weight per step and no host-device synchronisation.

    Args:
        max_value: the bound ``r`` (> 0).
        modules: which layers: ``None`` for every Linear and Conv layer; a name or glob pattern over qualified
            module names (relative to ``pl_module.model`` when there is one, as in ``Classifier``; a name selects
            the module's descendants too), a layer type, or a list of them; or ``{selector: bound}`` for a bound
            per selection (the later entry wins where two select the same layer), e.g.
            ``{"backbone": 1.0, "head": 0.5}``. The book bounds the hidden layers only: ``modules="backbone"``.

    Raises:
        ValueError: for a bound <= 0 or a malformed selection; at fit start for a selection that matches no layer
            or selects no weight with 2 or more dimensions.

    Example::

        >>> from lightning.pytorch import Trainer
        >>> from lit_deep import Classifier
        >>> from lit_deep.models import MLP
        >>> clf = Classifier(MLP(input_shape=(4,), hidden=(8,), num_classes=2, seed=0), optimizer="sgd", lr=5.0)
        >>> inputs = torch.randn(8, 4, generator=torch.Generator().manual_seed(0)) * 10  # seeded: lr 5 may diverge
        >>> data = torch.utils.data.TensorDataset(inputs, torch.arange(8) % 2)
        >>> trainer = Trainer(max_epochs=1, callbacks=[MaxNorm(0.5, modules="backbone")], logger=False,
        ...                   enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
        >>> trainer.fit(clf, torch.utils.data.DataLoader(data, batch_size=4))
        >>> bool(clf.model.backbone[1].weight.norm(dim=1).max() <= 0.5)
        True
    """

    def __init__(self, max_value: float = 1.0, modules: Selection | None = None) -> None:
        super().__init__()
        self.max_value = check_positive("max_value", max_value)
        #: ``{selector: bound}``; ``None`` stands for every Linear and Conv layer.
        self.bounds: dict[Selector | None, float]
        if isinstance(modules, Mapping):
            if not modules:
                raise ValueError("modules: an empty mapping selects nothing")
            self.bounds = {
                as_selectors(key, "modules")[0]: check_positive(f"modules[{key!r}]", value)
                for key, value in modules.items()
            }
        else:
            selectors = [None] if modules is None else as_selectors(modules, "modules")
            self.bounds = dict.fromkeys(selectors, self.max_value)
        self._weights: dict[str, tuple[nn.Parameter, float]] = {}  # name -> (weight, bound)
        self._per_optimizer: dict[int, list[tuple[nn.Parameter, float]]] = {}
        self._handles: list[RemovableHandle] = []

    @property
    def constrained(self) -> dict[str, float]:
        """The bounded weights' qualified names and their bounds (empty before fit)."""
        return {name: bound for name, (_, bound) in self._weights.items()}

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        root = root_module(pl_module)
        self._weights = {}
        for selector, bound in self.bounds.items():
            if selector is None:
                layers = {name: m for name, m in root.named_modules() if isinstance(m, LAYERS)}
            else:
                layers = select_modules(root, [selector], "modules")
            weights = {
                f"{name}.{pname}" if name else pname: (p, bound)
                for name, layer in layers.items()
                for pname, p in layer.named_parameters(recurse=False)
                if p.dim() >= 2
            }
            if not weights:
                raise ValueError(f"modules: {selector!r} selects no weight with 2 or more dimensions")
            self._weights.update(weights)

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._remove_hooks()
        for optimizer in trainer.optimizers:
            owned = {id(p) for group in optimizer.param_groups for p in group["params"]}
            pairs = [(w, bound) for w, bound in self._weights.values() if id(w) in owned]
            if pairs:
                self._per_optimizer[id(optimizer)] = pairs
                self._handles.append(optimizer.register_step_post_hook(self._after_step))

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._remove_hooks()

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._remove_hooks()

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._per_optimizer = {}

    @torch.no_grad()
    def _after_step(self, optimizer: Optimizer, args: Any, kwargs: Any) -> None:
        # Runs inside optimizer.step(), right after the update: only for steps that happened.
        for weight, bound in self._per_optimizer.get(id(optimizer), ()):
            if weight.grad is not None:
                weight.renorm_(2, 0, bound)
