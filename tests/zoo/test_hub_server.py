"""The loopback Hub against the real huggingface_hub client: create_repo, upload_folder (LFS), model_info, download."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, constants, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError
from safetensors.torch import save_file

from tests.zoo.hub_server import COMMIT, HubServer

REPO = "lit-deep/round-trip"
# huggingface_hub's own LFS upload (lfs._upload_single_part) passes data= to httpx2, which warns about it.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning")


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """A fresh loopback Hub; uploads take the LFS path (huggingface_hub would pick Xet whenever hf_xet imports)."""
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    hub = HubServer().start()
    monkeypatch.setenv("HF_ENDPOINT", hub.url)  # huggingface_hub reads it at import: calls pass endpoint= too
    yield hub
    hub.stop()


def _folder(path: Path, seed: int) -> Path:
    """A model folder: config.json, README.md with a card header, and model.safetensors."""
    path.mkdir(parents=True)
    torch.manual_seed(seed)
    save_file({"weight": torch.randn(8, 4), "bias": torch.randn(4)}, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps({"seed": seed}))
    (path / "README.md").write_text("---\nlicense: mit\nlibrary_name: lit_deep\n---\n# Round trip\n")
    return path


def _upload(hub: HubServer, folder: Path, token: str | bool = "x") -> str:
    api = HfApi(endpoint=hub.url, token=token)
    return api.upload_folder(repo_id=REPO, folder_path=str(folder), commit_message=f"Upload {folder.name}").oid


def _download(hub: HubServer, filename: str, cache: Path, revision: str | None = None) -> Path:
    return Path(hf_hub_download(REPO, filename, revision=revision, cache_dir=str(cache), endpoint=hub.url))


def test_create_upload_info_download_round_trip(server: HubServer, tmp_path: Path) -> None:
    api = HfApi(endpoint=server.url, token="x")
    url = api.create_repo(REPO, exist_ok=True)
    assert url.repo_id == REPO
    assert api.create_repo(REPO, exist_ok=True).repo_id == REPO  # the Hub's 409, which exist_ok accepts
    folder = _folder(tmp_path / "v1", seed=0)
    oid = _upload(server, folder)
    assert len(oid) == 40 and all(c in "0123456789abcdef" for c in oid)

    info = api.model_info(REPO, revision="main", files_metadata=True)
    assert info.sha == oid
    siblings = {s.rfilename: s for s in info.siblings or []}
    weights = (folder / "model.safetensors").read_bytes()
    sha256 = hashlib.sha256(weights).hexdigest()
    lfs = siblings["model.safetensors"].lfs
    assert lfs is not None and (lfs.sha256, lfs.size) == (sha256, len(weights))
    config = siblings["config.json"]
    assert config.lfs is None and config.size == (folder / "config.json").stat().st_size
    assert api.list_repo_files(REPO) == [".gitattributes", "README.md", "config.json", "model.safetensors"]

    cache = tmp_path / "hf-cache"
    for name in ("config.json", "README.md", "model.safetensors"):
        path = _download(server, name, cache)
        assert path.read_bytes() == (folder / name).read_bytes()
        assert path.parent.name == oid  # snapshots/<commit>: X-Repo-Commit
    assert Path(os.path.realpath(_download(server, "model.safetensors", cache))).name == sha256  # the LFS ETag

    # What the client really did: the weights went through the LFS batch API and a PUT without credentials.
    puts = [i for i, (method, _) in enumerate(server.state.requests) if method == "PUT"]
    assert len(puts) == 1 and server.state.requests[puts[0]][1].startswith(f"/lfs-objects/{sha256}?signature=")
    assert server.state.authorizations[puts[0]] is None
    assert server.state.count("POST", "info/lfs/objects/batch") == 1
    assert server.state.count("POST", "info/lfs/objects/verify") == 1
    log = zip(server.state.requests, server.state.authorizations, strict=True)
    assert [auth for (_, path), auth in log if "/commit/" in path] == ["Bearer x"]
    assert not any("xet" in path for _, path in server.state.requests)


def test_second_upload_is_a_new_commit_and_the_first_still_resolves(server: HubServer, tmp_path: Path) -> None:
    HfApi(endpoint=server.url, token="x").create_repo(REPO)
    first_folder, second_folder = _folder(tmp_path / "v1", seed=0), _folder(tmp_path / "v2", seed=1)
    first, second = _upload(server, first_folder), _upload(server, second_folder)
    assert first != second

    cache = tmp_path / "hf-cache"
    latest = _download(server, "model.safetensors", cache)
    assert latest.read_bytes() == (second_folder / "model.safetensors").read_bytes()
    old = _download(server, "model.safetensors", cache, revision=first)
    assert old.read_bytes() == (first_folder / "model.safetensors").read_bytes()
    assert old.parent.name == first
    assert HfApi(endpoint=server.url).model_info(REPO, revision=first).sha == first
    # README.md did not change: the preupload answer carried its remote oid, so the client left it out.
    assert server.state.operations[first][1:] == [
        ("file", "README.md"),
        ("file", "config.json"),
        ("lfsFile", "model.safetensors"),
    ]
    assert server.state.operations[second] == [
        ("header", "Upload v2"),
        ("file", "config.json"),
        ("lfsFile", "model.safetensors"),
    ]


def test_upload_onto_a_repo_served_by_add_folder(server: HubServer, tmp_path: Path) -> None:
    old = _folder(tmp_path / "v1", seed=0)
    server.state.add_folder(REPO, old)
    HfApi(endpoint=server.url, token="x").create_repo(REPO, exist_ok=True)
    oid = _upload(server, _folder(tmp_path / "v2", seed=1))
    assert HfApi(endpoint=server.url).model_info(REPO).sha == oid
    before = _download(server, "model.safetensors", tmp_path / "cache", revision=COMMIT)
    assert before.read_bytes() == (old / "model.safetensors").read_bytes()


def test_create_commit_deletes_and_adds_regular_and_lfs_files(server: HubServer, tmp_path: Path) -> None:
    api = HfApi(endpoint=server.url, token="x")
    api.create_repo(REPO)
    _upload(server, _folder(tmp_path / "v1", seed=0))
    big = b"\0" * 100  # binary: the preupload answer routes it to LFS although no pattern matches
    info = api.create_commit(
        REPO,
        [
            CommitOperationDelete("config.json"),
            CommitOperationAdd("notes/a.txt", b"hello"),
            CommitOperationAdd("notes/blob.dat", big),
        ],
        commit_message="Edit",
    )
    assert sorted(api.list_repo_files(REPO, revision=info.oid)) == [
        ".gitattributes",
        "README.md",
        "model.safetensors",
        "notes/a.txt",
        "notes/blob.dat",
    ]
    tree = {f.path: f for f in api.list_repo_tree(REPO, "notes")}
    assert tree["notes/blob.dat"].lfs is not None and tree["notes/a.txt"].lfs is None
    assert _download(server, "notes/blob.dat", tmp_path / "cache").read_bytes() == big


def test_upload_without_a_token_is_refused_with_the_hub_auth_error(server: HubServer, tmp_path: Path) -> None:
    with pytest.raises(HfHubHTTPError, match=r"401(.|\n)*Invalid username or password"):
        HfApi(endpoint=server.url, token=False).create_repo(REPO)
    HfApi(endpoint=server.url, token="x").create_repo(REPO)
    before = server.state.branches[REPO]["main"]
    with pytest.raises(HfHubHTTPError, match=r"401(.|\n)*Invalid username or password"):
        _upload(server, _folder(tmp_path / "v1", seed=0), token=False)
    assert server.state.branches[REPO]["main"] == before
    assert server.state.objects == {}


def test_private_repo_is_not_found_without_a_token(server: HubServer) -> None:
    HfApi(endpoint=server.url, token="x").create_repo(REPO, private=True)
    assert HfApi(endpoint=server.url, token="x").model_info(REPO).private is True
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=server.url, token=False).model_info(REPO)


def test_stale_parent_commit_and_bad_card_metadata_are_refused(server: HubServer, tmp_path: Path) -> None:
    api = HfApi(endpoint=server.url, token="x")
    api.create_repo(REPO)
    first = _upload(server, _folder(tmp_path / "v1", seed=0))
    _upload(server, _folder(tmp_path / "v2", seed=1))
    with pytest.raises(HfHubHTTPError, match="A commit has happened since"):
        api.create_commit(REPO, [CommitOperationAdd("x.txt", b"x")], commit_message="late", parent_commit=first)
    with pytest.raises(ValueError, match="Invalid metadata in README.md"):
        api.create_commit(REPO, [CommitOperationAdd("README.md", b"---\nlicense: [mit\n---\n")], commit_message="bad")
    assert "x.txt" not in server.state.repos[REPO]
