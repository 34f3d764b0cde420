"""Fetching a zoo model's files: Hub download through ``huggingface_hub``, SHA-256 check, DDP and offline rules.

* ``hf_hub_download`` does the transfer, so ``HF_ENDPOINT``, ``HF_HOME``/``HF_HUB_CACHE``, ``HF_HUB_OFFLINE``
  and tokens behave as users expect (``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` are read at call time).
* ``model.safetensors`` is hashed before anything reads it. A mismatch deletes the cached file (snapshot link
  and blob), so the next call downloads again instead of trusting it.
* Under DDP only local rank 0 downloads; the other ranks wait (a barrier when ``torch.distributed`` is
  initialised, else polling the cache, as when Lightning has launched the ranks but not yet set up the
  process group) and then read the cache without touching the network; when one quick request shows the Hub
  cannot serve the files (so rank 0 will not fill the cache), they fall back as rank 0 does, at once.
* When the Hub cannot be reached (or the repo is not published there) and nothing is cached, the copy shipped
  in the package (``lit_deep/_zoo_files/<name>``, or ``$LIT_DEEP_ZOO_DIR/<name>``) is used after the same
  check, with one log line. With nothing cached, one quick ``HEAD`` (no retries) decides whether the Hub
  answers, so the fallback is immediate instead of after ``hf_hub_download``'s ~30 s of back-off retries.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx2
import torch.distributed as dist
from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url, try_to_load_from_cache
from huggingface_hub.errors import (
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

__all__ = [
    "FILES",
    "SHIPPED_DIR_ENV",
    "WAIT_ENV",
    "Fetched",
    "ZooDownloadError",
    "ZooIntegrityError",
    "evict",
    "fetch",
    "git_blob_sha1",
    "sha256_file",
    "shipped_copy",
]

FILES = ("config.json", "model.safetensors")
#: Folder holding ``<name>/`` copies of the zoo; when set, it replaces the copy shipped in the package.
SHIPPED_DIR_ENV = "LIT_DEEP_ZOO_DIR"
#: Seconds a non-zero local rank waits for rank 0's download before trying itself (default 300).
WAIT_ENV = "LIT_DEEP_HUB_WAIT"
_REMEDIES = (
    "Remedies: check the network and HF_ENDPOINT; download once where the Hub is reachable "
    "(`lit-deep zoo download {name}`) and reuse that cache (HF_HOME / HF_HUB_CACHE, then HF_HUB_OFFLINE=1); "
    "or point {env} at a folder holding {name}/ (config.json, model.safetensors)."
)


_log = logging.getLogger("lit_deep.zoo")
if not logging.getLogger().handlers and not _log.handlers:
    # Seen without any logging set-up, as Lightning does for its own logger; an application's handlers win.
    _log.addHandler(logging.StreamHandler())
    _log.setLevel(logging.INFO)
    _log.propagate = False
#: the variables launchers (torchrun, Lightning, SLURM, jsrun) set for a process's rank, as Lightning reads them.
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def _rank() -> int:
    for variable in _RANK_VARIABLES:
        value = os.environ.get(variable)
        if value is not None and value.isdigit():
            return int(value)
    return 0


def _info(message: str) -> None:
    """Log once per job (rank 0 by the launchers' variables) through the ``lit_deep.zoo`` logger."""
    if _rank() == 0:
        _log.info(message)


_HUB_REMEDIES = (
    "Remedies: check the network, HF_ENDPOINT and the repo id; download once where the Hub is reachable "
    "(`lit-deep zoo download {name}`) and reuse that cache (HF_HOME / HF_HUB_CACHE, then HF_HUB_OFFLINE=1)."
)


class ZooDownloadError(RuntimeError):
    """The files of a zoo model could not be obtained (Hub, cache and shipped copy all failed)."""


class ZooIntegrityError(ValueError):
    """A zoo file's SHA-256 does not match the expected one (tampered, truncated or another revision)."""


@dataclass(frozen=True)
class Fetched:
    """Where a zoo model's files were found.

    Attributes:
        config: local path of ``config.json``.
        weights: local path of ``model.safetensors`` (its SHA-256 verified).
        source: ``"hub"`` (download or Hub cache) or ``"shipped"`` (the copy in the package).
        commit: the Hub commit the revision resolved to (``None`` for a shipped copy).
        sha256: the verified SHA-256 of the weights.
    """

    config: Path
    weights: Path
    source: str
    commit: str | None = None
    sha256: str = ""


class _Unreachable(Exception):
    """The Hub could not serve the files and they are not cached."""


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


def endpoint() -> str:
    """The Hub endpoint in use: ``$HF_ENDPOINT`` (read now) or huggingface_hub's default.

    Example::

        >>> os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9/"
        >>> endpoint()
        'http://127.0.0.1:9'
        >>> del os.environ["HF_ENDPOINT"]
    """
    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def _offline() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE")
    if value is not None:
        return value.strip().upper() in constants.ENV_VARS_TRUE_VALUES
    return bool(constants.HF_HUB_OFFLINE)


#: The zoo folder of a source checkout (``zoo/`` at the repository root), one folder per model as its Hub repo.
SOURCE_ZOO_DIR = Path(__file__).resolve().parents[2] / "zoo"


def shipped_copy(name: str) -> Path | None:
    """The folder of the copy of ``name`` shipped with lit_deep (or under ``$LIT_DEEP_ZOO_DIR``), if any.

    Example::

        >>> shipped_copy("no-such-model") is None
        True
    """
    override = os.environ.get(SHIPPED_DIR_ENV)
    roots = [Path(override)] if override else [Path(__file__).resolve().parents[1] / "_zoo_files", SOURCE_ZOO_DIR]
    for root in roots:
        folder = root / name
        if all((folder / f).is_file() for f in FILES):
            return folder
    return None


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


def _hub_hash(path: Path) -> str | None:
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
    expected = _hub_hash(path)
    if expected is None:
        return
    actual = sha256_file(path) if len(expected) == 64 else git_blob_sha1(path)
    if actual != expected:
        evict(path)
        raise ZooIntegrityError(
            f"{what}: {path.name} in the Hub cache does not match the Hub's hash {expected} (changed after download); "
            "it was deleted from the cache: call again to download a fresh copy"
        )


def _verify(name: str, weights: Path, expected: str | None, source: str, remove: bool) -> str:
    if expected is None:
        # Outside the registry: the Hub's own hash of the file (the LFS ETag, which names the blob).
        hub_hash = _hub_hash(weights)
        expected = hub_hash if hub_hash is not None and len(hub_hash) == 64 else None
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


def _probe(repo_id: str, revision: str, cache_dir: str | None) -> str:
    """One quick ``HEAD`` (no retries): ``"cached"``, ``"serves"``, ``"unreachable"`` or ``"refuses"``.

    ``"cached"``: every file is in the Hub cache already (no request made). ``"unreachable"``: no answer, or
    one that says to try later (408, 429, 5xx). ``"refuses"``: another error (404 and the like), which
    ``hf_hub_download`` turns into a precise error. With nothing cached, ``hf_hub_download`` itself retries
    network errors and 5xx answers with back-off (about 30 s in all) before giving up; the shipped copy is
    the same bytes (same pinned SHA-256), so when the Hub does not answer at once it is better to fall back
    immediately.
    """
    cached = [try_to_load_from_cache(repo_id, f, cache_dir=cache_dir, revision=revision) for f in FILES]
    if all(isinstance(path, str) for path in cached):
        return "cached"
    url = hf_hub_url(repo_id, FILES[0], revision=revision, endpoint=endpoint())
    try:
        get_hf_file_metadata(url, timeout=constants.HF_HUB_ETAG_TIMEOUT)
    except httpx2.RequestError:
        return "unreachable"
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else None
        return "unreachable" if status in (408, 429, 500, 502, 503, 504) else "refuses"
    return "serves"


def _download(repo_id: str, revision: str, cache_dir: str | None, local_only: bool) -> dict[str, Path]:
    if not (local_only or _offline()) and _probe(repo_id, revision, cache_dir) == "unreachable":
        local_only = True  # the cache, if any, or _Unreachable (and the shipped copy)
    try:
        return {
            f: Path(
                hf_hub_download(
                    repo_id,
                    f,
                    revision=revision,
                    cache_dir=cache_dir,
                    endpoint=endpoint(),
                    local_files_only=local_only or _offline(),
                )
            )
            for f in FILES
        }
    except (LocalEntryNotFoundError, RepositoryNotFoundError, httpx2.TransportError) as err:
        raise _Unreachable(f"{type(err).__name__}: {err}") from err
    except (RemoteEntryNotFoundError, RevisionNotFoundError) as err:
        # The Hub answered: the repo exists but not this file or revision. A shipped copy would hide the mistake.
        kind = "file" if isinstance(err, RemoteEntryNotFoundError) else "revision"
        hub_said = str(err).splitlines()[0]
        raise ZooDownloadError(
            f"{repo_id}@{revision} on {endpoint()}: the Hub has no such {kind} (files {', '.join(FILES)}); check the "
            f"revision and the namespace. Hub said: {hub_said}"
        ) from err


def _retrieve(
    name: str, repo_id: str, revision: str, cache_dir: str | None, expected: str | None, local_only: bool
) -> Fetched:
    paths = _download(repo_id, revision, cache_dir, local_only)
    sha = _verify(name, paths["model.safetensors"], expected, f"Hub cache of {repo_id}@{revision}", remove=True)
    verify_cached_file(paths["config.json"], f"{repo_id}@{revision}")
    # hf_hub_download returns <cache>/snapshots/<commit>/<file>: the commit the revision resolved to.
    return Fetched(paths["config.json"], paths["model.safetensors"], "hub", paths["config.json"].parent.name, sha)


def _local_rank() -> int:
    for variable in ("LOCAL_RANK", "SLURM_LOCALID", "JSM_NAMESPACE_LOCAL_RANK"):
        value = os.environ.get(variable)
        if value is not None and value.isdigit():
            return int(value)
    # No launcher variable: a single-node group started by hand, where the global rank is the local one.
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _coordinated(retrieve: Callable[[bool], Fetched], probe: Callable[[], str]) -> Fetched:
    """Run ``retrieve(local_only)`` so that only local rank 0 touches the network (while it can fill the cache)."""
    if dist.is_available() and dist.is_initialized():
        rank0 = _local_rank() == 0
        result: Fetched | None = None
        error: Exception | None = None
        if rank0:
            try:
                result = retrieve(False)
            except Exception as err:  # re-raised after the barrier, so the other ranks are not left waiting
                error = err
        dist.barrier()
        if error is not None:
            raise error
        return result if result is not None else retrieve(True)
    if _local_rank() == 0 or _offline():
        return retrieve(False)
    # Ranks launched (e.g. by Lightning) before the process group exists: wait for rank 0 to fill the cache.
    deadline = time.monotonic() + float(os.environ.get(WAIT_ENV, "300"))
    first = True
    while time.monotonic() < deadline:
        try:
            return retrieve(True)
        except _Unreachable:
            state = probe() if first else "serves"
            # Rank 0 cannot fill the cache either: do what it does, at once, instead of waiting for a download
            # that will not come. The cache just missed, so an unreachable Hub leaves the shipped copy.
            if state == "unreachable":
                raise
            if state == "refuses":  # repo or file not there: the download attempt says which
                return retrieve(False)
            first = False
            time.sleep(0.2)
    return retrieve(False)


def fetch(
    name: str,
    repo_id: str,
    revision: str,
    cache_dir: str | None,
    expected_sha256: str | None,
    shipped: bool = True,
) -> Fetched:
    """Get ``config.json`` and a verified ``model.safetensors`` of a zoo model.

    Args:
        name: the zoo name (for messages and the shipped copy).
        repo_id: the Hub repo.
        revision: branch, tag or commit.
        cache_dir: the Hub cache folder (``None``: huggingface_hub's default).
        expected_sha256: the SHA-256 the weights must have (``None``: the Hub's LFS hash of the file).
        shipped: fall back to the copy shipped with lit_deep (registered models only).

    Returns:
        The local paths and their source.

    Raises:
        ZooIntegrityError: when the weights' hash does not match (the cached file is deleted first).
        ZooDownloadError: when neither the Hub, the cache nor a shipped copy can provide the files.
    """
    try:
        return _coordinated(
            lambda local_only: _retrieve(name, repo_id, revision, cache_dir, expected_sha256, local_only),
            lambda: _probe(repo_id, revision, cache_dir),
        )
    except _Unreachable as err:
        reason = str(err)
    folder = shipped_copy(name) if shipped else None
    if folder is None:
        offline = " (HF_HUB_OFFLINE is set)" if _offline() else ""
        raise ZooDownloadError(
            f"zoo model {name!r}: cannot download {repo_id}@{revision} from {endpoint()}{offline} and it is neither "
            f"in the cache ({cache_dir or constants.HF_HUB_CACHE}) nor shipped with lit_deep. Cause: {reason}. "
            + (_REMEDIES if shipped else _HUB_REMEDIES).format(name=name, env=SHIPPED_DIR_ENV)
        )
    weights = folder / "model.safetensors"
    sha = _verify(name, weights, expected_sha256, "copy shipped with lit_deep", remove=False)
    _info(
        f"lit_deep.zoo: {repo_id}@{revision} unavailable from {endpoint()} and not cached; "
        f"using the copy shipped with lit_deep ({folder})."
    )
    return Fetched(folder / "config.json", weights, "shipped", None, sha)
