"""Nothing read is executed: hostile model descriptions through every entry point that reads one.

Each payload, if it ran, would create a marker file; every test checks that it was refused and that the file
does not exist. Entry points: ``build``, ``Classifier.load_from_checkpoint``, ``FromCheckpoint``, ``Pretrained``,
``read_checkpoint``, ``lit-deep zoo export --ckpt``, ``lit-deep zoo push --checkpoint``,
``lit-deep fit --ckpt_path`` and ``zoo.load`` of a Hub repo outside the registry.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from lit_deep import Classifier, zoo
from lit_deep.cli import main as lit_deep_main
from lit_deep.models import MLP, DescriptionError, FromCheckpoint, Preprocess, build, describe, read_checkpoint
from lit_deep.zoo._format import assemble
from lit_deep.zoo.release import cli as zoo_cli
from tests.zoo.hub_server import HubServer


def _payloads(marker: Path) -> dict[str, Any]:
    """Descriptions that would run a command, print, or build something that is not a model."""
    popen = {"class_path": "subprocess.Popen", "init_args": {"args": ["sh", "-c", f"touch {marker}"]}}
    linear = {"class_path": "torch.nn.Linear", "init_args": {"in_features": 4, "out_features": 2}}
    return {
        "popen": popen,
        "os.system": {"class_path": "os.system", "init_args": {"command": f"touch {marker}"}},
        "posix.system": {"class_path": "posix.system", "init_args": {"command": f"touch {marker}"}},
        "print": {"class_path": "builtins.print", "init_args": {"sep": f"touch {marker}"}},
        "exec": {"class_path": "builtins.exec", "init_args": {"source": f"open('{marker}', 'w')"}},
        "not-a-module": {"class_path": "collections.OrderedDict", "init_args": {}},
        "torch-function": {"class_path": "torch.nn.functional.dropout", "init_args": {}},
        "dunder-path": {"class_path": "torch.nn.Linear.__init__", "init_args": {}},
        "torch-submodule-trick": {"class_path": "torch.nn.modules.linear.os.system", "init_args": {"command": "x"}},
        "nested-in-sequential": {"class_path": "torch.nn.Sequential", "init_args": {"modules": [linear, popen]}},
        "nested-in-parts": {
            "class_path": "lit_deep.models.BackboneHead",
            "parts": {"backbone": linear, "head": popen, "feature_dim": 2},
        },
        "nested-in-args": {"class_path": "lit_deep.models.BackboneHead", "init_args": {"backbone": popen}},
        "not-a-dict": ["subprocess.Popen"],
        "extra-keys": {"class_path": "torch.nn.Identity", "init_args": {}, "__import__": "os"},
        "deep": _deep(70),
        "reads-a-file": {"class_path": "lit_deep.models.FromCheckpoint", "init_args": {"checkpoint": str(marker)}},
        "downloads": {"class_path": "lit_deep.zoo.Pretrained", "init_args": {"name": "someone/else"}},
        "real-device": {
            "class_path": "torch.nn.Linear",
            "init_args": {"in_features": 8, "out_features": 8, "device": "cpu"},
        },
        "clones-layers": {"class_path": "torch.nn.TransformerEncoder", "init_args": {"num_layers": 200_000}},
        "huge-list": {"class_path": "lit_deep.models.MLP", "init_args": {"hidden": [1] * 20_000}},
    }


def _deep(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"class_path": "torch.nn.Identity", "init_args": {}}
    for _ in range(depth):
        node = {"class_path": "torch.nn.Sequential", "init_args": {"modules": [node]}}
    return node


PAYLOADS = sorted(_payloads(Path("/x")))


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "pwned"
    yield path
    time.sleep(0.05)  # a Popen, had it started, would have touched the file by now
    assert not path.exists(), "a payload ran"


def _checkpoint(path: Path, description: Any, **hparams: Any) -> Path:
    net = MLP(hidden=(4,), num_classes=2, seed=0)
    state = {f"model.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"model": description, **hparams}}, path)
    return path


@pytest.mark.parametrize("payload", PAYLOADS)
def test_build_refuses(payload: str, marker: Path) -> None:
    with pytest.raises(DescriptionError, match=r"^model"):
        build(_payloads(marker)[payload])


@pytest.mark.parametrize("payload", PAYLOADS)
def test_checkpoint_readers_refuse(payload: str, marker: Path, tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path / "hostile.ckpt", _payloads(marker)[payload])
    readers: list[Callable[[], Any]] = [
        lambda: Classifier.load_from_checkpoint(ckpt),
        lambda: FromCheckpoint(str(ckpt), num_classes=2),
        lambda: read_checkpoint(ckpt).model(),
        lambda: zoo.Pretrained(str(ckpt), num_classes=2),
    ]
    for read in readers:
        with pytest.raises(DescriptionError, match="hostile.ckpt"):
            read()


def test_checkpoint_naming_a_foreign_lightning_module_is_refused(marker: Path, tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path / "hostile.ckpt", describe(MLP(hidden=(4,), num_classes=2)), _class_path="os.system")
    with pytest.raises(DescriptionError, match=r"_class_path 'os.system'"):
        Classifier.load_from_checkpoint(ckpt)


@pytest.mark.parametrize("key", ["_instantiator", "schedule"])
def test_hyper_parameters_that_would_be_imported_are_refused(key: str, tmp_path: Path) -> None:
    # LightningCLI's instantiator hands hyper-parameters to jsonargparse, which imports strings by name.
    value = "lightning.pytorch.cli.instantiate_module" if key == "_instantiator" else "this.X"
    ckpt = _checkpoint(tmp_path / "hostile.ckpt", describe(MLP(hidden=(4,), num_classes=2)), **{key: value})
    for read in (
        lambda: Classifier.load_from_checkpoint(ckpt),
        lambda: Classifier.load_from_checkpoint(ckpt, model=MLP()),
    ):
        with pytest.raises(DescriptionError, match=f"hyper-parameter {key!r} is not one lit_deep saves"):
            read()


def test_shapes_that_disagree_with_the_weights_are_refused_before_allocation(tmp_path: Path) -> None:
    # 200,000 x 200,000 float32 weights would need 160 GB: refused on the meta device.
    huge = describe(MLP(hidden=(4,), num_classes=2))
    huge["init_args"]["hidden"] = [200_000, 200_000]
    ckpt = _checkpoint(tmp_path / "huge.ckpt", huge)
    # The MLP's own parameter bound refuses it before the meta-device shape check would.
    with pytest.raises(DescriptionError, match=r"huge.ckpt.*hidden: a 200000 x 200000 layer is 4.0e10 parameters"):
        Classifier.load_from_checkpoint(ckpt)
    with pytest.raises(DescriptionError, match=r"huge.ckpt.*hidden: a 200000 x 200000 layer is 4.0e10 parameters"):
        read_checkpoint(ckpt).model()
    wide = describe(MLP(hidden=(4,), num_classes=2))
    wide["init_args"]["hidden"] = [20_000]  # within the bound, but not the weights' shapes
    with pytest.raises(DescriptionError, match=r"does not fit .*nothing was allocated"):
        read_checkpoint(_checkpoint(tmp_path / "wide.ckpt", wide))


@pytest.mark.parametrize("payload", ["popen", "nested-in-parts"])
def test_zoo_cli_refuses(payload: str, marker: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = _checkpoint(tmp_path / "hostile.ckpt", _payloads(marker)[payload])
    assert zoo_cli.main(["export", "mlp.fmnist", "--ckpt", str(ckpt), "--out", str(tmp_path / "out")]) == 2
    assert "not an allowed model class" in capsys.readouterr().err
    assert zoo_cli.main(["push", "--checkpoint", str(ckpt), "--repo-id", "me/model"]) == 2
    assert "not an allowed model class" in capsys.readouterr().err


def test_fit_ckpt_path_refuses(
    marker: Path, tmp_path: Path, tiny_fmnist: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = _checkpoint(tmp_path / "hostile.ckpt", _payloads(marker)["popen"])
    args = [
        "fit",
        "--model=lit_deep.Classifier",
        "--model.model=lit_deep.models.MLP",
        "--model.model.hidden=[4]",
        "--data=lit_deep.data.FashionMNISTDataModule",
        f"--data.data_dir={tiny_fmnist.path}",
        "--data.val_size=10",
        "--trainer.max_epochs=1",
        "--trainer.logger=false",
        "--trainer.enable_checkpointing=false",
        f"--trainer.default_root_dir={tmp_path}",
        f"--ckpt_path={ckpt}",
    ]
    assert lit_deep_main(args) == 2
    err = capsys.readouterr().err
    assert "hostile.ckpt" in err and "'subprocess.Popen' is not an allowed model class" in err


def _hub_repo(folder: Path, model: torch.nn.Module, description: dict[str, Any]) -> Path:
    folder.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"lit_deep_zoo_format": 2, "model": description}))
    return folder


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[HubServer]:
    server = HubServer().start()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield server
    server.stop()


@pytest.mark.parametrize("payload", ["popen", "nested-in-parts", "print"])
def test_zoo_load_of_an_unpinned_repo_refuses(payload: str, marker: Path, hub: HubServer, tmp_path: Path) -> None:
    model = assemble(MLP(hidden=(4,), num_classes=2), Preprocess())
    hub.state.add_folder("someone/evil", _hub_repo(tmp_path / "repo", model, _payloads(marker)[payload]))
    with pytest.raises(DescriptionError, match="not an allowed model class"):
        zoo.load("someone/evil", cache_dir=str(tmp_path / "cache"))


def test_zoo_load_refuses_a_config_larger_than_its_weights(hub: HubServer, tmp_path: Path) -> None:
    model = assemble(MLP(hidden=(4,), num_classes=2), Preprocess())
    description = describe(model)
    description["parts"]["backbone"]["init_args"]["modules"][2]["init_args"]["out_features"] = 200_000
    description["parts"]["head"]["init_args"]["in_features"] = 200_000
    hub.state.add_folder("someone/huge", _hub_repo(tmp_path / "repo", model, description))
    with pytest.raises(DescriptionError, match=r"does not fit model.safetensors .*nothing was allocated"):
        zoo.load("hf-hub:someone/huge", cache_dir=str(tmp_path / "cache"))


def test_an_unpinned_repo_in_the_lit_deep_format_loads(hub: HubServer, tmp_path: Path) -> None:
    model = assemble(MLP(hidden=(4,), num_classes=2, seed=0), Preprocess())
    hub.state.add_folder("someone/fine", _hub_repo(tmp_path / "repo", model, describe(model)))
    loaded = zoo.load("someone/fine", cache_dir=str(tmp_path / "cache"))
    x = torch.rand(3, 28, 28)
    assert torch.equal(loaded(x), model.eval()(x))
    assert loaded.zoo_info.repo_id == "someone/fine"
    assert loaded.zoo_info.commit is not None and len(loaded.zoo_info.commit) == 40
