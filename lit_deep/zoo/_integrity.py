"""Integrity of zoo files: SHA-256 of the weights, the Hub's own hashes of cached files, evicting a bad copy."""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

__all__ = [
    "ZooIntegrityError",
    "evict",
    "git_blob_sha1",
    "hub_hash",
    "sha256_file",
    "verify_cached_file",
    "verify_weights",
]


class ZooIntegrityError(ValueError):
    """A zoo file's SHA-256 does not match the expected one (tampered, truncated or another revision)."""


def sha256_file(path: str | Path) -> str:
    """The hex SHA-256 of a file, read in chunks.

    Example::

        >>> import tempfile
        >>> f = tempfile.NamedTemporaryFile(delete=False); _ = f.write(b"abc"); f.close()
        >>> sha256_file(f.name)[:16]
        'ba7816bf8f01cfea'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def evict(path: Path) -> None:
    """Delete a cached Hub file: the snapshot link and the blob it points to (the next call downloads again).

    Example::

        >>> evict(Path("/nonexistent/file"))  # nothing to delete: no error
    """
    blob = Path(os.path.realpath(path))
    for target in {path, blob}:
        with contextlib.suppress(FileNotFoundError):
            target.unlink()


def git_blob_sha1(path: str | Path) -> str:
    r"""The git blob SHA-1 of a file: the Hub's ETag of a file stored in git rather than LFS.

    Example::

        >>> import tempfile
        >>> f = tempfile.NamedTemporaryFile(delete=False); _ = f.write(b"hello\n"); f.close()
        >>> git_blob_sha1(f.name)
        'ce013625030ba8dba906f756967f9e9ca394464a'
    """
    data = Path(path).read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def hub_hash(path: Path) -> str | None:
    """The hash the Hub cache names a file's blob by (its ETag): 64 hex for LFS, 40 hex for git files."""
    blob_name = Path(os.path.realpath(path)).name
    if len(blob_name) in (40, 64) and all(c in "0123456789abcdef" for c in blob_name):
        return blob_name
    return None


def verify_cached_file(path: Path, what: str) -> None:
    """Check a file of the Hub cache against the hash its blob is named by; evict it when they differ.

    Raises:
        ZooIntegrityError: when the content does not match (the file is deleted from the cache first).
    """
    expected = hub_hash(path)
    if expected is None:
        return
    actual = sha256_file(path) if len(expected) == 64 else git_blob_sha1(path)
    if actual != expected:
        evict(path)
        raise ZooIntegrityError(
            f"{what}: {path.name} in the Hub cache does not match the Hub's hash {expected} (changed after download); "
            "it was deleted from the cache: call again to download a fresh copy"
        )


def verify_weights(name: str, weights: Path, expected: str | None, source: str, remove: bool) -> str:
    if expected is None:
        # Outside the registry: the Hub's own hash of the file (the LFS ETag, which names the blob).
        named = hub_hash(weights)
        expected = named if named is not None and len(named) == 64 else None
    if expected is None:
        raise ZooIntegrityError(
            f"{name}: no SHA-256 to check {weights} against; pass sha256=... for a revision outside the registry"
        )
    actual = sha256_file(weights)
    if actual != expected:
        if remove:
            evict(weights)
        action = "The file was deleted from the cache; the next call downloads it again." if remove else ""
        raise ZooIntegrityError(
            f"{name}: SHA-256 mismatch for model.safetensors from the {source} ({weights}): expected {expected}, "
            f"got {actual}. Nothing was loaded (tampered, truncated, or another revision). {action}".rstrip()
        )
    return actual
