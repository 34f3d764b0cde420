"""Locating, verifying and loading the Fashion-MNIST files.

A folder the user names (the ``data_dir`` argument, else ``$LIT_DEEP_DATA``) is used or refused: when it is
missing, misspelt or lacks a file, the error says so, and no other copy is ever used in its place. Without one,
the search order is the user cache (``~/.cache/lit_deep/fashion-mnist``, or
``$XDG_CACHE_HOME/lit_deep/fashion-mnist``), the Debian/Ubuntu package ``dataset-fashion-mnist``
(``/usr/share/datasets/fashion-mnist``), and finally a download from the dataset's official mirror into the
cache. Every file is checked against the SHA-256 of its *decompressed*
bytes: the Debian package recompresses the ``.gz`` files, so the published archive checksums do not match.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import io
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

from lit_deep._io import atomic_write
from lit_deep._validate import check_choice, check_path
from lit_deep.data._idx import IDXError, _read_bytes, parse_idx, read_gzip_idx, read_idx

__all__ = [
    "CLASS_NAMES",
    "DEBIAN_DIR",
    "FILES",
    "MIRRORS",
    "DataNotFoundError",
    "cache_dir",
    "load_fashion_mnist",
    "locate_fashion_mnist",
]

log = logging.getLogger(__name__)

CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

#: file name -> SHA-256 of the decompressed bytes.
FILES: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
_SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
MIRRORS: tuple[str, ...] = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

# Parsed files, keyed by (resolved path, mtime); loading the 47 MB training file takes ~0.3 s.
#: The most bytes a download may have (the largest Fashion-MNIST file, train-images, is 26.4 MB).
_MAX_DOWNLOAD = 64 << 20
_MEMO: dict[tuple[str, float], torch.Tensor] = {}


class DataNotFoundError(FileNotFoundError):
    """Fashion-MNIST is neither on disk nor downloadable."""


def cache_dir() -> Path:
    """The user cache folder for the dataset.

    Returns:
        ``$XDG_CACHE_HOME/lit_deep/fashion-mnist``, by default ``~/.cache/lit_deep/fashion-mnist``.

    Example::

        >>> cache_dir().parts[-2:]
        ('lit_deep', 'fashion-mnist')
    """
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lit_deep" / "fashion-mnist"


def _explicit_folder(data_dir: str | os.PathLike[str] | None) -> tuple[str, Path] | None:
    """The folder the user named (``data_dir``, else ``$LIT_DEEP_DATA``) and how it was named, if any."""
    named = check_path("data_dir", data_dir, optional=True)
    if named is not None:
        return "data_dir", Path(named)
    if os.environ.get("LIT_DEEP_DATA"):
        return "$LIT_DEEP_DATA", Path(os.environ["LIT_DEEP_DATA"])
    return None


def _check_explicit(label: str, folder: Path, split: str) -> Path:
    """``folder`` if it holds the split's two files; else a one-line error naming what is wrong and the fix."""
    fix = f"fix {label} or leave it unset to search the user cache, {DEBIAN_DIR} and the official mirror"
    if not folder.exists():
        raise DataNotFoundError(f"{label}: folder {folder} does not exist; {fix}")
    if not folder.is_dir():
        raise DataNotFoundError(f"{label}: {folder} is not a folder; {fix}")
    missing = [name for name in _SPLIT_FILES[split] if not (folder / name).is_file()]
    if missing:
        raise DataNotFoundError(
            f"{label}: {folder} lacks {', '.join(missing)} ({split} split); put the four Fashion-MNIST files "
            f"there, or {fix}"
        )
    return folder


def _has_split(folder: Path, split: str) -> bool:
    return all((folder / name).is_file() for name in _SPLIT_FILES[split])


def _write_all(payload: bytes, handle: IO[bytes]) -> None:
    handle.write(payload)


def _download(name: str, dest: Path, urlopen: Callable[..., Any] | None = None) -> None:
    """Download ``name`` from the first mirror that answers, verify it, and rename it into ``dest``."""
    opener = urlopen or urllib.request.urlopen
    errors = []
    for mirror in MIRRORS:
        url = mirror + name
        try:
            with opener(url, timeout=30) as response:
                payload = response.read(_MAX_DOWNLOAD + 1)  # bounded: a hostile mirror cannot fill the memory
                if len(payload) <= _MAX_DOWNLOAD:
                    payload += response.read()  # b"" at the end; raises IncompleteRead for a cut-off body
            if len(payload) > _MAX_DOWNLOAD:
                raise ValueError(f"larger than {_MAX_DOWNLOAD} bytes, the largest Fashion-MNIST file is 26 MB")
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as err:
            errors.append(f"{url}: {err!r}" if isinstance(err, http.client.HTTPException) else f"{url}: {err}")
            continue
        if payload[:2] != b"\x1f\x8b":
            errors.append(f"{url}: not a valid gzip file (it does not start with the gzip magic bytes)")
            continue
        try:  # inflates no more than the IDX header declares
            digest = hashlib.sha256(read_gzip_idx(io.BytesIO(payload), url)).hexdigest()
        except IDXError as err:
            errors.append(f"{url}: not a valid gzip file ({str(err).removeprefix(url + ': ')})")
            continue
        if digest != FILES[name]:
            errors.append(f"{url}: SHA-256 of the decompressed data is {digest}, expected {FILES[name]}")
            continue
        atomic_write(dest / name, functools.partial(_write_all, payload))  # never a truncated file in the cache
        return
    raise OSError("; ".join(errors))


def locate_fashion_mnist(
    split: str = "train",
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> Path:
    """Find (or download) the folder holding a split's two files.

    Args:
        split: ``"train"`` or ``"test"``.
        data_dir: the folder to use (else ``$LIT_DEEP_DATA``); it must hold the split's two files.
        download: whether to try the official mirror when no folder is named and no copy is found.

    Returns:
        The folder that holds the split's images and labels.

    Raises:
        ValueError: for an unknown split.
        DataNotFoundError: when the named folder is missing or incomplete (it is never replaced by another
            copy), or when no copy exists and the download failed; the message says what to do.

    Example::

        >>> import tempfile, torch
        >>> from lit_deep.data import write_idx
        >>> folder = Path(tempfile.mkdtemp())
        >>> write_idx(folder / "t10k-images-idx3-ubyte.gz", torch.zeros(1, 28, 28, dtype=torch.uint8))
        >>> write_idx(folder / "t10k-labels-idx1-ubyte.gz", torch.zeros(1, dtype=torch.uint8))
        >>> locate_fashion_mnist("test", folder) == folder
        True
        >>> try:
        ...     locate_fashion_mnist("train", folder)
        ... except DataNotFoundError as err:
        ...     print(str(err).split(" (")[0].replace(str(folder), "<folder>"))
        data_dir: <folder> lacks train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz
    """
    check_choice("split", split, tuple(_SPLIT_FILES))
    explicit = _explicit_folder(data_dir)
    if explicit is not None:
        # A folder the user named is used or refused, never silently replaced by another copy.
        return _check_explicit(*explicit, split)
    tried = []
    for label, folder in (("user cache", cache_dir()), ("Debian package dataset-fashion-mnist", DEBIAN_DIR)):
        if _has_split(folder, split):
            return folder
        tried.append(f"{label} ({folder})")
    problem = "download disabled"
    if download:
        dest = cache_dir()
        try:
            for name in _SPLIT_FILES[split]:
                if not (dest / name).is_file():
                    log.info("downloading %s into %s", name, dest)
                    _download(name, dest)
            return dest
        except OSError as err:
            problem = f"download failed: {err}"
    raise DataNotFoundError(
        f"Fashion-MNIST ({split} split) not found (looked in: {'; '.join(tried)}; {problem}); provide it: "
        "apt-get install dataset-fashion-mnist (Debian/Ubuntu, files in /usr/share/datasets/fashion-mnist), "
        "or put the four *-ubyte.gz files in a folder and pass data_dir=... or set LIT_DEEP_DATA, "
        f"or copy them into {cache_dir()}, or allow network access to {MIRRORS[0]} for the automatic download"
    )


def _load_verified(path: Path) -> torch.Tensor:
    key = (str(path.resolve()), path.stat().st_mtime)
    if key in _MEMO:
        return _MEMO[key]
    data = _read_bytes(path)  # a gzip stream inflates no more than its IDX header declares
    expected = FILES.get(path.name)
    if expected is not None:
        digest = hashlib.sha256(data).hexdigest()
        if digest != expected:
            raise IDXError(f"{path}: SHA-256 of the decompressed data is {digest}, expected {expected}")
    tensor = parse_idx(data, str(path))
    _MEMO[key] = tensor
    return tensor


def load_fashion_mnist(
    split: str = "train",
    data_dir: str | os.PathLike[str] | None = None,
    verify: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load a Fashion-MNIST split as in-memory tensors.

    Args:
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000 images).
        data_dir: the folder to use (see the module docstring: a named folder is never replaced by another copy).
        verify: check the SHA-256 of the decompressed files. By default only the files outside ``data_dir``
            are checked, so small generated files can stand in for the real ones in tests.

    Returns:
        ``(images, labels)``: uint8 ``[N, 28, 28]`` and int64 ``[N]``.

    Raises:
        IDXError: a file is corrupted, truncated, fails its checksum, or images and labels disagree in count.
        DataNotFoundError: no copy was found and none could be downloaded.

    Example::

        >>> import tempfile, torch
        >>> from lit_deep.data import write_idx
        >>> folder = tempfile.mkdtemp()
        >>> write_idx(folder + "/t10k-images-idx3-ubyte.gz", torch.zeros(3, 28, 28, dtype=torch.uint8))
        >>> write_idx(folder + "/t10k-labels-idx1-ubyte.gz", torch.tensor([0, 9, 5], dtype=torch.uint8))
        >>> images, labels = load_fashion_mnist("test", folder)
        >>> tuple(images.shape), labels.tolist(), labels.dtype
        ((3, 28, 28), [0, 9, 5], torch.int64)
    """
    folder = locate_fashion_mnist(split, data_dir)
    images_name, labels_name = _SPLIT_FILES[split]
    check = verify if verify is not None else not (data_dir is not None and folder == Path(data_dir))
    loader = _load_verified if check else read_idx
    images = loader(folder / images_name)
    labels = loader(folder / labels_name)
    if images.dim() != 3 or images.dtype != torch.uint8:
        raise IDXError(
            f"{folder / images_name}: expected uint8 images [N, H, W], got {images.dtype} {tuple(images.shape)}"
        )
    if labels.dim() != 1:
        raise IDXError(f"{folder / labels_name}: expected a 1-D label vector, got shape {tuple(labels.shape)}")
    if labels.dtype.is_floating_point:
        raise IDXError(f"{folder / labels_name}: expected integer labels, got {labels.dtype}")
    if images.shape[0] != labels.shape[0]:
        raise IDXError(
            f"{folder}: {images_name} holds {images.shape[0]} images but {labels_name} holds {labels.shape[0]} labels"
        )
    bad = labels[(labels < 0) | (labels >= len(CLASS_NAMES))]
    if bad.numel():
        raise IDXError(f"{folder / labels_name}: label {int(bad[0])} is outside 0..{len(CLASS_NAMES) - 1}")
    return images, labels.long()
