"""Packaging a trained model in the zoo format: ``model.safetensors``, ``config.json``, ``README.md``.

``lit-deep zoo export NAME --ckpt PATH`` writes a registered model's folder from its recipe's checkpoint and prints
the registry fields to paste; :func:`package_checkpoint` / :func:`package_module` do the same for any lit_deep
model, which :mod:`lit_deep.zoo.release.push` then publishes. The preprocessing the run used (the DataModule's
standardisation, saved in the checkpoint) becomes the model's first layer, so the package takes raw images.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save
from torch import nn

from lit_deep._io import write_package_folder
from lit_deep.data.fashion_mnist import CLASS_NAMES
from lit_deep.models import BackboneHead, Preprocess, describe
from lit_deep.nn.dropout import MCAlphaDropout, MCDropout
from lit_deep.zoo._format import assemble, zoo_description
from lit_deep.zoo.registry import PreprocessingSpec, ZooEntry, get_entry
from lit_deep.zoo.release.cards import repo_files
from lit_deep.zoo.release.evaluate import evaluate

__all__ = [
    "ExportResult",
    "export_checkpoint",
    "package_checkpoint",
    "package_module",
    "registry_snippet",
    "write_package",
]

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


def package_module(
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
    kind = "autoencoder" if type(module).__name__ == "AutoencoderModule" else "classifier"
    names = getattr(module, "class_names", None) or (
        _class_names(task, hparams.get("b_classes")) if kind == "classifier" else ()
    )
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


def package_checkpoint(
    ckpt: str | Path, name: str, data_dir: str | None = None, load_name: str = ""
) -> tuple[BackboneHead, ZooEntry, dict[str, Any]]:
    """:func:`package_module` for a checkpoint written by ``lit-deep fit`` (read as data, model allow-listed).

    Returns:
        ``(model, entry, data_hparams)``.

    Raises:
        FileNotFoundError: for a missing checkpoint.

    Example::

        >>> package_checkpoint("missing.ckpt", "x")
        Traceback (most recent call last):
        ...
        FileNotFoundError: ckpt: no checkpoint at missing.ckpt
    """
    if not Path(ckpt).is_file():
        raise FileNotFoundError(f"ckpt: no checkpoint at {ckpt}")
    from lit_deep.modules import AutoencoderModule, Classifier
    from lit_deep.modules._model import check_checkpoint

    check_checkpoint(str(ckpt))  # before anything is built from it
    saved = torch.load(str(ckpt), map_location="cpu", weights_only=True)
    hparams = dict(saved.get("datamodule_hyper_parameters") or {})
    module_cls = AutoencoderModule if "loss" in (saved.get("hyper_parameters") or {}) else Classifier
    module = module_cls.load_from_checkpoint(str(ckpt), map_location="cpu")
    training = f"Trained with lit_deep; exported from the checkpoint `{Path(ckpt).name}`." if load_name else ""
    model, entry = package_module(module, name, hparams, _statistics(saved, hparams, data_dir), load_name, training)
    return model, entry, hparams


def write_package(
    model: nn.Module,
    entry: ZooEntry,
    folder: str | Path,
    data_dir: str | None = None,
    data: tuple[torch.Tensor, torch.Tensor] | None = None,
    test_args: dict[str, Any] | None = None,
) -> tuple[ExportResult, ZooEntry]:
    """Measure the model and write its package: ``model.safetensors`` (float32), ``config.json``, the card.

    The three files are written together (:func:`lit_deep._io.write_package_folder`): a reader of ``folder``
    sees the old package or the new one, never new weights beside an old card; nothing is written when the
    evaluation fails.

    Returns:
        What was written, and the entry completed with the hash and the metrics.
    """
    folder = Path(folder)
    tensors = {
        k: v.detach().to(torch.float32 if v.is_floating_point() else v.dtype).contiguous().clone()
        for k, v in model.state_dict().items()
    }
    weights = save(tensors, metadata={"format": "pt", "lit_deep_zoo": entry.name})
    if data is None and entry.task == "B":
        data = _task_b_data(data_dir, test_args or {})
    metrics, extra = evaluate(model.eval(), entry, data_dir, data)
    sha = hashlib.sha256(weights).hexdigest()
    entry = dataclasses.replace(entry, sha256=sha, metrics=metrics, extra_metrics=extra)
    write_package_folder(folder, {"model.safetensors": weights, **repo_files(entry, len(weights))})
    return ExportResult(folder, sha, len(weights), metrics, extra), entry


def _task_b_data(data_dir: str | None, test_args: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    from lit_deep.zoo.release.evaluate import load_test_split

    args = {k: test_args[k] for k in ("b_classes",) if k in test_args}
    return load_test_split("B", data_dir, **args)


def export_checkpoint(name: str, ckpt: str | Path, folder: str | Path, data_dir: str | None = None) -> ExportResult:
    """Export the checkpoint ``ckpt`` of the registered zoo model ``name`` into ``folder`` and measure it.

    Raises:
        ValueError: for an unknown name, or a checkpoint whose architecture or data differ from the registry's.
        FileNotFoundError: for a missing checkpoint.

    Example::

        >>> export_checkpoint("cnn.fmnist", "missing.ckpt", "out")
        Traceback (most recent call last):
        ...
        FileNotFoundError: ckpt: no checkpoint at missing.ckpt
    """
    registered = get_entry(name)
    model, entry, hparams = package_checkpoint(ckpt, name, data_dir)
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
    result, _ = write_package(model, registered, folder, data_dir)
    return result


def registry_snippet(name: str, result: ExportResult) -> str:
    """The registry fields to paste for ``name`` after an export.

    Example::

        >>> r = ExportResult(Path("zoo/x"), "ab" * 32, 10, {"test_acc": 0.9}, {})
        >>> print(registry_snippet("mlp.fmnist", r).splitlines()[1])
            sha256="abababababababababababababababababababababababababababababababab",
    """
    return (
        f"# {name}: {result.folder}/model.safetensors, {result.size / 1e6:.2f} MB\n"
        f'    sha256="{result.sha256}",\n'
        f"    metrics={result.metrics!r},\n"
        f"    extra_metrics={result.extra_metrics!r},"
    )
