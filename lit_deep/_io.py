"""Atomic file writes and strict JSON: a crash or a full disk never leaves a truncated file under its final name.

Every writer in lit_deep goes through :func:`atomic_file` (or :func:`atomic_write`, built on it): the bytes go to
a temporary file beside the destination, created by ``tempfile.mkstemp`` (``O_CREAT | O_EXCL`` and an
unpredictable name, so a symlink planted in a shared output folder is never followed), flushed and ``fsync``-ed,
renamed over the destination with ``os.replace`` (atomic on POSIX and Windows), and the folder is ``fsync``-ed
where the platform allows. On any error the temporary file is removed, the destination is left as it was, and an
``OSError`` becomes one :class:`WriteError` line naming the destination (``could not write 'runs/x/last.ckpt':
No space left on device (errno 28)``), its ``errno`` kept.

:func:`write_package_folder` does the same for a folder of files (a zoo package): they are written into a fresh
sibling folder that is then swapped in, so a reader sees the old package or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import errno as errno_codes
import json
import math
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

__all__ = [
    "WriteError",
    "atomic_file",
    "atomic_write",
    "check_writable",
    "save_figure",
    "strict_json",
    "write_json",
    "write_package_folder",
    "write_text",
]


class WriteError(OSError):
    """A write that failed, in one line naming the destination; ``errno``, ``strerror`` and ``filename`` are kept.

    Example::

        >>> err = WriteError(28, "No space left on device", "runs/x/last.ckpt")
        >>> str(err), err.errno, err.filename
        ("could not write 'runs/x/last.ckpt': No space left on device (errno 28)", 28, 'runs/x/last.ckpt')
    """

    def __str__(self) -> str:
        return f"could not write {str(self.filename)!r}: {self.strerror} (errno {self.errno})"


def _write_error(path: Path, err: OSError) -> WriteError:
    """``err`` as a :class:`WriteError` naming ``path`` (a WriteError already naming a file is kept)."""
    if isinstance(err, WriteError):
        return err
    code = err.errno if err.errno is not None else errno_codes.EIO
    reason = err.strerror or os.strerror(code)
    return WriteError(code, reason, str(path))


def _umask() -> int:
    """The process umask, read without changing it (``/proc`` on Linux; 0o022 where it cannot be read)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return 0o022


def _fsync_folder(folder: Path) -> None:
    """``fsync`` a folder so a rename in it survives a power cut (skipped where folders cannot be opened)."""
    if sys.platform == "win32":  # pragma: no cover
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _new_file_mode(path: Path) -> int:
    """The mode the destination gets: the old file's, else what ``open()`` would have given (0o666 less umask)."""
    with contextlib.suppress(OSError):
        return stat.S_IMODE(os.stat(path).st_mode)
    return 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a fresh temporary file beside ``path``; when the block ends without error it replaces ``path``.

    Args:
        path: the destination (its folder is created).
        mode: ``"wb"`` (bytes) or ``"w"`` (UTF-8 text).

    Yields:
        The open temporary file.

    Raises:
        ValueError: for another ``mode``.
        WriteError: (an ``OSError``) naming ``path`` when creating, writing, syncing or renaming fails; the
            temporary file is removed and ``path`` keeps its old content.

    Example::

        >>> target = Path(tempfile.mkdtemp()) / "a.txt"
        >>> with atomic_file(target, "w") as handle:
        ...     _ = handle.write("new")
        >>> target.read_text(), sorted(p.name for p in target.parent.iterdir())
        ('new', ['a.txt'])
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode: expected 'wb' or 'w', got {mode!r}")
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_CREAT | O_EXCL, mode 0o600, a random name: nothing planted beside the destination is ever opened.
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise _write_error(path, err) from err
    tmp = Path(tmp_name)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, _new_file_mode(path))
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(err, OSError):
            raise _write_error(path, err) from err
        raise
    _fsync_folder(path.parent)


def atomic_write(path: str | os.PathLike[str], content: bytes | Callable[[IO[bytes]], object]) -> Path:
    """Write ``content`` (bytes, or a function writing to the binary file it receives) atomically to ``path``.

    Args:
        path: the destination (its folder is created).
        content: the bytes, or ``write(file)``.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        TypeError: when ``content`` is neither bytes nor callable.
        WriteError: naming ``path``; its old content is kept and no temporary file is left.

    Example::

        >>> target = Path(tempfile.mkdtemp()) / "a.bin"
        >>> atomic_write(target, b"ok").read_bytes()
        b'ok'
        >>> def fail(f):
        ...     f.write(b"half")
        ...     raise OSError(28, "No space left on device")
        >>> try:
        ...     atomic_write(target, fail)
        ... except OSError as err:
        ...     print(str(err).replace(str(target.parent), "DIR"))
        could not write 'DIR/a.bin': No space left on device (errno 28)
        >>> target.read_bytes(), sorted(p.name for p in target.parent.iterdir())
        (b'ok', ['a.bin'])
    """
    if not isinstance(content, (bytes, bytearray, memoryview)) and not callable(content):
        raise TypeError(f"content: expected bytes or a function writing to a file, got {type(content).__name__}")
    path = Path(path)
    with atomic_file(path, "wb") as handle:
        if callable(content):
            content(handle)
        else:
            handle.write(content)
    return path


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step with Linux's ``renameat2(RENAME_EXCHANGE)``; False where unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno_codes.ENOSYS, errno_codes.EINVAL, errno_codes.EOPNOTSUPP):  # no support on this kernel/fs
        return False
    raise OSError(code, os.strerror(code), str(b))


def write_package_folder(
    folder: str | os.PathLike[str],
    files: Mapping[str, bytes | Callable[[IO[bytes]], object]],
    keep_others: bool = True,
) -> Path:
    """Write several files into ``folder`` so that a reader sees the old set or the new one, never a mix.

    The files are written (and ``fsync``-ed) into a fresh sibling folder (``tempfile.mkdtemp``), which then
    replaces ``folder``: in one atomic exchange on Linux, else by two renames (between which ``folder`` is
    briefly absent, never half-written). The old folder is removed afterwards.

    Args:
        folder: the package folder (created if absent).
        files: file name (no folders) -> bytes, or a function writing to the binary file it receives.
        keep_others: copy the files of the old folder that ``files`` does not name into the new one.

    Returns:
        ``folder`` as a ``Path``.

    Raises:
        ValueError: for a file name with a path separator, or ``.``/``..``.
        WriteError: naming the file or the folder; ``folder`` is left as it was and no temporary folder remains.

    Example::

        >>> package = Path(tempfile.mkdtemp()) / "pkg"
        >>> _ = write_package_folder(package, {"a.json": b"{}", "README.md": b"old"})
        >>> _ = write_package_folder(package, {"README.md": b"new"})
        >>> sorted(p.name for p in package.iterdir()), (package / "README.md").read_bytes()
        (['README.md', 'a.json'], b'new')
        >>> sorted(p.name for p in package.parent.iterdir())
        ['pkg']
    """
    folder = Path(folder)
    for name in files:
        if not name or name in (".", "..") or "/" in name or os.sep in name or (os.altsep and os.altsep in name):
            raise ValueError(f"files: {name!r} is not a plain file name")
    parent = folder.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=parent, prefix=f".{folder.name}.", suffix=".tmp"))
    except OSError as err:
        raise _write_error(folder, err) from err
    old: Path | None = None
    try:
        try:
            if folder.is_dir() and keep_others:
                for item in folder.iterdir():
                    if item.name not in files and item.is_file() and not item.is_symlink():
                        shutil.copy2(item, staging / item.name)
            elif folder.exists() and not folder.is_dir():
                raise NotADirectoryError(errno_codes.ENOTDIR, "exists and is not a folder", str(folder))
        except OSError as err:
            raise _write_error(folder, err) from err
        for name, content in files.items():
            target = staging / name
            with atomic_file(target, "wb") as handle:  # a WriteError here names the staged file
                if callable(content):
                    content(handle)
                else:
                    handle.write(content)
        try:
            os.chmod(staging, 0o777 & ~_umask())  # mkdtemp made it 0o700
            _fsync_folder(staging)
            if not folder.exists():
                os.rename(staging, folder)
            elif _exchange(staging, folder):
                old = staging  # now holds the old package
            else:
                old = Path(tempfile.mkdtemp(dir=parent, prefix=f".{folder.name}.", suffix=".old"))
                os.rename(folder, old)  # onto the empty folder mkdtemp made
                os.rename(staging, folder)
            _fsync_folder(parent)
        except OSError as err:
            raise _write_error(folder, err) from err
    except BaseException:
        if old is not None and old != staging:
            with contextlib.suppress(OSError):
                if folder.exists():
                    old.rmdir()  # the rename into it failed: it is still the empty folder mkdtemp made
                else:
                    os.rename(old, folder)  # the second rename failed: put the old package back
        if old != staging:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return folder


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) atomically.

    Example::

        >>> import tempfile
        >>> write_text(Path(tempfile.mkdtemp()) / "r.txt", "report").read_text()
        'report'
    """
    return atomic_write(path, text.encode("utf-8"))


def strict_json(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by ``None`` (JSON ``null``), recursively.

    Python's ``json`` writes bare ``NaN`` / ``Infinity``, which are not JSON and which strict parsers reject.

    Example::

        >>> strict_json({"loss": float("nan"), "acc": [0.5, float("inf")]})
        {'loss': None, 'acc': [0.5, None]}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    return value


def write_json(path: str | os.PathLike[str], value: Any, **dumps_kwargs: Any) -> Path:
    r"""Write ``value`` as strict JSON (non-finite numbers as ``null``), atomically, with a final newline.

    Example::

        >>> import tempfile
        >>> write_json(Path(tempfile.mkdtemp()) / "m.json", {"nll": float("nan")}).read_text()
        '{"nll": null}\n'
    """
    text = json.dumps(strict_json(value), allow_nan=False, **dumps_kwargs) + "\n"
    return write_text(path, text)


def save_figure(figure: Any, path: str | os.PathLike[str], **savefig_kwargs: Any) -> Path:
    r"""Save a matplotlib ``Figure`` atomically (the format comes from ``path``'s suffix).

    Example::

        >>> import tempfile
        >>> from matplotlib.figure import Figure
        >>> save_figure(Figure(), Path(tempfile.mkdtemp()) / "f.png").read_bytes()[:4]
        b'\x89PNG'
    """
    fmt = savefig_kwargs.pop("format", None) or Path(path).suffix.lstrip(".") or "png"
    return atomic_write(path, lambda handle: figure.savefig(handle, format=fmt, **savefig_kwargs))


def check_writable(folder: str | os.PathLike[str], argument: str) -> Path:
    """Create ``folder`` if needed and check that a file can be written in it.

    Raises:
        ValueError: naming ``argument``, the folder and the reason (read-only, permission denied, no space).

    Example::

        >>> import tempfile
        >>> check_writable(Path(tempfile.mkdtemp()) / "new", "--output").is_dir()
        True
        >>> try:
        ...     check_writable("/proc/lit_deep", "--output")
        ... except ValueError as err:
        ...     print(str(err).split(" (")[0])
        --output: cannot write to /proc/lit_deep
    """
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".lit_deep_write_test.")  # O_EXCL: follows no symlink
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ValueError(
            f"{argument}: cannot write to {path} ({err.strerror or err}); choose a writable folder"
        ) from None  # the message says it all; the CLI reports an error's cause when there is one
    return path
