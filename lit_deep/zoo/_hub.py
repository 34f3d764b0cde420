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
  check, with one INFO record of the ``lit_deep.zoo`` logger (rank 0; no handler is added: the application
  configures logging, as ``lit-deep`` does while it runs). With nothing cached, one quick ``HEAD`` (no
  retries) decides whether the Hub answers, so the fallback is immediate instead of after
  ``hf_hub_download``'s ~30 s of back-off retries.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import constants

from lit_deep.zoo._integrity import verify_cached_file, verify_weights
from lit_deep.zoo._ranks import coordinated, log_once
from lit_deep.zoo._transport import FILES, Unreachable, ZooDownloadError, download_files, endpoint, offline, probe

__all__ = ["SHIPPED_DIR_ENV", "SOURCE_ZOO_DIR", "Fetched", "fetch", "shipped_copy"]

#: Folder holding ``<name>/`` copies of the zoo; when set, it replaces the copy shipped in the package.
SHIPPED_DIR_ENV = "LIT_DEEP_ZOO_DIR"


_REMEDIES = (
    "Remedies: check the network and HF_ENDPOINT; download once where the Hub is reachable "
    "(`lit-deep zoo download {name}`) and reuse that cache (HF_HOME / HF_HUB_CACHE, then HF_HUB_OFFLINE=1); "
    "or point {env} at a folder holding {name}/ (config.json, model.safetensors)."
)


_HUB_REMEDIES = (
    "Remedies: check the network, HF_ENDPOINT and the repo id; download once where the Hub is reachable "
    "(`lit-deep zoo download {name}`) and reuse that cache (HF_HOME / HF_HUB_CACHE, then HF_HUB_OFFLINE=1)."
)


@dataclass(frozen=True)
class Fetched:
    """Where a zoo model's files were found.

    Attributes:
        config: local path of ``config.json``.
        weights: local path of ``model.safetensors`` (its SHA-256 verified).
        source: ``"hub"`` (download or Hub cache), ``"shipped"`` (the copy in the package) or ``"local"`` (a folder
            named by the caller).
        commit: the Hub commit the revision resolved to (``None`` for a shipped copy).
        sha256: the verified SHA-256 of the weights.
    """

    config: Path
    weights: Path
    source: str
    commit: str | None = None
    sha256: str = ""


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


def _retrieve(
    name: str, repo_id: str, revision: str, cache_dir: str | None, expected: str | None, local_only: bool
) -> Fetched:
    paths = download_files(repo_id, revision, cache_dir, local_only)
    sha = verify_weights(name, paths["model.safetensors"], expected, f"Hub cache of {repo_id}@{revision}", remove=True)
    verify_cached_file(paths["config.json"], f"{repo_id}@{revision}")
    # hf_hub_download returns <cache>/snapshots/<commit>/<file>: the commit the revision resolved to.
    return Fetched(paths["config.json"], paths["model.safetensors"], "hub", paths["config.json"].parent.name, sha)


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
        return coordinated(
            lambda local_only: _retrieve(name, repo_id, revision, cache_dir, expected_sha256, local_only),
            lambda: probe(repo_id, revision, cache_dir),
        )
    except Unreachable as err:
        reason = str(err)
    folder = shipped_copy(name) if shipped else None
    if folder is None:
        why = " (HF_HUB_OFFLINE is set)" if offline() else ""
        raise ZooDownloadError(
            f"zoo model {name!r}: cannot download {repo_id}@{revision} from {endpoint()}{why} and it is neither "
            f"in the cache ({cache_dir or constants.HF_HUB_CACHE}) nor shipped with lit_deep. Cause: {reason}. "
            + (_REMEDIES if shipped else _HUB_REMEDIES).format(name=name, env=SHIPPED_DIR_ENV)
        )
    weights = folder / "model.safetensors"
    sha = verify_weights(name, weights, expected_sha256, "copy shipped with lit_deep", remove=False)
    log_once(
        f"lit_deep.zoo: {repo_id}@{revision} unavailable from {endpoint()} and not cached; "
        f"using the copy shipped with lit_deep ({folder})."
    )
    return Fetched(folder / "config.json", weights, "shipped", None, sha)
