"""The selector language: names, globs, and layer types from an allow-list (a YAML recipe is data)."""

from __future__ import annotations

import sys

import pytest
from torch import nn

from lit_deep.callbacks.select import as_selectors, layer_type, select_modules
from lit_deep.models import MLP
from lit_deep.nn import MCDropout


def test_layer_types_come_from_the_allow_list() -> None:
    assert layer_type("torch.nn.Linear") is nn.Linear
    assert layer_type("torch.nn.modules.conv.Conv2d") is nn.Conv2d
    assert layer_type("lit_deep.nn.MCDropout") is MCDropout
    assert layer_type("lit_deep.models.MLP") is MLP
    assert layer_type("backbone.3") is None and layer_type("head") is None


@pytest.mark.parametrize("path", ["os.System", "collections.OrderedDict", "not_imported_pkg.Layer", "torch.nn.Module"])
def test_a_class_path_outside_the_allow_list_is_refused_without_importing(path: str) -> None:
    with pytest.raises(ValueError, match=rf"modules: '{path}' is not a known layer type"):
        as_selectors([path], "modules")
    assert "not_imported_pkg" not in sys.modules


def test_selectors_mix_names_and_types() -> None:
    net = MLP(input_shape=(4,), hidden=(3, 2), num_classes=2, dropout=0.1, dropout_kind="mc")
    selectors = as_selectors(["head", "lit_deep.nn.MCDropout"], "modules")
    chosen = select_modules(net, selectors, "modules")
    assert "head" in chosen and all(isinstance(m, MCDropout) for n, m in chosen.items() if n != "head")


def test_the_recipe_in_the_module_docstring_builds_its_callbacks() -> None:
    import importlib

    import yaml

    from lit_deep.callbacks import select

    doc = select.__doc__
    assert doc is not None
    recipe = yaml.safe_load(doc.split("In a LightningCLI recipe::")[1].split("and the same from Python::")[0])
    callbacks = []
    for spec in recipe["trainer"]["callbacks"]:
        module, _, name = spec["class_path"].rpartition(".")
        callbacks.append(getattr(importlib.import_module(module), name)(**spec["init_args"]))
    max_norm, freeze = callbacks
    assert max_norm.bounds == {nn.Linear: 3.0}
    assert freeze.milestones == {3: ("backbone.[4-9]*",), 6: ("backbone",)}
