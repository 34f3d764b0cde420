"""``lit-deep zoo`` verbs; ``push`` is checked at the HfApi boundary (a mock: the real Hub is unreachable)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest

from lit_deep import cli as lit_cli
from lit_deep.zoo import cli
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


def test_push_creates_the_repo_and_uploads_the_folder(tiny_zoo: TinyZoo, capsys: pytest.CaptureFixture[str]) -> None:
    api = mock.MagicMock()
    api.upload_folder.return_value = SimpleNamespace(oid="c0ffee" * 6 + "abcd")
    with mock.patch.object(cli, "HfApi", return_value=api) as hf_api:
        code = cli.main(["push", TINY, "--repo-id", "me/mlp.tiny", "--folder", str(tiny_zoo.folder), "--private"])
    assert code == 0
    hf_api.assert_called_once_with(token=None)
    api.create_repo.assert_called_once_with(repo_id="me/mlp.tiny", repo_type="model", private=True, exist_ok=True)
    kwargs = api.upload_folder.call_args.kwargs
    assert kwargs["repo_id"] == "me/mlp.tiny"
    assert kwargs["folder_path"] == str(tiny_zoo.folder)
    assert set(kwargs["allow_patterns"]) == {"config.json", "model.safetensors", "README.md"}
    assert "commit c0ffee" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("repo_id", "edit", "message"),
    [("no-slash", False, "repo_id: expected 'namespace/name'"), ("me/x", True, "not in sync with the registry")],
)
def test_push_refuses_bad_repo_ids_and_unsynced_folders(
    repo_id: str, edit: bool, message: str, tiny_zoo: TinyZoo, capsys: pytest.CaptureFixture[str]
) -> None:
    if edit:
        (tiny_zoo.folder / "README.md").write_text("hand-edited card\n")
    with mock.patch.object(cli, "HfApi") as hf_api:
        assert cli.main(["push", TINY, "--repo-id", repo_id, "--folder", str(tiny_zoo.folder)]) == 2
    hf_api.assert_not_called()
    assert message in capsys.readouterr().err


def test_cards_check_reports_and_cards_regenerates(tiny_zoo: TinyZoo, tmp_path: Path) -> None:
    out = tmp_path / "zoo"
    (out / TINY).mkdir(parents=True)
    (out / TINY / "model.safetensors").write_bytes(tiny_zoo.weights)
    assert cli.main(["cards", "--check", "--out", str(out)]) == 1
    assert cli.main(["cards", "--out", str(out)]) == 0
    assert (out / TINY / "config.json").read_text() == (tiny_zoo.folder / "config.json").read_text()
    assert not (out / "cnn.fmnist").exists()  # folders without weights are left alone
