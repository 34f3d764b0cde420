"""The zoo's public functions: ``load`` a model (or a ``classifier`` around it), ``download``, ``info``.

A model is a registered zoo name (weights pinned by SHA-256, shipped with lit_deep as an offline fallback) or
any Hub repo in the lit_deep format (``owner/name``, optional ``@revision`` and ``hf-hub:`` prefix), whose
weights are checked against the Hub's own SHA-256 (the LFS ETag). Loading imports no Lightning.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn

from lit_deep._validate import check_bool, check_int
from lit_deep.models import BackboneHead, DescriptionError, build, transfer
from lit_deep.zoo._format import (
    config_class_names,
    config_temperature,
    model_description,
    read_config,
    zoo_description,
)
from lit_deep.zoo._hub import Fetched, fetch
from lit_deep.zoo._integrity import ZooIntegrityError, evict, sha256_file
from lit_deep.zoo._ranks import log_once
from lit_deep.zoo._transport import FILES
from lit_deep.zoo.registry import HubReference, ZooEntry, get_entry, hub_namespace, parse_reference

if TYPE_CHECKING:
    from lit_deep.modules import Classifier

__all__ = ["ZooInfo", "classifier", "download", "info", "load", "local_folder"]


@dataclass(frozen=True)
class ZooInfo:
    """Where a loaded zoo model came from (``model.zoo_info``).

    Attributes:
        name: the registry name or the repo id.
        repo_id: the Hub repo.
        revision: the revision asked for.
        commit: the commit it resolved to (``None`` for the shipped copy).
        source: ``"hub"``, ``"shipped"`` or ``"local"`` (a folder on disk).
        sha256: the verified SHA-256 of ``model.safetensors``.
        class_names: the outputs' classes (from ``config.json``).
        config: the parsed ``config.json``.
        temperature: the temperature folded into the output layer (``None``: raw logits).
    """

    name: str
    repo_id: str
    revision: str
    commit: str | None
    source: str
    sha256: str
    class_names: tuple[str, ...] = ()
    config: dict[str, Any] = field(default_factory=dict, repr=False)
    temperature: float | None = None


def fold_temperature(model: BackboneHead, temperature: float) -> BackboneHead:
    """Divide the logits of ``model`` by ``temperature`` by scaling its Linear output layer in place.

    ``(W x + b) / T = (W / T) x + b / T``: exactly temperature scaling, with no extra layer, the same state-dict
    names and the same description; MC-dropout samples are scaled one by one, as they should be.

    Raises:
        ValueError: for a temperature that is not positive and finite, or a head that is not Linear.

    Example::

        >>> from lit_deep.models import MLP
        >>> import torch
        >>> net = MLP(hidden=(4,), num_classes=3, seed=0).eval()
        >>> x = torch.rand(2, 1, 28, 28)
        >>> torch.allclose(fold_temperature(MLP(hidden=(4,), num_classes=3, seed=0).eval(), 2.0)(x), net(x) / 2)
        True
    """
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 < temperature < float("inf"):
        raise ValueError(f"temperature: must be a positive finite number, got {temperature!r}")
    head = model.head
    if not isinstance(head, nn.Linear):
        raise ValueError(f"temperature: the head must be a Linear layer to fold it in, got {type(head).__name__}")
    with torch.no_grad():
        head.weight.div_(temperature)
        if head.bias is not None:
            head.bias.div_(temperature)
    return model


def _check_revision(revision: str | None) -> None:
    if revision is not None and (not isinstance(revision, str) or not revision.strip()):
        raise ValueError(f"revision: expected a branch, tag or commit name, got {revision!r}")


def _expected_sha(entry: ZooEntry | None, revision: str, sha256: str | None) -> str | None:
    if sha256 is not None:
        if not isinstance(sha256, str) or len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256.lower()):
            raise ValueError(f"sha256: expected 64 hex digits, got {sha256!r}")
        return sha256.lower()
    if entry is not None and revision == entry.revision:
        if not entry.sha256:
            raise ValueError(f"name: zoo model {entry.name!r} has no published weights yet (empty sha256)")
        return entry.sha256
    return None


def local_folder(name: Any) -> Path | None:
    """The local zoo folder ``name`` names (a folder holding ``config.json`` and ``model.safetensors``), if any.

    A local folder takes precedence over a Hub repo id of the same spelling (``zoo/mlp.fmnist``), as in
    ``transformers``' ``from_pretrained``.

    Example::

        >>> local_folder("mlp.fmnist") is None, local_folder("zoo/mlp.fmnist") is not None
        (True, True)
    """
    if not isinstance(name, (str, os.PathLike)) or not str(name):
        return None
    folder = Path(name)
    return folder if all((folder / f).is_file() for f in FILES) else None


def _resolve(name: str, revision: str | None, namespace: str | None) -> tuple[HubReference, str]:
    _check_revision(revision)
    if namespace is not None:  # checked even where it is not used (a local folder)
        hub_namespace(namespace)
    folder = local_folder(name)
    if folder is not None:
        if revision is not None:
            raise ValueError(f"revision: a local folder ({os.fspath(name)!r}) has no revisions, got {revision!r}")
        return HubReference(os.fspath(name), os.fspath(folder), None, None), "local"
    ref = parse_reference(name, namespace)
    if revision is not None and ref.revision is not None and revision != ref.revision:
        raise ValueError(f"revision: {revision!r} contradicts the revision in the name {name!r}")
    rev = revision or ref.revision or (ref.entry.revision if ref.entry is not None else "main")
    return ref, rev


def download(
    name: str,
    revision: str | None = None,
    cache_dir: str | None = None,
    namespace: str | None = None,
    sha256: str | None = None,
) -> Fetched:
    """Download (or find in the cache) and verify the files of a zoo model; nothing is deserialised.

    Args:
        name: a zoo name (see :func:`~lit_deep.zoo.list_models`), a Hub repo id ``owner/name[@revision]`` or a
            local zoo folder (see :func:`local_folder`).
        revision: Hub branch, tag or commit; default the registry's pinned revision (``main`` for other repos).
        cache_dir: the Hub cache folder; default huggingface_hub's (``HF_HOME``/``HF_HUB_CACHE``).
        namespace: Hub user or organisation of registered names; default ``$LIT_DEEP_HUB_NAMESPACE``, else
            ``lit-deep``.
        sha256: the expected hash of ``model.safetensors`` (default: the registry's for its pinned revision, the
            Hub's LFS hash otherwise).

    Returns:
        The local paths of ``config.json`` and ``model.safetensors``, where they came from and the commit.

    Raises:
        UnknownModelError: for a name that is neither registered nor a repo id.
        ZooIntegrityError: when a file's hash does not match (the cached copy is deleted).
        ZooDownloadError: when neither the Hub, the cache nor a shipped copy has the files.

    Example::

        >>> download("mlp.fmnist", revision="")
        Traceback (most recent call last):
        ...
        ValueError: revision: expected a branch, tag or commit name, got ''
    """
    ref, rev = _resolve(name, revision, namespace)
    folder = local_folder(name)
    if folder is not None:  # a folder written by save_pretrained (or a zoo checkout): read where it is
        weights = folder / "model.safetensors"
        digest = sha256_file(weights)
        if sha256 is not None and digest != sha256:
            raise ZooIntegrityError(f"{weights}: SHA-256 {digest[:12]}... is not the expected {sha256[:12]}...")
        return Fetched(folder / "config.json", weights, "local", None, digest)
    expected = _expected_sha(ref.entry, rev, sha256)
    return fetch(ref.name, ref.repo_id, rev, cache_dir, expected, shipped=ref.entry is not None)


def _description(fetched: Fetched, ref: HubReference, rev: str, pinned: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    where = "a local folder" if fetched.source == "local" else f"the {fetched.source} copy of {ref.repo_id}@{rev}"
    config = read_config(fetched.config, where)
    description = model_description(config, f"{fetched.config} ({where})")
    if pinned and ref.entry is not None:
        expected = zoo_description(ref.entry.architecture, ref.entry.preprocessing.to_dict())
        if description != expected:
            remedy = ""
            if fetched.source == "hub":
                evict(fetched.config)
                remedy = " It was deleted from the Hub cache: call again to download a fresh copy."
            raise ValueError(
                f"{ref.name}: the model in config.json from {where} differs from the registry's (tampered or "
                f"another revision); nothing was built.{remedy}"
            )
    return config, description


def _header_shapes(path: str) -> dict[str, tuple[int, ...]]:
    with safe_open(path, framework="pt") as handle:  # reads the JSON header only
        return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}  # noqa: SIM118


def load(
    name: str,
    num_classes: int | None = None,
    revision: str | None = None,
    cache_dir: str | None = None,
    *,
    namespace: str | None = None,
    sha256: str | None = None,
    calibrated: bool = True,
    cut: int | None = None,
) -> BackboneHead:
    """A pretrained zoo model, downloaded through ``huggingface_hub``, verified and rebuilt from ``config.json``.

    The weights are read from safetensors only (never pickle), after their SHA-256 matched (the registry's pin, or
    the Hub's LFS hash for other repos); the model is built by :func:`lit_deep.models.build` from allow-listed
    classes, first on the ``meta`` device to check its shapes against the safetensors header (nothing is allocated
    for a config that does not fit), and loaded with ``strict=True``. It is returned in eval mode with its
    preprocessing as first layer, so it takes raw images: uint8 ``[B, 28, 28]``/``[B, 1, 28, 28]`` or float in
    [0, 1]. ``model.zoo_info`` (:class:`ZooInfo`) says where it came from and which commit. Call ``.train()``
    before fine-tuning it yourself (:func:`classifier` does it for you).

    Args:
        name: a zoo name (``lit-deep zoo list``), a Hub repo id ``owner/name[@revision]`` (``hf-hub:`` prefix
            allowed) holding a lit_deep ``config.json`` and ``model.safetensors``, or a local folder holding them
            (what :func:`lit_deep.zoo.release.save_pretrained` writes; see :func:`local_folder`).
        num_classes: give the model a fresh head with this many outputs (backbone pretrained, head new): the
            starting point of transfer learning (:func:`lit_deep.models.transfer`). ``None`` keeps the head.
        revision: Hub branch, tag or commit; default the registry's pinned revision (``main`` for other repos).
        cache_dir: the Hub cache folder; default huggingface_hub's.
        namespace: Hub namespace of registered names; default ``$LIT_DEEP_HUB_NAMESPACE``, else ``lit-deep``.
        sha256: the expected weights hash (default: the registry's pin, or the Hub's own hash).
        calibrated: fold the temperature ``config.json`` carries (fitted on the validation split) into the output
            layer, so that probabilities are calibrated (:func:`fold_temperature`); ignored with ``num_classes``.
        cut: with ``num_classes``, keep only the backbone's first ``cut`` layers (a cut depth that :func:`rank`
            scores as ``backbone[:cut]`` and the model card names); ``None`` keeps the whole backbone.

    Returns:
        The model (a :class:`~lit_deep.models.BackboneHead`: ``.backbone``, ``.head``).

    Raises:
        UnknownModelError: for a name that is neither registered nor a repo id (with close matches).
        ZooIntegrityError: when a file's hash does not match.
        ZooDownloadError: when the files cannot be obtained (the message names the endpoint and remedies).
        DescriptionError: for a config that names a class outside the allow-list or does not fit the weights.
        ValueError: for bad arguments, or a ``config.json`` whose ``temperature`` is not a finite number in
            [0.001, 1000] or whose ``class_names`` are not one per output of the head (naming the file).

    Example::

        >>> load("mlp.fmnist", num_classes=0)
        Traceback (most recent call last):
        ...
        ValueError: num_classes: must be None or an integer >= 1, got 0
    """
    check_int("num_classes", num_classes, minimum=1, optional=True)
    check_bool("calibrated", calibrated)
    check_int("cut", cut, minimum=1, optional=True)
    if cut is not None and num_classes is None:
        raise ValueError(f"cut: a cut backbone ({cut}) needs a new head: pass num_classes too")
    ref, rev = _resolve(name, revision, namespace)
    local = rev == "local"  # a folder on disk: it has no revision to pass on
    fetched = download(name, revision=None if local else rev, cache_dir=cache_dir, namespace=namespace, sha256=sha256)
    pinned = ref.entry is not None and rev == ref.entry.revision and sha256 is None
    config, description = _description(fetched, ref, rev, pinned)
    weights = str(fetched.weights)
    try:
        model = build(description, _header_shapes(weights), f"model.safetensors of {ref.repo_id}@{rev}")
        model.load_state_dict(load_file(weights), strict=True)
    except DescriptionError as err:
        raise DescriptionError(f"{ref.name}: {err}") from None  # the context is in the message
    except (SafetensorError, RuntimeError) as err:
        raise ValueError(
            f"{ref.name}: model.safetensors from the {fetched.source} does not fit config.json: {err}"
        ) from err
    if not isinstance(model, BackboneHead):
        raise DescriptionError(f"{ref.name}: config.json describes a {type(model).__name__}, not a zoo model")
    if ref.entry is None and fetched.source != "local":
        log_once(
            f"lit_deep.zoo: {ref.repo_id}@{rev} resolved to commit {fetched.commit} (SHA-256 {fetched.sha256[:12]})"
        )
    # Values read from config.json, checked against the model they describe (only those that are used).
    classes = max(2, model.head.out_features) if isinstance(model.head, nn.Linear) else None
    class_names = config_class_names(config, fetched.config, classes) if num_classes is None else ()
    temperature = config_temperature(config, fetched.config) if calibrated and num_classes is None else None
    if temperature is not None:
        fold_temperature(model, temperature)
    if num_classes is not None:
        model = transfer(model, num_classes, cut=cut)
    _attach(
        model,
        ZooInfo(
            ref.name,
            ref.repo_id,
            rev,
            fetched.commit,
            fetched.source,
            fetched.sha256,
            class_names,
            config,
            temperature,
        ),
    )
    return model.eval()


def _attach(model: nn.Module, zoo_info: ZooInfo) -> None:
    model.__dict__["zoo_info"] = zoo_info  # a plain attribute: not a parameter, not part of the description


def classifier(
    name: str,
    num_classes: int | None = None,
    revision: str | None = None,
    cache_dir: str | None = None,
    cut: int | None = None,
    **kwargs: Any,
) -> Classifier:
    """A :class:`~lit_deep.Classifier` around a pretrained zoo model or Hub repo (see :func:`load`), in train mode.

    With ``num_classes`` the backbone is a copy of the pretrained one and the head is new
    (:func:`lit_deep.models.transfer`); without it the pretrained head and its class names are kept. The model
    takes raw [0, 1] images (its preprocessing is built in): use ``FashionMNISTDataModule(standardize=False)``.
    It is put in train mode (``load`` returns eval mode, and Lightning keeps the mode a module arrives in).
    Lightning is imported by this call, not by ``import lit_deep.zoo``.

    Args:
        name: a zoo name (``lit-deep zoo list``), a Hub repo id ``owner/name[@revision]`` or a local zoo folder.
        num_classes: outputs of a fresh head; ``None`` keeps the pretrained head.
        revision: Hub revision (default the registry's pinned one, ``main`` for other repos).
        cache_dir: Hub cache folder (default huggingface_hub's).
        cut: with ``num_classes``, keep the backbone's first ``cut`` layers only (see :func:`load`).
        **kwargs: the other Classifier arguments (optimizer, lr, ...).

    Example::

        >>> try:
        ...     classifier("mlp.fmnst")
        ... except ValueError as err:
        ...     print(str(err).split(" or ")[0])
        name: no zoo model 'mlp.fmnst'; did you mean 'mlp.fmnist'
    """
    from lit_deep.modules import Classifier  # Lightning: imported by this call only

    model = load(name, num_classes=num_classes, revision=revision, cache_dir=cache_dir, cut=cut).train()
    zoo_info: ZooInfo = model.__dict__["zoo_info"]
    if num_classes is None and "class_names" not in kwargs and zoo_info.class_names:
        kwargs["class_names"] = list(zoo_info.class_names)
    return Classifier(model, **kwargs)


def info(name: str) -> dict[str, Any]:
    """A summary of a registered zoo model for display (``lit-deep zoo info NAME``).

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
