"""Parametrized over the registry: every entry's shipped copy loads strictly and reproduces its card."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lit_deep import zoo
from lit_deep.models import Preprocess
from lit_deep.zoo import REGISTRY
from lit_deep.zoo._hub import SHIPPED_DIR_ENV, shipped_copy
from lit_deep.zoo._integrity import sha256_file
from lit_deep.zoo.registry import NAMESPACE_ENV, PreprocessingSpec
from lit_deep.zoo.release.evaluate import classification_metrics, evaluate

NAMES = sorted(REGISTRY)
# Entries whose weights are trained and exported (every entry: test_registry.py::test_every_entry_is_published).
PUBLISHED = [name for name in NAMES if REGISTRY[name].sha256]


@pytest.fixture
def offline_shipped(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """No network, an empty Hub cache: zoo.load takes the shipped copy (after its SHA-256 check)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv(SHIPPED_DIR_ENV, raising=False)
    monkeypatch.delenv(NAMESPACE_ENV, raising=False)
    return str(tmp_path / "empty-cache")


def test_names_are_arch_dot_tag_and_entries_are_frozen() -> None:
    assert zoo.list_models() == NAMES
    assert len(NAMES) == 7
    for name, entry in REGISTRY.items():
        assert entry.name == name
        assert f"{entry.arch}.{entry.tag}" == name
        if name in PUBLISHED:
            assert len(entry.sha256) == 64 and entry.revision == "main" or len(entry.revision) == 40


def test_every_entry_is_published() -> None:
    assert sorted(set(NAMES) - set(PUBLISHED)) == []
    with pytest.raises(AttributeError):
        REGISTRY["mlp.fmnist"].sha256 = "0" * 64  # type: ignore[misc]


def test_preprocessing_rejects_unknown_standardisation() -> None:
    with pytest.raises(ValueError, match="standardize: expected 'none' or 'per_pixel', got 'global'"):
        PreprocessingSpec(standardize="global")


@pytest.mark.parametrize("name", PUBLISHED)
def test_shipped_copy_loads_strictly_in_eval_mode(name: str, offline_shipped: str) -> None:
    assert shipped_copy(name) is not None
    model = zoo.load(name, cache_dir=offline_shipped)
    entry = REGISTRY[name]
    assert type(model).__name__ == entry.architecture["class_path"].rsplit(".", 1)[1]
    assert isinstance(model.backbone[0], Preprocess)
    info = model.zoo_info
    assert (info.name, info.repo_id, info.source, info.commit) == (name, entry.repo_id(), "shipped", None)
    assert info.sha256 == entry.sha256 == sha256_file(shipped_copy(name) / "model.safetensors")
    assert info.class_names == entry.class_names
    assert not model.training
    images = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8)
    if not REGISTRY[name].mc_samples:  # an MC-dropout model differs from call to call
        torch.testing.assert_close(model(images), model(images.float() / 255))


@pytest.mark.realdata
@pytest.mark.parametrize("name", PUBLISHED)
def test_reproduces_the_card_metrics_on_the_test_split(name: str, offline_shipped: str) -> None:
    entry = REGISTRY[name]
    metrics, extra = evaluate(zoo.load(name, cache_dir=offline_shipped, calibrated=False), entry)
    measured = {**metrics, **extra}
    for key, value in {**entry.metrics, **entry.extra_metrics}.items():
        tolerance = 1e-5 if key.endswith("mse") else 1e-3  # 0.1 points of accuracy; the MSE is ~0.007
        assert abs(measured[key] - value) <= tolerance, (key, value, measured[key])


def test_classification_metrics_match_a_plain_reference() -> None:
    gen = torch.Generator().manual_seed(0)
    probs = torch.rand(200, 4, generator=gen).softmax(1)
    y = torch.randint(0, 4, (200,), generator=gen)
    conf, pred = probs.max(1)
    ece = 0.0
    for b in range(15):  # equal-width bins (b/15, (b+1)/15]
        mask = (conf > b / 15) & (conf <= (b + 1) / 15)
        if mask.any():
            ece += float(mask.float().mean() * (conf[mask].mean() - (pred[mask] == y[mask]).float().mean()).abs())
    m = classification_metrics(probs, y)
    assert m["test_acc"] == round(float((pred == y).float().mean()), 4)
    assert m["test_nll"] == round(float(-probs[torch.arange(200), y].log().mean()), 4)
    assert abs(m["test_ece"] - ece) < 1e-4
