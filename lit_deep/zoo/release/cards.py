"""``config.json`` and the Hugging Face model card (``README.md``) of every zoo model, generated from the registry.

``write_repo_files`` writes both into ``zoo/<name>/``; ``check_repo_files`` lists what is out of sync (the test
suite and ``lit-deep zoo cards --check`` use it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCardData
from torch import nn

from lit_deep._io import write_package_folder
from lit_deep.models import BackboneHead, build, transfer
from lit_deep.zoo._format import FORMAT, zoo_description
from lit_deep.zoo._integrity import sha256_file
from lit_deep.zoo.registry import ZooEntry
from lit_deep.zoo.transferability import cut_points

__all__ = [
    "METRIC_LABELS",
    "card_text",
    "check_repo_files",
    "config_dict",
    "config_text",
    "repo_files",
    "write_repo_files",
]

#: metric key -> (model-index type, label).
METRIC_LABELS: dict[str, tuple[str, str]] = {
    "test_acc": ("accuracy", "Test accuracy"),
    "test_nll": ("nll", "Test NLL (nats)"),
    "test_ece": ("ece", "Test ECE (15 bins)"),
    "det_test_acc": ("accuracy", "Test accuracy, deterministic pass"),
    "det_test_nll": ("nll", "Test NLL, deterministic pass"),
    "det_test_ece": ("ece", "Test ECE, deterministic pass"),
    "raw_test_nll": ("nll", "Test NLL before temperature scaling"),
    "raw_test_ece": ("ece", "Test ECE before temperature scaling"),
    "test_brier": ("brier", "Test Brier score"),
    "test_aurc": ("aurc", "Test AURC (area under the risk-coverage curve)"),
    "lac_coverage": ("coverage", "Conformal LAC sets (alpha 0.1): test coverage"),
    "lac_set_size": ("set_size", "Conformal LAC sets (alpha 0.1): mean set size"),
    "aps_coverage": ("coverage", "Conformal APS sets (alpha 0.1): test coverage"),
    "aps_set_size": ("set_size", "Conformal APS sets (alpha 0.1): mean set size"),
    "test_rotation_acc": ("accuracy", "Test accuracy at telling the rotation (4 quarter turns)"),
    "test_rotation_nll": ("nll", "Test NLL of the rotation (nats)"),
    "test_rotation_ece": ("ece", "Test ECE of the rotation (15 bins)"),
    "test_mse": ("mse", "Test reconstruction MSE (per pixel)"),
    "test_bce": ("bce", "Test reconstruction BCE (per pixel)"),
}
_DATASET = "zalando-datasets/fashion_mnist"
_TASK_TEXT = {
    "full": "all ten classes",
    "A": "task A: the eight classes other than sandal and shirt",
    "B": "task B: two classes",
}
_TEST_IMAGES = {"full": "10,000", "A": "8,000", "B": "2,000"}


def config_dict(entry: ZooEntry) -> dict[str, Any]:
    """The content of ``config.json``: everything needed to rebuild the model and its preprocessing.

    Example::

        >>> from lit_deep.zoo.registry import get_entry
        >>> config_dict(get_entry("mlp_selu.fmnist_a"))["model"]["parts"]["backbone"]["init_args"]["modules"][0]
        {'class_path': 'lit_deep.models.Preprocess', 'init_args': {'input_shape': [1, 28, 28], 'per_pixel': True}}
    """
    return {
        "lit_deep_zoo_format": FORMAT,
        "name": entry.name,
        "library_name": "lit-deep",
        "kind": entry.kind,
        "model": zoo_description(entry.architecture, entry.preprocessing.to_dict()),
        "task": entry.task,
        "num_classes": len(entry.class_names),
        "class_names": list(entry.class_names),
        "files": {"model.safetensors": {"sha256": entry.sha256, "format": "safetensors", "dtype": "float32"}},
        "metrics": dict(entry.metrics),
        "extra_metrics": dict(entry.extra_metrics),
        "mc_samples": entry.mc_samples,
        "temperature": entry.temperature,
        "recipe": entry.recipe,
        "seed": entry.seed,
    }


def config_text(entry: ZooEntry) -> str:
    """``config.json`` as written (indented JSON, trailing newline).

    Example::

        >>> from lit_deep.zoo.registry import get_entry
        >>> json.loads(config_text(get_entry("cnn.fmnist")))["model"]["class_path"]
        'lit_deep.models.CNN'
    """
    return json.dumps(config_dict(entry), indent=2) + "\n"


def _metadata(entry: ZooEntry) -> str:
    task_type = "image-classification" if entry.kind == "classifier" else "image-feature-extraction"
    results = [
        EvalResult(
            task_type=task_type,
            task_name=task_type.replace("-", " ").capitalize(),
            dataset_type=_DATASET,
            dataset_name="Fashion-MNIST",
            dataset_split="test",
            metric_type=METRIC_LABELS[key][0],
            metric_value=value,
            metric_name=METRIC_LABELS[key][1],
        )
        for key, value in {**entry.metrics, **entry.extra_metrics}.items()
    ]
    data = ModelCardData(
        license="apache-2.0",
        library_name="lit_deep",  # as downloads are tagged (huggingface_hub library_name)
        datasets=[_DATASET],
        tags=["pytorch", "lightning", "fashion-mnist", "safetensors", entry.arch, entry.kind],
        pipeline_tag=task_type,
        model_name=entry.name,
        eval_results=results or None,
    )
    return data.to_yaml()


def _results_table(entry: ZooEntry) -> str:
    rows = [
        f"| {METRIC_LABELS[k][1]} | {v:.6f} |" if k.endswith("mse") else f"| {METRIC_LABELS[k][1]} | {v:.4f} |"
        for k, v in {**entry.metrics, **entry.extra_metrics}.items()
    ]
    return "\n".join([f"| metric ({_TEST_IMAGES[entry.task]} test images) | value |", "|---|---|", *rows])


def _usage(entry: ZooEntry) -> str:
    name = entry.load_name or entry.name
    if entry.kind == "autoencoder":
        use = (
            f'ae = zoo.load("{name}")            # reconstructions: ae(images) -> [B, 1, 28, 28]\n'
            f'clf = zoo.load("{name}", num_classes=10)  # the pretrained encoder + a new head'
        )
    elif entry.kind == "pretext":
        use = (
            f'clf = zoo.classifier("{name}", num_classes=10)  # the self-supervised backbone + a new head\n'
            f'net = zoo.load("{name}")   # as trained: which of 4 quarter turns was applied to an image'
        )
    else:
        k = 2 if entry.task == "A" else len(entry.class_names)
        use = (
            f'model = zoo.load("{name}")        # eval mode; takes uint8 or [0, 1] images\n'
            f"probs = model(images).softmax(-1)       # images: [B, 28, 28] or [B, 1, 28, 28]\n"
            f'new = zoo.load("{name}", num_classes={k})   # pretrained backbone, new head (transfer)\n'
            f'clf = zoo.classifier("{name}", num_classes={k})  # the same, as a LightningModule'
        )
    return f"```python\nfrom lit_deep import zoo\n\n{use}\n```"


def _results_intro(entry: ZooEntry) -> str:
    if entry.kind == "pretext":
        return (
            "Measured on the 10,000 Fashion-MNIST test images, each rotated by a random multiple of 90 degrees "
            "(seed 0): how well the model tells the rotation (its pretext task). What the backbone is for, "
            "transfer, is measured in the summary above."
        )
    if entry.kind == "autoencoder":
        return (
            "Measured on the Fashion-MNIST test split: per-pixel mean squared error and binary cross-entropy between "
            "the reconstructions and the [0, 1] pixels."
        )
    mc = (
        f" Metrics average {entry.mc_samples} stochastic passes (MC dropout, seed 0); the deterministic pass "
        "sets the dropout rates to 0."
        if entry.mc_samples
        else ""
    )
    scaled = (
        f" The output layer divides the logits by the temperature {entry.temperature} (fitted on the 5,000 "
        "validation images; `zoo.load(..., calibrated=False)` gives the raw logits): the accuracy is unchanged, the "
        "NLL and ECE before scaling are listed too."
        if entry.temperature
        else ""
    )
    conformal = (
        " Conformal sets (`lit_deep.uncertainty.conformal_calibrate` / `prediction_sets`, alpha 0.1, LAC and "
        "randomized APS) are calibrated on the 5,000 validation images with the raw network's probabilities"
        f"{' (the MC mean)' if entry.mc_samples else ''}: they cover the true class of about 90 % of test images "
        "(slightly less for LAC, as the validation images come from the training file, on which the model does a "
        "little better than on the test file); a smaller mean set size is a sharper model."
        if "lac_coverage" in entry.extra_metrics
        else ""
    )
    return (
        f"Measured on the Fashion-MNIST test split ({_TASK_TEXT[entry.task]}); NLL in nats, ECE with 15 "
        f"equal-width bins (torchmetrics `MulticlassCalibrationError`).{mc}{scaled}{conformal}"
    )


def _training(entry: ZooEntry) -> str:
    if entry.training:
        return entry.training
    return (
        f"`lit-deep fit --config {entry.recipe}` (seed {entry.seed}) on the book's split: the first 5,000 training "
        "images for validation, the other 55,000 for training; weights exported from the final checkpoint with "
        f"`lit-deep zoo export {entry.name} --ckpt ...`."
    )


def _cuts(entry: ZooEntry) -> str:
    """The card's transfer section: the cut depths :func:`lit_deep.zoo.rank` scores and their feature sizes."""
    model = build(zoo_description(entry.architecture, entry.preprocessing.to_dict()))
    assert isinstance(model, BackboneHead)
    assert isinstance(model.backbone, nn.Sequential)
    rows = []
    for depth in cut_points(model.backbone, 3):
        layer = type(model.backbone[depth - 1]).__name__
        features = transfer(model, 2, cut=depth).feature_dim
        where = "the whole backbone" if depth == len(model.backbone) else f"`backbone[:{depth}]`, after a {layer}"
        rows.append(f"| `cut={depth}` | {where} | {features} |")
    name = entry.load_name or entry.name
    return (
        f'`zoo.load("{name}", num_classes=k)` keeps the whole backbone under a new head; `cut=d` keeps its first '
        "`d` layers only (earlier, more generic features; a feature map is flattened). `lit-deep zoo rank` scores "
        "these depths on your own data (LogME, LEEP) before any training.\n\n"
        "| cut | features | size |\n|---|---|---|\n" + "\n".join(rows)
    )


def card_text(entry: ZooEntry, weights_size: int | None = None) -> str:
    """The model card ``README.md`` of a zoo entry.

    YAML metadata (license, datasets, ``library_name``, tags, ``model-index``), then what the model is, how it
    was trained, its measured figures, classes, how to load it and its limits.

    Example::

        >>> from lit_deep.zoo.registry import get_entry
        >>> text = card_text(get_entry("mlp_selu.fmnist_a"))
        >>> text.startswith("---") and "library_name: lit_deep" in text
        True
    """
    pre = entry.preprocessing
    norm = (
        "then standardised per pixel with the mean and std of the 55,000 training images (stored in the weights "
        "file as `backbone.0.mean` / `backbone.0.std`)"
        if pre.standardize == "per_pixel"
        else "with no further normalisation"
    )
    size = f" ({weights_size / 1e6:.2f} MB)" if weights_size is not None else ""
    classes = ", ".join(f"{i}: {n}" for i, n in enumerate(entry.class_names)) or "none (trained without labels)"
    sections = [
        f"---\n{_metadata(entry).rstrip()}\n---",
        f"# {entry.name}\n\n{entry.summary}",
        f"## Results\n\n{_results_intro(entry)}\n\n{_results_table(entry)}",
        f"## Classes\n\n{classes}",
        f"## How to load\n\n{_usage(entry)}\n\nOr `lit-deep zoo download {entry.load_name or entry.name}`. The "
        "weights' SHA-256 is checked before they are read (safetensors only, `strict=True`).",
        f"## Transfer: where to cut\n\n{_cuts(entry)}",
        f"## Preprocessing\n\nInputs `[B, 28, 28]` or `[B, 1, 28, 28]`; uint8 images are divided by 255, float images "
        f"must be in [0, 1]; {norm}. This is the model's first layer (`backbone.0`), so raw images go straight in.",
        f"## Training\n\n{_training(entry)}",
        f"## Files\n\n- `config.json`: the model's description (every layer, preprocessing first; rebuilt from "
        "allow-listed classes only), classes, metrics, recipe.\n- `model.safetensors`"
        f"{size}: float32 weights, SHA-256 `{entry.sha256}`.",
        f"## Limits\n\n{entry.limits} Fashion-MNIST images only: centred 28x28 greyscale product photos on a black "
        "background; other images are out of distribution.",
    ]
    return "\n\n".join(sections) + "\n"


def write_repo_files(entry: ZooEntry, folder: str | Path) -> None:
    """Write ``config.json`` and ``README.md`` of ``entry`` into ``folder`` (the weights are left alone).

    Both files change together (:func:`lit_deep._io.write_package_folder`): a reader never sees a new card
    beside an old ``config.json``.

    Example::

        >>> import tempfile
        >>> from lit_deep.zoo.registry import get_entry
        >>> folder = Path(tempfile.mkdtemp())
        >>> write_repo_files(get_entry("mlp.fmnist"), folder)
        >>> sorted(p.name for p in folder.iterdir())
        ['README.md', 'config.json']
    """
    folder = Path(folder)
    weights = folder / "model.safetensors"
    size = weights.stat().st_size if weights.is_file() else None
    write_package_folder(folder, repo_files(entry, size))  # the other files (the weights) are carried over


def repo_files(entry: ZooEntry, weights_size: int | None = None) -> dict[str, bytes]:
    """The bytes of ``config.json`` and ``README.md`` for ``entry``.

    Example::

        >>> from lit_deep.zoo.registry import get_entry
        >>> sorted(repo_files(get_entry("mlp.fmnist")))
        ['README.md', 'config.json']
    """
    return {
        "config.json": config_text(entry).encode("utf-8"),
        "README.md": card_text(entry, weights_size).encode("utf-8"),
    }


def check_repo_files(entry: ZooEntry, folder: str | Path) -> list[str]:
    """What in ``folder`` disagrees with the registry (empty when in sync).

    Example::

        >>> from lit_deep.zoo.registry import get_entry
        >>> check_repo_files(get_entry("mlp.fmnist"), "/nonexistent")[0]
        'mlp.fmnist: /nonexistent/model.safetensors is missing'
    """
    folder = Path(folder)
    weights = folder / "model.safetensors"
    if not weights.is_file():
        return [f"{entry.name}: {weights} is missing"]
    problems = []
    if sha256_file(weights) != entry.sha256:
        problems.append(f"{entry.name}: SHA-256 of {weights} differs from the registry's")
    expected = {"config.json": config_text(entry), "README.md": card_text(entry, weights.stat().st_size)}
    for filename, text in expected.items():
        path = folder / filename
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            problems.append(f"{entry.name}: {path} is not what the registry generates (run `lit-deep zoo cards`)")
    return problems
