"""bf16 for real on the CPU: fit with FreezeUnfreeze, MaxNorm and TemperatureScaling, then MC test and predict.

Under ``bf16-true`` Lightning casts the whole module (metric states and float64 sums included) to bf16; under
``bf16-mixed`` the forward runs under autocast. Either way the logged epoch NLL must be the mean step loss (not a
saturated bf16 sum), probabilities and MC fields come back in float32, and the temperature is fitted.
"""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from lit_deep import Classifier
from lit_deep.callbacks import FreezeUnfreeze, MaxNorm, TemperatureScaling
from lit_deep.data import FashionMNISTDataModule
from lit_deep.models import MLP
from lit_deep.uncertainty import MCPrediction


class _StepLosses(Callback):
    def __init__(self) -> None:
        self.losses: list[tuple[float, int]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.losses.append((float(outputs["loss"]), int(batch[1].shape[0])))


@pytest.mark.parametrize("precision", ["bf16-true", "bf16-mixed", "16-true"])
def test_bf16_fit_test_and_mc_predict(precision: str, make_fmnist, tmp_path) -> None:  # noqa: ANN001
    data = make_fmnist(n_train=330, n_test=40)
    dm = FashionMNISTDataModule(str(data.path), batch_size=32, val_size=40)
    clf = Classifier(MLP(hidden=(32, 16), dropout=0.2, seed=0), lr=0.01, mc_samples=4, mc_seed=0)
    steps, temperature = _StepLosses(), TemperatureScaling(verbose=False)
    trainer = pl.Trainer(
        accelerator="cpu",
        precision=precision,
        max_epochs=2,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
        callbacks=[FreezeUnfreeze(unfreeze_at_epoch=1), MaxNorm(max_value=3.0), temperature, steps],
    )
    trainer.fit(clf, dm)
    last_epoch = steps.losses[len(steps.losses) // 2 :]
    mean_step_loss = sum(loss * n for loss, n in last_epoch) / sum(n for _, n in last_epoch)
    assert float(trainer.callback_metrics["train_nll"]) == pytest.approx(mean_step_loss, abs=1e-2)
    assert clf._train_nll.dtype == torch.float64
    assert temperature.temperature is not None and 0 < temperature.temperature < float("inf")  # random labels: large

    metrics = trainer.test(clf, dm, verbose=False)[0]
    assert 0.0 <= metrics["test_acc"] <= 1.0 and 0.0 < metrics["test_nll"] < 10.0
    [prediction] = trainer.predict(clf, dm)
    assert isinstance(prediction, MCPrediction) and prediction.probs.shape == (40, 10)
    assert prediction.probs.dtype == torch.float32 and prediction.entropy.dtype == torch.float32
    assert torch.allclose(prediction.probs.sum(-1), torch.ones(40), atol=1e-4)
    probs = clf.probabilities(torch.tensor([[5.8, 0.0]], dtype=torch.bfloat16))
    assert probs.dtype == torch.float32 and probs[0, 0] < 1.0  # p = 0.997 does not round to 1
