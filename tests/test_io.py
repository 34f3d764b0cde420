"""lit_deep._io: one atomic writer (unpredictable O_EXCL temp names, one-line errors) and package folders."""

from __future__ import annotations

import errno
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from lit_deep._io import WriteError, atomic_file, atomic_write, write_json, write_package_folder


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB tmpfs (root only); skipped where it cannot be mounted."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_the_temp_file_is_made_by_mkstemp_beside_the_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    real = tempfile.mkstemp

    def spy(*args: Any, **kwargs: Any) -> tuple[int, str]:
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", spy)
    atomic_write(tmp_path / "last.ckpt", b"x")
    assert calls == [{"dir": tmp_path, "prefix": ".last.ckpt.", "suffix": ".tmp"}]


def test_a_symlink_planted_at_a_temp_name_is_never_followed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    shared = tmp_path / "shared"
    shared.mkdir()
    old_pattern = shared / f".last.ckpt.{os.getpid()}.tmp"  # the name the writer used to open with open("wb")
    old_pattern.symlink_to(victim)
    # Force mkstemp's first candidate onto a second planted link: O_EXCL must refuse it and try another name.
    planted = shared / ".last.ckpt.guessed.tmp"
    planted.symlink_to(victim)
    names = iter(["guessed", "fresh"])
    monkeypatch.setattr(tempfile, "_get_candidate_names", lambda: names)
    atomic_write(shared / "last.ckpt", b"new checkpoint")
    assert victim.read_bytes() == b"precious"
    assert old_pattern.is_symlink() and planted.is_symlink()
    assert (shared / "last.ckpt").read_bytes() == b"new checkpoint"
    assert sorted(p.name for p in shared.iterdir()) == sorted([".last.ckpt.guessed.tmp", old_pattern.name, "last.ckpt"])


def test_a_failure_mid_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = write_json(tmp_path / "results.json", {"acc": 0.5})

    def half(handle: IO[bytes]) -> None:
        handle.write(b'{"acc": 0.')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, half)
    assert target.read_text() == '{"acc": 0.5}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_an_oserror_becomes_one_line_naming_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError, match="could not write") as caught:
        atomic_write(tmp_path / "x.bin", b"data")
    assert str(caught.value) == f"could not write '{tmp_path / 'x.bin'}': No space left on device (errno 28)"
    assert caught.value.errno == errno.ENOSPC and "\n" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_a_real_full_disk_is_one_line_naming_the_file(tiny_disk: Path) -> None:
    target = atomic_write(tiny_disk / "last.ckpt", b"old")
    with pytest.raises(WriteError) as caught:
        atomic_write(target, os.urandom(200_000))
    assert str(caught.value) == f"could not write '{target}': No space left on device (errno 28)"
    assert caught.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"old"
    assert [p.name for p in tiny_disk.iterdir()] == ["last.ckpt"]


def test_the_new_file_gets_the_usual_permissions(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        mode = atomic_write(tmp_path / "a.txt", b"x").stat().st_mode & 0o777
    finally:
        os.umask(umask)
    assert mode == 0o644  # not mkstemp's 0o600


def test_text_mode_and_bad_arguments(tmp_path: Path) -> None:
    with atomic_file(tmp_path / "t.txt", "w") as handle:
        handle.write("héllo")
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo"
    with pytest.raises(ValueError, match="mode: expected 'wb' or 'w', got 'ab'"), atomic_file(tmp_path / "t", "ab"):
        pass
    with pytest.raises(TypeError, match="content: expected bytes or a function writing to a file, got str"):
        atomic_write(tmp_path / "t", "text")  # type: ignore[arg-type]


def test_a_package_is_swapped_whole(tmp_path: Path) -> None:
    package = tmp_path / "mlp.fmnist"
    write_package_folder(package, {"config.json": b"1", "README.md": b"1", "model.safetensors": b"1"})
    inode = package.stat().st_ino
    write_package_folder(package, {"config.json": b"2", "README.md": b"2"})
    assert {p.name: p.read_bytes() for p in package.iterdir()} == {
        "config.json": b"2",
        "README.md": b"2",
        "model.safetensors": b"1",  # kept: not named
    }
    assert package.stat().st_ino != inode  # a new folder took the old one's place
    assert [p.name for p in tmp_path.iterdir()] == ["mlp.fmnist"]


def test_a_failed_package_write_keeps_the_old_package(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    write_package_folder(package, {"config.json": b"old", "README.md": b"old"})

    def fails(handle: IO[bytes]) -> None:
        handle.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(WriteError, match=r"could not write '.*README\.md': No space left on device \(errno 28\)"):
        write_package_folder(package, {"config.json": b"new", "README.md": fails})
    assert {p.name: p.read_bytes() for p in package.iterdir()} == {"config.json": b"old", "README.md": b"old"}
    assert [p.name for p in tmp_path.iterdir()] == ["pkg"]


def test_a_package_on_a_full_disk_keeps_the_old_package(tiny_disk: Path) -> None:
    package = tiny_disk / "pkg"
    write_package_folder(package, {"config.json": b"old", "model.safetensors": b"old"})
    with pytest.raises(WriteError, match="No space left on device"):
        write_package_folder(package, {"config.json": b"new", "model.safetensors": os.urandom(200_000)})
    assert {p.name: p.read_bytes() for p in package.iterdir()} == {"config.json": b"old", "model.safetensors": b"old"}
    assert [p.name for p in tiny_disk.iterdir()] == ["pkg"]


def test_a_package_file_name_must_be_plain(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="files: '../x' is not a plain file name"):
        write_package_folder(tmp_path / "pkg", {"../x": b""})
