"""Packaging a trained model in the zoo format: ``model.safetensors``, ``config.json``, ``README.md``.

``lit-deep zoo export NAME --ckpt PATH`` writes a registered model's folder from its recipe's checkpoint and prints
the registry fields to paste; :func:`package_checkpoint` / :func:`_package_module` do the same for any lit_deep
model, which :mod:`lit_deep.zoo.release.push` then publishes. The preprocessing the run used (the DataModule's
standardisation, saved in the checkpoint) becomes the model's first layer, so the package takes raw images.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save
from torch import nn

from lit_deep._io import write_package_folder
from lit_deep._validate import check_device, check_path
from lit_deep.data.fashion_mnist import CLASS_NAMES
from lit_deep.models import BackboneHead, CheckpointError, Preprocess, describe, read_checkpoint
from lit_deep.models.checkpoint import MODULE_KEY
from lit_deep.nn.dropout import MCAlphaDropout, MCDropout
from lit_deep.zoo._format import assemble, zoo_description
from lit_deep.zoo.registry import REGISTRY, PreprocessingSpec, ZooEntry, card_json, get_entry
from lit_deep.zoo.release.cards import repo_files
from lit_deep.zoo.release.evaluate import ROTATION_NAMES, evaluate

__all__ = ["ExportResult", "package", "pin_line", "remeasure", "save_pretrained"]

#: MC samples the metrics of a model with always-on MC dropout layers average.
MC_SAMPLES = 100


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote and measured."""

    folder: Path
    sha256: str
    size: int
    metrics: dict[str, float]
    extra_metrics: dict[str, float]


#: The zoo kind of each lit_deep LightningModule that is not a classifier.
_KINDS = {"AutoencoderModule": "autoencoder", "RotationPretext": "pretext"}


def _split(network: BackboneHead) -> tuple[BackboneHead, Preprocess | None]:
    """The network without a leading Preprocess layer (a zoo-based model has one), and that layer."""
    layers = list(network.backbone.children()) if type(network.backbone) is nn.Sequential else [network.backbone]
    if layers and isinstance(layers[0], Preprocess):
        return type(network).from_parts(nn.Sequential(*layers[1:]), network.head, network.feature_dim), layers[0]
    return network, None


def _class_names(task: str, b_classes: Any) -> tuple[str, ...]:
    if task == "A":
        return tuple(n for i, n in enumerate(CLASS_NAMES) if i not in tuple(b_classes or (5, 6)))
    if task == "B":
        b = tuple(b_classes or (5, 6))
        return (CLASS_NAMES[b[0]], CLASS_NAMES[b[1]])
    return CLASS_NAMES


def _package_module(
    module: Any,
    name: str,
    data_hparams: dict[str, Any] | None = None,
    stats: tuple[torch.Tensor, torch.Tensor] | None = None,
    load_name: str = "",
    training: str = "",
) -> tuple[BackboneHead, ZooEntry]:
    """A lit_deep LightningModule's model with its preprocessing first, and the entry describing it.

    Args:
        module: a ``Classifier`` or ``AutoencoderModule`` whose ``model`` is a BackboneHead.
        name: the model's name on its card.
        data_hparams: the DataModule's hyper-parameters (task, standardize, b_classes); default: task ``full``.
        stats: the per-pixel mean and std the run standardised with (when ``standardize``).
        load_name: the name users load it by (a repo id).
        training: how it was trained, for the card.

    Returns:
        ``(model, entry)``: the model in eval mode (float32) and an entry without hash or metrics yet.

    Raises:
        ValueError: for a model without backbone/head, or standardisation without statistics.
    """
    network = getattr(module, "model", None)
    if not isinstance(network, BackboneHead):
        raise ValueError(f"module: its model must be a BackboneHead (backbone + head), got {type(network).__name__}")
    hparams = dict(data_hparams or {})
    task = str(hparams.get("task", "full"))
    network, existing = _split(network)
    standardize = bool(hparams.get("standardize", False))
    if existing is not None and standardize:
        raise ValueError("module: the model already has a Preprocess layer and the run standardised its inputs too")
    if existing is not None:
        pre = existing
    else:
        pre = Preprocess((1, 28, 28), per_pixel=standardize)
        if standardize:
            if stats is None:
                raise ValueError("stats: the run standardised its inputs; pass the training split's mean and std")
            pre.mean.copy_(stats[0].reshape(pre.mean.shape))
            pre.std.copy_(stats[1].reshape(pre.std.shape))
    model = assemble(network, pre).float().eval()
    per_pixel = tuple(pre.mean.shape) != (1,)
    kind = _KINDS.get(type(module).__name__, "classifier")
    names = getattr(module, "class_names", None) or (
        _class_names(task, hparams.get("b_classes")) if kind == "classifier" else ()
    )
    if kind == "pretext":
        names = ROTATION_NAMES
    mc = any(isinstance(m, (MCDropout, MCAlphaDropout)) for m in model.modules())
    entry = ZooEntry(
        name=name,
        architecture=describe(network),
        preprocessing=PreprocessingSpec(tuple(pre.input_shape), "per_pixel" if per_pixel else "none"),
        task=task,
        class_names=tuple(str(n) for n in names),
        sha256="",
        metrics={},
        summary=f"A {type(network).__name__} trained with lit_deep on Fashion-MNIST ({task} task).",
        limits="Measured on Fashion-MNIST only.",
        kind=kind,
        mc_samples=MC_SAMPLES if mc else 0,
        training=training,
        load_name=load_name,
    )
    return model, entry


def _statistics(
    saved: dict[str, Any], hparams: dict[str, Any], data_dir: str | None
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The standardisation the run used: the DataModule state saved in the checkpoint (recomputed if absent)."""
    if not hparams.get("standardize", False):
        return None
    state = saved.get("FashionMNISTDataModule") or {}
    if isinstance(state.get("mean"), torch.Tensor) and isinstance(state.get("std"), torch.Tensor):
        return state["mean"].clone(), state["std"].clone()
    from lit_deep.data import FashionMNISTDataModule

    args = {k: hparams[k] for k in ("task", "val_size", "b_classes", "b_train_size", "seed") if k in hparams}
    dm = FashionMNISTDataModule(data_dir, standardize=True, **args)
    dm.setup("fit")
    assert dm.mean is not None
    assert dm.std is not None
    return dm.mean.clone(), dm.std.clone()


def _package_checkpoint(
    ckpt: str | os.PathLike[str], name: str, data_dir: str | None = None, load_name: str = ""
) -> tuple[BackboneHead, ZooEntry, dict[str, Any]]:
    """:func:`_package_module` for a checkpoint written by ``lit-deep fit`` (read as data, model allow-listed).

    Returns:
        ``(model, entry, data_hparams)``.

    The file is read once, by :func:`lit_deep.models.read_checkpoint`; the LightningModule class is the one the
    checkpoint records (``lit_deep_module``), looked up in a fixed table of lit_deep's modules.

    Raises:
        CheckpointError: for a missing, unreadable or refused checkpoint, or one that records no lit_deep module.

    Example::

        >>> try:
        ...     _package_checkpoint("missing.ckpt", "x")
        ... except ValueError as err:
        ...     print(err)
        checkpoint 'missing.ckpt': no such file
    """
    from lit_deep.modules import AutoencoderModule, Classifier, RotationPretext

    found = read_checkpoint(ckpt, require_model=True)
    table = {f"{c.__module__}.{c.__qualname__}": c for c in (Classifier, AutoencoderModule, RotationPretext)}
    module_cls = table.get(found.module_class or "")
    if module_cls is None:
        raise CheckpointError(
            f"checkpoint {found.path!r}: records no lit_deep LightningModule ({MODULE_KEY}: {found.module_class!r}); "
            f"export takes checkpoints written by {', '.join(c.__name__ for c in table.values())}"
        )
    init_args = {k: v for k, v in found.hparams.items() if not k.startswith("_") and k != "model"}
    module = module_cls(found.model(), **init_args)
    hparams = dict(found.datamodule_hparams)
    saved = found.raw
    training = f"Trained with lit_deep; exported from the checkpoint `{Path(ckpt).name}`." if load_name else ""
    model, entry = _package_module(module, name, hparams, _statistics(saved, hparams, data_dir), load_name, training)
    return model, entry, hparams


def _write_package(
    model: nn.Module,
    entry: ZooEntry,
    folder: str | Path,
    data_dir: str | None = None,
    data: tuple[torch.Tensor, torch.Tensor] | None = None,
    test_args: dict[str, Any] | None = None,
    registered: bool = False,
    device: str | torch.device | None = None,
) -> tuple[ExportResult, ZooEntry]:
    """Measure the model and write its package: ``model.safetensors`` (float32), ``config.json``, the card.

    A ``registered`` model also gets its ``card.json`` (the registry's data) with the new metrics.

    The three files are written together (:func:`lit_deep._io.write_package_folder`): a reader of ``folder``
    sees the old package or the new one, never new weights beside an old card; nothing is written when the
    evaluation fails.

    Returns:
        What was written, and the entry completed with the hash and the metrics.
    """
    folder = Path(folder)
    tensors = {
        k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype).contiguous().clone()
        for k, v in model.state_dict().items()
    }
    # One metadata key: safetensors writes the metadata map in an arbitrary order, so two keys made the bytes (and
    # the pinned SHA-256) of the same weights differ from one export to the next. The name is in config.json.
    weights = save(tensors, metadata={"format": "pt"})
    if data is None and entry.task == "B":
        data = _task_b_data(data_dir, test_args or {})
    val_size = int((test_args or {}).get("val_size", 5000))
    metrics, extra = evaluate(model.eval(), entry, data_dir, data, val_size, device=device)
    sha = hashlib.sha256(weights).hexdigest()
    entry = dataclasses.replace(entry, sha256=sha, metrics=metrics, extra_metrics=extra)
    files = {"model.safetensors": weights, **repo_files(entry, len(weights))}
    if registered:
        files["card.json"] = card_json(entry).encode()
    write_package_folder(folder, files)
    return ExportResult(folder, sha, len(weights), metrics, extra), entry


def _task_b_data(data_dir: str | None, test_args: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    from lit_deep.zoo.release.evaluate import load_test_split

    args = {k: test_args[k] for k in ("b_classes",) if k in test_args}
    return load_test_split("B", data_dir, **args)


def _export_registered(
    name: str,
    ckpt: str | os.PathLike[str],
    folder: str | Path,
    data_dir: str | None = None,
    device: str | torch.device | None = None,
) -> ExportResult:
    """Export the checkpoint ``ckpt`` of the registered zoo model ``name`` into ``folder`` and measure it.

    Raises:
        ValueError: for an unknown name, or a checkpoint whose architecture or data differ from the registry's, or
            a missing or unreadable checkpoint.

    """
    registered = get_entry(name)
    model, entry, hparams = _package_checkpoint(ckpt, name, data_dir)
    for key, expected in (
        ("task", registered.task),
        ("standardize", registered.preprocessing.standardize == "per_pixel"),
    ):
        if key in hparams and hparams[key] != expected:
            raise ValueError(f"ckpt: the run's data had {key}={hparams[key]!r}, {name} needs {expected!r}")
    expected_model = zoo_description(registered.architecture, registered.preprocessing.to_dict())
    if zoo_description(entry.architecture, entry.preprocessing.to_dict()) != expected_model:
        raise ValueError(
            f"ckpt: the checkpoint's architecture {entry.architecture} is not {name}'s {registered.architecture}"
        )
    result, _ = _write_package(model, registered, folder, data_dir, test_args=hparams, registered=True, device=device)
    return result


def remeasure(
    name: str,
    folder: str | Path,
    data_dir: str | None = None,
    val_size: int = 5000,
    device: str | torch.device | None = None,
) -> tuple[ZooEntry, list[str]]:
    """Measure the registered model ``name`` again from its package in ``folder`` and rewrite its card data.

    The weights are loaded as users load them (:func:`lit_deep.zoo.load` of the local folder, hash checked) and
    measured by :func:`~lit_deep.zoo.release.evaluate.evaluate`; ``card.json``, ``config.json`` and the card are
    rewritten together with the new figures (the weights are untouched).

    Args:
        name: a registered zoo name.
        folder: its package folder (``zoo/<name>``).
        data_dir: where the Fashion-MNIST files are.
        val_size: the validation split the conformal sets are calibrated on (the recipes' 5,000).
        device: where to run the model (default the CPU, where ``load`` puts it).

    Returns:
        The updated entry and one line per stored metric that the new measurement does not reproduce
        (to 1e-4): new metrics (a measurement added since the export) are not listed.

    Raises:
        UnknownModelError: for a name that is not registered.
    """
    from lit_deep.zoo.api import load

    entry = get_entry(name)
    folder = Path(folder)
    model = load(str(folder), calibrated=False, sha256=entry.sha256)
    metrics, extra = evaluate(model.eval(), entry, data_dir, val_size=val_size, device=device)
    stored = {**entry.metrics, **entry.extra_metrics}
    measured = {**metrics, **extra}
    changed = [
        f"{name}: {key} stored {value}, measured {measured.get(key)}"
        for key, value in stored.items()
        if key not in measured or abs(measured[key] - value) > 1e-4
    ]
    entry = dataclasses.replace(entry, metrics=metrics, extra_metrics=extra)
    size = (folder / "model.safetensors").stat().st_size
    files = {**repo_files(entry, size), "card.json": card_json(entry).encode()}
    write_package_folder(folder, files)
    return entry, changed


def pin_line(name: str, result: ExportResult) -> str:
    """The line of :data:`lit_deep.zoo.registry.PINS` to paste for ``name`` after an export.

    The measured metrics are already in the exported ``card.json``; only the weights' hash is code.

    Example::

        >>> r = ExportResult(Path("zoo/x"), "ab" * 32, 10, {"test_acc": 0.9}, {})
        >>> print(pin_line("mlp.fmnist", r).splitlines()[1])
            "mlp.fmnist": ("abababababababababababababababababababababababababababababababab", "main"),
    """
    return (
        f"# {name}: {result.folder}/model.safetensors, {result.size / 1e6:.2f} MB, metrics {result.metrics}\n"
        f'    "{name}": ("{result.sha256}", "main"),'
    )


def _module_package(
    module: Any, name: str, datamodule: Any = None, load_name: str = "", training: str = ""
) -> tuple[BackboneHead, ZooEntry, dict[str, Any]]:
    """:func:`_package_module` for a LightningModule in memory, its data read from ``datamodule`` (or its trainer's)."""
    if datamodule is None:
        try:
            datamodule = module.trainer.datamodule  # Lightning's property raises when no Trainer is attached
        except RuntimeError:
            datamodule = None
    hparams = dict(getattr(datamodule, "hparams", {}) or {})
    stats = None
    if hparams.get("standardize"):
        if getattr(datamodule, "mean", None) is None:
            datamodule.setup("fit")
        stats = (datamodule.mean, datamodule.std)
    model, entry = _package_module(module, name, hparams, stats, load_name=load_name, training=training)
    return model, entry, hparams


def package(
    source: Any, name: str, *, datamodule: Any = None, data_dir: str | None = None, load_name: str = ""
) -> tuple[BackboneHead, ZooEntry, dict[str, Any]]:
    """The model of ``source`` (a lit_deep LightningModule or a checkpoint path) with its entry and data settings.

    Raises:
        ValueError: for a source that is neither (one line naming it).
    """
    if isinstance(source, (str, os.PathLike)):
        return _package_checkpoint(source, name, data_dir, load_name=load_name)
    if not isinstance(getattr(source, "model", None), nn.Module):
        raise ValueError(
            f"source: expected a lit_deep LightningModule (Classifier, AutoencoderModule) or a checkpoint path, got "
            f"{type(source).__name__}"
        )
    training = "Trained with lit_deep and published with `lit_deep.zoo.release.push`." if load_name else ""
    return _module_package(source, name, datamodule, load_name, training)


def save_pretrained(
    source: Any,
    folder: str | os.PathLike[str],
    *,
    name: str | None = None,
    repo_id: str | None = None,
    datamodule: Any = None,
    data_dir: str | None = None,
    device: str | torch.device | None = None,
) -> ExportResult:
    """Write a trained model as a zoo folder: ``model.safetensors``, ``config.json`` and a measured model card.

    The folder loads with ``lit_deep.zoo.load(folder)`` (and, once uploaded, from the Hub); :func:`push` is this
    plus the upload. The model gets its preprocessing as first layer (the run's standardisation), is measured on
    the test split of the run's task (accuracy, NLL, ECE; MC-dropout models average 100 passes), and the three
    files are replaced together (a reader sees the old package or the new one).

    Args:
        source: a trained lit_deep LightningModule (``Classifier``, ``AutoencoderModule``) or the path of a
            checkpoint written by ``lit-deep fit`` (read as data, model allow-listed).
        folder: where to write (created; an existing package there is replaced as a unit).
        name: the model's name on its card (default the folder's name). A registered zoo name (``lit-deep zoo
            list``) exports that registry entry: the checkpoint must match its architecture and data settings.
        repo_id: the Hub repo the folder is meant for (``owner/name``): its card then loads it by that id.
        datamodule: the ``FashionMNISTDataModule`` a module was trained with (default: its trainer's, else task
            ``full`` without standardisation).
        data_dir: where the Fashion-MNIST files are.
        device: where to measure the model (e.g. ``"cuda"``; default: where it is, the CPU for a checkpoint).
            The weights are written as float32 CPU tensors whatever the device.

    Returns:
        The folder, the weights' SHA-256 and size, and the measured metrics.

    Example::

        >>> try:
        ...     save_pretrained(object(), "out")
        ... except ValueError as err:
        ...     print(str(err).split(",")[0])
        source: expected a lit_deep LightningModule (Classifier
    """
    folder = Path(check_path("folder", folder))
    if device is not None:
        check_device("device", device)  # before the work: a typo fails at once
    if name is not None and name in REGISTRY and repo_id is None:
        if not isinstance(source, (str, os.PathLike)):
            raise ValueError(f"source: a registered model ({name}) is exported from its checkpoint path")
        return _export_registered(name, source, folder, data_dir, device)
    load_name = repo_id or ""
    model, entry, hparams = package(
        source, name or folder.name, datamodule=datamodule, data_dir=data_dir, load_name=load_name
    )
    result, _ = _write_package(model, entry, folder, data_dir, test_args=hparams, device=device)
    return result
