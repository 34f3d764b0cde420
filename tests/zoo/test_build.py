"""Preprocess, the allow-listed architecture builder and ZooModel (spec, heads, checkpoints)."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lit_deep import Classifier
from lit_deep.models import replace_head
from lit_deep.modules._spec import build_model, model_spec
from lit_deep.zoo import Preprocess, ZooModel, build_architecture
from lit_deep.zoo.cards import config_dict
from lit_deep.zoo.registry import REGISTRY
from tests.zoo.conftest import TinyZoo


def _tiny_model(tiny_zoo: TinyZoo) -> ZooModel:
    model = ZooModel(config_dict(tiny_zoo.entry))
    model.load_state_dict(tiny_zoo.state, strict=True)
    return model.eval()


def test_preprocess_accepts_uint8_float_and_missing_channel() -> None:
    pre = Preprocess((1, 28, 28), per_pixel=True)
    pre.mean.fill_(0.5)
    pre.std.fill_(0.5)
    images = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8)
    expected = (images.float() / 255 - 0.5) / 0.5
    torch.testing.assert_close(pre(images), expected.unsqueeze(1))
    torch.testing.assert_close(pre(images.unsqueeze(1).float() / 255), expected.unsqueeze(1))


def test_preprocess_rejects_bad_dtype_and_shape() -> None:
    pre = Preprocess((1, 28, 28))
    with pytest.raises(ValueError, match="x: expected uint8 or float images, got dtype torch.int64"):
        pre(torch.zeros(2, 28, 28, dtype=torch.long))
    with pytest.raises(ValueError, match=r"x: expected images of shape \[B, 1, 28, 28\].*got \[2, 3, 28, 28\]"):
        pre(torch.zeros(2, 3, 28, 28))


def test_build_architecture_only_imports_allow_listed_classes() -> None:
    with pytest.raises(ValueError, match="architecture: class_path must be one of .* got 'os.system'"):
        build_architecture({"class_path": "os.system", "init_args": {"command": "true"}})
    with pytest.raises(ValueError, match="architecture: MLP rejected init_args"):
        build_architecture({"class_path": "lit_deep.models.MLP", "init_args": {"bogus": 1}})


def test_zoo_model_rejects_a_config_without_architecture() -> None:
    with pytest.raises(ValueError, match="config: expected a zoo config.json"):
        ZooModel({"name": "x"})
    with pytest.raises(ValueError, match="num_classes: must be a positive integer, got 0"):
        ZooModel(config_dict(REGISTRY["mlp.fmnist"])).reset_head(0)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_registry_config_builds_with_preprocess_first(name: str) -> None:
    model = ZooModel(config_dict(REGISTRY[name]))
    assert isinstance(model.backbone[0], Preprocess)
    out = model.eval()(torch.zeros(2, 28, 28, dtype=torch.uint8))
    expected = (2, 1, 28, 28) if REGISTRY[name].kind == "autoencoder" else (2, len(REGISTRY[name].class_names))
    assert tuple(out.shape) == expected


def test_new_head_keeps_the_backbone_and_the_spec_rebuilds_the_shape(tiny_zoo: TinyZoo) -> None:
    model = _tiny_model(tiny_zoo)
    assert model.spec()["init_args"]["num_classes"] is None
    model.reset_head(5)
    spec = model.spec()
    assert spec["init_args"]["num_classes"] == 5
    rebuilt = build_model(spec)
    assert isinstance(rebuilt, ZooModel)
    assert rebuilt.head.out_features == 5
    assert set(rebuilt.state_dict()) == set(model.state_dict())


def test_replace_head_copies_the_backbone_and_keeps_a_spec(tiny_zoo: TinyZoo) -> None:
    model = _tiny_model(tiny_zoo)
    new = replace_head(model, 2)
    assert isinstance(new, ZooModel)
    assert model_spec(new)["init_args"]["num_classes"] == 2
    assert new.backbone[2].weight is not model.backbone[2].weight
    torch.testing.assert_close(new.backbone[2].weight, model.backbone[2].weight)


def test_autoencoder_zoo_model_becomes_a_classifier_on_its_encoder() -> None:
    model = ZooModel(config_dict(REGISTRY["autoencoder.fmnist"]), num_classes=3)
    assert tuple(model(torch.rand(2, 1, 28, 28)).shape) == (2, 3)
    assert tuple(model.encode(torch.rand(2, 28, 28)).shape) == (2, 100)
    assert build_model(model.spec()).head.out_features == 3


def test_classifier_checkpoint_rebuilds_the_zoo_model_without_download(tiny_zoo: TinyZoo, tmp_path: Path) -> None:
    model = _tiny_model(tiny_zoo).reset_head(2).train()
    module = Classifier(model, lr=0.01)
    data = TensorDataset(torch.rand(16, 1, 28, 28), torch.randint(0, 2, (16,)))  # raw [0, 1] pixels
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, DataLoader(data, batch_size=8))
    ckpt = tmp_path / "zoo.ckpt"
    trainer.save_checkpoint(ckpt)
    restored = Classifier.load_from_checkpoint(ckpt)  # no model argument, no network
    x = torch.rand(4, 28, 28)
    torch.testing.assert_close(restored.model.eval()(x), module.model.eval()(x))
    torch.testing.assert_close(restored.model.preprocess.mean, tiny_zoo.state["backbone.0.mean"])
