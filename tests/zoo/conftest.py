"""Fixtures of the zoo tests: a tiny registered zoo model, the loopback Hub, no retry sleeps."""

from __future__ import annotations

import dataclasses
import time
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from lit_deep.models import build
from lit_deep.zoo._hub import SHIPPED_DIR_ENV
from lit_deep.zoo._integrity import sha256_file
from lit_deep.zoo.registry import NAMESPACE_ENV, REGISTRY, PreprocessingSpec, ZooEntry
from lit_deep.zoo.release.cards import config_dict, write_repo_files
from tests.zoo.hub_server import HubServer

TINY = "mlp.tiny"


@dataclass
class TinyZoo:
    """A tiny zoo model registered as ``mlp.tiny``: its entry, its repo folder and its weights."""

    entry: ZooEntry
    folder: Path
    state: dict[str, torch.Tensor]
    empty_dir: Path

    @property
    def weights(self) -> bytes:
        return (self.folder / "model.safetensors").read_bytes()


def make_tiny_entry(folder: Path, seed: int = 0) -> tuple[ZooEntry, dict[str, torch.Tensor]]:
    """Write a tiny MLP zoo repo into ``folder`` and return its entry (not registered) and weights."""
    entry = ZooEntry(
        name=TINY,
        architecture={
            "class_path": "lit_deep.models.MLP",
            "init_args": {"input_shape": [1, 28, 28], "hidden": [8], "num_classes": 3, "activation": "relu"},
        },
        preprocessing=PreprocessingSpec(standardize="per_pixel"),
        task="full",
        class_names=("a", "b", "c"),
        sha256="",
        metrics={"test_acc": 0.5},
        summary="A tiny test model.",
        limits="None.",
    )
    torch.manual_seed(seed)
    model = build(config_dict(entry)["model"])  # Preprocess first, then the MLP's layers
    model.backbone[0].mean.uniform_(0.2, 0.4)
    model.backbone[0].std.uniform_(0.2, 0.4)
    state = {k: v.contiguous().clone() for k, v in model.state_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, str(folder / "model.safetensors"))
    entry = dataclasses.replace(entry, sha256=sha256_file(folder / "model.safetensors"))
    write_repo_files(entry, folder)
    return entry, state


@pytest.fixture(autouse=True)
def _no_retry_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """huggingface_hub retries 5xx and network errors with sleeps of 1-8 s; the tests skip the waiting."""
    import huggingface_hub.file_download as file_download
    import huggingface_hub.utils._http as hub_http

    fast_time = types.SimpleNamespace(**{k: getattr(time, k) for k in dir(time) if not k.startswith("__")})
    fast_time.sleep = lambda seconds: None
    monkeypatch.setattr(hub_http, "time", fast_time)
    monkeypatch.setattr(file_download, "time", fast_time)


@pytest.fixture
def tiny_zoo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TinyZoo:
    """``mlp.tiny`` in the registry; no shipped copy unless a test points ``$LIT_DEEP_ZOO_DIR`` at ``folder.parent``."""
    entry, state = make_tiny_entry(tmp_path / "shipped" / TINY)
    monkeypatch.setitem(REGISTRY, TINY, entry)
    empty = tmp_path / "no-shipped-copies"
    empty.mkdir()
    monkeypatch.setenv(SHIPPED_DIR_ENV, str(empty))
    monkeypatch.delenv(NAMESPACE_ENV, raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return TinyZoo(entry, tmp_path / "shipped" / TINY, state, empty)


@pytest.fixture
def hub(tiny_zoo: TinyZoo, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """The loopback Hub serving ``lit-deep/mlp.tiny``, with ``HF_ENDPOINT`` pointing at it."""
    server = HubServer().start()
    server.state.add_folder(f"lit-deep/{TINY}", tiny_zoo.folder)
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    yield server
    server.stop()


@pytest.fixture
def cache(tmp_path: Path) -> str:
    """An empty Hub cache folder."""
    return str(tmp_path / "hf-cache")
