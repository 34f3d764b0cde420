"""A zoo model's temperature (config.json) is folded into its output layer by ``zoo.load``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lit_deep import zoo
from lit_deep.models import MLP, Preprocess, describe
from lit_deep.zoo._format import assemble
from lit_deep.zoo.api import fold_temperature


def test_registered_model_comes_back_calibrated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    calibrated, raw = zoo.load("mlp.fmnist"), zoo.load("mlp.fmnist", calibrated=False)
    assert calibrated.zoo_info.temperature == zoo.REGISTRY["mlp.fmnist"].temperature == 1.1059
    assert raw.zoo_info.temperature is None
    x = torch.rand(4, 28, 28)
    torch.testing.assert_close(calibrated(x), raw(x) / 1.1059)
    assert describe(calibrated) == describe(raw)  # no extra layer: the same description and state-dict names
    assert zoo.load("mlp.fmnist", num_classes=3).zoo_info.temperature is None  # a new head: nothing to scale


def test_fold_temperature_scales_the_logits_and_refuses_bad_values() -> None:
    net = MLP(hidden=(4,), num_classes=3, seed=0).eval()
    x = torch.rand(2, 1, 28, 28)
    before = net(x)
    assert torch.allclose(fold_temperature(net, 4.0)(x), before / 4.0)
    for bad in (0.0, -1.0, float("inf"), "2", True):
        with pytest.raises(ValueError, match=r"^temperature: must be a positive finite number"):
            fold_temperature(net, bad)  # type: ignore[arg-type]


def test_a_hostile_temperature_in_a_hub_config_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors.torch import save_file

    from tests.zoo.hub_server import HubServer

    model = assemble(MLP(hidden=(4,), num_classes=2, seed=0), Preprocess())
    folder = tmp_path / "repo"
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    config = {"lit_deep_zoo_format": 2, "model": describe(model), "temperature": "__import__('os')"}
    (folder / "config.json").write_text(json.dumps(config))
    server = HubServer().start()
    try:
        server.state.add_folder("someone/hot", folder)
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        with pytest.raises(ValueError, match=r"config\.json: temperature must be a finite number in \[0\.001, 1000\]"):
            zoo.load("someone/hot", cache_dir=str(tmp_path / "cache"))
        assert zoo.load("someone/hot", cache_dir=str(tmp_path / "cache"), calibrated=False).zoo_info.commit
    finally:
        server.stop()
