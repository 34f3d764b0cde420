"""Preprocess, the zoo's config.json (format 2, and format 1 still read), transfer of zoo models, checkpoints."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lit_deep import Classifier
from lit_deep.models import Autoencoder, BackboneHead, DescriptionError, Preprocess, build, describe, transfer
from lit_deep.zoo._format import model_description, zoo_description
from lit_deep.zoo.registry import REGISTRY
from lit_deep.zoo.release.cards import config_dict
from tests.zoo.conftest import TinyZoo


def _tiny_model(tiny_zoo: TinyZoo) -> BackboneHead:
    model = build(config_dict(tiny_zoo.entry)["model"])
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


def test_a_zoo_description_only_builds_allow_listed_classes() -> None:
    with pytest.raises(DescriptionError, match="model.class_path: 'os.system' is not an allowed model class"):
        zoo_description({"class_path": "os.system", "init_args": {"command": "true"}}, {"standardize": "none"})
    with pytest.raises(DescriptionError, match=r"model: lit_deep.models.MLP rejected its init_args \['bogus'\]"):
        zoo_description({"class_path": "lit_deep.models.MLP", "init_args": {"bogus": 1}}, {"standardize": "none"})
    with pytest.raises(ValueError, match="preprocessing.standardize: expected 'none' or 'per_pixel', got 'global'"):
        zoo_description({"class_path": "lit_deep.models.MLP", "init_args": {}}, {"standardize": "global"})


def test_a_config_without_a_model_description_is_refused() -> None:
    with pytest.raises(ValueError, match=r"config.json: no model description \('model'\)$"):
        model_description({"name": "x"})


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_registry_config_builds_with_preprocess_first(name: str) -> None:
    entry = REGISTRY[name]
    config = config_dict(entry)
    assert config["lit_deep_zoo_format"] == 2
    model = build(config["model"])
    assert type(model).__name__ == entry.architecture["class_path"].rsplit(".", 1)[1]
    assert isinstance(model.backbone[0], Preprocess)
    out = model.eval()(torch.zeros(2, 28, 28, dtype=torch.uint8))
    expected = (2, 1, 28, 28) if entry.kind == "autoencoder" else (2, len(entry.class_names))
    assert tuple(out.shape) == expected
    assert model_description(config) == config["model"] == describe(model)


def test_transfer_keeps_the_backbone_and_the_description_rebuilds_the_shape(tiny_zoo: TinyZoo) -> None:
    model = _tiny_model(tiny_zoo)
    assert describe(model)["parts"]["head"]["init_args"]["out_features"] == 3
    new = transfer(model, 5)
    description = describe(new)
    rebuilt = build(description)
    assert isinstance(rebuilt, BackboneHead)
    assert rebuilt.head.out_features == 5
    assert isinstance(rebuilt.backbone[0], Preprocess)
    assert set(rebuilt.state_dict()) == set(new.state_dict())


def test_transfer_copies_the_backbone_of_a_zoo_model(tiny_zoo: TinyZoo) -> None:
    model = _tiny_model(tiny_zoo)
    new = transfer(model, 2)
    assert new.head.out_features == 2
    assert new.backbone[2].weight is not model.backbone[2].weight
    torch.testing.assert_close(new.backbone[2].weight, model.backbone[2].weight)
    torch.testing.assert_close(new.backbone[0].mean, model.backbone[0].mean)  # the preprocessing comes along


def test_autoencoder_zoo_model_becomes_a_classifier_on_its_encoder() -> None:
    model = build(config_dict(REGISTRY["autoencoder.fmnist"])["model"])
    assert isinstance(model, Autoencoder)
    clf = transfer(model, 3)
    assert tuple(clf(torch.rand(2, 1, 28, 28)).shape) == (2, 3)
    assert tuple(clf.backbone(torch.rand(2, 28, 28)).shape) == (2, 100)  # the codings, raw images in
    assert build(describe(clf)).head.out_features == 3


def test_classifier_checkpoint_rebuilds_the_zoo_model_without_download(tiny_zoo: TinyZoo, tmp_path: Path) -> None:
    model = transfer(_tiny_model(tiny_zoo), 2).train()
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
    torch.testing.assert_close(restored.model.backbone[0].mean, tiny_zoo.state["backbone.0.mean"])
