"""Freeze reused layers, then unfreeze them at lower learning rates: the book's transfer recipe, DDP-safe."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, get_args

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn
from torch.optim import Optimizer
from typing_extensions import override

from lit_deep._validate import check_bool, check_choice, check_positive
from lit_deep.callbacks._feature_cache import FeatureCache
from lit_deep.callbacks._freezing import Milestones, check_strategy, lr_factors, milestones, rewrap_ddp
from lit_deep.callbacks._phases import Phase, improved
from lit_deep.callbacks._phases import phases as phases_of
from lit_deep.callbacks.contract import TrainableModule, root_module
from lit_deep.callbacks.select import BATCH_NORMS, as_patterns, matches, select_parameters
from lit_deep.schedules.groups import extend_scheduler, mixed_group, reference_group, rescale_groups

__all__ = ["FreezeUnfreeze", "Phase"]

#: What happens to the frozen BatchNorm layers: kept in eval mode (the book, Keras) or left training.
BatchNormMode = Literal["eval", "train"]
_BN_MODES: tuple[str, ...] = get_args(BatchNormMode)
_DEFAULT_EPOCH = 4  # unfreeze_at_epoch's default, which phases replace


class FreezeUnfreeze(Callback):
    """Train with ``modules`` frozen, then unfreeze them (at once or top down) at lower learning rates.

    The book's transfer recipe: reuse a pretrained model's lower layers, train the new head while they are
    frozen (a random head's large gradients would wreck them), then unfreeze and continue at a lower rate.

    **Real freezing, replicas kept equal.** In ``setup``, before the strategy wraps the model, the frozen
    parameters get ``requires_grad=False`` (Keras's ``trainable=False``): autograd neither computes their
    gradients nor keeps activations only they need, and the optimizer skips them (no update, no weight decay, no
    state). At a milestone they get ``requires_grad=True`` again. DDP all-reduces only the parameters that
    required gradients when it was built, so flipping the flag under a live wrapper lets replicas diverge
    (Lightning's ``BaseFinetuning``, issue #20340); here the strategy builds a new wrapper at each milestone
    (``DDPStrategy.configure_ddp``), so every rank stays bitwise equal. Other parallel strategies (FSDP,
    DeepSpeed) are refused when there are milestones. When fit ends the parameters it froze are trainable again.

    **BatchNorm.** ``bn="eval"`` (Keras's semantics for frozen layers) puts frozen BatchNorm layers in inference
    mode at every training batch: they normalise with, and do not update, their running statistics.
    ``bn="train"`` (Lightning's ``train_bn=False``) keeps batch statistics: the running statistics keep moving
    (DDP broadcasts rank 0's at each step) while the affine parameters stay frozen. Dropout in frozen layers
    stays active.

    **Learning rates.** At a milestone, the groups of the parameters it unfreezes get the current rate of the
    ``"head"`` group (else the first never-frozen group) times that milestone's factor, once: a number applies to
    every milestone, ``{epoch: factor}`` gives each its own (fastai's discriminative rates, e.g. ``{4: 0.1, 8:
    0.01}``). The schedule then carries on: the group's ``lr_scale`` is set for lit_deep's schedules,
    ``PlateauDecay``, ``ReduceLROnPlateau`` and the chainable PyTorch schedulers multiply the new rate, and
    closed-form PyTorch schedulers (``LambdaLR``, ``OneCycleLR``, ``CyclicLR``, ...) get their base rates for that
    group scaled (:func:`lit_deep.schedules.rescale_groups`). This needs the unfrozen parameters in groups of their
    own: ``Classifier`` makes them (this callback fills its ``param_group_splits`` in ``setup``, so a milestone
    ``"backbone.3"`` becomes the groups ``backbone.3`` and ``backbone.3_no_decay``); for another LightningModule,
    group them in ``configure_optimizers`` or use ``lr_factor=1.0``. An optimizer built over the trainable
    parameters only (Lightning's documented ``filter(lambda p: p.requires_grad, self.parameters())``) works too:
    at each milestone whose parameters no optimizer holds, they get a parameter group of their own, added to the
    (single) optimizer with the hyper-parameters of the reference group and its rate times the milestone's factor
    (as Lightning's ``BaseFinetuning.unfreeze_and_add_param_group`` does), and the schedulers' per-group rates are
    extended to match; a resumed run rebuilds the added groups before the optimizer state is loaded.

    **Metric-driven phases.** Instead of epochs, ``phases`` (a list of :class:`Phase`, or of plain mappings of its
    fields, the YAML form) says when each unfreezing comes: phase ``i`` trains what is trainable, lasts at most
    ``max_epochs`` epochs, and ends earlier once the validation metric ``monitor`` has not improved by more than
    ``min_delta`` (``mode`` ``"min"`` or ``"max"``) for ``patience`` validation runs in a row; the next training
    epoch then starts by unfreezing that phase's ``unfreeze`` (through the same machinery as a milestone: DDP
    wrapper rebuilt, the phase's ``lr_factor`` or this one). The last phase's unfreezing starts a final stage that
    runs until the Trainer stops (add ``EarlyStopping`` for it). The decision is taken at validation end from
    ``trainer.callback_metrics[monitor]`` averaged over the ranks, then broadcast from rank 0, so every rank ends
    the phase at the same epoch. With ``restore_best``, each improvement keeps a CPU copy of the model's
    ``state_dict`` and the phase's best weights (parameters and buffers) are loaded before its unfreezing; the
    optimizer state (the head's moments) and the schedule carry on from the phase's last step, and the groups
    unfrozen then have no optimizer state yet (they were frozen). The running phase, its best value, bad-run
    counter, best weights and a pending restore are saved in checkpoints (as tensors: ``weights_only`` loading
    works), so a run resumed mid-phase continues that phase.

    **Frozen-feature cache.** With ``cache_features=True``, while parameters are frozen, the part of the model that
    is frozen and deterministic (traced with ``torch.fx``: everything before the first node that holds a trainable
    parameter, is random (dropout in either mode, ``RReLU``, ``torch.rand*``) or normalises with batch statistics;
    the frozen layers need not be a prefix) runs once per training and validation example; later epochs train the
    rest on its stored output. The batches, their order and their shards (DDP) are those of a run without the cache,
    so training is the same up to rounding (bitwise on CPU in the tests; a frozen step after the first epoch costs
    9x less CPU time on cnn.fmnist, 18x less on a 20-layer MLP: see the performance page). Each unfreezing cuts the
    graph again where the frozen part now ends; once nothing is frozen, full forward passes resume. It needs
    lit_deep's fixed in-memory batches (``FashionMNISTDataModule``'s, indexed by its sampler) without augmentation,
    and the stored values within ``cache_gib`` per process; otherwise, and when a batch does not hold the dataset's
    examples, it declines with one info line and trains as usual. The cache is not saved in checkpoints: a resumed
    run builds it again.

    Names are relative to ``pl_module.model`` when the LightningModule has such a module (``Classifier``,
    Lightning's demo ``LightningTransformer``), else to the LightningModule, and must exist by ``setup`` (not
    only after ``configure_model``); a name selects a module with its descendants; glob patterns (``fnmatch``)
    work too; the frozen modules need not come first in the network. The milestones already applied are saved in
    checkpoints under :attr:`state_key`, so two instances keep their own state and resuming after unfreezing does
    not freeze again. Lightning's ``LearningRateFinder`` may run in the same fit: it runs without the other
    callbacks, so its range test trains what is trainable at fit start (the head), and restores the model.

    Args:
        modules: the layers to freeze: a name (``"backbone"``), a pattern (``"backbone.*"``) or a list.
        unfreeze_at_epoch: the epoch at whose start ``modules`` are unfrozen; ``None`` never unfreezes; or
            milestones ``{epoch: names}`` that unfreeze gradually, top down (``{4: "backbone.3", 8: "backbone"}``):
            each unfreezes what it selects that is still frozen.
        lr_factor: the unfrozen groups' rate relative to the head's (the book lowers it), > 0; or one factor per
            milestone, ``{epoch: factor}`` with exactly the milestones' epochs.
        bn: ``"eval"`` or ``"train"``: the mode of frozen BatchNorm layers.
        phases: metric-driven phases instead of epoch milestones (``unfreeze_at_epoch`` then left at its default
            or ``None``, ``lr_factor`` a number), e.g. ``[{"unfreeze": "backbone.3", "max_epochs": 5, "monitor":
            "val_loss", "patience": 2, "restore_best": True}, {"unfreeze": "backbone", "max_epochs": 5}]``.
        cache_features: compute the frozen, deterministic part once per example while it is frozen (see above).
        cache_gib: the most memory the cache may take, in GiB per process (training and validation together), > 0.

    Raises:
        ValueError: for a bad argument; at fit start for a name or pattern matching nothing, freezing every
            parameter, a milestone that unfreezes nothing new (milestones out of order), unfrozen parameters
            missing from the optimizer, or milestones under a parallel strategy other than DDP.

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

    A phase without a monitor is an epoch milestone (``{"unfreeze": "backbone", "max_epochs": 1}`` is
    ``unfreeze_at_epoch=1``); with one it may end earlier::

        >>> phases = [{"unfreeze": "backbone", "max_epochs": 3, "monitor": "val_loss", "patience": 1, "min_delta": 9.0}]
        >>> callback = FreezeUnfreeze("backbone", phases=phases)
        >>> trainer = Trainer(max_epochs=4, callbacks=[callback], logger=False, enable_checkpointing=False,
        ...                   enable_progress_bar=False, enable_model_summary=False, limit_train_batches=1,
        ...                   num_sanity_val_steps=0)
        >>> loader = torch.utils.data.DataLoader(data, batch_size=4)
        >>> trainer.fit(Classifier(MLP(input_shape=(4,), hidden=(8,), num_classes=2, seed=0)), loader, loader)
        >>> callback.unfrozen_epochs, callback.phase  # val_loss never improves by 9 after epoch 0: ends after 1
        ([2], 1)

    The cache needs lit_deep's in-memory batches; with others it says so and trains as usual::

        >>> cached = FreezeUnfreeze("backbone", unfreeze_at_epoch=1, cache_features=True, cache_gib=0.5)
        >>> trainer = Trainer(max_epochs=2, callbacks=[cached], logger=False, enable_checkpointing=False,
        ...                   enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
        >>> trainer.fit(Classifier(MLP(input_shape=(4,), hidden=(8,), num_classes=2, seed=0)), loader)
        >>> cached.cache_gib, cached.unfrozen_epochs
        (0.5, [1])
    """

    def __init__(
        self,
        modules: str | Sequence[str] = "backbone",
        unfreeze_at_epoch: int | Milestones | None = 4,
        lr_factor: float | Mapping[int, float] = 0.1,
        bn: BatchNormMode = "eval",
        phases: Sequence[Phase | Mapping[str, Any]] | None = None,
        cache_features: bool = False,
        cache_gib: float = 2.0,
    ) -> None:
        super().__init__()
        self.modules = as_patterns(modules, "modules")
        #: The metric-driven phases (empty for the epoch milestones of ``unfreeze_at_epoch``).
        self.phases = phases_of(phases)
        if self.phases:
            if unfreeze_at_epoch not in (_DEFAULT_EPOCH, None):
                raise ValueError(
                    f"unfreeze_at_epoch: must be left at its default or None when phases are given (they say when to "
                    f"unfreeze), got {unfreeze_at_epoch!r}"
                )
            if isinstance(lr_factor, Mapping):
                raise ValueError(
                    f"lr_factor: a factor per milestone epoch ({dict(lr_factor)!r}) needs unfreeze_at_epoch; with "
                    "phases give a number, or each phase its own lr_factor"
                )
        #: ``{key: patterns}``: the milestones, keyed by epoch (``unfreeze_at_epoch``) or by phase index (``phases``).
        self.milestones = (
            {i: phase.unfreeze for i, phase in enumerate(self.phases)}
            if self.phases
            else milestones(unfreeze_at_epoch, self.modules)
        )
        #: ``{milestone key: factor}``: what ``lr_factor`` means for each milestone (read when it is applied).
        self.lr_factors = lr_factors(lr_factor, list(self.milestones))
        for i, phase in enumerate(self.phases):
            if phase.lr_factor is not None:
                self.lr_factors[i] = phase.lr_factor
        check_choice("bn", bn, _BN_MODES)
        self.bn = bn
        self.cache_features = check_bool("cache_features", cache_features)
        self.cache_gib = check_positive("cache_gib", cache_gib)
        self._cache: FeatureCache | None = None  # while something is frozen (cache_features)
        # milestone key -> the epoch at whose start it unfreezes: fixed for epochs, decided as each phase ends.
        self._at: dict[int, int] = {} if self.phases else {epoch: epoch for epoch in self.milestones}
        self._best: float | None = None  # the running phase: its best monitored value, at which epoch,
        self._best_epoch: int | None = None
        self._bad = 0  # the validation runs since, and (restore_best) the weights then, as a CPU copy
        self._best_state: dict[str, Tensor] | None = None
        self._restore: dict[int, dict[str, Tensor]] = {}  # ended phase -> the weights to load before it unfreezes
        self._frozen: dict[
            str, nn.Parameter
        ] = {}  # every parameter frozen at the start (and trainable before), by name
        self._unfreezes: dict[int, dict[str, nn.Parameter]] = {}  # milestone epoch -> parameters it unfreezes
        self._bn_layers: dict[str, nn.Module] = {}  # BatchNorm layers inside `modules`
        self._done: set[int] = set()  # milestones applied
        self._adds: set[int] = set()  # milestones whose parameters no optimizer holds: a group is added for them
        self._wrapped_with: frozenset[int] | None = None  # the milestones applied when the DDP wrapper was built
        self._frozen_now: list[nn.Parameter] = []
        self._frozen_bn_now: list[nn.Module] = []

    @property
    @override
    def state_key(self) -> str:
        """The checkpoint key: the class name and what it freezes and when (Lightning's ``Callback.state_key``).

        ``lr_factor`` and ``bn`` are left out: changing them for a resumed run keeps the saved state.

        Example::

            >>> FreezeUnfreeze("backbone", unfreeze_at_epoch={2: "backbone.3", 4: "backbone"}).state_key
            "FreezeUnfreeze{'modules': ['backbone'], 'unfreeze_at_epoch': {2: ['backbone.3'], 4: ['backbone']}}"
        """
        config: dict[str, Any] = {"modules": list(self.modules)}
        if self.phases:  # lr_factor left out here too
            config["phases"] = [{k: v for k, v in p.config().items() if k != "lr_factor"} for p in self.phases]
        else:
            config["unfreeze_at_epoch"] = {epoch: list(patterns) for epoch, patterns in self.milestones.items()}
        return f"{type(self).__qualname__}{config!r}"

    @property
    def frozen_parameters(self) -> list[str]:
        """The names of the parameters frozen now (empty before fit)."""
        now = {id(p) for p in self._frozen_now}
        return [name for name, p in self._frozen.items() if id(p) in now]

    @property
    def unfrozen_epochs(self) -> list[int]:
        """The epochs at whose start milestones were applied (with ``phases``: where the phases ended)."""
        return sorted(self._at.get(key, key) for key in self._done)

    @property
    def phase(self) -> int:
        """The index of the running phase (``len(phases)`` once every phase ended; 0 without phases)."""
        return len(self._at) if self.phases else 0

    # ----------------------------------------------------------------- hooks
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if self.milestones:
            check_strategy(trainer)
        root = root_module(pl_module)
        # Parameters the user froze before fit are not ours: they stay frozen and are never unfrozen.
        self._frozen = {n: p for n, p in select_parameters(root, self.modules, "modules").items() if p.requires_grad}
        frozen_ids = {id(p) for p in self._frozen.values()}
        if not any(p.requires_grad and id(p) not in frozen_ids for p in pl_module.parameters()):
            raise ValueError(f"modules: {list(self.modules)} freezes every parameter of the model; nothing would train")
        self._unfreezes = self._resolve_milestones(root)
        if isinstance(pl_module, TrainableModule):  # the contract: each milestone gets groups of its own
            for epoch, params in self._unfreezes.items():  # (setup precedes configure_optimizers)
                pl_module.param_group_splits[",".join(self.milestones[epoch])] = list(params)
        self._wrapped_with = None
        self._refresh()  # before the strategy wraps the model: DDP will skip the frozen parameters

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._wrapped_with = frozenset(self._done)  # the strategy has built its wrapper by now
        # A resumed run: the optimizers were just configured, their saved state is loaded after this hook. Groups
        # added at milestones already passed are rebuilt (in the order they were added) so that the state fits.
        for key in sorted(self._adds & self._done, key=lambda k: self._at.get(k, k)):
            self._add_group(trainer, key, announce=False)

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # After a checkpoint's state was loaded and after the strategy converted layers (SyncBatchNorm).
        root = root_module(pl_module)
        self._bn_layers = {
            name: m for name, m in root.named_modules() if isinstance(m, BATCH_NORMS) and matches(name, self.modules)
        }
        self._refresh()
        self._sync_wrapper(trainer)
        self._check_optimizers(trainer.optimizers)
        if self.cache_features and self._frozen_now:
            self._cache = FeatureCache(int(self.cache_gib * 2**30))
            self._cache.install(root)

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        phase = self.phase
        if phase < len(self.phases) and len(self._done) == phase:  # the running phase reached its max_epochs
            start = self._at[phase - 1] if phase else 0
            if trainer.current_epoch - start >= self.phases[phase].max_epochs:
                self._end_phase(trainer.current_epoch, f"after its max_epochs={self.phases[phase].max_epochs}")
        for key in self.milestones:
            at = self._at.get(key)
            if at is not None and at <= trainer.current_epoch and key not in self._done:
                restore = self._restore.pop(key, None)
                if restore is not None:  # the phase's best weights, before its unfreezing
                    root_module(pl_module).load_state_dict(restore)
                    rank_zero_info(f"FreezeUnfreeze: restored the best weights of phase {key}")
                self._unfreeze(trainer, pl_module, key)
        self._sync_wrapper(trainer)

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # After the epoch's metrics reached `callback_metrics` (as for EarlyStopping), before ModelCheckpoint saves.
        phase = self.phase
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING or phase >= len(self.phases):
            return
        config = self.phases[phase]
        if config.monitor is None or len(self._done) < phase:  # not monitored, or its start is still pending
            return
        value = self._monitored(trainer, config.monitor, phase)
        if improved(value, self._best, config.mode, config.min_delta):
            self._best, self._best_epoch, self._bad = value, trainer.current_epoch, 0
            if config.restore_best:
                state = root_module(pl_module).state_dict()
                self._best_state = {name: t.detach().to("cpu", copy=True) for name, t in state.items()}
        else:
            self._bad += 1
        if self._bad >= config.patience:
            self._end_phase(
                trainer.current_epoch + 1,
                f"{config.monitor} did not improve for {self._bad} validation runs (best {self._best} at epoch "
                f"{self._best_epoch})",
            )

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        # Lightning may switch modes around validation and at fit start (model.train()): re-apply each batch (cheap).
        if self.bn == "eval":
            for layer in self._frozen_bn_now:
                layer.train(False)
        if self._cache is not None:
            self._cache.begin("train", batch_idx, trainer.train_dataloader)

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._cache is not None:
            self._cache.end()

    @override
    def on_validation_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if self._cache is not None and not trainer.sanity_checking and dataloader_idx == 0:
            self._cache.begin("val", batch_idx, trainer.val_dataloaders)

    @override
    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._cache is not None:
            self._cache.end()

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._drop_cache()

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._drop_cache()

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":  # leave the model as fit found it
            self._drop_cache()
            for param in self._frozen.values():
                param.requires_grad_(True)

    @override
    def state_dict(self) -> dict[str, Any]:
        if not self.phases:
            return {"unfrozen_at": sorted(self._done), "added_groups": sorted(self._adds)}
        # Plain data and tensors only: torch.load(weights_only=True) reads it.
        return {
            "unfrozen": sorted(self._done),
            "ended_at": [[key, epoch] for key, epoch in sorted(self._at.items())],
            "best": self._best,
            "best_epoch": self._best_epoch,
            "bad": self._bad,
            "best_state": self._best_state,
            "restore": [[key, state] for key, state in sorted(self._restore.items())],
            "added_groups": sorted(self._adds),
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Lightning loads callback states after `setup` and, for DDP, before it wraps the model.
        if self.phases:
            self._done = set(state_dict.get("unfrozen", []))
            self._at = {int(key): int(epoch) for key, epoch in state_dict.get("ended_at", [])}
            self._best, self._best_epoch = state_dict.get("best"), state_dict.get("best_epoch")
            self._bad = int(state_dict.get("bad", 0))
            self._best_state = state_dict.get("best_state")
            self._restore = {int(key): state for key, state in state_dict.get("restore", [])}
        else:
            self._done = set(state_dict.get("unfrozen_at", []))
        self._adds = {int(key) for key in state_dict.get("added_groups", [])}
        self._refresh()

    # ----------------------------------------------------------------- helpers
    def _resolve_milestones(self, root: nn.Module) -> dict[int, dict[str, nn.Parameter]]:
        taken: set[str] = set()
        result = {}
        for epoch, patterns in self.milestones.items():
            selected = select_parameters(root, patterns, self._argument(epoch))
            new = {name: p for name, p in selected.items() if name in self._frozen and name not in taken}
            if not new:
                raise ValueError(
                    f"{self._argument(epoch)}: the milestone {self._at_what(epoch)} ({list(patterns)}) unfreezes "
                    "nothing that is still frozen (milestones out of order? they go top down, e.g. {4: 'backbone.3', "
                    "8: 'backbone'})"
                )
            taken.update(new)
            result[epoch] = new
        return result

    def _argument(self, key: int) -> str:
        return f"phases[{key}].unfreeze" if self.phases else "unfreeze_at_epoch"

    def _at_what(self, key: int) -> str:
        return f"at the end of phase {key}" if self.phases else f"at epoch {key}"

    def _monitored(self, trainer: pl.Trainer, monitor: str, phase: int) -> float:
        """The monitored value, averaged over the ranks, then rank 0's: every rank takes the same decisions."""
        metric = trainer.callback_metrics.get(monitor)
        if metric is None:
            raise ValueError(
                f"phases[{phase}].monitor: {monitor!r} was not logged in validation (logged: "
                f"{sorted(trainer.callback_metrics)}); log it with self.log in validation_step"
            )
        # A copy: the all-reduce works in place and must not change what the other callbacks read.
        value = torch.as_tensor(metric).detach().to(trainer.strategy.root_device, copy=True)
        value = trainer.strategy.reduce(value if value.is_floating_point() else value.float(), reduce_op="mean")
        return float(trainer.strategy.broadcast(float(value), src=0))

    def _end_phase(self, at: int, why: str) -> None:
        """End the running phase: its unfreezing is applied at the start of epoch ``at``."""
        phase = self.phase
        self._at[phase] = at
        if self.phases[phase].restore_best and self._best_state is not None:
            self._restore[phase] = self._best_state
        patterns = list(self.milestones[phase])
        rank_zero_info(f"FreezeUnfreeze: phase {phase} ends ({why}); the start of epoch {at} unfreezes {patterns}")
        self._best, self._best_epoch, self._bad, self._best_state = None, None, 0, None

    def _refresh(self) -> None:
        """Derive what is frozen now from the milestones applied, and set ``requires_grad`` to match."""
        unfrozen = {name for epoch in self._done for name in self._unfreezes.get(epoch, {})}
        self._frozen_now = [p for name, p in self._frozen.items() if name not in unfrozen]
        frozen_ids = {id(p) for p in self._frozen_now}
        for param in self._frozen.values():
            param.requires_grad_(id(param) not in frozen_ids)
        done_patterns = [pattern for epoch in self._done for pattern in self.milestones.get(epoch, ())]
        self._frozen_bn_now = [m for name, m in self._bn_layers.items() if not matches(name, done_patterns)]

    def _sync_wrapper(self, trainer: pl.Trainer) -> None:
        """Rebuild DDP's wrapper when parameters were unfrozen since it was built (all ranks do so together)."""
        if self._wrapped_with is not None and self._wrapped_with != self._done and rewrap_ddp(trainer):
            rank_zero_info(f"FreezeUnfreeze: rebuilt the DDP wrapper for the milestones {sorted(self._done)}")
        self._wrapped_with = frozenset(self._done)

    def _check_optimizers(self, optimizers: list[Optimizer]) -> None:
        held = {id(p) for optimizer in optimizers for group in optimizer.param_groups for p in group["params"]}
        ours = {id(p) for p in self._frozen.values()}
        for epoch, params in self._unfreezes.items():
            missing = [name for name, p in params.items() if id(p) not in held]
            if missing and epoch not in self._done and len(missing) == len(params) and len(optimizers) == 1:
                self._adds.add(epoch)  # an optimizer over the trainable parameters: a group is added at the milestone
                continue
            if missing and epoch not in self._adds:
                why = (
                    f"{len(optimizers)} optimizers: say which one holds them"
                    if len(optimizers) != 1
                    else "some of them are, the others not"
                )
                raise ValueError(
                    f"{self._argument(epoch)}: the parameters unfrozen {self._at_what(epoch)} "
                    f"({list(self.milestones[epoch])}) are in no optimizer (e.g. {missing[0]!r}) and cannot be added "
                    f"as a group at the milestone ({why}); build the optimizer over every parameter, frozen ones "
                    "included (they get no gradient while frozen)"
                )
            if self.lr_factors[epoch] == 1.0 or epoch in self._done:
                continue
            ids = {id(p) for p in params.values()}
            for optimizer in optimizers:
                # Parameters the user froze for good never get a gradient: sharing a group with them is harmless.
                groups = [
                    {**g, "params": [p for p in g["params"] if id(p) in ours or p.requires_grad]}
                    for g in optimizer.param_groups
                ]
                group = mixed_group(groups, ids)
                if group is not None:
                    raise ValueError(
                        f"lr_factor: {self.lr_factors[epoch]} needs the parameters unfrozen {self._at_what(epoch)} "
                        f"({list(self.milestones[epoch])}) in parameter groups of their own, but group {group!r} "
                        "mixes them with others; use lit_deep's Classifier (param_group_splits), group them in "
                        "configure_optimizers, or set lr_factor=1.0"
                    )

    def _add_group(self, trainer: pl.Trainer, key: int, announce: bool = True) -> str:
        """Give milestone ``key``'s parameters a group of their own in the (single) optimizer.

        The group copies the reference group's hyper-parameters (the head's, else the first never-frozen group's;
        rescaled by :func:`rescale_groups` afterwards) and every scheduler of that optimizer gets the reference
        group's entry in its per-group lists (``base_lrs``, ``max_lrs``, ``min_lrs``, ``lr_lambdas``). Parameters
        a resumed run's optimizer already holds (they require gradients again) move out of their group first.
        """
        (optimizer,) = trainer.optimizers
        params = list(self._unfreezes[key].values())
        ids = {id(p) for p in params}
        for group in optimizer.param_groups:
            group["params"] = [p for p in group["params"] if id(p) not in ids]
        ever_frozen = {id(p) for p in self._frozen.values()}
        groups = optimizer.param_groups
        ref = reference_group(groups, ever_frozen)
        reference = groups[0 if ref is None else ref]
        name = ",".join(self.milestones[key])
        optimizer.add_param_group(
            {**{k: v for k, v in reference.items() if k not in ("params", "name")}, "params": params, "name": name}
        )
        for config in trainer.lr_scheduler_configs:
            if config.scheduler.optimizer is optimizer:
                extend_scheduler(config.scheduler, 0 if ref is None else ref)
        if announce:
            rank_zero_info(f"FreezeUnfreeze: added the parameter group {name!r} to the optimizer")
        return name

    def _drop_cache(self) -> None:
        if self._cache is not None:
            self._cache.uninstall()
            self._cache = None

    def _unfreeze(self, trainer: pl.Trainer, pl_module: pl.LightningModule, epoch: int) -> None:
        ids = {id(p) for p in self._unfreezes[epoch].values()}
        ever_frozen = {id(p) for p in self._frozen.values()}
        factor = self.lr_factors[epoch]
        if epoch in self._adds:
            self._add_group(trainer, epoch)
        changed = rescale_groups(trainer, ids, ever_frozen, factor) if factor != 1.0 else []
        self._done.add(epoch)
        was_frozen = self._frozen_bn_now
        self._refresh()
        for layer in was_frozen:  # Lightning restores each submodule's own mode after validation: reset it here
            if layer not in self._frozen_bn_now:
                layer.train(pl_module.training)
        if self._cache is not None and self._frozen_now:
            self._cache.reset()  # cut again at the next batch, where the frozen part now ends
        elif self._cache is not None:
            self._drop_cache()
            rank_zero_info("FreezeUnfreeze: cache_features: nothing is frozen any more: full forward passes")
        rates = f"; groups {changed} at the head's rate x {factor}" if changed else ""
        rank_zero_info(
            f"FreezeUnfreeze: epoch {trainer.current_epoch}: unfroze {list(self.milestones[epoch])} "
            f"({len(ids)} parameters){rates}"
        )
