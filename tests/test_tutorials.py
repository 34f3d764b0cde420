"""Every tutorial of docs/tutorials/ runs top to bottom as a notebook under the quick setting (LIT_DEEP_QUICK=1).

The tutorials are jupytext percent-format ``.py`` files; each is converted to a notebook and executed by nbclient
in a fresh IPython kernel, as the documentation site does when it is built.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import jupytext
import nbclient
import pytest

TUTORIALS = sorted((Path(__file__).resolve().parents[1] / "docs" / "tutorials").glob("[0-9]*.py"))


def test_the_chapter_path_is_there() -> None:
    names = [path.stem for path in TUTORIALS]
    assert len(names) == 5, names
    for path in TUTORIALS:
        text = path.read_text()
        assert "# %% [markdown]" in text and "LIT_DEEP_QUICK" in text, path.name
        assert "Run it locally" in text, path.name


@pytest.mark.realdata
@pytest.mark.parametrize("path", TUTORIALS, ids=[path.stem for path in TUTORIALS])
def test_tutorial_runs_under_the_quick_setting(path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LIT_DEEP_QUICK", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the zoo's shipped copies; no request to the Hub
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(sys.path))  # the kernel imports this checkout's lit_deep
    notebook = jupytext.read(path)
    client = nbclient.NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError (with the cell and its traceback) on the first failing cell
    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]
    assert any("image/png" in out.get("data", {}) for out in outputs), "the tutorial shows no figure"
