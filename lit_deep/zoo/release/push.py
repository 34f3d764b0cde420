"""Publishing a model on the Hugging Face Hub in the zoo format, so that ``zoo.load("owner/name")`` loads it.

One verb: :func:`push` uploads what :func:`~lit_deep.zoo.release.save_pretrained` writes (from a trained module or
a checkpoint), a folder it wrote, or the folder of a registered zoo model.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi

from lit_deep.zoo._hub import SOURCE_ZOO_DIR, shipped_copy
from lit_deep.zoo._transport import endpoint
from lit_deep.zoo.api import local_folder
from lit_deep.zoo.registry import REGISTRY, get_entry, is_repo_id
from lit_deep.zoo.release.cards import check_repo_files
from lit_deep.zoo.release.export import save_pretrained

__all__ = ["check_repo_id", "push"]

_FILES = ["config.json", "model.safetensors", "README.md"]


def check_repo_id(repo_id: Any) -> str:
    """Check ``owner/name``.

    Raises:
        ValueError: naming the value.

    Example::

        >>> check_repo_id("no-namespace")
        Traceback (most recent call last):
        ...
        ValueError: repo_id: expected 'owner/name', got 'no-namespace'
    """
    if not is_repo_id(repo_id):
        raise ValueError(f"repo_id: expected 'owner/name', got {repo_id!r}")
    return str(repo_id)


def _upload(folder: str | Path, repo_id: str, private: bool, token: str | None, commit_message: str | None) -> str:
    """Create the Hub repo (if needed) and upload the zoo files of ``folder`` with ``HfApi``; the commit id."""
    api = HfApi(endpoint=endpoint(), token=token)
    api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)
    commit = api.upload_folder(
        repo_id=repo_id,
        repo_type="model",
        folder_path=str(folder),
        allow_patterns=_FILES,
        commit_message=commit_message or f"Upload {repo_id} (lit_deep zoo format)",
    )
    return str(getattr(commit, "oid", commit))


def _registered_folder(name: str, folder: str | os.PathLike[str] | None) -> Path:
    entry = get_entry(name)
    path = Path(folder) if folder is not None else SOURCE_ZOO_DIR / name
    if folder is None and not path.is_dir():
        path = shipped_copy(name) or path  # an installed package: the copy it ships
    problems = check_repo_files(entry, path)
    if problems:
        raise ValueError("folder: not in sync with the registry: " + "; ".join(problems))
    return path


def push(
    source: Any,
    repo_id: str,
    *,
    datamodule: Any = None,
    data_dir: str | None = None,
    folder: str | os.PathLike[str] | None = None,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Publish a model on the Hub in the zoo format: :func:`~lit_deep.zoo.release.save_pretrained`, then upload.

    ``source`` is one of

    * a trained lit_deep LightningModule (``Classifier``, ``AutoencoderModule``): packaged with its preprocessing,
      measured on the test split of its task and uploaded with a generated model card;
    * the path of a checkpoint written by ``lit-deep fit`` (``lit-deep zoo push --checkpoint``): the same, the
      checkpoint read as data;
    * a folder :func:`~lit_deep.zoo.release.save_pretrained` wrote: uploaded as it is;
    * a registered zoo name: its folder (``folder``, else the repository's ``zoo/<name>``, else the shipped copy),
      checked in sync with the registry, uploaded.

    The endpoint is ``$HF_ENDPOINT`` read at call time; the token is ``token`` or the one huggingface_hub finds
    (``HF_TOKEN``, ``huggingface-cli login``).

    Args:
        source: what to publish (above).
        repo_id: ``owner/name``.
        datamodule: the ``FashionMNISTDataModule`` a module was trained with (default: its trainer's).
        data_dir: where the Fashion-MNIST files are.
        folder: the folder of a registered model (default: the repository's ``zoo/<name>``).
        private: create a private repo.
        token: Hub token (default: huggingface_hub's).
        commit_message: the commit message.

    Returns:
        The commit id of the upload.

    Example::

        >>> push("mlp.fmnist", repo_id="no-namespace")
        Traceback (most recent call last):
        ...
        ValueError: repo_id: expected 'owner/name', got 'no-namespace'
    """
    check_repo_id(repo_id)
    if isinstance(source, str) and source in REGISTRY:
        entry = REGISTRY[source]
        message = commit_message or f"Upload {source} (lit_deep zoo, SHA-256 {entry.sha256[:12]})"
        return _upload(_registered_folder(source, folder), repo_id, private, token, message)
    written = local_folder(source)
    if written is not None:
        return _upload(written, repo_id, private, token, commit_message)
    with tempfile.TemporaryDirectory() as staging:
        package = Path(staging) / "package"
        name = repo_id.split("/")[1]
        save_pretrained(source, package, name=name, repo_id=repo_id, datamodule=datamodule, data_dir=data_dir)
        return _upload(package, repo_id, private, token, commit_message)
