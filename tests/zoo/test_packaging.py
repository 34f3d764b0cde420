"""The wheel ships the zoo: every published model's three files, byte for byte, and the zoo stays small."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from lit_deep.zoo import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
FILES = ("README.md", "config.json", "model.safetensors", "card.json")


@pytest.mark.slow
def test_the_wheel_ships_every_zoo_model(tmp_path: Path) -> None:
    # A copy of the source tree (symlinks kept: lit_deep/_zoo_files -> ../zoo), so no stale build/ is reused.
    junk = shutil.ignore_patterns(".git", ".venv", "runs", "out", "build", "dist", "*.egg-info", "*cache*")
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, symlinks=True, ignore=junk)
    build = [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q"]
    done = subprocess.run([*build, "-w", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = tmp_path.glob("lit_deep-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        # The native mask kernel's source, compiled on first use (lit_deep.uncertainty._native).
        assert archive.read("lit_deep/uncertainty/_masks.c") == (ROOT / "lit_deep/uncertainty/_masks.c").read_bytes()
        shipped = {
            info.filename.removeprefix("lit_deep/_zoo_files/"): archive.read(info)
            for info in archive.infolist()
            if info.filename.startswith("lit_deep/_zoo_files/")
        }
    assert sorted(shipped) == sorted(f"{name}/{f}" for name in REGISTRY for f in FILES)
    for name, entry in REGISTRY.items():
        assert hashlib.sha256(shipped[f"{name}/model.safetensors"]).hexdigest() == entry.sha256, name
        for f in FILES:
            assert shipped[f"{name}/{f}"] == (ROOT / "zoo" / name / f).read_bytes(), f"{name}/{f}"
    assert sum(len(data) for data in shipped.values()) < 30e6  # the budget for the whole zoo
