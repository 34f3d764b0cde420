"""``lit-deep zoo`` verbs; ``push`` uploads through the real huggingface_hub client to the loopback Hub."""

from __future__ import annotations

import json
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch

from lit_deep import cli as lit_cli
from lit_deep import zoo
from lit_deep.zoo.release import cli
from tests.zoo.conftest import TINY, TinyZoo
from tests.zoo.hub_server import HubServer


def test_list_shows_every_model_with_its_metrics(capsys: pytest.CaptureFixture[str]) -> None:
    assert lit_cli.main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    assert "mlp_selu.fmnist_a" in out
    assert "lit-deep/cnn.fmnist@main" in out


def test_info_prints_the_entry_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["info", "cnn.fmnist"]) == 0
    assert json.loads(capsys.readouterr().out)["architecture"]["class_path"] == "lit_deep.models.CNN"


def test_unknown_name_is_one_error_line_and_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["info", "cnn.fmnst"]) == 2
    assert "did you mean 'cnn.fmnist'" in capsys.readouterr().err


def test_download_verifies_into_the_cache(hub: HubServer, cache: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["download", TINY, "--cache-dir", cache]) == 0
    assert "source: hub, SHA-256 verified" in capsys.readouterr().out
    assert hub.state.count("GET", "model.safetensors") == 1


@pytest.fixture
def push_hub(hub: HubServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> HubServer:
    """The loopback Hub taking uploads: a token in the environment, plain LFS (the server does not speak Xet)."""
    monkeypatch.setenv("HF_TOKEN", "hf_env")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no token stored by a login on this machine
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
    return hub


# huggingface_hub's own LFS upload (lfs._upload_single_part) passes data= to httpx2, which warns about it.
@pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning")
def test_push_creates_the_repo_and_uploads_the_folder(
    push_hub: HubServer, tiny_zoo: TinyZoo, cache: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tiny_zoo.folder / "notes.txt").write_text("not part of the repo\n")
    args = ["push", TINY, "--repo-id", "me/mlp.tiny", "--folder", str(tiny_zoo.folder), "--private"]
    assert cli.main([*args, "--token", "hf_cli"]) == 0
    repo = "me/mlp.tiny"
    assert repo in push_hub.state.private
    files = push_hub.state.repos[repo]
    assert sorted(files) == [".gitattributes", "README.md", "config.json", "model.safetensors"]
    for name in ("README.md", "config.json", "model.safetensors"):
        assert files[name] == (tiny_zoo.folder / name).read_bytes(), name
    commit = push_hub.state.branches[repo]["main"]
    header, *operations = push_hub.state.operations[commit]
    assert header == ("header", f"Upload {TINY} (lit_deep zoo, SHA-256 {tiny_zoo.entry.sha256[:12]})")
    assert sorted(operations) == [("file", "README.md"), ("file", "config.json"), ("lfsFile", "model.safetensors")]
    log = zip(push_hub.state.requests, push_hub.state.authorizations, strict=True)
    assert {auth for (_, path), auth in log if "/commit/" in path or "/repos/create" in path} == {"Bearer hf_cli"}
    assert f"commit {commit}" in capsys.readouterr().out
    # The pushed repo loads like any zoo model (the Hub's hash checked; the token from HF_TOKEN: it is private).
    loaded = zoo.load(repo, cache_dir=cache)
    assert (loaded.zoo_info.commit, loaded.zoo_info.sha256) == (commit, tiny_zoo.entry.sha256)
    assert torch.equal(loaded.head.weight, tiny_zoo.state["head.weight"])


@pytest.mark.parametrize(
    ("repo_id", "edit", "message"),
    [("no-slash", False, "repo_id: expected 'owner/name'"), ("me/x", True, "not in sync with the registry")],
)
def test_push_refuses_bad_repo_ids_and_unsynced_folders(
    repo_id: str, edit: bool, message: str, push_hub: HubServer, tiny_zoo: TinyZoo, capsys: pytest.CaptureFixture[str]
) -> None:
    if edit:
        (tiny_zoo.folder / "README.md").write_text("hand-edited card\n")
    assert cli.main(["push", TINY, "--repo-id", repo_id, "--folder", str(tiny_zoo.folder)]) == 2
    assert push_hub.state.requests == []  # refused before any request
    assert message in capsys.readouterr().err


def test_push_needs_a_name_or_a_checkpoint_not_both(
    push_hub: HubServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["push", "--repo-id", "me/x"]) == 2
    assert "push: give either a registered NAME or --checkpoint PATH (not both)" in capsys.readouterr().err
    assert cli.main(["push", TINY, "--checkpoint", str(tmp_path / "run.ckpt"), "--repo-id", "me/x"]) == 2
    assert "(not both)" in capsys.readouterr().err
    assert cli.main(["push", "--checkpoint", str(tmp_path / "missing.ckpt"), "--repo-id", "me/x"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert push_hub.state.requests == []


def test_cards_check_reports_and_cards_regenerates(tiny_zoo: TinyZoo, tmp_path: Path) -> None:
    out = tmp_path / "zoo"
    (out / TINY).mkdir(parents=True)
    (out / TINY / "model.safetensors").write_bytes(tiny_zoo.weights)
    assert cli.main(["cards", "--check", "--out", str(out)]) == 1
    assert cli.main(["cards", "--out", str(out)]) == 0
    assert (out / TINY / "config.json").read_text() == (tiny_zoo.folder / "config.json").read_text()
    assert not (out / "cnn.fmnist").exists()  # folders without weights are left alone
