"""``TemperatureScaling``: fit the temperature when ``fit`` ends (validation set); apply it in test and predict."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override

from lit_deep._validate import check_int
from lit_deep.callbacks._gather import gather_rows
from lit_deep.uncertainty.temperature import TemperatureScaled, logits_and_targets, temperature_from_logits

__all__ = ["TemperatureScaling"]


class TemperatureScaling(Callback):
    """Fit one temperature on the validation set when training ends; scale the logits in ``test`` and ``predict``.

    The LightningModule must hold its network in ``.model`` (as :class:`~lit_deep.Classifier` does). At
    ``on_train_end`` (on the training device, before Lightning's teardown; inputs in the model's dtype, so
    ``bf16-true`` works) the validation logits are computed once (eval mode, dropout off; gathered from every rank
    on the strategy's device under DDP, so all ranks fit the same ``T``) and
    :func:`~lit_deep.uncertainty.temperature.temperature_from_logits` fits ``T`` (in float32). During ``test`` and
    ``predict`` ``.model`` is replaced by
    :class:`~lit_deep.uncertainty.TemperatureScaled` (the original is put back at the end), so MC-dropout
    prediction divides the logits of every sample by ``T``.

    Args:
        max_iter: L-BFGS iterations.
        verbose: log the fitted temperature.

    Attributes:
        temperature: the fitted ``T`` (``None`` before a fit); saved in checkpoints.

    Example::

        >>> cb = TemperatureScaling()
        >>> cb.load_state_dict({"temperature": 1.5})
        >>> cb.temperature, cb.state_dict()
        (1.5, {'temperature': 1.5})
    """

    def __init__(self, max_iter: int = 100, verbose: bool = True) -> None:
        check_int("max_iter", max_iter, minimum=1)
        self.max_iter = max_iter
        self.verbose = verbose
        self.temperature: float | None = None
        self._original: torch.nn.Module | None = None

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Not on_fit_end: Lightning runs that after teardown moved the model back to the CPU, where under DDP the
        # gather would hand CPU tensors to NCCL and on one GPU the validation pass would run on the CPU.
        self.temperature = self._fit(trainer, pl_module)
        if self.verbose:
            rank_zero_info(f"TemperatureScaling: T = {self.temperature:.4f} (fitted on the validation set)")

    def _fit(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> float:
        model = self._model(pl_module)
        loaders = trainer.val_dataloaders
        loader = loaders[0] if isinstance(loaders, (list, tuple)) else loaders
        if loader is None:
            raise ValueError("TemperatureScaling: fit has no validation dataloader to fit the temperature on")
        logits, targets = logits_and_targets(model, loader)
        logits = gather_rows(pl_module, logits).cpu()
        targets = gather_rows(pl_module, targets).cpu()
        return temperature_from_logits(logits, targets, self.max_iter)

    @staticmethod
    def _model(pl_module: pl.LightningModule) -> torch.nn.Module:
        model = getattr(pl_module, "model", None)
        if not isinstance(model, torch.nn.Module):
            raise ValueError(
                f"pl_module: TemperatureScaling needs the network in `.model`, {type(pl_module).__name__} has none"
            )
        return model

    def _apply(self, pl_module: pl.LightningModule) -> None:
        if self.temperature is None or self._original is not None:
            return
        self._original = self._model(pl_module)
        scaled = TemperatureScaled(self._original, self.temperature)
        scaled.train(self._original.training)
        pl_module.model = scaled

    def _restore(self, pl_module: pl.LightningModule) -> None:
        if self._original is not None:
            pl_module.model = self._original
            self._original = None

    @override
    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._apply(pl_module)

    @override
    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore(pl_module)

    @override
    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._apply(pl_module)

    @override
    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore(pl_module)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.temperature = state_dict.get("temperature")
