"""zoo.load against a loopback Hub: download, cache, integrity, errors, offline, shipped copy."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from lit_deep import zoo
from lit_deep.zoo import ZooDownloadError, ZooIntegrityError
from lit_deep.zoo._hub import SHIPPED_DIR_ENV
from lit_deep.zoo._integrity import sha256_file
from lit_deep.zoo.registry import NAMESPACE_ENV
from tests.zoo.conftest import TINY, TinyZoo
from tests.zoo.hub_server import COMMIT, HubServer


def _blobs(cache: str) -> list[Path]:
    return [p for p in Path(cache).rglob("blobs/*") if p.is_file()]


def _tamper(hub: HubServer, tiny_zoo: TinyZoo) -> None:
    data = bytearray(tiny_zoo.weights)
    data[-5] ^= 0xFF  # one flipped byte inside the last tensor: the file still parses, its hash does not match
    hub.state.repos[f"lit-deep/{TINY}"]["model.safetensors"] = bytes(data)


def test_first_download_loads_verified_weights(hub: HubServer, tiny_zoo: TinyZoo, cache: str) -> None:
    model = zoo.load(TINY, cache_dir=cache)
    info = model.zoo_info
    assert (info.name, info.repo_id, info.revision, info.commit, info.source) == (
        TINY,
        f"lit-deep/{TINY}",
        "main",
        COMMIT,  # the commit the revision resolved to
        "hub",
    )
    assert info.sha256 == tiny_zoo.entry.sha256
    assert info.class_names == ("a", "b", "c")
    assert info.config["name"] == TINY
    assert not model.training
    assert hub.state.count("GET", "model.safetensors") == 1
    assert hub.state.count("GET", "config.json") == 1
    for key, value in tiny_zoo.state.items():
        assert torch.equal(model.state_dict()[key], value), key


def test_second_load_reads_the_cache_with_the_server_stopped(hub: HubServer, cache: str) -> None:
    first = zoo.load(TINY, cache_dir=cache)
    hub.stop()
    second = zoo.load(TINY, cache_dir=cache)
    assert second.zoo_info.source == "hub"
    assert second.zoo_info.commit == COMMIT
    x = torch.rand(4, 28, 28)
    torch.testing.assert_close(first(x), second(x))


def test_offline_mode_loads_from_the_cache_without_requests(
    hub: HubServer, cache: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    zoo.load(TINY, cache_dir=cache)
    seen = len(hub.state.requests)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert zoo.load(TINY, cache_dir=cache).zoo_info.source == "hub"
    assert len(hub.state.requests) == seen


def test_tampered_file_is_rejected_and_not_trusted_next_time(hub: HubServer, tiny_zoo: TinyZoo, cache: str) -> None:
    _tamper(hub, tiny_zoo)
    with pytest.raises(ZooIntegrityError, match="SHA-256 mismatch for model.safetensors"):
        zoo.load(TINY, cache_dir=cache)
    weights_size = len(tiny_zoo.weights)
    assert not any(b.stat().st_size == weights_size and sha256_file(b) != tiny_zoo.entry.sha256 for b in _blobs(cache))
    with pytest.raises(ZooIntegrityError, match="deleted from the cache"):
        zoo.load(TINY, cache_dir=cache)
    assert hub.state.count("GET", "model.safetensors") == 2  # downloaded again, not read from the cache
    hub.state.add_folder(f"lit-deep/{TINY}", tiny_zoo.folder)
    assert zoo.load(TINY, cache_dir=cache).zoo_info.source == "hub"


def test_truncated_file_is_rejected(hub: HubServer, tiny_zoo: TinyZoo, cache: str) -> None:
    hub.state.truncate["model.safetensors"] = len(tiny_zoo.weights) - 100
    with pytest.raises(ZooIntegrityError, match=f"expected {tiny_zoo.entry.sha256}"):
        zoo.load(TINY, cache_dir=cache)
    assert all(b.stat().st_size != len(tiny_zoo.weights) - 100 for b in _blobs(cache))


def test_connection_dropped_mid_body_leaves_nothing_cached(hub: HubServer, tiny_zoo: TinyZoo, cache: str) -> None:
    hub.state.drop_body.add("model.safetensors")
    with pytest.raises(ZooDownloadError, match=r"mlp\.tiny.*cannot download"):
        zoo.load(TINY, cache_dir=cache)
    config = (tiny_zoo.folder / "config.json").read_bytes()
    assert all(b.read_bytes() == config for b in _blobs(cache))  # only config.json made it


def test_missing_file_404_is_a_clear_error(
    hub: HubServer, tiny_zoo: TinyZoo, cache: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    del hub.state.repos[f"lit-deep/{TINY}"]["model.safetensors"]
    monkeypatch.setenv(SHIPPED_DIR_ENV, str(tiny_zoo.folder.parent))  # a shipped copy must not hide a broken repo
    with pytest.raises(ZooDownloadError, match="the Hub has no such file"):
        zoo.load(TINY, cache_dir=cache)


def test_unknown_revision_is_a_clear_error(hub: HubServer, cache: str) -> None:
    with pytest.raises(ZooDownloadError, match="the Hub has no such revision"):
        zoo.load(TINY, revision="v9", cache_dir=cache)


def test_server_error_500_uses_the_cache(hub: HubServer, cache: str) -> None:
    zoo.load(TINY, cache_dir=cache)
    hub.state.status = 500
    assert zoo.load(TINY, cache_dir=cache).zoo_info.source == "hub"


def test_server_error_500_without_cache_or_shipped_copy(hub: HubServer, cache: str) -> None:
    hub.state.status = 500
    with pytest.raises(ZooDownloadError, match=rf"'{TINY}'.*{hub.url}.*Remedies"):
        zoo.load(TINY, cache_dir=cache)


@pytest.mark.parametrize("failure", ["down", "500", "repo_not_found"])
def test_unreachable_hub_falls_back_to_the_shipped_copy(
    failure: str,
    hub: HubServer,
    tiny_zoo: TinyZoo,
    cache: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv(SHIPPED_DIR_ENV, str(tiny_zoo.folder.parent))
    if failure == "down":
        hub.stop()
    elif failure == "500":
        hub.state.status = 500
    else:
        monkeypatch.setenv(NAMESPACE_ENV, "not-published")
    with caplog.at_level(logging.INFO):
        model = zoo.load(TINY, cache_dir=cache)
    assert (model.zoo_info.source, model.zoo_info.commit) == ("shipped", None)
    assert model.zoo_info.sha256 == tiny_zoo.entry.sha256
    lines = [r for r in caplog.records if "using the copy shipped with lit_deep" in r.getMessage()]
    assert len(lines) == 1
    torch.testing.assert_close(model.state_dict()["head.weight"], tiny_zoo.state["head.weight"])
    if failure == "500":  # one quick probe, not huggingface_hub's back-off retries (about 30 s), then the copy
        assert hub.state.count("HEAD", "config.json") == 1
        assert hub.state.count("GET", "model.safetensors") == 0


def test_server_down_without_shipped_copy_names_model_endpoint_and_remedies(hub: HubServer, cache: str) -> None:
    hub.stop()
    with pytest.raises(ZooDownloadError) as info:
        zoo.load(TINY, cache_dir=cache)
    message = str(info.value)
    assert TINY in message
    assert hub.url in message
    assert "HF_HUB_OFFLINE=1" in message
    assert SHIPPED_DIR_ENV in message


def test_offline_without_cache_or_shipped_copy(hub: HubServer, cache: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ZooDownloadError, match="HF_HUB_OFFLINE is set"):
        zoo.load(TINY, cache_dir=cache)
    assert hub.state.requests == []


def test_tampered_shipped_copy_is_rejected_and_kept(
    hub: HubServer, tiny_zoo: TinyZoo, cache: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.stop()
    bad = tiny_zoo.empty_dir / TINY
    bad.mkdir()
    (bad / "config.json").write_bytes((tiny_zoo.folder / "config.json").read_bytes())
    (bad / "model.safetensors").write_bytes(tiny_zoo.weights[:-10])
    monkeypatch.setenv(SHIPPED_DIR_ENV, str(tiny_zoo.empty_dir))
    with pytest.raises(ZooIntegrityError, match="copy shipped with lit_deep"):
        zoo.load(TINY, cache_dir=cache)
    assert (bad / "model.safetensors").is_file()


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_namespace_is_configurable(
    how: str, hub: HubServer, tiny_zoo: TinyZoo, cache: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.state.add_folder(f"my-org/{TINY}", tiny_zoo.folder)
    if how == "environment":
        monkeypatch.setenv(NAMESPACE_ENV, "my-org")
    zoo.load(TINY, cache_dir=cache, namespace="my-org" if how == "argument" else None)
    assert all(path.startswith(f"/my-org/{TINY}/") for _, path in hub.state.requests)


def test_other_revision_is_checked_against_the_hub_hash(hub: HubServer, cache: str) -> None:
    hub.state.revisions["v2"] = "f" * 40
    model = zoo.load(TINY, revision="v2", cache_dir=cache)
    assert (model.zoo_info.source, model.zoo_info.revision, model.zoo_info.commit) == ("hub", "v2", "f" * 40)
    with pytest.raises(ValueError, match="sha256: expected 64 hex digits"):
        zoo.load(TINY, revision="v2", cache_dir=cache, sha256="abc")
