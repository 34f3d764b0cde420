"""Publishing any trained model and loading it back, through the real huggingface_hub client and the loopback Hub."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import huggingface_hub.constants
import lightning.pytorch as pl
import pytest
import torch

from lit_deep import Classifier, zoo
from lit_deep.data import FashionMNISTDataModule
from lit_deep.models import MLP, describe, read_checkpoint
from lit_deep.zoo.release import cli, push, save_pretrained
from tests.conftest import FakeFMNIST
from tests.zoo.hub_server import HubServer


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[HubServer]:
    server = HubServer().start()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)  # plain LFS, as the server speaks
    yield server
    server.stop()


def _trained(data: FakeFMNIST, tmp_path: Path, standardize: bool) -> tuple[Classifier, FashionMNISTDataModule]:
    dm = FashionMNISTDataModule(str(data.path), batch_size=16, val_size=10, standardize=standardize)
    clf = Classifier(MLP(hidden=(8,), dropout=0.2, seed=0), lr=0.01)
    trainer = pl.Trainer(
        max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path
    )
    trainer.fit(clf, dm)
    trainer.save_checkpoint(tmp_path / "run.ckpt")
    return clf, dm


@pytest.mark.parametrize("standardize", [False, True])
def test_push_model_then_load_and_fine_tune(
    hub: HubServer, tiny_fmnist: FakeFMNIST, tmp_path: Path, standardize: bool
) -> None:
    clf, dm = _trained(tiny_fmnist, tmp_path, standardize)
    commit = push(clf, "you/fmnist-mlp", datamodule=dm, data_dir=str(tiny_fmnist.path))
    assert len(commit) == 40
    files = hub.state.repos["you/fmnist-mlp"]
    assert {"config.json", "model.safetensors", "README.md"} <= set(files)
    config = json.loads(files["config.json"])
    assert config["metrics"]["test_acc"] >= 0 and {"test_nll", "test_ece"} <= set(config["metrics"])
    assert "library_name: lit_deep" in files["README.md"].decode()
    assert 'zoo.load("you/fmnist-mlp")' in files["README.md"].decode()

    loaded = zoo.load("you/fmnist-mlp")
    assert loaded.zoo_info.commit == commit
    raw = tiny_fmnist.test_images[:5]
    inputs = raw.float().div(255).unsqueeze(1)
    if standardize:
        assert dm.mean is not None and dm.std is not None
        inputs = (inputs - dm.mean) / dm.std
    clf.eval()
    assert torch.allclose(loaded(raw), clf(inputs), atol=1e-5)  # the package takes raw images
    assert describe(loaded)["parts"]["backbone"]["init_args"]["modules"][0]["init_args"]["per_pixel"] is standardize

    tuned = zoo.classifier("you/fmnist-mlp", num_classes=3)
    assert tuned.model.head.out_features == 3 and tuned.model.training


def test_cli_push_of_a_checkpoint_then_load(hub: HubServer, tiny_fmnist: FakeFMNIST, tmp_path: Path) -> None:
    clf, _ = _trained(tiny_fmnist, tmp_path, standardize=True)
    args = ["push", "--checkpoint", str(tmp_path / "run.ckpt"), "--repo-id", "you/from-ckpt"]
    assert cli.main([*args, "--data-dir", str(tiny_fmnist.path)]) == 0
    loaded = zoo.load("hf-hub:you/from-ckpt")
    clf.eval()
    assert torch.equal(loaded.head.weight, clf.model.head.weight)


def test_push_without_a_token_is_one_clear_line(
    hub: HubServer,
    tiny_fmnist: FakeFMNIST,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _trained(tiny_fmnist, tmp_path, standardize=False)
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "no-login"))
    args = [
        "push",
        "--checkpoint",
        str(tmp_path / "run.ckpt"),
        "--repo-id",
        "you/x",
        "--data-dir",
        str(tiny_fmnist.path),
    ]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "HF_TOKEN" in err


def test_save_pretrained_writes_a_folder_that_loads_locally_then_pushes_as_is(
    hub: HubServer, tiny_fmnist: FakeFMNIST, tmp_path: Path
) -> None:
    clf, dm = _trained(tiny_fmnist, tmp_path, standardize=True)
    folder = tmp_path / "my-mlp"
    result = save_pretrained(clf, folder, datamodule=dm, data_dir=str(tiny_fmnist.path))
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert result.folder == folder and len(result.sha256) == 64
    local = zoo.load(str(folder))  # a local folder, not read as the repo id "<tmp>/my-mlp"
    assert local.zoo_info.source == "local" and local.zoo_info.sha256 == result.sha256
    raw = tiny_fmnist.test_images[:4]
    clf.eval()
    assert dm.mean is not None and dm.std is not None
    assert torch.allclose(local(raw), clf((raw.float().div(255).unsqueeze(1) - dm.mean) / dm.std), atol=1e-5)
    with pytest.raises(ValueError, match="revision: a local folder .* has no revisions"):
        zoo.load(str(folder), revision="main")

    commit = push(folder, "you/from-folder")  # the folder is uploaded as written
    assert hub.state.repos["you/from-folder"]["model.safetensors"] == (folder / "model.safetensors").read_bytes()
    assert zoo.load("you/from-folder").zoo_info.commit == commit


def test_checkpoint_records_its_module_class_and_export_reads_it_once(tiny_fmnist: FakeFMNIST, tmp_path: Path) -> None:
    _trained(tiny_fmnist, tmp_path, standardize=False)
    found = read_checkpoint(tmp_path / "run.ckpt", require_model=True)
    assert found.module_class == "lit_deep.modules.classifier.Classifier"
    saved = torch.load(tmp_path / "run.ckpt", weights_only=True)
    del saved["lit_deep_module"]
    torch.save(saved, tmp_path / "anonymous.ckpt")
    with pytest.raises(
        ValueError, match=r"anonymous.ckpt': records no lit_deep LightningModule \(lit_deep_module: None\)"
    ):
        save_pretrained(tmp_path / "anonymous.ckpt", tmp_path / "out", data_dir=str(tiny_fmnist.path))
