"""The Classifier LightningModule: any ``nn.Module``, the book's optimizers, penalties and metrics."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric, Metric
from torchmetrics.classification import BinaryAccuracy, MulticlassAccuracy

from lit_deep._device import batch_inputs
from lit_deep._validate import check_int, check_non_negative, check_seed, check_targets
from lit_deep.modules._optim import OptimizerName, penalised_weights
from lit_deep.modules.base import LitDeepModule, Stage
from lit_deep.modules.mc_predictor import MCPredictor, settle_seed
from lit_deep.schedules import ScheduleFactory
from lit_deep.uncertainty import MCPrediction
from lit_deep.uncertainty.streaming import AURC, AdaptiveCalibrationError, BrierScore

__all__ = ["Classifier", "ScheduleFactory"]

_STAGES = ("train", "val", "test")


def _num_outputs(model: nn.Module) -> int | None:
    head = getattr(model, "head", None)
    if isinstance(head, nn.Linear):
        return head.out_features
    last = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            last = module
    return last.out_features if last is not None else None


class Classifier(LitDeepModule):
    """Train any ``nn.Module`` classifier the book's way.

    Loss: cross-entropy on the logits. A model with a single output is treated as a binary classifier with a
    sigmoid and binary cross-entropy (targets 0/1); with two outputs, the two-logit softmax form is used. Both
    log the same metrics: accuracy and NLL (mean cross-entropy, in nats) for ``train``, ``val`` and ``test``
    (``train_acc``, ``val_nll``, ...), computed with torchmetrics so that under DDP every image counts once.

    Penalties ``l1`` and ``l2`` are added to the loss over weight matrices and kernels only (not biases, not
    BatchNorm), as Keras's ``kernel_regularizer`` (``l2 * sum(w**2)``). They are not decoupled weight decay
    (``weight_decay``, applied by the optimizer and equal to l2 only for plain SGD); ``train_loss`` and
    ``val_loss`` include the penalty, as Keras's losses do, while ``*_nll`` do not.

    Args:
        model: the network, or a ``{"class_path", "init_args"}`` spec (what checkpoints store).
        optimizer: ``sgd``, ``momentum``, ``nesterov``, ``adagrad``, ``rmsprop``, ``adam``, ``adamax``, ``nadam``,
            ``adamw`` (the book's settings, see :data:`~lit_deep.modules._optim.OPTIMIZERS`) or a class path.
        lr: learning rate.
        l1: l1 penalty factor.
        l2: l2 penalty factor.
        weight_decay: weight decay applied by the optimizer (biases and 1-D parameters excluded): decoupled for
            ``adam``, ``nadam``, ``adamw``; PyTorch's coupled form (an l2 gradient term) for the others.
        schedule: a callable ``optimizer -> scheduler`` (see :mod:`lit_deep.schedules`).
        optimizer_kwargs: extra optimizer arguments.
        class_names: names of the classes, for reports.
        mc_samples: with ``T > 0``, ``trainer.predict`` returns Monte-Carlo dropout predictions
            (:class:`~lit_deep.uncertainty.MCPrediction`, ``T`` samples, ordinary dropout switched back on after
            Lightning's ``eval()``): ``[MCPrediction]`` per dataloader, in dataset order, gathered from every rank
            under DDP and returned on each (see :mod:`lit_deep.modules.mc_predictor`).
        mc_seed: seed of the MC masks (per image, so DDP and single-process results agree); ``None`` draws one.

    Example::

        >>> from lit_deep.models import MLP
        >>> clf = Classifier(MLP(hidden=(16,), num_classes=3, seed=0), optimizer="momentum", lr=0.01, l2=1e-4)
        >>> opt = clf.configure_optimizers()
        >>> type(opt).__name__, opt.defaults["momentum"], clf.num_outputs
        ('SGD', 0.9, 3)
    """

    train_epoch_metrics = ("train_acc", "train_nll")
    train_progress_metrics = ("train_acc",)

    def __init__(
        self,
        model: nn.Module | dict[str, Any],
        optimizer: OptimizerName = "nadam",
        lr: float = 1e-3,
        l1: float = 0.0,
        l2: float = 0.0,
        weight_decay: float = 0.0,
        schedule: ScheduleFactory | None = None,
        optimizer_kwargs: dict[str, Any] | None = None,
        class_names: list[str] | None = None,
        mc_samples: int = 0,
        mc_seed: int | None = None,
    ) -> None:
        self_l1, self_l2 = check_non_negative("l1", l1), check_non_negative("l2", l2)
        check_int("mc_samples", mc_samples, minimum=0)
        check_seed("mc_seed", mc_seed)
        super().__init__(model, optimizer, lr, weight_decay, schedule, optimizer_kwargs)
        self.l1, self.l2 = self_l1, self_l2
        self.class_names = class_names
        self.mc_samples = mc_samples
        self.mc_predictor = MCPredictor(mc_samples, mc_seed) if mc_samples else None
        if self.mc_predictor is not None:
            # A step whose signature names `dataloader_iter` is handed the batch iterator (Lightning's public API):
            # one call predicts one whole dataloader, so trainer.predict returns one MCPrediction per dataloader.
            self.predict_step = self.mc_predict_step  # type: ignore[method-assign,assignment]
        self._test_batches: list[torch.Tensor] | None = None
        self._test_seen = 0
        self._test_seed = 0
        outputs = _num_outputs(self.model)
        self.num_outputs = outputs if outputs is not None else 0
        self.binary = self.num_outputs == 1
        self._penalised = penalised_weights(self.model)
        for stage in _STAGES:
            acc = (
                BinaryAccuracy(validate_args=False)
                if self.binary
                else MulticlassAccuracy(num_classes=max(2, self.num_outputs), average="micro", validate_args=False)
            )
            setattr(self, f"{stage}_acc", acc if stage != "train" else MeanMetric())
            setattr(self, f"{stage}_nll", MeanMetric())
        for stage in ("val", "test"):  # streaming calibration metrics, reduced over DDP ranks by torchmetrics
            setattr(self, f"{stage}_brier", BrierScore())
            setattr(self, f"{stage}_ace", AdaptiveCalibrationError())
            setattr(self, f"{stage}_aurc", AURC())
        # Training sums (correct predictions, NLL) and the image count, accumulated with two in-place tensor ops
        # a step and handed to the torchmetrics means (which reduce over DDP ranks) once per epoch: a torchmetrics
        # update costs ~40 us a step. Buffers, so that they live on the model's device.
        self._train_correct: torch.Tensor
        self._train_nll: torch.Tensor
        self.register_accumulator("_train_correct", torch.zeros((), dtype=torch.int64))
        self.register_accumulator("_train_nll", torch.zeros((), dtype=torch.float64))
        self._train_seen = 0

    # ----------------------------------------------------------------- forward and loss
    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``[B, C]`` from logits (a single logit becomes ``[1 - p, p]``), in float32 or wider.

        Logits computed under autocast or by a ``*-true`` model are bf16/fp16: probabilities are taken in float32,
        so p = 0.997 does not round to 1 (and its NLL to a clamp).

        Example::

            >>> from lit_deep.models import MLP
            >>> Classifier(MLP(hidden=(4,), num_classes=1)).probabilities(torch.zeros(1, 1)).tolist()
            [[0.5, 0.5]]
        """
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        if self.binary:
            p = torch.sigmoid(logits.squeeze(-1))
            return torch.stack([1 - p, p], dim=-1)
        return logits.softmax(dim=-1)

    def _per_sample_nll(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # metrics in float32 or wider
        if self.binary:
            return F.binary_cross_entropy_with_logits(logits.squeeze(-1), y.float(), reduction="none")
        return F.cross_entropy(logits, y, reduction="none")

    def penalty(self) -> torch.Tensor | float:
        """The l1/l2 penalty over weight matrices (0.0 when both factors are 0)."""
        if not (self.l1 or self.l2):
            return 0.0
        total: torch.Tensor | float = 0.0
        for weight in self._penalised:
            if self.l1:
                total = total + self.l1 * weight.abs().sum()
            if self.l2:
                total = total + self.l2 * weight.pow(2).sum()
        return total

    def step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int, stage: Stage) -> torch.Tensor:
        """Cross-entropy plus penalties; training sums the epoch's accuracy and NLL, other stages log metrics."""
        x, y = batch
        logits = self(x)
        try:
            if stage == "train":
                return self._train_step(logits, y)
            nll = self._per_sample_nll(logits, y)
        except (IndexError, RuntimeError):  # a label >= C fails inside the loss: name it instead (no cost otherwise)
            check_targets("targets", y, None, max(2, self.num_outputs))
            raise
        loss = nll.mean() + self.penalty()
        preds = (logits.squeeze(-1) > 0).long() if self.binary else logits.argmax(dim=-1)
        acc, mean_nll = getattr(self, f"{stage}_acc"), getattr(self, f"{stage}_nll")
        acc.update(preds, y)
        mean_nll.update(nll.detach())
        # Lightning computes, syncs and resets logged Metric objects at epoch end. Passing a Metric to
        # self.log costs a walk over its state on every call; training metrics are therefore logged once
        # per epoch, in on_train_epoch_end (see lit_deep.modules._logging).
        batch_size = y.shape[0]
        self.log(f"{stage}_acc", acc, on_step=False, on_epoch=True, prog_bar=stage != "test", batch_size=batch_size)
        self.log(f"{stage}_nll", mean_nll, on_step=False, on_epoch=True, batch_size=batch_size)
        self._update_calibration(stage, self.probabilities(logits.detach()), y)
        return loss

    def _update_calibration(self, stage: str, probs: torch.Tensor, y: torch.Tensor) -> None:
        """Brier score, adaptive ECE and AURC of the stage (``{stage}_brier``, ``_ace``, ``_aurc``), per epoch."""
        for key in ("brier", "ace", "aurc"):
            metric: Metric = getattr(self, f"{stage}_{key}")
            metric.update(probs, y)
            self.log(f"{stage}_{key}", metric, on_step=False, on_epoch=True, batch_size=y.shape[0])

    def _train_step(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # The fewest tensor ops: per-image NLLs are not needed to train. Multi-class: the fused mean cross-entropy,
        # whose gradients are bitwise those of the per-image form's mean; binary keeps the per-image form (its
        # fused mean differs in the last bit). No penalty op at all without l1/l2.
        detached = logits.detach()
        if self.binary:
            flat = logits.squeeze(-1)
            nll = F.binary_cross_entropy_with_logits(flat, y.float(), reduction="none")
            loss = nll.mean()
            self._train_nll.add_(nll.detach().sum())
            preds = (detached.squeeze(-1) > 0).long()
        else:
            loss = F.cross_entropy(logits, y)
            self._train_nll.add_(loss.detach(), alpha=y.shape[0])
            preds = detached.argmax(dim=-1)
        self._train_correct.add_((preds == y).sum())
        self._train_seen += y.shape[0]
        return loss + self.penalty() if self.l1 or self.l2 else loss

    # ----------------------------------------------------------------- Lightning hooks
    def on_train_epoch_end(self) -> None:
        """Log the epoch's ``train_acc`` and ``train_nll`` (reduced over DDP ranks by torchmetrics) and reset."""
        correct, nll_sum, count = int(self._train_correct), float(self._train_nll), self._train_seen
        if count:
            acc: Metric = self.train_acc  # type: ignore[assignment]  # set with setattr in __init__
            mean_nll: Metric = self.train_nll  # type: ignore[assignment]
            acc.update(correct / count, weight=count)
            mean_nll.update(nll_sum / count, weight=count)
        self._train_correct.zero_()
        self._train_nll.zero_()
        self._train_seen = 0
        super().on_train_epoch_end()

    def on_validation_epoch_end(self) -> None:
        """Log ``val_loss``: the validation NLL plus the penalty (what Keras calls ``val_loss``)."""
        penalty = self.penalty()
        penalty_value = float(penalty.detach()) if isinstance(penalty, torch.Tensor) else penalty
        # val_nll.compute() is already reduced over ranks; sync_dist averages identical values (no-op, no warning).
        val_nll: MeanMetric = self.val_nll  # type: ignore[assignment]  # set with setattr in __init__
        self.log("val_loss", val_nll.compute() + penalty_value, prog_bar=True, sync_dist=True)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        """Update the test metrics; with ``mc_samples`` they score the MC-dropout mean prediction.

        With ``mc_samples = T > 0`` the test accuracy and NLL are those of the mean of ``T`` stochastic passes
        (:func:`~lit_deep.uncertainty.mc_predict`, ordinary dropout switched on), the prediction MC dropout
        is for; masks are seeded by ``mc_seed`` and the image's position in the test loader.
        """
        if self.mc_samples == 0:
            self.step(batch, batch_idx, "test")
            return
        from lit_deep.uncertainty import mc_predict

        x, y = batch
        known = self._test_batches
        if known is not None and batch_idx < len(known) and known[batch_idx].numel() == x.shape[0]:
            indices = known[batch_idx]  # the dataset indices, so an image's masks do not depend on its rank
        else:
            indices = torch.arange(self._test_seen, self._test_seen + x.shape[0])
        self._test_seen += x.shape[0]
        mc = mc_predict(self.model, x, self.mc_samples, seed=self._test_seed, enable_dropout=True, indices=indices)
        probs = mc.probs.to(y.device)  # the labels' device: scores are compared where the batch lives
        nll = -probs.gather(1, y[:, None]).clamp_min(1e-12).log().squeeze(1)
        acc: Metric = self.test_acc  # type: ignore[assignment]  # set with setattr in __init__
        mean_nll: Metric = self.test_nll  # type: ignore[assignment]
        acc.update(probs.argmax(dim=-1), y)
        mean_nll.update(nll)
        self.log("test_acc", acc, on_step=False, on_epoch=True, batch_size=y.shape[0])
        self.log("test_nll", mean_nll, on_step=False, on_epoch=True, batch_size=y.shape[0])
        self._update_calibration("test", probs, y)

    def on_test_start(self) -> None:
        """MC test scoring: read the test batches' dataset indices (they seed each image's dropout masks).

        ``mc_seed=None`` draws one seed per test run (from the operating system: the generators are left alone), on
        rank 0, shared with every rank.

        Only from a sampler that iterates in a fixed order: drawing a shuffling sampler's order here would not
        give the order the loop then draws (and would consume random numbers). A shuffled test loader seeds
        by position in the loop instead.
        """
        from lit_deep.modules.mc_predictor import index_batches, shuffles

        super().on_test_start()  # accumulators wide under *-true precision
        loaders = self.trainer.test_dataloaders
        first = loaders[0] if isinstance(loaders, (list, tuple)) else loaders
        self._test_batches = index_batches(first) if self.mc_samples and not shuffles(first) else None
        self._test_seen = 0
        self._test_seed = settle_seed(self.hparams.get("mc_seed"), self.trainer)

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        """Class probabilities ``[B, C]`` for a batch ``x`` or ``(x, y)`` (``mc_predict_step`` if ``mc_samples``)."""
        x = batch_inputs(batch)
        return self.probabilities(self(x))

    def mc_predict_step(self, dataloader_iter: Iterator[Any]) -> MCPrediction | None:
        """The ``predict_step`` with ``mc_samples``: one dataloader's MC prediction, gathered across ranks."""
        assert self.mc_predictor is not None
        return self.mc_predictor.predict(self, dataloader_iter)

    def on_predict_start(self) -> None:
        """MC prediction: read the predict batches' dataset indices and settle the seed."""
        if self.mc_predictor is not None:
            self.mc_predictor.start(self.trainer)
