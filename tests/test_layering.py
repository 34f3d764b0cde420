"""The package's layering: each subpackage imports only lower layers, and nothing imports in a cycle.

data, nn -> models -> schedules, uncertainty -> modules, callbacks (plugins) -> zoo -> cli, experiments.
Each subpackage is imported alone in a fresh interpreter and ``sys.modules`` says what came with it.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import lit_deep

PACKAGE = Path(lit_deep.__file__).resolve().parent
#: Subpackage (or top-level private module) -> layer; a subpackage may import strictly lower layers only.
LAYERS: dict[str, float] = {
    "_io": -1,  # private helpers every layer shares
    "_validate": -1,
    "_warnings": -1,
    "data": 0,
    "nn": 0,
    "models": 1,
    "schedules": 2,
    "uncertainty": 2,
    "modules": 3,
    "callbacks": 3,
    "plugins": 3,
    "zoo": 4,
    "_cli_choices": 4.5,  # the help text of cli, read from every layer below
    "cli": 5,
    "experiments": 5,
}
#: What must not import Lightning (the zoo serves plain PyTorch users; architectures never depend on it).
WITHOUT_LIGHTNING = {"data", "nn", "models", "zoo"}

_PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
loaded = sorted({n.split(".")[1] for n in sys.modules if n.startswith("lit_deep.")})
print(json.dumps({"loaded": loaded, "lightning": "lightning" in sys.modules}))
"""


def _imported_with(name: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, f"lit_deep.{name}"], capture_output=True, text=True, check=True, timeout=300
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_subpackage_has_a_layer() -> None:
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    modules = {p.stem for p in PACKAGE.glob("*.py") if not p.name.startswith("__")}
    found = packages | modules
    assert found <= set(LAYERS), f"give these a layer in tests/test_layering.py: {sorted(found - set(LAYERS))}"


@pytest.mark.parametrize("name", [n for n in LAYERS if not n.startswith("_")])
def test_subpackage_imports_only_lower_layers(name: str) -> None:
    result = _imported_with(name)
    loaded = set(result["loaded"])  # type: ignore[arg-type]
    upward = sorted(other for other in loaded - {name} if LAYERS[other] >= LAYERS[name])
    assert not upward, f"lit_deep.{name} (layer {LAYERS[name]}) imports {upward} (same or higher layer)"
    if name in WITHOUT_LIGHTNING:
        assert result["lightning"] is False, f"import lit_deep.{name} imported lightning"


def _module_imports() -> dict[str, set[str]]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts).removesuffix(".__init__")] = path
    edges: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):  # a function's import too: it is a cycle when it runs
            if isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            edges[name].update(t for t in targets if t in modules and t != name)
    return edges


def test_no_module_imports_in_a_cycle() -> None:
    edges = _module_imports()
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

    # A package's __init__ importing its own submodules is how packages work; a cycle between two modules is not.
    def nested(a: str, b: str) -> bool:
        return a.startswith(b + ".") or b.startswith(a + ".")

    real = [c for c in cycles if not any(nested(a, b) for a, b in zip(c, c[1:], strict=False))]
    assert not real, f"import cycles: {real}"
