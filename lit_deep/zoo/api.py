"""The zoo's public functions: ``load`` a pretrained model, ``download`` its files, describe it with ``info``."""

from __future__ import annotations

import json
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file

from lit_deep.zoo._build import ZooModel
from lit_deep.zoo._hub import Fetched, fetch
from lit_deep.zoo.registry import ZooEntry, get_entry

__all__ = ["download", "info", "load"]


def _check_revision(revision: str | None) -> None:
    if revision is not None and (not isinstance(revision, str) or not revision.strip()):
        raise ValueError(f"revision: expected a branch, tag or commit name, got {revision!r}")


def _expected_sha(entry: ZooEntry, revision: str, sha256: str | None) -> str | None:
    if sha256 is not None:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256.lower()):
            raise ValueError(f"sha256: expected 64 hex digits, got {sha256!r}")
        return sha256.lower()
    if revision == entry.revision:
        if not entry.sha256:
            raise ValueError(f"name: zoo model {entry.name!r} has no published weights yet (empty sha256)")
        return entry.sha256
    return None


def download(
    name: str,
    revision: str | None = None,
    cache_dir: str | None = None,
    namespace: str | None = None,
    sha256: str | None = None,
) -> Fetched:
    """Download (or find in the cache) and verify the files of a zoo model; nothing is deserialised.

    Args:
        name: a zoo name (see :func:`~lit_deep.zoo.list_models`).
        revision: Hub branch, tag or commit; default the registry's pinned revision.
        cache_dir: the Hub cache folder; default huggingface_hub's (``HF_HOME``/``HF_HUB_CACHE``).
        namespace: Hub user or organisation; default ``$LIT_DEEP_HUB_NAMESPACE``, else ``lit-deep``.
        sha256: the expected hash of ``model.safetensors`` for a revision outside the registry (default: the
            registry's hash for its revision, the Hub's LFS hash for any other).

    Returns:
        The local paths of ``config.json`` and ``model.safetensors`` and where they came from.

    Raises:
        UnknownModelError: for a name not in the registry.
        ZooIntegrityError: when the weights' SHA-256 does not match (the cached copy is deleted).
        ZooDownloadError: when neither the Hub, the cache nor a shipped copy has the files.

    Example::

        >>> download("mlp.fmnist", revision="")
        Traceback (most recent call last):
        ...
        ValueError: revision: expected a branch, tag or commit name, got ''
    """
    entry = get_entry(name)
    _check_revision(revision)
    rev = revision or entry.revision
    return fetch(name, entry.repo_id(namespace), rev, cache_dir, _expected_sha(entry, rev, sha256))


def _read_config(fetched: Fetched, entry: ZooEntry, pinned: bool) -> dict[str, Any]:
    try:
        config = json.loads(fetched.config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{entry.name}: config.json from the {fetched.source} is not valid JSON ({err})") from err
    if not isinstance(config, dict):
        raise ValueError(f"{entry.name}: config.json must hold a JSON object, got {type(config).__name__}")
    if pinned:
        for key, expected in (("architecture", entry.architecture), ("preprocessing", entry.preprocessing.to_dict())):
            if config.get(key) != expected:
                raise ValueError(
                    f"{entry.name}: config.json {key} from the {fetched.source} differs from the registry's "
                    f"({config.get(key)!r} != {expected!r})"
                )
    return config


def load(
    name: str,
    num_classes: int | None = None,
    revision: str | None = None,
    cache_dir: str | None = None,
    *,
    namespace: str | None = None,
    sha256: str | None = None,
) -> ZooModel:
    """A pretrained zoo model, downloaded through ``huggingface_hub``, verified and rebuilt from ``config.json``.

    The weights are read from safetensors only (never pickle), after their SHA-256 matched, with
    ``strict=True``. The model is returned in eval mode with its preprocessing as first layer, so it takes raw
    images: uint8 ``[B, 28, 28]``/``[B, 1, 28, 28]`` or float in [0, 1], normalised as at training time.
    Call ``.train()`` before fine-tuning it yourself: Lightning keeps the mode a module arrives in
    (:meth:`lit_deep.Classifier.from_zoo` does it for you).

    Args:
        name: a zoo name (``lit-deep zoo list``).
        num_classes: give the model a fresh head with this many outputs (backbone pretrained, head new): the
            starting point of transfer learning. ``None`` keeps the pretrained head.
        revision: Hub branch, tag or commit; default the registry's pinned revision.
        cache_dir: the Hub cache folder; default huggingface_hub's.
        namespace: Hub user or organisation; default ``$LIT_DEEP_HUB_NAMESPACE``, else ``lit-deep``.
        sha256: the expected weights hash for a revision outside the registry.

    Returns:
        A :class:`~lit_deep.zoo.ZooModel` (``.backbone``, ``.head``, ``spec()``).

    Raises:
        UnknownModelError: for a name not in the registry (with close matches).
        ZooIntegrityError: when the weights' SHA-256 does not match.
        ZooDownloadError: when the files cannot be obtained (the message names the endpoint and remedies).
        ValueError: for bad arguments or a config/weights file that does not fit the architecture.

    Example::

        >>> load("mlp.fmnist", num_classes=0)
        Traceback (most recent call last):
        ...
        ValueError: num_classes: must be a positive integer or None, got 0
    """
    if num_classes is not None and (
        not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1
    ):
        raise ValueError(f"num_classes: must be a positive integer or None, got {num_classes!r}")
    entry = get_entry(name)
    _check_revision(revision)
    rev = revision or entry.revision
    fetched = download(name, revision=rev, cache_dir=cache_dir, namespace=namespace, sha256=sha256)
    config = _read_config(fetched, entry, pinned=rev == entry.revision and sha256 is None)
    model = ZooModel(config)
    try:
        state = load_file(str(fetched.weights))
        model.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError) as err:
        raise ValueError(
            f"{name}: model.safetensors from the {fetched.source} does not fit config.json: {err}"
        ) from err
    if num_classes is not None:
        model.reset_head(num_classes)
    model.zoo_source = fetched.source
    return model.eval()


def info(name: str) -> dict[str, Any]:
    """A summary of a zoo model for display (``lit-deep zoo info NAME``).

    Example::

        >>> info("mlp_selu.fmnist_a")["task"]
        'A'
    """
    entry = get_entry(name)
    return {
        "name": entry.name,
        "repo_id": entry.repo_id(),
        "revision": entry.revision,
        "kind": entry.kind,
        "task": entry.task,
        "classes": list(entry.class_names),
        "architecture": entry.architecture,
        "preprocessing": entry.preprocessing.to_dict(),
        "metrics": dict(entry.metrics),
        "extra_metrics": dict(entry.extra_metrics),
        "sha256": entry.sha256,
        "recipe": entry.recipe,
        "seed": entry.seed,
        "summary": entry.summary,
        "limits": entry.limits,
    }
