"""The package's layering, read from the code's own imports (``ast``: function-level imports included).

data, nn -> models -> schedules, uncertainty -> modules, callbacks (plugins) -> zoo -> zoo.release -> experiments
-> cli. Every ``import`` anywhere in a module (``if TYPE_CHECKING:`` blocks aside: they never run) must name a
module of a strictly lower layer or of its own; no module imports in a cycle; below ``modules`` nothing imports
Lightning or matplotlib at import time (a fresh interpreter says what each subpackage loads)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import lit_deep

PACKAGE = Path(lit_deep.__file__).resolve().parent
#: Subpackage (or top-level module) -> layer; a module may import its own layer's modules and lower layers only.
LAYERS: dict[str, float] = {
    "_io": -1,  # private helpers every layer shares
    "_validate": -1,
    "_warnings": -1,
    "_version": -1,
    "_device": -1,
    "__init__": -0.5,  # `import lit_deep` itself: lazy attributes only
    "data": 0,
    "nn": 0,
    "models": 1,
    "schedules": 2,
    "uncertainty": 2,
    "modules": 3,
    "callbacks": 3,
    "plugins": 3,
    "zoo": 4,
    "zoo.release": 4.5,
    "_cli_choices": 4.6,  # the help text of cli, read from every layer below
    "experiments": 5,
    "cli": 6,  # dispatches to every verb
}
#: Subpackages that serve plain PyTorch users: importing them loads neither Lightning nor matplotlib.
PLAIN = ["data", "nn", "models", "schedules", "uncertainty", "zoo"]


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts).removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def layer_of(module: str) -> str:
    """The LAYERS key of a ``lit_deep.*`` module name."""
    rest = module.removeprefix("lit_deep").lstrip(".") or "__init__"
    if rest.startswith("zoo.release"):
        return "zoo.release"
    return rest.split(".")[0]


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:``."""
    nodes: list[ast.AST] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        nodes.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return nodes


def imports_of(source: str, name: str) -> list[tuple[int, str]]:
    """(line, module) of every import in ``source`` (module ``name``) that runs, relative ones resolved."""
    found = []
    package = name if MODULES.get(name, Path()).name == "__init__.py" else name.rpartition(".")[0]
    for node in _runtime_nodes(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        found += [(node.lineno, t) for t in dict.fromkeys(targets)]
    return found


def _edges() -> dict[str, set[str]]:
    return {
        name: {t for _, t in imports_of(path.read_text(), name) if t in MODULES and t != name}
        for name, path in MODULES.items()
    }


def test_every_subpackage_has_a_layer() -> None:
    missing = sorted({layer_of(m) for m in MODULES} - set(LAYERS))
    assert not missing, f"give these a layer in tests/test_layering.py: {missing}"


def upward_imports(name: str, source: str) -> list[str]:
    """The imports of module ``name`` that reach its own layer's superiors (or lit_deep's lazy top level)."""
    mine = LAYERS[layer_of(name)]
    bad = []
    for line, target in sorted(imports_of(source, name)):
        if not target.startswith("lit_deep"):
            continue
        theirs = layer_of(target)
        if theirs == "__init__" and target != "lit_deep":
            continue
        same = theirs == layer_of(name)
        if target == "lit_deep" and name != "lit_deep":
            bad.append(f"{name}:{line} imports lit_deep (the lazy top level: import the subpackage)")
        elif not same and LAYERS[theirs] >= mine:
            bad.append(f"{name}:{line} imports {target} (layer {LAYERS[theirs]} >= {mine})")
    return bad


def test_no_module_imports_upward_even_inside_a_function() -> None:
    bad = [line for name, path in MODULES.items() for line in upward_imports(name, path.read_text())]
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_the_check_sees_an_upward_import_inside_a_function() -> None:
    source = textwrap.dedent(
        """
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            from lit_deep.modules import Classifier  # never runs: allowed
        def f():
            from lit_deep.zoo.release import push
            from ..modules import base
        """
    )
    assert upward_imports("lit_deep.models.mlp", source) == [
        "lit_deep.models.mlp:6 imports lit_deep.zoo.release.push (layer 4.5 >= 1)",
        "lit_deep.models.mlp:7 imports lit_deep.modules.base (layer 3 >= 1)",
    ]


def test_no_module_imports_in_a_cycle() -> None:
    edges = _edges()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for target in sorted(edges[node]):
            if state.get(target) == 1:
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target, [*stack, target])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, f"import cycles: {cycles}"


_PROBE = """
import importlib, json, sys, time
start = time.perf_counter()
importlib.import_module(sys.argv[1])
seconds = time.perf_counter() - start
print(json.dumps({"lightning": "lightning" in sys.modules, "matplotlib": "matplotlib" in sys.modules}))
"""


@pytest.mark.parametrize("name", PLAIN)
def test_plain_pytorch_subpackages_load_neither_lightning_nor_matplotlib(name: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, f"lit_deep.{name}"], capture_output=True, text=True, check=True, timeout=300
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"lightning": False, "matplotlib": False}


def private_imports(name: str, source: str) -> list[str]:
    """Imports of another subpackage's private (``_x``) module by module ``name``."""
    top = name.split(".")[1] if name.count(".") else name
    bad = []
    for line, target in sorted(imports_of(source, name)):
        parts = target.split(".")
        private = [p for p in parts[2:] if p.startswith("_")]
        if target.startswith("lit_deep.") and len(parts) > 2 and parts[1] != top and private:
            bad.append(f"{name}:{line} imports {target}")
    return bad


def test_no_module_imports_another_packages_private_module() -> None:
    bad = [line for name, path in MODULES.items() for line in private_imports(name, path.read_text())]
    assert not bad, "private modules of other packages imported (import the package's public name):\n" + "\n".join(bad)
    assert private_imports("lit_deep.cli", "from lit_deep.modules._logging import DivergenceError") == [
        "lit_deep.cli:1 imports lit_deep.modules._logging"
    ]
