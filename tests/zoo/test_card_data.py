"""The registry's data files: zoo/<name>/card.json, read with types checked, the pins in code."""

import json
from pathlib import Path

import pytest

from lit_deep.zoo import registry
from lit_deep.zoo.registry import PINS, REGISTRY, card_json, read_card

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", sorted(PINS))
def test_every_pinned_model_has_card_data_that_round_trips(name):
    entry = REGISTRY[name]
    assert (ROOT / "zoo" / name / "card.json").read_text() == card_json(entry)
    assert read_card(name, *PINS[name]) == entry


def _with_card(monkeypatch, tmp_path, text):
    (tmp_path / "card.json").write_text(text)
    monkeypatch.setattr(registry, "card_path", lambda name: tmp_path / "card.json")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("summary"), r"expected exactly the fields \[.*\], got \["),
        (lambda d: d.update(extra=1), r"expected exactly the fields"),
        (lambda d: d.update(seed="42"), r"seed must be of JSON type <class 'int'>, got '42'"),
        (lambda d: d.update(mc_samples=True), r"mc_samples must be of JSON type <class 'int'>, got True"),
        (lambda d: d.update(metrics={"test_acc": "0.9"}), r"metrics must map names to finite numbers"),
        (lambda d: d.update(temperature="hot"), r"temperature must be of JSON type"),
    ],
)
def test_malformed_card_data_is_refused_naming_the_file_and_field(monkeypatch, tmp_path, edit, message):
    data = json.loads(card_json(REGISTRY["mlp.fmnist"]))
    edit(data)
    _with_card(monkeypatch, tmp_path, json.dumps(data))
    with pytest.raises(ValueError, match=r"^zoo/mlp.fmnist/card.json: " + message):
        read_card("mlp.fmnist")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", r"expected exactly the fields .*, got list"),
        (" " * (1 << 21), "2097152 bytes, more than the 1048576 a card may have"),
    ],
)
def test_unreadable_card_data_is_refused(monkeypatch, tmp_path, text, message):
    _with_card(monkeypatch, tmp_path, text)
    with pytest.raises(ValueError, match=r"^zoo/mlp.fmnist/card.json: " + message):
        read_card("mlp.fmnist")


def test_missing_card_data_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(registry, "card_path", lambda name: tmp_path / "absent.json")
    with pytest.raises(ValueError, match=r"^zoo/x.y/card.json: cannot read the card data of a registered model"):
        read_card("x.y")
