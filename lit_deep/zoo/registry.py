"""The zoo's registry: one table of frozen dataclasses keyed ``<arch>.<tag>``.

Each entry says where the model lives on the Hugging Face Hub (``<namespace>/<name>``, revision), the SHA-256
of its ``model.safetensors``, how to rebuild it (architecture and preprocessing), what it was trained on
(task, classes, recipe, seed) and what it measured on the test split. Only the pins (weights hash, revision)
are code (:data:`PINS`); the rest of each entry is data in ``zoo/<name>/card.json``. ``config.json`` and the
model card ``README.md`` of every ``zoo/<name>/`` folder are generated from the entries
(:mod:`lit_deep.zoo.release.cards`).
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from dataclasses import dataclass, field
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any, Literal

__all__ = [
    "DEFAULT_NAMESPACE",
    "NAMESPACE_ENV",
    "PINS",
    "REGISTRY",
    "PreprocessingSpec",
    "UnknownModelError",
    "ZooEntry",
    "HubReference",
    "get_entry",
    "hub_namespace",
    "list_models",
    "card_json",
    "parse_reference",
    "read_card",
]

#: The Hub namespace (user or organisation) of the zoo's repos.
DEFAULT_NAMESPACE = "lit-deep"
#: Environment variable overriding the namespace (e.g. a fork or a private mirror).
NAMESPACE_ENV = "LIT_DEEP_HUB_NAMESPACE"


class UnknownModelError(ValueError):
    """A zoo name that is not in the registry (the message lists close matches)."""


@dataclass(frozen=True)
class PreprocessingSpec:
    """What the model does to raw images before its first layer (the training-time normalisation), as data.

    The registry's record of it; the layer that does it is :class:`lit_deep.models.Preprocess`.

    uint8 images are divided by 255; float images are taken to be in [0, 1] already. ``standardize`` is
    ``"none"`` or ``"per_pixel"``: subtract the per-pixel mean and divide by the per-pixel std of the
    55,000-image training split (std floored at 1/255), stored in ``model.safetensors`` as
    ``backbone.0.mean`` / ``backbone.0.std``.

    Example::

        >>> PreprocessingSpec(standardize="per_pixel").to_dict()["input_shape"]
        [1, 28, 28]
    """

    input_shape: tuple[int, ...] = (1, 28, 28)
    standardize: Literal["none", "per_pixel"] = "none"

    def __post_init__(self) -> None:
        if self.standardize not in ("none", "per_pixel"):
            raise ValueError(f"standardize: expected 'none' or 'per_pixel', got {self.standardize!r}")

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in ``config.json``."""
        return {"input_shape": list(self.input_shape), "uint8_scale": 1 / 255, "standardize": self.standardize}


@dataclass(frozen=True)
class ZooEntry:
    """One pretrained model of the zoo.

    Attributes:
        name: ``<arch>.<tag>``, also the Hub repo's name.
        architecture: ``{"class_path", "init_args"}`` of a :mod:`lit_deep.models` class.
        preprocessing: the normalisation built into the model.
        task: ``"full"`` or ``"A"`` (see :class:`~lit_deep.data.FashionMNISTDataModule`).
        class_names: the outputs' classes in order (empty for the autoencoder).
        sha256: SHA-256 of ``model.safetensors`` (checked before anything is deserialised).
        metrics: measured on the 10,000 test images (``test_acc``, ``test_nll``, ``test_ece``, ...).
        summary: one paragraph for the card: what the model is and how it was trained.
        limits: one paragraph for the card: what it is not good for.
        seed: the seed of the recipe.
        revision: the pinned Hub revision (a 40-hex commit once published, else ``"main"``).
        namespace: the Hub namespace (overridden by ``$LIT_DEEP_HUB_NAMESPACE``).
        kind: ``"classifier"``, ``"autoencoder"`` or ``"pretext"`` (a self-supervised backbone whose head
            answers its pretext task, e.g. the rotation of an image).
        mc_samples: for MC-dropout models, the number of stochastic passes the metrics average.
        temperature: the temperature fitted on the validation split (``recipes/temperature_zoo.py``), folded into
            the output layer by :func:`~lit_deep.zoo.load` (``None``: not calibrated).
        training: how the model was trained, for the card (default: the registered recipe).
        load_name: the name users load it by (default ``name``; a pushed model's repo id).

    Example::

        >>> entry = get_entry("mlp.fmnist")
        >>> entry.arch, entry.repo_id(), entry.recipe
        ('mlp', 'lit-deep/mlp.fmnist', 'recipes/zoo/mlp.fmnist.yaml')
    """

    name: str
    architecture: dict[str, Any]
    preprocessing: PreprocessingSpec
    task: str
    class_names: tuple[str, ...]
    sha256: str
    metrics: dict[str, float]
    summary: str
    limits: str
    seed: int = 42
    revision: str = "main"
    namespace: str = DEFAULT_NAMESPACE
    kind: str = "classifier"
    mc_samples: int = 0
    extra_metrics: dict[str, float] = field(default_factory=dict)
    temperature: float | None = None
    training: str = ""
    load_name: str = ""

    @property
    def arch(self) -> str:
        """The architecture part of the name."""
        return self.name.split(".", 1)[0]

    @property
    def tag(self) -> str:
        """The tag part of the name (empty for a name without a dot)."""
        return self.name.partition(".")[2]

    @property
    def recipe(self) -> str:
        """The recipe that trained the model, relative to the repository root."""
        return f"recipes/zoo/{self.name}.yaml"

    def repo_id(self, namespace: str | None = None) -> str:
        """The Hub repo id: ``namespace`` argument, else ``$LIT_DEEP_HUB_NAMESPACE``, else the entry's.

        Example::

            >>> get_entry("cnn.fmnist").repo_id("my-org")
            'my-org/cnn.fmnist'
        """
        return f"{hub_namespace(namespace) or self.namespace}/{self.name}"


#: The pins, the only part of the zoo kept in code: each registered name's SHA-256 of ``model.safetensors``
#: (checked before anything is deserialised) and its Hub revision. Everything else (architecture, metrics, the
#: card's prose) is data in ``zoo/<name>/card.json``, shipped with the package and read by :func:`read_card`.
PINS: dict[str, tuple[str, str]] = {
    "mlp_selu.fmnist_a": ("8fe55d6f4df2d272353dd53501c71a6bd2998bb82d7a5cd71d1343766cd98add", "main"),
    "mlp.fmnist": ("afd9a7408587e919dd8b948b1f56279e8e4552f4e351fde62fda77ae22f5644d", "main"),
    "mlp_mc.fmnist": ("03662d5cefab5ba7963a9b40c7e323f8af44cf412a4608c0201c1d58f7c803e3", "main"),
    "cnn.fmnist": ("78d58db93197f2aa497938bec97b62ac74d6b184ce3ecd243789b13e16ad35d7", "main"),
    "autoencoder.fmnist": ("69cd8a2a04d947be0eba4ae23f1700c808d87c49cbcbeb2c98cbbd3c373e7b8b", "main"),
    "rotation_cnn.fmnist": ("6f3f0757921f34fd54b19574c5f5d5eba2a2e6cb338fb150aaa825fd14c2a7cb", "main"),
    "resnet.fmnist": ("c90dc512fa377664e50c1a0240d6c596f1aee1cbcad6bb5dd033bfe70fc00790", "main"),
}
#: The fields of ``card.json`` and their JSON types.
_CARD_FIELDS: dict[str, type | tuple[type, ...]] = {
    "kind": str,
    "architecture": dict,
    "standardize": str,
    "task": str,
    "class_names": list,
    "seed": int,
    "metrics": dict,
    "extra_metrics": dict,
    "mc_samples": int,
    "temperature": (float, type(None)),
    "summary": str,
    "limits": str,
    "training": str,
}
_MAX_CARD_BYTES = 1 << 20


def card_path(name: str) -> Traversable:
    """Where the card data of the registered model ``name`` is shipped: ``lit_deep/_zoo_files/<name>/card.json``.

    The repository's ``zoo/<name>/`` folder is the same folder (``_zoo_files`` links to it).

    Example::

        >>> card_path("cnn.fmnist").name
        'card.json'
    """
    return files("lit_deep") / "_zoo_files" / name / "card.json"


def read_card(name: str, sha256: str = "", revision: str = "main") -> ZooEntry:
    """The :class:`ZooEntry` of ``name``: its ``card.json`` (types checked field by field) and its pins.

    Raises:
        ValueError: for a missing, oversized or malformed ``card.json``, naming the file and the field.

    Example::

        >>> entry = read_card("mlp.fmnist", sha256="ab" * 32)
        >>> entry.task, entry.metrics["test_acc"], entry.sha256[:4]
        ('full', 0.9061, 'abab')
    """
    path = card_path(name)
    where = f"zoo/{name}/card.json"
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ValueError(f"{where}: cannot read the card data of a registered model ({err})") from err
    if len(raw) > _MAX_CARD_BYTES:
        raise ValueError(f"{where}: {len(raw)} bytes, more than the {_MAX_CARD_BYTES} a card may have")
    try:
        data = json.loads(raw)
    except ValueError as err:
        raise ValueError(f"{where}: not valid JSON ({err})") from err
    if not isinstance(data, dict) or set(data) != set(_CARD_FIELDS):
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{where}: expected exactly the fields {sorted(_CARD_FIELDS)}, got {keys}")
    for key, kind in _CARD_FIELDS.items():
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise ValueError(f"{where}: {key} must be of JSON type {kind}, got {value!r}")
    for key in ("metrics", "extra_metrics"):
        if not all(isinstance(v, float) and math.isfinite(v) for v in data[key].values()):
            raise ValueError(f"{where}: {key} must map names to finite numbers, got {data[key]!r}")
    return ZooEntry(
        name=name,
        architecture=data["architecture"],
        preprocessing=PreprocessingSpec(standardize=data["standardize"]),
        task=data["task"],
        class_names=tuple(str(c) for c in data["class_names"]),
        sha256=sha256,
        metrics=data["metrics"],
        summary=data["summary"],
        limits=data["limits"],
        seed=data["seed"],
        revision=revision,
        kind=data["kind"],
        mc_samples=data["mc_samples"],
        extra_metrics=data["extra_metrics"],
        temperature=data["temperature"],
        training=data["training"],
    )


def card_json(entry: ZooEntry) -> str:
    """The ``card.json`` of ``entry`` (what :func:`read_card` reads back; the pins are not in it).

    Example::

        >>> entry = get_entry("cnn.fmnist")
        >>> read_card("cnn.fmnist", entry.sha256) == entry, json.loads(card_json(entry))["task"]
        (True, 'full')
    """
    data = {
        "kind": entry.kind,
        "architecture": entry.architecture,
        "standardize": entry.preprocessing.standardize,
        "task": entry.task,
        "class_names": list(entry.class_names),
        "seed": entry.seed,
        "metrics": entry.metrics,
        "extra_metrics": entry.extra_metrics,
        "mc_samples": entry.mc_samples,
        "temperature": entry.temperature,
        "summary": entry.summary,
        "limits": entry.limits,
        "training": entry.training,
    }
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


REGISTRY: dict[str, ZooEntry] = {name: read_card(name, sha256, revision) for name, (sha256, revision) in PINS.items()}


_REPO_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


@dataclass(frozen=True)
class HubReference:
    """What a name given to :func:`lit_deep.zoo.load` refers to: a registered model or any Hub repo.

    Attributes:
        name: the name as the zoo reports it (the registry name, or the repo id).
        repo_id: ``owner/name`` on the Hub.
        revision: the revision asked for (``None``: the registry's pinned one, or ``main``).
        entry: the registry entry, for a registered name.
    """

    name: str
    repo_id: str
    revision: str | None
    entry: ZooEntry | None


def _is_part(text: Any) -> bool:
    return isinstance(text, str) and bool(_REPO_PART.match(text)) and ".." not in text


_PART_RULE = "a Hub user or organisation name (letters, digits, '-', '_', '.'; no '..')"


def hub_namespace(namespace: Any = None) -> str | None:
    """The namespace asked for: the ``namespace`` argument, else ``$LIT_DEEP_HUB_NAMESPACE`` (``None``: neither).

    Either must be one part of a repo id (the rule of :func:`is_repo_id`); an empty variable counts as unset.

    Raises:
        ValueError: naming the argument (``namespace``) or the variable and the value.

    Example::

        >>> hub_namespace("my-org")
        'my-org'
        >>> try:
        ...     hub_namespace("../..")
        ... except ValueError as err:
        ...     print(err)
        namespace: must be a Hub user or organisation name (letters, digits, '-', '_', '.'; no '..'), got '../..'
    """
    if namespace is not None:
        if not _is_part(namespace):
            raise ValueError(f"namespace: must be {_PART_RULE}, got {namespace!r}")
        return str(namespace)
    value = os.environ.get(NAMESPACE_ENV)
    if not value:
        return None
    if not _is_part(value):
        raise ValueError(f"{NAMESPACE_ENV}: must be {_PART_RULE}, got {value!r} (from the environment)")
    return value


def is_repo_id(text: Any) -> bool:
    """Whether ``text`` is a Hub repo id ``owner/name`` (the one rule for repo ids in lit_deep).

    Example::

        >>> is_repo_id("you/fmnist-cnn"), is_repo_id("no-owner"), is_repo_id("a/../b")
        (True, False, False)
    """
    parts = text.split("/") if isinstance(text, str) else []
    return len(parts) == 2 and all(_is_part(p) for p in parts)


def parse_reference(name: str, namespace: str | None = None) -> HubReference:
    """Resolve a zoo name or a Hub repo id (``owner/name``, optional ``@revision``, optional ``hf-hub:``).

    Raises:
        UnknownModelError: for a name that is neither registered nor a repo id (with close matches).
        ValueError: for a ``namespace`` (or ``$LIT_DEEP_HUB_NAMESPACE``) that is not one part of a repo id.

    Example::

        >>> ref = parse_reference("hf-hub:someone/their-fmnist-cnn@v1")
        >>> ref.repo_id, ref.revision, ref.entry is None
        ('someone/their-fmnist-cnn', 'v1', True)
        >>> parse_reference("mlp.fmnist").repo_id
        'lit-deep/mlp.fmnist'
    """
    if namespace is not None:  # an argument is checked whatever the name; the variable when it is used
        hub_namespace(namespace)
    if isinstance(name, str) and name in REGISTRY:
        entry = REGISTRY[name]
        return HubReference(name, entry.repo_id(namespace), None, entry)
    text = name.removeprefix("hf-hub:") if isinstance(name, str) else ""
    repo_id, _, revision = text.partition("@")
    if is_repo_id(repo_id) and (revision or "@" not in text):
        return HubReference(repo_id, repo_id, revision or None, None)
    get_entry(name)  # raises UnknownModelError with suggestions
    raise AssertionError("unreachable")  # pragma: no cover


def list_models() -> list[str]:
    """The names of the zoo's models, sorted.

    Example::

        >>> "mlp.fmnist" in list_models()
        True
    """
    return sorted(REGISTRY)


def get_entry(name: str) -> ZooEntry:
    """The registry entry of ``name``.

    Raises:
        UnknownModelError: for a name not in the registry; the message lists close matches.

    Example::

        >>> get_entry("cnn.fmnist").task
        'full'
        >>> try:
        ...     get_entry("mlp.fmnst")
        ... except UnknownModelError as err:
        ...     print(str(err).split(" or ")[0])
        name: no zoo model 'mlp.fmnst'; did you mean 'mlp.fmnist'
    """
    if not isinstance(name, str) or name not in REGISTRY:
        close = difflib.get_close_matches(str(name), list(REGISTRY), n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        raise UnknownModelError(
            f"name: no zoo model {name!r}; {hint}Available: {', '.join(list_models())}, or any Hub repo "
            "'owner/name[@revision]' in the lit_deep format"
        )
    return REGISTRY[name]
