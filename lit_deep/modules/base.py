"""How every lit_deep LightningModule trains: :class:`LitDeepModule`, the base of the library's modules.

``Classifier``, ``AutoencoderModule`` and ``RotationPretext`` subclass it with their task only. The base owns
everything that is not the task:

* the model (an ``nn.Module`` or its description, kept described in ``hparams``; see :class:`DescribedModel`),
  and the hyper-parameters, saved once for the whole class hierarchy;
* the optimizer by name with the book's settings (:data:`~lit_deep.modules.OPTIMIZERS`), over named parameter
  groups (``head``, ``backbone``, ``other``, plus the callbacks' ``param_group_splits``), with decoupled weight
  decay that spares biases and 1-D parameters;
* the schedule (a factory ``optimizer -> scheduler``, wired to Lightning by
  :func:`~lit_deep.modules._schedule.lightning_scheduler_config`);
* the cheap training logging and the divergence check (:mod:`lit_deep.modules._logging`): ``train_loss`` on
  the loggers' steps only, the epoch metrics named in :attr:`LitDeepModule.train_epoch_metrics` once per epoch.

A subclass implements :meth:`LitDeepModule.step` (the loss of one batch for a stage, updating its metrics) and
its own ``forward``/``predict_step``/``test_step``; it is what a callback may rely on by
:class:`lit_deep.callbacks.TrainableModule`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from torch import nn
from torch.optim import Optimizer

from lit_deep._validate import check_non_negative, check_positive
from lit_deep.modules._logging import log_train_epoch_metrics, log_train_loss
from lit_deep.modules._model import DescribedModel
from lit_deep.modules._optim import OptimizerName, build_optimizer, check_optimizer_name, param_groups
from lit_deep.modules._schedule import lightning_scheduler_config, trainer_total_steps
from lit_deep.schedules import ScheduleFactory

__all__ = ["LitDeepModule", "Stage"]

#: The loop a step runs in.
Stage = Literal["train", "val", "test"]


class LitDeepModule(DescribedModel):
    """Model, hyper-parameters, optimizer by name, schedule, parameter groups and cheap training logging.

    Args:
        model: the network, or its ``{"class_path", "init_args"}`` description (what checkpoints store).
        optimizer: an optimizer name of :data:`~lit_deep.modules.OPTIMIZERS` (the book's settings); from Python,
            also the class path of an already imported ``torch.optim.Optimizer`` subclass.
        lr: learning rate.
        weight_decay: weight decay applied by the optimizer (biases and 1-D parameters excluded): decoupled for
            ``adam``, ``nadam``, ``adamw``; PyTorch's coupled form (an l2 gradient term) for the others.
        schedule: a callable ``optimizer -> scheduler`` (see :mod:`lit_deep.schedules`).
        optimizer_kwargs: extra optimizer arguments.

    Example::

        >>> from lit_deep.models import MLP
        >>> class Regressor(LitDeepModule):
        ...     def step(self, batch, batch_idx, stage):
        ...         x, y = batch
        ...         return torch.nn.functional.mse_loss(self.model(x).squeeze(-1), y)
        >>> module = Regressor(MLP(input_shape=(3,), hidden=(4,), num_classes=1), optimizer="adam", weight_decay=0.1)
        >>> [group["name"] for group in module.configure_optimizers().param_groups]
        ['head', 'head_no_decay', 'backbone', 'backbone_no_decay']
    """

    #: Training metrics updated every step and logged once per epoch (``Metric`` attributes of the module).
    train_epoch_metrics: ClassVar[tuple[str, ...]] = ()
    #: Those of :attr:`train_epoch_metrics` shown in the progress bar.
    train_progress_metrics: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        model: nn.Module | dict[str, Any],
        optimizer: OptimizerName = "nadam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        schedule: ScheduleFactory | None = None,
        optimizer_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.lr = check_positive("lr", lr)
        self.weight_decay = check_non_negative("weight_decay", weight_decay)
        self.optimizer_name = check_optimizer_name(optimizer)
        # Lightning collects the arguments of every __init__ of the hierarchy (the subclass's too).
        self.save_hyperparameters(ignore=["model", "schedule"])
        self.set_model(model)  # checkpoints describe it: load_from_checkpoint needs no model argument
        self.schedule = schedule
        self.optimizer_kwargs = dict(optimizer_kwargs or {})
        #: ``{group name: qualified parameter names of .model}``: extra optimizer groups that callbacks
        #: (``FreezeUnfreeze``) fill in their ``setup``, which Lightning runs before ``configure_optimizers``.
        self.param_group_splits: dict[str, list[str]] = {}

    # ----------------------------------------------------------------- the task
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The model's output."""
        return self.model(x)

    def step(self, batch: Any, batch_idx: int, stage: Stage) -> torch.Tensor:
        """The loss of one batch in ``stage`` (updating that stage's metrics): what a subclass implements."""
        raise NotImplementedError(f"{type(self).__name__} must implement step(batch, batch_idx, stage)")

    # ----------------------------------------------------------------- Lightning hooks
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        """:meth:`step` for ``"train"``; ``train_loss`` logged on the loggers' steps, a non-finite loss stops the run.

        ``train_loss`` is logged on the steps whose metrics Lightning sends to the loggers (every
        ``Trainer(log_every_n_steps=...)`` steps, 50 by default) and on each epoch's last step
        (see :mod:`lit_deep.modules._logging`); ``log_every_n_steps=1`` logs them all.
        """
        loss = self.step(batch, batch_idx, "train")
        log_train_loss(self, loss, batch_idx)
        return loss

    def on_train_epoch_end(self) -> None:
        """Log the epoch values of :attr:`train_epoch_metrics` (reduced over DDP ranks by torchmetrics), reset them."""
        log_train_epoch_metrics(self, self.train_epoch_metrics, prog_bar=self.train_progress_metrics)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        """:meth:`step` for ``"val"`` (it updates and logs the validation metrics)."""
        self.step(batch, batch_idx, "val")

    # ----------------------------------------------------------------- accumulators under *-true precision
    def register_accumulator(self, name: str, tensor: torch.Tensor) -> None:
        """Register a non-persistent accumulator buffer whose dtype survives ``*-true`` precision casts.

        Example::

            >>> from lit_deep import Classifier
            >>> from lit_deep.models import MLP
            >>> clf = Classifier(MLP(hidden=(4,))).to(torch.bfloat16)  # what precision="bf16-true" does
            >>> clf.keep_accumulators_wide()
            >>> clf._train_nll.dtype, clf.val_nll.mean_value.dtype
            (torch.float64, torch.float32)
        """
        self.register_buffer(name, tensor, persistent=False)
        self._accumulator_dtypes = {**getattr(self, "_accumulator_dtypes", {}), name: tensor.dtype}

    def keep_accumulators_wide(self) -> None:
        """Undo what ``precision="bf16-true"`` / ``"16-true"`` did to the metric accumulators.

        Those precisions cast the whole module, metric states and float64 sums included, to 16 bits: an epoch's
        NLL sum saturates (a 55,000-image epoch logs 0.075 for a true mean of 0.325). Half-precision torchmetrics
        states go back to float32 and the :meth:`register_accumulator` buffers to their own dtype; nothing changes
        otherwise. Called when each loop starts (after Lightning converted the module).
        """
        from torchmetrics import Metric

        half = (torch.bfloat16, torch.float16)
        for module in self.modules():
            if isinstance(module, Metric) and any(
                isinstance(v, torch.Tensor) and v.dtype in half for v in module.metric_state.values()
            ):
                module.set_dtype(torch.float32)
        for name, dtype in getattr(self, "_accumulator_dtypes", {}).items():
            buffer = getattr(self, name)
            if buffer.dtype != dtype:
                setattr(self, name, buffer.to(dtype))

    def on_fit_start(self) -> None:
        """Keep the accumulators wide (see :meth:`keep_accumulators_wide`)."""
        self.keep_accumulators_wide()

    def on_validation_start(self) -> None:
        """Keep the accumulators wide (see :meth:`keep_accumulators_wide`)."""
        self.keep_accumulators_wide()

    def on_test_start(self) -> None:
        """Keep the accumulators wide (see :meth:`keep_accumulators_wide`)."""
        self.keep_accumulators_wide()

    # ----------------------------------------------------------------- optimisation
    def param_groups(self) -> list[dict[str, Any]]:
        """The optimizer's named parameter groups: ``head``, ``backbone``, ``other`` and the callbacks' splits.

        See :func:`~lit_deep.modules.param_groups`; :attr:`param_group_splits` adds one section per entry.
        """
        return param_groups(self.model, self.weight_decay, self.param_group_splits)

    def configure_optimizers(self) -> Any:
        """The optimizer over named parameter groups, with the schedule's Lightning config when one is set."""
        optimizer = build_optimizer(
            self.optimizer_name, self.param_groups(), self.lr, self.weight_decay, **self.optimizer_kwargs
        )
        scheduler_config = self.scheduler_config(optimizer)
        if scheduler_config is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": scheduler_config}

    def scheduler_config(self, optimizer: Optimizer) -> dict[str, Any] | None:
        """The Lightning ``lr_scheduler`` config for ``self.schedule`` (``None`` without a schedule).

        See :func:`lit_deep.modules._schedule.lightning_scheduler_config`: ``interval`` is ``"step"`` for 1cycle,
        the decays' own (``"epoch"`` unless configured), and plateau scheduling monitors ``val_loss``.
        """
        if self.schedule is None:
            return None
        # A schedule built with total_steps=None (1cycle) runs for trainer.estimated_stepping_batches steps.
        return lightning_scheduler_config(self.schedule, optimizer, total_steps=lambda: trainer_total_steps(self))
