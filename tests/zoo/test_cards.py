"""Registry, zoo/ folders and recipes/zoo/ stay in sync; cards carry the Hub metadata; the zoo stays small."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from lit_deep.models import build, describe
from lit_deep.zoo import REGISTRY
from lit_deep.zoo.release.cards import card_text, check_repo_files, config_dict, write_repo_files

ROOT = Path(__file__).resolve().parents[2]
NAMES = sorted(REGISTRY)
# Entries whose weights are trained and exported (every entry: test_registry.py::test_every_entry_is_published).
PUBLISHED = [name for name in NAMES if REGISTRY[name].sha256]


@pytest.mark.parametrize("name", PUBLISHED)
def test_zoo_folder_is_what_the_registry_generates(name: str) -> None:
    assert check_repo_files(REGISTRY[name], ROOT / "zoo" / name) == []


def test_zoo_holds_exactly_the_registry_and_stays_under_30_mb() -> None:
    folders = sorted(p.name for p in (ROOT / "zoo").iterdir() if p.is_dir())
    assert folders == PUBLISHED
    total = sum(p.stat().st_size for p in (ROOT / "zoo").rglob("*") if p.is_file())
    assert total < 30e6


@pytest.mark.parametrize("name", NAMES)
def test_recipe_trains_the_registered_architecture(name: str) -> None:
    entry = REGISTRY[name]
    recipe = yaml.safe_load((ROOT / entry.recipe).read_text())
    assert recipe["seed_everything"] == entry.seed
    module = recipe["model"]
    modules = {"autoencoder": "lit_deep.modules.AutoencoderModule", "pretext": "lit_deep.modules.RotationPretext"}
    expected_module = modules.get(entry.kind, "lit_deep.Classifier")
    assert module["class_path"] == expected_module
    net = dict(module["init_args"]["model"])
    net["init_args"] = {k: v for k, v in net["init_args"].items() if k != "seed"}
    assert describe(build(net)) == describe(build(entry.architecture))
    data = recipe["data"]["init_args"]
    assert data.get("task", "full") == entry.task
    assert data.get("standardize", False) == (entry.preprocessing.standardize == "per_pixel")


@pytest.mark.parametrize("name", PUBLISHED)
def test_card_has_hub_metadata_and_the_measured_figures(name: str) -> None:
    entry = REGISTRY[name]
    text = (ROOT / "zoo" / name / "README.md").read_text()
    header = yaml.safe_load(text.split("---\n")[1])
    assert header["license"] == "apache-2.0"
    assert header["library_name"] == "lit_deep"
    assert header["datasets"] == ["zalando-datasets/fashion_mnist"]
    reported = {m["name"]: m["value"] for m in header["model-index"][0]["results"][0]["metrics"]}
    assert len(reported) == len(entry.metrics) + len(entry.extra_metrics)
    for needle in (entry.recipe, f"seed {entry.seed}", entry.sha256, "## Limits", f'zoo.load("{name}"'):
        assert needle in text


def test_write_then_check_round_trips(tmp_path: Path) -> None:
    entry = REGISTRY["mlp_selu.fmnist_a"]
    folder = tmp_path / entry.name
    (folder).mkdir()
    (folder / "model.safetensors").write_bytes((ROOT / "zoo" / entry.name / "model.safetensors").read_bytes())
    write_repo_files(entry, folder)
    assert check_repo_files(entry, folder) == []
    (folder / "README.md").write_text(card_text(entry) + "edited\n")
    assert "README.md is not what the registry generates" in check_repo_files(entry, folder)[0]
    config = config_dict(entry)
    assert config["files"]["model.safetensors"]["sha256"] == entry.sha256
    assert config["lit_deep_zoo_format"] == 2
    build(config["model"]).load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)  # the weights fit


@pytest.mark.parametrize("name", PUBLISHED)
def test_card_parses_as_a_hub_model_card_with_its_metrics(name: str) -> None:
    from huggingface_hub import ModelCard

    card = ModelCard((ROOT / "zoo" / name / "README.md").read_text())  # the Hub's own parser, no network
    data = card.data
    assert data.library_name == "lit_deep" and data.pipeline_tag in ("image-classification", "image-feature-extraction")
    assert data.eval_results, "model-index has no results"
    values = {result.metric_type: result.metric_value for result in data.eval_results}
    entry = REGISTRY[name]
    assert len(data.eval_results) == len(entry.metrics) + len(entry.extra_metrics)
    assert all(isinstance(v, (int, float)) for v in values.values())
