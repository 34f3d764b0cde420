"""Device-generic checks: each runs on the CPU and, where there is one, on a CUDA GPU (``make test-gpu``).

gloo accepts CPU tensors where NCCL refuses them, so these only show device mistakes on a GPU; on the CPU they
check the same code paths run.
"""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lit_deep import Classifier
from lit_deep.callbacks import TemperatureScaling
from lit_deep.data import FashionMNISTDataModule
from lit_deep.models import MLP
from lit_deep.modules import DivergenceError
from lit_deep.uncertainty import MCPrediction, deterministic_probs, mc_predict, ood_auroc


def _trainer(device: torch.device, tmp_path, **kwargs) -> pl.Trainer:  # noqa: ANN001
    return pl.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
        **kwargs,
    )


def test_mc_test_predict_and_temperature_on_the_device(device, tiny_fmnist, tmp_path) -> None:  # noqa: ANN001
    dm = FashionMNISTDataModule(str(tiny_fmnist.path), batch_size=16, val_size=10)
    clf = Classifier(MLP(hidden=(8,), dropout=0.2, seed=0), mc_samples=3, mc_seed=0)
    temperature = TemperatureScaling(verbose=False)
    trainer = _trainer(device, tmp_path, max_epochs=1, callbacks=[temperature])
    trainer.fit(clf, dm)
    assert temperature.temperature is not None
    assert 0.0 <= trainer.test(clf, dm, verbose=False)[0]["test_acc"] <= 1.0
    [prediction] = trainer.predict(clf, dm)
    assert isinstance(prediction, MCPrediction) and prediction.probs.shape == (20, 10)


def test_predictions_and_scores_stay_where_the_inputs_are(device) -> None:  # noqa: ANN001
    model = MLP(hidden=(8,), dropout=0.3, seed=0).to(device)
    x = torch.rand(6, 1, 28, 28, device=device)
    prediction = mc_predict(model, x, samples=4, seed=0, enable_dropout=True)
    assert prediction.probs.device.type == device.type and prediction.probs.dtype == torch.float32
    loader = DataLoader(TensorDataset(x.cpu(), torch.zeros(6, dtype=torch.long)), batch_size=4)
    from_loader = mc_predict(model, loader, samples=4, seed=0, enable_dropout=True)
    assert torch.allclose(from_loader.probs.to(device), prediction.probs)
    assert deterministic_probs(model, x).device.type == device.type
    scores = prediction.entropy
    assert 0.0 <= ood_auroc(scores[:3], scores[3:]) <= 1.0


def test_data_on_the_device_trains_to_the_same_parameters(device, tiny_fmnist, tmp_path) -> None:  # noqa: ANN001
    def fit(on_device: bool) -> tuple[dict[str, torch.Tensor], FashionMNISTDataModule]:
        dm = FashionMNISTDataModule(
            str(tiny_fmnist.path), batch_size=16, val_size=10, augment=True, standardize=True, on_device=on_device
        )
        clf = Classifier(MLP(hidden=(8,), seed=0), optimizer="sgd", lr=0.1)
        _trainer(device, tmp_path, max_epochs=2, deterministic=True).fit(clf, dm)
        return {k: v.cpu() for k, v in clf.state_dict().items()}, dm

    (plain, _), (moved, dm) = fit(False), fit(True)
    assert dm.train_set.inputs.device.type == device.type  # the splits live on the trainer's device
    assert dm.test_set.targets.device.type == device.type
    for key, value in plain.items():  # the same batches and augmentations (CPU generators) wherever the data is
        torch.testing.assert_close(moved[key], value, rtol=1e-5, atol=1e-6)


def test_augmentation_is_the_same_on_every_device(device) -> None:  # noqa: ANN001
    from lit_deep.data.augment import RandomShiftFlip

    x = torch.rand(8, 1, 28, 28)
    on_cpu = RandomShiftFlip(max_shift=2, seed=3)(x)
    there = RandomShiftFlip(max_shift=2, seed=3)(x.to(device))
    assert there.device.type == device.type
    assert torch.equal(there.cpu(), on_cpu)


def test_a_diverged_run_stops_at_once_on_the_cpu_and_by_the_next_logging_step_on_an_accelerator(
    device,
    tmp_path,  # noqa: ANN001
) -> None:
    # No host sync per step on an accelerator: the non-finite flag stays on the device and is read on the steps
    # that log (log_every_n_steps=4: steps 3, 7, ...). Batch 1 holds NaN inputs, so the loss is NaN from step 1.
    x = torch.rand(32, 1, 28, 28)
    x[4:8] = float("nan")
    loader = DataLoader(TensorDataset(x, torch.arange(32) % 10), batch_size=4)
    clf = Classifier(MLP(hidden=(8,), seed=0), lr=0.01)
    trainer = _trainer(device, tmp_path, max_epochs=1, log_every_n_steps=4)
    where = "global step 1, epoch 0, batch 1" if device.type == "cpu" else "global step 3, epoch 0, batch 3"
    with pytest.raises(DivergenceError, match=f"train_loss is nan at {where};"):
        trainer.fit(clf, loader)
