"""zoo.load / download / info and zoo.classifier: arguments, heads, config checks, lazy import."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
import torch

from lit_deep import zoo
from lit_deep.zoo import UnknownModelError
from tests.zoo.conftest import TINY, TinyZoo
from tests.zoo.hub_server import COMMIT, HubServer


def test_unknown_name_lists_close_matches() -> None:
    with pytest.raises(UnknownModelError, match=r"no zoo model 'cnn\.fminst'; did you mean 'cnn\.fmnist'"):
        zoo.load("cnn.fminst")
    with pytest.raises(UnknownModelError, match="Available: autoencoder.fmnist, cnn.fmnist"):
        zoo.info("resnet")


@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_num_classes_must_be_a_positive_integer(bad: object) -> None:
    with pytest.raises(ValueError, match="num_classes: must be None or an integer >= 1"):
        zoo.load("mlp.fmnist", num_classes=bad)  # type: ignore[arg-type]


def test_revision_must_be_a_non_empty_string() -> None:
    with pytest.raises(ValueError, match="revision: expected a branch, tag or commit name, got ' '"):
        zoo.load("mlp.fmnist", revision=" ")


def test_num_classes_gives_a_new_head_on_the_pretrained_backbone(hub: HubServer, tiny_zoo: TinyZoo, cache: str) -> None:
    model = zoo.load(TINY, num_classes=2, cache_dir=cache)
    assert model.head.out_features == 2
    assert model.zoo_info.class_names == ()  # a new head: the pretrained classes no longer apply
    assert not model.training
    torch.testing.assert_close(model.backbone[2].weight, tiny_zoo.state["backbone.2.weight"])
    assert tuple(model(torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)).shape) == (5, 2)


def test_cut_keeps_the_first_pretrained_layers_under_a_new_head(hub: HubServer, tiny_zoo: TinyZoo, cache: str) -> None:
    whole = zoo.load(TINY, cache_dir=cache)
    model = zoo.load(TINY, num_classes=3, cache_dir=cache, cut=3)
    assert len(model.backbone) == 3 and model.head.out_features == 3
    assert model.feature_dim == whole.backbone[:3](torch.zeros(1, 1, 28, 28)).shape[1]
    torch.testing.assert_close(model.backbone[2].weight, tiny_zoo.state["backbone.2.weight"])
    with pytest.raises(ValueError, match=r"^cut: a cut backbone \(3\) needs a new head: pass num_classes too"):
        zoo.load(TINY, cache_dir=cache, cut=3)
    with pytest.raises(ValueError, match=r"^cut: must be None or an integer >= 1, got 0"):
        zoo.load(TINY, num_classes=3, cache_dir=cache, cut=0)


def test_classifier_from_zoo_trains_in_train_mode_with_class_names(hub: HubServer, cache: str) -> None:
    clf = zoo.classifier(TINY, cache_dir=cache, lr=0.01)
    assert clf.model.training
    assert clf.class_names == ["a", "b", "c"]
    assert clf.lr == 0.01
    transfer = zoo.classifier(TINY, num_classes=2, cache_dir=cache)
    assert transfer.num_outputs == 2
    assert transfer.class_names is None


def _format_1(tiny_zoo: TinyZoo) -> dict:
    """The tiny model's config.json in format 1 (``architecture`` + ``preprocessing``), as zoo folders once held."""
    config = json.loads((tiny_zoo.folder / "config.json").read_text())
    del config["model"]
    config["lit_deep_zoo_format"] = 1
    config["architecture"] = copy.deepcopy(tiny_zoo.entry.architecture)
    config["preprocessing"] = tiny_zoo.entry.preprocessing.to_dict()
    return config


def test_config_that_disagrees_with_the_registry_is_refused(hub: HubServer, tiny_zoo: TinyZoo, cache: str) -> None:
    config = json.loads((tiny_zoo.folder / "config.json").read_text())
    layers = config["model"]["parts"]["backbone"]["init_args"]["modules"]
    assert layers[3]["class_path"] == "torch.nn.ReLU"
    layers[3] = {"class_path": "torch.nn.Tanh", "init_args": {}}  # same shapes, another network
    hub.state.repos[f"lit-deep/{TINY}"]["config.json"] = json.dumps(config).encode()
    with pytest.raises(ValueError, match=r"mlp\.tiny: the model in config.json from the hub copy .* differs from the "):
        zoo.load(TINY, cache_dir=cache)
    # the refused config.json was evicted from the Hub cache: the corrected repo loads at the next call
    hub.state.add_folder(f"lit-deep/{TINY}", tiny_zoo.folder)
    assert zoo.load(TINY, cache_dir=cache).zoo_info.config["lit_deep_zoo_format"] == 2


def test_format_1_config_is_refused_with_a_hint(hub: HubServer, tiny_zoo: TinyZoo, cache: str) -> None:
    hub.state.repos[f"lit-deep/{TINY}"]["config.json"] = json.dumps(_format_1(tiny_zoo)).encode()
    with pytest.raises(
        ValueError, match=r"no model description \('model'\) \(format 1, .* is not read: re-export it\)"
    ):
        zoo.load(TINY, cache_dir=cache)


def test_any_hub_repo_in_the_zoo_format_loads(hub: HubServer, tiny_zoo: TinyZoo, cache: str) -> None:
    hub.state.add_folder("someone/tiny-copy", tiny_zoo.folder)
    model = zoo.load("hf-hub:someone/tiny-copy", cache_dir=cache)
    info = model.zoo_info
    assert (info.name, info.repo_id, info.revision, info.source) == ("someone/tiny-copy",) * 2 + ("main", "hub")
    assert info.sha256 == tiny_zoo.entry.sha256  # the Hub's LFS hash, checked
    assert info.class_names == ("a", "b", "c")
    clf = zoo.classifier("someone/tiny-copy", cache_dir=cache)
    assert clf.class_names == ["a", "b", "c"]


def test_download_returns_verified_paths(hub: HubServer, tiny_zoo: TinyZoo, cache: str) -> None:
    fetched = zoo.download(TINY, cache_dir=cache)
    assert (fetched.source, fetched.commit, fetched.sha256) == ("hub", COMMIT, tiny_zoo.entry.sha256)
    assert fetched.weights.read_bytes() == tiny_zoo.weights
    assert json.loads(fetched.config.read_text())["name"] == TINY


def test_info_describes_the_entry() -> None:
    described = zoo.info("mlp_mc.fmnist")
    assert described["repo_id"] == "lit-deep/mlp_mc.fmnist"
    assert described["recipe"] == "recipes/zoo/mlp_mc.fmnist.yaml"
    assert described["architecture"]["init_args"]["dropout_kind"] == "mc"


@pytest.mark.slow  # a fresh interpreter importing torch and Lightning
def test_import_lit_deep_does_not_import_the_zoo() -> None:
    code = "import sys, lit_deep; print('lit_deep.zoo' in sys.modules, 'safetensors' in sys.modules); lit_deep.zoo.load"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["False", "False"]
