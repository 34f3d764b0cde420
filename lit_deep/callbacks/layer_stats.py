"""The vanishing/exploding-gradients diagnostic: activation mean/std per layer and gradient norms, every n steps."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.optim import Optimizer
from torch.utils.hooks import RemovableHandle
from typing_extensions import override

from lit_deep._io import save_figure
from lit_deep._validate import check_int
from lit_deep.callbacks.contract import root_module
from lit_deep.callbacks.select import LAYERS, Selector, as_selectors, select_modules

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["LayerStats"]

_PREFIX = "layer_stats"


def _activation_layers(root: nn.Module) -> dict[str, nn.Module]:
    """Every activation layer (a class of ``torch.nn.modules.activation``), else every Linear/Conv layer."""
    found = {
        name: m
        for name, m in root.named_modules()
        if type(m).__module__ == "torch.nn.modules.activation" and not isinstance(m, nn.MultiheadAttention)
    }
    return found or {name: m for name, m in root.named_modules() if isinstance(m, LAYERS)}


class LayerStats(Callback):
    """Every ``every_n_steps`` optimizer steps, record each layer's activation mean and std and the gradient norms.

    The chapter's diagnostic for vanishing and exploding gradients (Glorot and Bengio's plots): with a good
    initialisation and activation the activations' spread stays about the same from layer to layer (a SELU net
    with LeCun init on standardised inputs keeps it near 1), with a bad one it shrinks or blows up with depth.

    Forward hooks are registered at the start of a logging step's batch and removed at its end, so the other
    steps cost nothing. Activation statistics are taken over the whole output tensor of each layer (batch and
    features, population std); gradient norms are the L2 norms of every weight (2 or more dimensions) in
    ``on_before_optimizer_step``, that is after accumulation and DDP's all-reduce, before gradient clipping.
    Values go to the Trainer's loggers at ``trainer.global_step`` as ``layer_stats/act_mean/<layer>``,
    ``layer_stats/act_std/<layer>`` and ``layer_stats/grad_norm/<weight>``, and to :attr:`history` (saved in
    checkpoints under :attr:`state_key`, which holds the configuration, so two instances watching different
    layers keep separate histories). Under DDP the activation statistics are each rank's own batch (loggers
    write rank 0's).

    Args:
        every_n_steps: the logging period in optimizer steps (steps 0, n, 2n, ...), >= 1.
        modules: the layers to watch: ``None`` for every activation layer (every Linear/Conv layer if the model
            has none), or names, glob patterns or layer types (see :class:`~lit_deep.callbacks.MaxNorm`).
        log_gradients: also record the weights' gradient norms.
        plot_path: where to save :meth:`plot` (activation std per layer over training) when training ends;
            written by the global-zero process only.

    Raises:
        ValueError: for ``every_n_steps < 1`` or a malformed selection; at fit start for one matching nothing.

    Example::

        >>> from lightning.pytorch import Trainer
        >>> from lit_deep import Classifier
        >>> from lit_deep.models import MLP
        >>> clf = Classifier(MLP(input_shape=(4,), hidden=(8, 8), activation="selu", seed=0))
        >>> data = torch.utils.data.TensorDataset(torch.randn(64, 4), torch.arange(64) % 10)
        >>> stats = LayerStats(every_n_steps=2)
        >>> trainer = Trainer(max_steps=3, callbacks=[stats], logger=False, enable_checkpointing=False,
        ...                   enable_progress_bar=False, enable_model_summary=False)
        >>> trainer.fit(clf, torch.utils.data.DataLoader(data, batch_size=16))
        >>> [record["step"] for record in stats.history], list(stats.history[0]["act_std"])
        ([0, 2], ['backbone.2', 'backbone.4'])
    """

    def __init__(
        self,
        every_n_steps: int = 50,
        modules: Selector | Sequence[Selector] | None = None,
        log_gradients: bool = True,
        plot_path: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.every_n_steps = check_int("every_n_steps", every_n_steps, minimum=1)
        self.modules = None if modules is None else as_selectors(modules, "modules")
        self.log_gradients = log_gradients
        self.plot_path = None if plot_path is None else Path(plot_path)
        #: One record per logging step: ``{"step", "act_mean": {layer: v}, "act_std": {...}, "grad_norm": {...}}``.
        self.history: list[dict[str, Any]] = []
        self._layers: dict[str, nn.Module] = {}
        self._weights: dict[str, nn.Parameter] = {}
        self._handles: list[RemovableHandle] = []
        self._pending: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._record: dict[str, Any] | None = None

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        root = root_module(pl_module)
        self._layers = (
            _activation_layers(root) if self.modules is None else select_modules(root, self.modules, "modules")
        )
        self._weights = {name: p for name, p in root.named_parameters() if p.dim() >= 2}

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if step % self.every_n_steps or (self._record is not None and self._record["step"] == step):
            return  # not a logging step, or a later batch of an accumulated step already recorded
        self._record = {"step": step, "act_mean": {}, "act_std": {}, "grad_norm": {}}
        self.history.append(self._record)
        self._pending = {}
        for name, layer in self._layers.items():
            self._handles.append(layer.register_forward_hook(functools.partial(self._store, name)))

    def _store(self, name: str, module: nn.Module, inputs: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor):
            std, mean = torch.std_mean(output.detach().float(), correction=0)
            self._pending[name] = (mean, std)

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self._handles or self._record is None:
            return
        self._remove_hooks()
        if self._pending:
            values = torch.stack([torch.stack(pair) for pair in self._pending.values()]).tolist()  # one transfer
            self._record["act_mean"] = {name: v[0] for name, v in zip(self._pending, values, strict=True)}
            self._record["act_std"] = {name: v[1] for name, v in zip(self._pending, values, strict=True)}
            self._pending = {}
        record = self._record
        self._log(trainer, record["step"], {"act_mean": record["act_mean"], "act_std": record["act_std"]})

    @override
    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Optimizer
    ) -> None:
        record = self._record
        if not self.log_gradients or record is None or record["step"] != trainer.global_step:
            return
        grads = {name: p.grad for name, p in self._weights.items() if p.grad is not None}
        if grads:
            norms = torch.stack([torch.linalg.vector_norm(g.detach().float()) for g in grads.values()]).tolist()
            record["grad_norm"].update(zip(grads, norms, strict=True))
            self._log(trainer, record["step"], {"grad_norm": record["grad_norm"]})

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._remove_hooks()
        if self.plot_path is not None and trainer.is_global_zero and self.history:
            save_figure(self.plot(), self.plot_path)  # atomic: a crash never leaves half a PNG

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._remove_hooks()

    @property
    @override
    def state_key(self) -> str:
        """The checkpoint key: the class name and the configuration (one key per differently configured instance).

        Example::

            >>> LayerStats(every_n_steps=10, modules="backbone.*").state_key
            "LayerStats{'every_n_steps': 10, 'modules': ('backbone.*',), 'log_gradients': True}"
        """
        modules = None
        if self.modules is not None:
            modules = tuple(m if isinstance(m, str) else f"{m.__module__}.{m.__qualname__}" for m in self.modules)
        config = {"every_n_steps": self.every_n_steps, "modules": modules, "log_gradients": self.log_gradients}
        return f"{type(self).__qualname__}{config!r}"

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))
        self._record = None

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    @staticmethod
    def _log(trainer: pl.Trainer, step: int, values: dict[str, dict[str, float]]) -> None:
        metrics = {f"{_PREFIX}/{kind}/{name}": v for kind, per in values.items() for name, v in per.items()}
        for logger in trainer.loggers:  # straight to the loggers: self.log would only flush on its own period
            logger.log_metrics(metrics, step=step)

    def plot(self) -> Figure:
        """Activation std per layer (x: layer in depth order), one line per logging step coloured by step.

        Returns:
            A matplotlib ``Figure`` (not attached to pyplot; save it with ``savefig``).
        """
        from matplotlib import colormaps
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize
        from matplotlib.figure import Figure

        figure = Figure(figsize=(7, 4), layout="constrained")
        axes = figure.add_subplot()
        steps = [record["step"] for record in self.history]
        norm = Normalize(min(steps), max(max(steps), min(steps) + 1))
        for record in self.history:
            stds = list(record["act_std"].values())
            axes.plot(range(1, len(stds) + 1), stds, color=colormaps["viridis"](norm(record["step"])), marker=".")
        figure.colorbar(ScalarMappable(norm=norm, cmap="viridis"), ax=axes, label="global step")
        axes.set(xlabel="layer (input to output)", ylabel="activation std", title="Activation std per layer")
        axes.grid(alpha=0.3)
        return figure
