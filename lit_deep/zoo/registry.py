"""The zoo's registry: one table of frozen dataclasses keyed ``<arch>.<tag>``.

Each entry says where the model lives on the Hugging Face Hub (``<namespace>/<name>``, revision), the SHA-256
of its ``model.safetensors``, how to rebuild it (architecture and preprocessing), what it was trained on
(task, classes, recipe, seed) and what it measured on the test split. ``config.json`` and the model card
``README.md`` of every ``zoo/<name>/`` folder are generated from this table (:mod:`lit_deep.zoo.cards`).
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from lit_deep.data.fashion_mnist import CLASS_NAMES

__all__ = [
    "DEFAULT_NAMESPACE",
    "NAMESPACE_ENV",
    "REGISTRY",
    "PreprocessingSpec",
    "UnknownModelError",
    "ZooEntry",
    "HubReference",
    "get_entry",
    "hub_namespace",
    "list_models",
    "parse_reference",
]

#: The Hub namespace (user or organisation) of the zoo's repos.
DEFAULT_NAMESPACE = "lit-deep"
#: Environment variable overriding the namespace (e.g. a fork or a private mirror).
NAMESPACE_ENV = "LIT_DEEP_HUB_NAMESPACE"
_TASK_A_CLASSES = tuple(n for i, n in enumerate(CLASS_NAMES) if i not in (5, 6))


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
        kind: ``"classifier"`` or ``"autoencoder"``.
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


def _mlp(**init_args: Any) -> dict[str, Any]:
    return {"class_path": "lit_deep.models.MLP", "init_args": init_args}


REGISTRY: dict[str, ZooEntry] = {
    e.name: e
    for e in (
        ZooEntry(
            name="mlp_selu.fmnist_a",
            architecture=_mlp(
                input_shape=[1, 28, 28],
                hidden=[300, 100, 50, 50, 50],
                num_classes=8,
                activation="selu",
                init="lecun_normal",
            ),
            preprocessing=PreprocessingSpec(standardize="per_pixel"),
            task="A",
            class_names=_TASK_A_CLASSES,
            sha256="8fe55d6f4df2d272353dd53501c71a6bd2998bb82d7a5cd71d1343766cd98add",
            metrics={"test_acc": 0.9289, "test_nll": 0.2711, "test_ece": 0.0354},
            summary=(
                "The book's model A for transfer learning: five SELU hidden layers (300, 100, 50, 50, 50) with "
                "LeCun-normal initialisation on standardised pixels, trained with Nadam on task A (the eight "
                "classes other than sandal and shirt). The default source model for transfer to task B."
            ),
            limits=(
                "Knows eight classes only: sandals and shirts were held out on purpose (task B). A plain MLP: "
                "it has no notion of translation invariance."
            ),
        ),
        ZooEntry(
            name="mlp.fmnist",
            architecture=_mlp(
                input_shape=[1, 28, 28],
                hidden=[1024, 512],
                num_classes=10,
                activation="relu",
                batch_norm="before",
                dropout=[0.0, 0.3, 0.3],
            ),
            preprocessing=PreprocessingSpec(),
            temperature=1.1059,
            task="full",
            class_names=CLASS_NAMES,
            sha256="afd9a7408587e919dd8b948b1f56279e8e4552f4e351fde62fda77ae22f5644d",
            metrics={"test_acc": 0.9061, "test_nll": 0.2582, "test_ece": 0.0048},
            extra_metrics={"raw_test_nll": 0.2609, "raw_test_ece": 0.0111},
            summary=(
                "The zoo's best MLP: two wide hidden layers (1024, 512) with BatchNorm before ReLU (He init) and "
                "dropout 0.3, trained on batches augmented with 1-pixel shifts and horizontal flips, AdamW with "
                "1cycle (PyTorch's preset), all ten classes."
            ),
            limits=(
                "An MLP sees pixels, not shapes: shifted, rescaled or rotated items hurt it more than a CNN. "
                "Shirt, T-shirt/top, pullover and coat remain the classes it confuses most."
            ),
        ),
        ZooEntry(
            name="mlp_mc.fmnist",
            architecture=_mlp(
                input_shape=[1, 28, 28],
                hidden=[300, 100],
                num_classes=10,
                activation="relu",
                dropout=[0.0, 0.2, 0.2],
                dropout_kind="mc",
            ),
            preprocessing=PreprocessingSpec(),
            task="full",
            class_names=CLASS_NAMES,
            sha256="03662d5cefab5ba7963a9b40c7e323f8af44cf412a4608c0201c1d58f7c803e3",
            metrics={"test_acc": 0.8832, "test_nll": 0.3254, "test_ece": 0.0078},
            extra_metrics={"det_test_acc": 0.8826, "det_test_nll": 0.3419, "det_test_ece": 0.0158},
            mc_samples=100,
            summary=(
                "An MLP for uncertainty estimates with Monte-Carlo dropout: 300-100 ReLU as in the book's MC-dropout "
                "example, with always-on dropout (rate 0.2) before the second hidden layer and the output layer, "
                "trained with Nadam. Each call is one stochastic pass: average many (`lit_deep.uncertainty."
                "mc_predict`) for the predictive distribution and its spread."
            ),
            limits=(
                "One call is one random draw: for a stable prediction average many passes. MC-dropout spread is a "
                "rough uncertainty signal, not a calibrated probability of error, and it does not flag every "
                "out-of-distribution input."
            ),
        ),
        ZooEntry(
            name="cnn.fmnist",
            architecture={
                "class_path": "lit_deep.models.CNN",
                "init_args": {
                    "input_shape": [1, 28, 28],
                    "channels": [32, 64],
                    "convs_per_block": 2,
                    "dense": 512,
                    "num_classes": 10,
                    "batch_norm": True,
                    "dropout": 0.2,
                },
            },
            preprocessing=PreprocessingSpec(),
            temperature=1.1311,
            task="full",
            class_names=CLASS_NAMES,
            sha256="78d58db93197f2aa497938bec97b62ac74d6b184ce3ecd243789b13e16ad35d7",
            metrics={"test_acc": 0.9438, "test_nll": 0.1595, "test_ece": 0.0072},
            extra_metrics={"raw_test_nll": 0.1633, "raw_test_ece": 0.0127},
            summary=(
                "A small VGG-style CNN trained on 2 CPU cores: two conv blocks (32 then 64 channels; two 3x3 convs "
                "with BatchNorm and ReLU, then max-pool), a 512-unit dense layer with BatchNorm and dropout 0.2, "
                "trained on batches augmented with random shifts (up to 2 pixels) and horizontal flips, AdamW with "
                "1cycle (PyTorch's preset)."
            ),
            limits=(
                "Small on purpose (trainable on a laptop CPU); larger residual networks reach about 95-96 % on this "
                "dataset. Shirt versus T-shirt/top remains its main confusion."
            ),
        ),
        ZooEntry(
            name="autoencoder.fmnist",
            architecture={
                "class_path": "lit_deep.models.Autoencoder",
                "init_args": {"input_shape": [1, 28, 28], "hidden": [300, 100], "activation": "selu"},
            },
            preprocessing=PreprocessingSpec(),
            task="full",
            class_names=(),
            sha256="69cd8a2a04d947be0eba4ae23f1700c808d87c49cbcbeb2c98cbbd3c373e7b8b",
            metrics={"test_mse": 0.006759, "test_bce": 0.2647},
            kind="autoencoder",
            summary=(
                "A stacked dense autoencoder pretrained without labels: encoder 784-300-100 SELU (LeCun init), "
                "decoder mirrored with a sigmoid output, trained with Nadam on the binary cross-entropy between "
                "reconstruction and pixels. Its encoder is a backbone for unsupervised pretraining: "
                '`zoo.load("autoencoder.fmnist", num_classes=k)` puts a new head on the 100-dimensional codings.'
            ),
            limits=(
                "Reconstructions are blurry (a dense autoencoder with 100 codings); the codings were never trained to "
                "separate classes, so a head on a frozen encoder needs some labelled data to be useful."
            ),
        ),
    )
}


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
