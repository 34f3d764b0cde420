"""Atomic file writes and strict JSON: a crash or a full disk never leaves a truncated file under its final name.

Every writer puts the bytes in a temporary file beside the destination (``.<name>.<pid>.tmp``), flushes it to
disk and renames it over the destination with ``os.replace`` (atomic on POSIX and Windows); on any error the
temporary file is removed and the destination is left as it was.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write", "check_writable", "save_figure", "strict_json", "write_json", "write_text"]


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it to ``path``.

    Args:
        path: the destination (its folder is created).
        write: writes the content to the binary file object it receives.

    Returns:
        ``path`` as a ``Path``.

    Example::

        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "a.bin"
        >>> atomic_write(target, lambda f: f.write(b"ok")).read_bytes()
        b'ok'
        >>> def fail(f):
        ...     f.write(b"half")
        ...     raise OSError(28, "No space left on device")
        >>> try:
        ...     atomic_write(target, fail)
        ... except OSError:
        ...     pass
        >>> target.read_bytes(), sorted(p.name for p in target.parent.iterdir())
        (b'ok', ['a.bin'])
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        if err.filename is None and err.errno is not None:  # e.g. a full disk inside torch.save: name the file
            raise OSError(err.errno, err.strerror or str(err), str(path)) from err
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) atomically.

    Example::

        >>> import tempfile
        >>> write_text(Path(tempfile.mkdtemp()) / "r.txt", "report").read_text()
        'report'
    """
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


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
    fmt = Path(path).suffix.lstrip(".") or "png"
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
        probe = path / f".lit_deep_write_test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ValueError(
            f"{argument}: cannot write to {path} ({err.strerror or err}); choose a writable folder"
        ) from None  # the message says it all; the CLI reports an error's cause when there is one
    return path
