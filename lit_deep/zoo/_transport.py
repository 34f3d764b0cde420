"""Transport of zoo files: the Hub through ``huggingface_hub`` (endpoint and offline mode read at call time).

Downloads are tagged ``library_name="lit_deep"`` (and its version), as the Hub asks of libraries.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx2
from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url, try_to_load_from_cache
from huggingface_hub.errors import (
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from lit_deep._version import __version__

__all__ = ["FILES", "Unreachable", "ZooDownloadError", "download_files", "endpoint", "offline", "probe"]

FILES = ("config.json", "model.safetensors")


class ZooDownloadError(RuntimeError):
    """The files of a zoo model could not be obtained (Hub, cache and shipped copy all failed)."""


class Unreachable(Exception):
    """The Hub could not serve the files and they are not cached."""


def endpoint() -> str:
    """The Hub endpoint in use: ``$HF_ENDPOINT`` (read now) or huggingface_hub's default.

    Example::

        >>> os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9/"
        >>> endpoint()
        'http://127.0.0.1:9'
        >>> del os.environ["HF_ENDPOINT"]
    """
    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def offline() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE")
    if value is not None:
        return value.strip().upper() in constants.ENV_VARS_TRUE_VALUES
    return bool(constants.HF_HUB_OFFLINE)


def probe(repo_id: str, revision: str, cache_dir: str | None) -> str:
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


def download_files(repo_id: str, revision: str, cache_dir: str | None, local_only: bool) -> dict[str, Path]:
    if not (local_only or offline()) and probe(repo_id, revision, cache_dir) == "unreachable":
        local_only = True  # the cache, if any, or Unreachable (and the shipped copy)
    try:
        return {
            f: Path(
                hf_hub_download(
                    repo_id,
                    f,
                    revision=revision,
                    cache_dir=cache_dir,
                    endpoint=endpoint(),
                    local_files_only=local_only or offline(),
                    library_name="lit_deep",
                    library_version=__version__,
                )
            )
            for f in FILES
        }
    except (LocalEntryNotFoundError, RepositoryNotFoundError, httpx2.TransportError) as err:
        raise Unreachable(f"{type(err).__name__}: {err}") from err
    except (RemoteEntryNotFoundError, RevisionNotFoundError) as err:
        # The Hub answered: the repo exists but not this file or revision. A shipped copy would hide the mistake.
        kind = "file" if isinstance(err, RemoteEntryNotFoundError) else "revision"
        hub_said = str(err).splitlines()[0]
        raise ZooDownloadError(
            f"{repo_id}@{revision} on {endpoint()}: the Hub has no such {kind} (files {', '.join(FILES)}); check the "
            f"revision and the namespace. Hub said: {hub_said}"
        ) from err
