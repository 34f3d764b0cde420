"""Publishing a model on the Hugging Face Hub in the zoo format, so that ``zoo.load("owner/name")`` loads it."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi

from lit_deep.zoo._hub import SOURCE_ZOO_DIR, endpoint, shipped_copy
from lit_deep.zoo.registry import get_entry
from lit_deep.zoo.release.cards import check_repo_files
from lit_deep.zoo.release.export import package_checkpoint, package_module, write_package

__all__ = ["check_repo_id", "push_checkpoint", "push_folder", "push", "push_registered"]

_FILES = ["config.json", "model.safetensors", "README.md"]
_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


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
    parts = repo_id.split("/") if isinstance(repo_id, str) else []
    if len(parts) != 2 or not all(_PART.match(p) and ".." not in p for p in parts):
        raise ValueError(f"repo_id: expected 'owner/name', got {repo_id!r}")
    return str(repo_id)


def push_folder(
    folder: str | Path,
    repo_id: str,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Create the Hub repo ``repo_id`` (if needed) and upload a zoo folder to it with ``HfApi``.

    The endpoint is ``$HF_ENDPOINT`` read at call time; the token is ``token`` or the one huggingface_hub finds
    (``HF_TOKEN``, ``huggingface-cli login``).

    Returns:
        The commit id of the upload.
    """
    check_repo_id(repo_id)
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


def push(
    module: Any,
    repo_id: str,
    *,
    datamodule: Any = None,
    data_dir: str | None = None,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Publish a trained lit_deep LightningModule's model: weights, ``config.json`` and a measured model card.

    The model gets its preprocessing as first layer (the datamodule's standardisation), is measured on the test
    split of the datamodule's task (accuracy, NLL, ECE; MC-dropout models average 100 passes) and uploaded.

    Args:
        module: a ``Classifier`` (or ``AutoencoderModule``) whose model is a BackboneHead.
        repo_id: ``owner/name``.
        datamodule: the ``FashionMNISTDataModule`` it was trained with (default: the trainer's, else task
            ``full`` without standardisation).
        data_dir: where the Fashion-MNIST files are.
        private: create a private repo.
        token: Hub token (default: huggingface_hub's).
        commit_message: the commit message.

    Returns:
        The commit id.
    """
    check_repo_id(repo_id)
    if datamodule is None:
        trainer = getattr(module, "_trainer", None)
        datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
    hparams = dict(getattr(datamodule, "hparams", {}) or {})
    stats = None
    if hparams.get("standardize"):
        if getattr(datamodule, "mean", None) is None:
            datamodule.setup("fit")
        stats = (datamodule.mean, datamodule.std)
    model, entry = package_module(
        module,
        repo_id.split("/")[1],
        hparams,
        stats,
        load_name=repo_id,
        training="Trained with lit_deep and published with `lit_deep.zoo.release.push`.",
    )
    with tempfile.TemporaryDirectory() as folder:
        write_package(model, entry, folder, data_dir, test_args=hparams)
        return push_folder(folder, repo_id, private, token, commit_message)


def push_checkpoint(
    checkpoint: str | Path,
    repo_id: str,
    *,
    data_dir: str | None = None,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
) -> str:
    """:func:`push` for a checkpoint written by ``lit-deep fit`` (``lit-deep zoo push --checkpoint``).

    Example::

        >>> push_checkpoint("missing.ckpt", "me/model")
        Traceback (most recent call last):
        ...
        FileNotFoundError: ckpt: no checkpoint at missing.ckpt
    """
    check_repo_id(repo_id)
    model, entry, hparams = package_checkpoint(checkpoint, repo_id.split("/")[1], data_dir, load_name=repo_id)
    with tempfile.TemporaryDirectory() as folder:
        write_package(model, entry, folder, data_dir, test_args=hparams)
        return push_folder(folder, repo_id, private, token, commit_message)


def push_registered(
    name: str,
    repo_id: str,
    folder: str | Path | None = None,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Upload the folder of a registered zoo model (in sync with the registry) to ``repo_id``.

    Raises:
        ValueError: for an unknown name, a bad ``repo_id`` or a folder out of sync with the registry.

    Example::

        >>> push_registered("mlp.fmnist", repo_id="no-namespace")
        Traceback (most recent call last):
        ...
        ValueError: repo_id: expected 'owner/name', got 'no-namespace'
    """
    entry = get_entry(name)
    check_repo_id(repo_id)
    path = Path(folder) if folder is not None else SOURCE_ZOO_DIR / name
    if folder is None and not path.is_dir():
        path = shipped_copy(name) or path  # an installed package: the copy it ships
    problems = check_repo_files(entry, path)
    if problems:
        raise ValueError("folder: not in sync with the registry: " + "; ".join(problems))
    message = commit_message or f"Upload {name} (lit_deep zoo, SHA-256 {entry.sha256[:12]})"
    return push_folder(path, repo_id, private, token, message)
