"""``save_pretrained`` of a registered model: a checkpoint becomes a zoo folder that computes what the run did."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from safetensors.torch import load_file

from lit_deep import Classifier
from lit_deep.data import FashionMNISTDataModule
from lit_deep.models import MLP, Autoencoder, build
from lit_deep.modules import AutoencoderModule
from lit_deep.zoo import REGISTRY
from lit_deep.zoo._integrity import sha256_file
from lit_deep.zoo.registry import PreprocessingSpec, ZooEntry
from lit_deep.zoo.release.cards import config_dict
from lit_deep.zoo.release.export import pin_line, remeasure, save_pretrained
from tests.conftest import FakeFMNIST, write_fake_fmnist

ENTRY = ZooEntry(
    name="mlp.exporttest",
    architecture={"class_path": "lit_deep.models.MLP", "init_args": {"hidden": [16], "num_classes": 10}},
    preprocessing=PreprocessingSpec(standardize="per_pixel"),
    task="full",
    class_names=tuple("abcdefghij"),
    sha256="",
    metrics={},
    summary="s",
    limits="l",
)
AE_ENTRY = dataclasses.replace(
    ENTRY,
    name="autoencoder.exporttest",
    architecture={"class_path": "lit_deep.models.Autoencoder", "init_args": {"hidden": [16, 4]}},
    preprocessing=PreprocessingSpec(),
    class_names=(),
    kind="autoencoder",
)


@pytest.fixture
def data(tmp_path: Path) -> FakeFMNIST:
    return write_fake_fmnist(tmp_path / "fmnist", n_train=80, n_test=30)


def _fit(module: pl.LightningModule, dm: FashionMNISTDataModule, tmp_path: Path) -> Path:
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        enable_checkpointing=False,
    )
    trainer.fit(module, dm)
    ckpt = tmp_path / "run.ckpt"
    trainer.save_checkpoint(ckpt)
    return ckpt


def test_export_keeps_the_training_time_standardisation(
    data: FakeFMNIST, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(REGISTRY, ENTRY.name, ENTRY)
    dm = FashionMNISTDataModule(str(data.path), standardize=True, val_size=20, batch_size=20)
    module = Classifier(MLP(hidden=(16,), num_classes=10, seed=0))
    ckpt = _fit(module, dm, tmp_path)
    result = save_pretrained(ckpt, tmp_path / "out" / ENTRY.name, name=ENTRY.name, data_dir=str(data.path))
    weights = tmp_path / "out" / ENTRY.name / "model.safetensors"
    assert result.sha256 == sha256_file(weights)
    assert set(result.metrics) == {"test_acc", "test_nll", "test_ece", "test_brier", "test_aurc"}
    assert set(result.extra_metrics) == {"lac_coverage", "lac_set_size", "aps_coverage", "aps_set_size"}
    written = json.loads((tmp_path / "out" / ENTRY.name / "config.json").read_text())
    assert written["model"] == config_dict(ENTRY)["model"]
    card = json.loads((tmp_path / "out" / ENTRY.name / "card.json").read_text())  # the registry's data, measured
    assert card["metrics"] == result.metrics and card["summary"] == ENTRY.summary and "sha256" not in card
    model = build(written["model"])
    model.load_state_dict(load_file(str(weights)), strict=True)
    raw = data.test_images[:8]  # uint8 straight in; the run saw standardised floats
    standardised = ((raw.float() / 255).unsqueeze(1) - dm.mean) / dm.std
    torch.testing.assert_close(model.eval()(raw), module.model.eval()(standardised))
    assert f'("{result.sha256}", "main")' in pin_line(ENTRY.name, result)


def test_export_of_an_autoencoder_reports_reconstruction_errors(
    data: FakeFMNIST, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(REGISTRY, AE_ENTRY.name, AE_ENTRY)
    dm = FashionMNISTDataModule(str(data.path), val_size=20, batch_size=20)
    ckpt = _fit(AutoencoderModule(Autoencoder(hidden=(16, 4), seed=0)), dm, tmp_path)
    result = save_pretrained(ckpt, tmp_path / "out" / AE_ENTRY.name, name=AE_ENTRY.name, data_dir=str(data.path))
    assert set(result.metrics) == {"test_mse", "test_bce"}
    assert 0 < result.metrics["test_mse"] < 1


def test_export_refuses_another_architecture(data: FakeFMNIST, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(REGISTRY, ENTRY.name, ENTRY)
    dm = FashionMNISTDataModule(str(data.path), standardize=True, val_size=20, batch_size=20)
    ckpt = _fit(Classifier(MLP(hidden=(12,), num_classes=10, seed=0)), dm, tmp_path)
    with pytest.raises(ValueError, match="ckpt: the checkpoint's architecture"):
        save_pretrained(ckpt, tmp_path / "out", name=ENTRY.name, data_dir=str(data.path))
    raw = FashionMNISTDataModule(str(data.path), standardize=False, val_size=20, batch_size=20)
    ckpt = _fit(Classifier(MLP(hidden=(16,), num_classes=10, seed=0)), raw, tmp_path)
    with pytest.raises(ValueError, match="ckpt: the run's data had standardize=False, mlp.exporttest needs True"):
        save_pretrained(ckpt, tmp_path / "out", name=ENTRY.name, data_dir=str(data.path))
    with pytest.raises(ValueError, match="missing.ckpt.: no such file"):
        save_pretrained(tmp_path / "missing.ckpt", tmp_path / "out", name=ENTRY.name)


def test_remeasure_reproduces_an_export_and_reports_what_it_does_not(
    data: FakeFMNIST, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(REGISTRY, ENTRY.name, ENTRY)
    dm = FashionMNISTDataModule(str(data.path), standardize=True, val_size=5, batch_size=20)
    ckpt = _fit(Classifier(MLP(hidden=(16,), num_classes=10, seed=0)), dm, tmp_path)
    folder = tmp_path / "out" / ENTRY.name
    result = save_pretrained(ckpt, folder, name=ENTRY.name, data_dir=str(data.path))
    exported = dataclasses.replace(ENTRY, sha256=result.sha256, metrics=result.metrics, extra_metrics={})
    monkeypatch.setitem(REGISTRY, ENTRY.name, exported)
    weights = (folder / "model.safetensors").read_bytes()
    entry, changed = remeasure(ENTRY.name, folder, str(data.path), val_size=5)
    assert changed == [] and entry.metrics == result.metrics
    assert json.loads((folder / "card.json").read_text())["metrics"] == result.metrics
    assert (folder / "model.safetensors").read_bytes() == weights  # the weights are untouched
    tampered = dataclasses.replace(exported, metrics={**result.metrics, "test_acc": 0.5})
    monkeypatch.setitem(REGISTRY, ENTRY.name, tampered)
    _, changed = remeasure(ENTRY.name, folder, str(data.path), val_size=5)
    assert changed == [f"{ENTRY.name}: test_acc stored 0.5, measured {result.metrics['test_acc']}"]


@pytest.mark.parametrize("entry", [ENTRY, AE_ENTRY], ids=["classifier", "autoencoder"])
def test_export_measures_on_the_device_asked_with_the_same_figures(
    entry: ZooEntry, device: torch.device, data: FakeFMNIST, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Where users train: measured on the GPU (cuda under `make test-gpu`), weights still written from the CPU.
    # The weights' bytes are the same from one export to the next (the metadata once came out in either order).
    monkeypatch.setitem(REGISTRY, entry.name, entry)
    dm = FashionMNISTDataModule(str(data.path), standardize=entry.kind != "autoencoder", val_size=20, batch_size=20)
    module = Classifier(MLP(hidden=(16,), num_classes=10, seed=0))
    if entry.kind == "autoencoder":
        module = AutoencoderModule(Autoencoder(hidden=(16, 4), seed=0))
    ckpt = _fit(module, dm, tmp_path)
    on_cpu = save_pretrained(ckpt, tmp_path / "cpu" / entry.name, name=entry.name, data_dir=str(data.path))
    again = save_pretrained(ckpt, tmp_path / "again" / entry.name, name=entry.name, data_dir=str(data.path))
    there = save_pretrained(
        ckpt, tmp_path / "dev" / entry.name, name=entry.name, data_dir=str(data.path), device=device
    )
    assert there.sha256 == again.sha256 == on_cpu.sha256
    assert there.metrics.keys() == on_cpu.metrics.keys()
    for key, value in on_cpu.metrics.items():
        assert there.metrics[key] == pytest.approx(value, abs=2e-4), key


def test_a_bad_device_is_refused_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from lit_deep.zoo.release import cli as zoo_cli

    with pytest.raises(ValueError, match=r"^device: must be a torch device such as 'cpu' or 'cuda:0', got 'gpu0'$"):
        save_pretrained(tmp_path / "missing.ckpt", tmp_path / "out", name=ENTRY.name, device="gpu0")
    args = ["export", "mlp.fmnist", "--ckpt", str(tmp_path / "x.ckpt"), "--out", str(tmp_path / "o")]
    args += ["--device", "gpu0"]
    assert zoo_cli.main(args) == 2
    assert "device: must be a torch device" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"^device: 'cuda' is not available here \(0 CUDA devices\)$"):
            save_pretrained(tmp_path / "missing.ckpt", tmp_path / "out", device="cuda")
