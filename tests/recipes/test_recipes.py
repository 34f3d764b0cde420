"""Every recipe parses and runs one batch (``--trainer.fast_dev_run``) on the real data; the catalog is in sync."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lit_deep.cli import main

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "recipes"
sys.path.insert(0, str(RECIPES))
from catalog import RECIPES as CATALOG  # noqa: E402

ALL = sorted(p for p in RECIPES.glob("*/*.yaml") if p.parent.name != "zoo") + [RECIPES / "baseline.yaml"]


def test_catalog_matches_the_committed_files() -> None:
    for recipe in CATALOG:
        assert recipe.path.read_text() == recipe.yaml(), f"{recipe.path} is stale: run python recipes/catalog.py"


def test_every_catalog_entry_names_its_technique() -> None:
    groups = {r.group for r in CATALOG}
    assert {"init", "activations", "deep", "batchnorm", "clipping", "optimizers", "regularization"} <= groups
    assert {"pretraining", "presets"} <= groups
    assert len({(r.group, r.name) for r in CATALOG}) == len(CATALOG)


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize("path", ALL, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_recipe_runs_one_batch(
    path: Path, tmp_path: Path, pretext_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(sys, "argv", ["lit-deep"])  # LightningCLI warns when pytest's own arguments are there
    monkeypatch.chdir(tmp_path)
    args = ["fit", "--config", str(path), "--trainer.fast_dev_run", "true", "--trainer.enable_progress_bar", "false"]
    args += ["--trainer.default_root_dir", str(tmp_path)]
    if path.stem == "rotation_finetune":
        args += ["--model.init_args.model.init_args.checkpoint", str(pretext_checkpoint)]
    assert main(args) == 0


@pytest.mark.realdata
@pytest.mark.ddp
@pytest.mark.slow
def test_a_recipe_runs_under_ddp_on_two_cpu_processes(tmp_path: Path) -> None:
    import json
    import os
    import subprocess

    recipe = RECIPES / "batchnorm" / "bn_after.yaml"  # BatchNorm: per-process statistics (SyncBatchNorm is GPU-only)
    args = ["fit", "--config", str(recipe), "--trainer.devices", "2", "--trainer.strategy", "ddp"]
    args += ["--trainer.max_epochs", "1"]  # one epoch: 860 steps of 32 images on each rank
    args += ["--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path)]
    args += ["--trainer.logger", "false", "--trainer.callbacks", "[]", "--trainer.enable_checkpointing", "false"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "lit_deep.cli", *args]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "All distributed processes registered. Starting with 2 processes" in done.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["metrics"]["test_acc"] > 0.6  # SGD at the book's 0.001; the test set is split between the ranks
