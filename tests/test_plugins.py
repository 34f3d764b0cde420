"""lit_deep.plugins: a checkpoint on a full disk is one line naming it, and the old checkpoint survives."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import torch

from lit_deep.plugins import AtomicCheckpointIO
from tests.test_io import tiny_disk  # noqa: F401  (a fixture)


def test_a_full_disk_during_torch_save_is_one_line(tiny_disk: Path) -> None:  # noqa: F811
    path = tiny_disk / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"w": torch.zeros(4)}, path)
    before = path.read_bytes()
    with pytest.raises(
        OSError, match="could not write"
    ) as caught:  # torch's zip writer raises "RuntimeError: ... unexpected pos"
        AtomicCheckpointIO().save_checkpoint({"w": torch.zeros(100_000)}, path)
    assert str(caught.value) == f"could not write '{path}': No space left on device (errno 28)"
    assert caught.value.errno == errno.ENOSPC
    assert path.read_bytes() == before
    assert [p.name for p in tiny_disk.iterdir()] == ["last.ckpt"]


def test_another_runtime_error_is_not_disguised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def bug(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("lit_deep.plugins.torch.save", bug)
    with pytest.raises(RuntimeError, match="^a bug$"):
        AtomicCheckpointIO().save_checkpoint({}, tmp_path / "x.ckpt")
    assert list(tmp_path.iterdir()) == []


def test_fit_on_a_full_disk_ends_in_one_line_naming_the_checkpoint(
    tiny_disk: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from lit_deep.cli import main
    from tests.conftest import write_fake_fmnist
    from tests.test_bad_inputs import QUIET, RECIPE

    monkeypatch.setattr("sys.argv", ["lit-deep"])
    monkeypatch.delenv("LIT_DEEP_DEBUG", raising=False)
    data = write_fake_fmnist(tmp_path / "fmnist", n_train=42, n_test=8)
    argv = ["fit", "--config", str(RECIPE), f"--trainer.default_root_dir={tiny_disk}", "--trainer.max_epochs=1"]
    argv += [f"--data.init_args.data_dir={data.path}", "--data.init_args.val_size=10", "--test_after_fit=false"]
    assert main([*argv, *QUIET]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"lit-deep: error: cannot write {tiny_disk}/checkpoints/"), err
    assert ".ckpt: No space left on device; choose a writable output folder" in err and "\n" not in err
    assert not list((tiny_disk / "checkpoints").iterdir())  # no truncated checkpoint, no temp file
