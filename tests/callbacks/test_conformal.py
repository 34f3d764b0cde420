"""ConformalPrediction: calibrated on the validation set at the end of fit, scored in test, kept in checkpoints."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from lit_deep import Classifier
from lit_deep.callbacks import ConformalPrediction, TemperatureScaling
from lit_deep.data import FashionMNISTDataModule
from lit_deep.models import MLP
from lit_deep.uncertainty import conformal_calibrate, deterministic_probs, prediction_sets, set_coverage
from lit_deep.uncertainty.conformal import mean_set_size


def _trainer(tmp_path: Path, callbacks: list, **kwargs) -> pl.Trainer:  # type: ignore[type-arg]
    options = {
        "accelerator": "cpu", "max_epochs": 2, "logger": False, "enable_checkpointing": False,
        "enable_progress_bar": False, "enable_model_summary": False, "default_root_dir": tmp_path,
    }  # fmt: skip
    return pl.Trainer(callbacks=callbacks, **{**options, **kwargs})


@pytest.fixture
def dm(make_fmnist) -> FashionMNISTDataModule:  # type: ignore[no-untyped-def]
    return FashionMNISTDataModule(str(make_fmnist(n_train=160, n_test=40).path), val_size=60, eval_batch_size=16)


def _val_test(dm: FashionMNISTDataModule) -> tuple[torch.Tensor, ...]:
    dm.setup("fit")
    dm.setup("test")
    assert dm.val_set is not None and dm.test_set is not None
    return dm.val_set.inputs, dm.val_set.targets, dm.test_set.inputs, dm.test_set.targets


def test_calibrates_on_validation_and_logs_test_coverage(dm: FashionMNISTDataModule, tmp_path: Path) -> None:
    clf = Classifier(MLP(hidden=(16,), seed=0), lr=0.01)
    cb = ConformalPrediction(alpha=0.2, method="lac", verbose=False)
    trainer = _trainer(tmp_path, [cb])
    trainer.fit(clf, dm)
    x_val, y_val, x_test, y_test = _val_test(dm)
    expected = conformal_calibrate(deterministic_probs(clf.model, x_val), y_val, alpha=0.2, method="lac")
    assert cb.calibration is not None
    assert (cb.calibration.n, cb.calibration.method) == (60, "lac")
    assert cb.calibration.quantile == pytest.approx(expected.quantile, abs=1e-6)
    (results,) = trainer.test(clf, dm, verbose=False)
    sets = prediction_sets(deterministic_probs(clf.model, x_test), cb.calibration)
    assert results["test_coverage"] == pytest.approx(set_coverage(sets, y_test), abs=1e-6)
    assert results["test_set_size"] == pytest.approx(mean_set_size(sets), abs=1e-6)
    assert (cb.coverage, cb.set_size) == (
        pytest.approx(results["test_coverage"]),
        pytest.approx(results["test_set_size"]),
    )
    assert "test_acc" in results  # the module's own metrics still logged


def test_randomized_aps_is_reproducible_with_a_seed(dm: FashionMNISTDataModule, tmp_path: Path) -> None:
    runs = []
    for _ in range(2):
        clf = Classifier(MLP(hidden=(16,), seed=0), lr=0.01)
        cb = ConformalPrediction(alpha=0.1, method="raps", seed=3, verbose=False)
        pl.seed_everything(0, verbose=False)
        trainer = _trainer(tmp_path, [cb], max_epochs=1)
        trainer.fit(clf, dm)
        (results,) = trainer.test(clf, dm, verbose=False)
        assert cb.calibration is not None and cb.calibration.randomized
        runs.append((cb.calibration, results["test_coverage"], results["test_set_size"]))
    assert runs[0] == runs[1]


def test_looks_through_temperature_scaling(dm: FashionMNISTDataModule, tmp_path: Path) -> None:
    clf = Classifier(MLP(hidden=(16,), seed=0), lr=0.01)
    cb, ts = ConformalPrediction(method="lac", verbose=False), TemperatureScaling(verbose=False)
    trainer = _trainer(tmp_path, [ts, cb])
    trainer.fit(clf, dm)
    (results,) = trainer.test(clf, dm, verbose=False)
    assert ts.temperature is not None and cb.calibration is not None
    _, _, x_test, y_test = _val_test(dm)
    raw = prediction_sets(deterministic_probs(clf.model, x_test), cb.calibration)
    assert results["test_coverage"] == pytest.approx(set_coverage(raw, y_test), abs=1e-6)


def test_state_is_saved_in_checkpoints(dm: FashionMNISTDataModule, tmp_path: Path) -> None:
    clf = Classifier(MLP(hidden=(16,), seed=0), lr=0.01)
    cb = ConformalPrediction(method="aps", randomized=False, verbose=False)
    trainer = _trainer(tmp_path, [cb], max_epochs=1)
    trainer.fit(clf, dm)
    path = tmp_path / "conformal.ckpt"
    trainer.save_checkpoint(path)
    saved = torch.load(path, weights_only=False)["callbacks"]
    assert {"calibration": cb.calibration.to_dict()} in saved.values()  # type: ignore[union-attr]
    fresh = ConformalPrediction(method="aps", randomized=False, verbose=False)
    (results,) = _trainer(tmp_path, [fresh]).test(
        Classifier(MLP(hidden=(16,), seed=1)), dm, ckpt_path=path, verbose=False
    )
    assert fresh.calibration == cb.calibration
    assert "test_coverage" in results and "test_set_size" in results


def test_without_validation_it_warns_and_logs_nothing(dm: FashionMNISTDataModule, tmp_path: Path) -> None:
    clf = Classifier(MLP(hidden=(16,), seed=0), lr=0.01)
    cb = ConformalPrediction(verbose=False)
    trainer = _trainer(tmp_path, [cb], max_epochs=1, limit_val_batches=0, num_sanity_val_steps=0)
    with pytest.warns(UserWarning, match="no validation dataloader"):
        trainer.fit(clf, dm)
    assert cb.calibration is None
    with pytest.warns(UserWarning, match="not calibrated"):
        (results,) = trainer.test(clf, dm, verbose=False)
    assert "test_coverage" not in results


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": 1.5}, "alpha: must be a number in (0, 1), got 1.5"),
        ({"method": "top"}, "method: must be one of ('lac', 'aps', 'raps'), got 'top'"),
        ({"lam": -0.1}, "lam: must be a finite number >= 0, got -0.1"),
        ({"k_reg": -1}, "k_reg: must be an integer >= 0, got -1"),
        ({"randomized": "yes"}, "randomized: must be True or False, got 'yes'"),
        ({"seed": 1.5}, "seed: must be None or an integer >= 0, got 1.5"),
        ({"verbose": 1}, "verbose: must be True or False, got 1"),
    ],
)
def test_bad_arguments_name_themselves(kwargs: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match="^" + __import__("re").escape(message)):
        ConformalPrediction(**kwargs)
