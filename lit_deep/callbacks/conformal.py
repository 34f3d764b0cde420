"""``ConformalPrediction``: calibrate conformal sets on the validation split when training ends; score them in test."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from typing_extensions import override

from lit_deep._validate import check_bool, check_probability, check_seed
from lit_deep.callbacks._gather import gather_rows
from lit_deep.uncertainty import TemperatureScaled
from lit_deep.uncertainty.conformal import (
    ConformalCalibration,
    Method,
    calibrate_scores,
    conformity_scores,
    prediction_sets,
)

__all__ = ["ConformalPrediction"]

_SEED_RANGE = 2**62


class ConformalPrediction(Callback):
    """Calibrate split conformal prediction sets on the validation set when training ends; score them in ``test``.

    At ``on_train_end`` (on the training device, before the strategy tears down) the validation set is passed
    once through the LightningModule's ``.model`` (eval mode, no gradients; a
    :class:`~lit_deep.uncertainty.TemperatureScaled` wrapper is looked through, so the sets are those of the raw
    probabilities whether or not :class:`TemperatureScaling` also runs), the conformity scores of the true
    classes are gathered from every rank under DDP (``LightningModule.all_gather``) and
    :func:`~lit_deep.uncertainty.conformal.calibrate_scores` gives the quantile, the same on every rank.
    During ``trainer.test`` the prediction sets of each test batch are built from the same probabilities and
    ``test_coverage`` (share of sets holding the true class) and ``test_set_size`` (mean classes per set) are
    logged, summed over ranks.

    Probabilities are ``pl_module.probabilities(logits)`` where the module has that method (as
    :class:`~lit_deep.Classifier`: softmax, or ``[1 - p, p]`` for one logit), else the softmax: one
    deterministic pass, also for a Classifier with ``mc_samples`` (for MC-dropout or ensemble sets, calibrate
    those probabilities with :func:`~lit_deep.uncertainty.conformal_calibrate` directly). The whole
    validation loader is read (``limit_val_batches`` is not applied). The validation examples must not be
    the ones that trained the model; early stopping or checkpoint selection on them makes the guarantee
    slightly optimistic.

    Args:
        alpha: the miscoverage, in ``(0, 1)``.
        method: ``"lac"``, ``"aps"`` or ``"raps"`` (:mod:`lit_deep.uncertainty.conformal`).
        lam: the RAPS penalty.
        k_reg: the ranks RAPS leaves unpenalised.
        randomized: the randomized APS/RAPS variant (exact coverage) or the deterministic one (conservative).
        seed: seeds the uniform draws of randomized APS/RAPS (per rank and batch; ``None``: torch's generator).
        verbose: log the calibrated quantile.

    Attributes:
        calibration: the :class:`~lit_deep.uncertainty.conformal.ConformalCalibration` (``None`` before a fit);
            saved in checkpoints.
        coverage: the last ``trainer.test``'s coverage (``None`` before one).
        set_size: the last ``trainer.test``'s mean set size.

    Example::

        >>> cb = ConformalPrediction(alpha=0.1, method="lac")
        >>> cb.load_state_dict({"calibration": {"method": "lac", "alpha": 0.1, "quantile": 0.8, "n": 99}})
        >>> cb.calibration.quantile, cb.state_dict()["calibration"]["n"]
        (0.8, 99)
    """

    def __init__(
        self,
        alpha: float = 0.1,
        method: Method = "aps",
        lam: float = 0.1,
        k_reg: int = 1,
        randomized: bool = True,
        seed: int | None = 0,
        verbose: bool = True,
    ) -> None:
        self.alpha = check_probability("alpha", alpha, lower_inclusive=False)
        calibrate_scores(torch.zeros(1), self.alpha, method, lam, k_reg, randomized)  # checks the parameters
        self.method: Method = method
        self.lam = lam
        self.k_reg = k_reg
        self.randomized = randomized
        self.seed = check_seed("seed", seed)
        self.verbose = check_bool("verbose", verbose)
        self.calibration: ConformalCalibration | None = None
        self.coverage: float | None = None
        self.set_size: float | None = None
        self._totals: torch.Tensor | None = None
        self._generator: torch.Generator | None = None

    # ----------------------------------------------------------------- probabilities
    @staticmethod
    def _model(pl_module: pl.LightningModule) -> torch.nn.Module:
        model = getattr(pl_module, "model", None)
        if not isinstance(model, torch.nn.Module):
            raise ValueError(
                f"pl_module: ConformalPrediction needs the network in `.model`, {type(pl_module).__name__} has none"
            )
        return model.model if isinstance(model, TemperatureScaled) else model

    def _probs(self, pl_module: pl.LightningModule, x: Any) -> torch.Tensor:
        logits = self._model(pl_module)(x)
        to_probs = getattr(pl_module, "probabilities", None)
        probs = to_probs(logits) if callable(to_probs) else logits.softmax(dim=-1)
        assert isinstance(probs, torch.Tensor)
        return probs

    def _next_seed(self) -> int | None:
        if self._generator is None:
            return None
        return int(torch.randint(_SEED_RANGE, (1,), generator=self._generator))

    def _start_draws(self, trainer: pl.Trainer, stream: int) -> None:
        """A CPU generator per rank and stage, from which each batch draws the seed of its ``u``."""
        self._generator = None
        if self.seed is not None:
            self._generator = torch.Generator().manual_seed(self.seed * 1_000_003 + 2 * trainer.global_rank + stream)

    # ----------------------------------------------------------------- calibration
    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loaders = trainer.val_dataloaders
        loader = loaders[0] if isinstance(loaders, (list, tuple)) and loaders else loaders
        if loader is None or isinstance(loader, (list, tuple)):
            rank_zero_warn("ConformalPrediction: fit ran no validation dataloader; the sets stay uncalibrated")
            return
        self.calibration = self._calibrate(trainer, pl_module, loader)
        if self.verbose:
            rank_zero_info(
                f"ConformalPrediction: {self.method} quantile {self.calibration.quantile:.4f} at alpha "
                f"{self.alpha} ({self.calibration.n} validation examples)"
            )

    def _calibrate(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loader: Any) -> ConformalCalibration:
        model = self._model(pl_module)
        was_training = model.training
        model.eval()
        probs, targets = [], []
        precision = trainer.precision_plugin
        try:
            with torch.no_grad(), precision.forward_context():
                for batch in loader:
                    x, y = trainer.strategy.batch_to_device(batch)
                    probs.append(self._probs(pl_module, precision.convert_input(x)).float())
                    targets.append(y)
        finally:
            model.train(was_training)
        self._start_draws(trainer, stream=0)
        if probs:
            scores = conformity_scores(
                torch.cat(probs), torch.cat(targets), self.method, self.lam, self.k_reg, self.randomized,
                self._next_seed(),
            )  # fmt: skip
        else:
            scores = torch.zeros(0, dtype=torch.float64, device=pl_module.device)
        scores = gather_rows(pl_module, scores.reshape(-1))
        if not scores.numel():
            raise ValueError("ConformalPrediction: the validation dataloader is empty")
        return calibrate_scores(scores, self.alpha, self.method, self.lam, self.k_reg, self.randomized)

    # ----------------------------------------------------------------- test
    @override
    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._totals = torch.zeros(3, dtype=torch.float64, device=pl_module.device)  # covered, set sizes, count
        self._start_draws(trainer, stream=1)
        if self.calibration is None:
            rank_zero_warn("ConformalPrediction: not calibrated (no fit, or a fit without validation): no test sets")

    @override
    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self.calibration is None or self._totals is None:
            return
        x, y = batch
        with torch.no_grad():
            sets = prediction_sets(self._probs(pl_module, x).float(), self.calibration, self._next_seed())
        y = y.to(sets.device).long()
        covered = sets.gather(1, y[:, None]).sum()
        self._totals += torch.stack([covered, sets.sum(), torch.tensor(y.numel(), device=sets.device)]).to(self._totals)

    @override
    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.calibration is None or self._totals is None:
            return
        totals = self._totals
        if trainer.world_size > 1:
            gathered = pl_module.all_gather(totals)
            assert isinstance(gathered, torch.Tensor)
            totals = gathered.reshape(-1, 3).sum(dim=0)
        covered, sizes, count = totals.tolist()
        if not count:
            return
        self.coverage, self.set_size = covered / count, sizes / count
        # Already summed over ranks: sync_dist averages identical values (no change, no DDP warning).
        pl_module.log("test_coverage", self.coverage, sync_dist=True)
        pl_module.log("test_set_size", self.set_size, sync_dist=True)

    # ----------------------------------------------------------------- checkpoints
    @override
    def state_dict(self) -> dict[str, Any]:
        return {"calibration": self.calibration.to_dict() if self.calibration is not None else None}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict.get("calibration")
        self.calibration = ConformalCalibration(**saved) if saved is not None else None
