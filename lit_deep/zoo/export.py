"""Exporting a trained checkpoint into a zoo folder: ``model.safetensors``, ``config.json``, ``README.md``.

``lit-deep zoo export NAME --ckpt PATH`` loads the Lightning checkpoint of the recipe's run, checks that its
architecture is the registry's, prepends the preprocessing (with the training split's statistics for
standardised models), saves float32 safetensors, measures the result on the test split and writes the card.
It prints the registry fields to paste (SHA-256 and metrics), so registry, card and weights agree.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from lit_deep.data import FashionMNISTDataModule
from lit_deep.modules import AutoencoderModule, Classifier
from lit_deep.zoo._build import ZooModel, build_architecture
from lit_deep.zoo._evaluate import evaluate
from lit_deep.zoo._hub import sha256_file
from lit_deep.zoo.cards import config_dict, write_repo_files
from lit_deep.zoo.registry import ZooEntry, get_entry

__all__ = ["ExportResult", "export_checkpoint", "registry_snippet", "zoo_state_dict"]


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote and measured."""

    folder: Path
    sha256: str
    size: int
    metrics: dict[str, float]
    extra_metrics: dict[str, float]


def zoo_state_dict(net: torch.nn.Module, mean: torch.Tensor, std: torch.Tensor) -> dict[str, torch.Tensor]:
    """The state dict of a :class:`~lit_deep.zoo.ZooModel` from a bare network's.

    Backbone indices move up by one behind the preprocessing layer, whose ``mean``/``std`` buffers are added.

    Example::

        >>> from lit_deep.models import MLP
        >>> sorted(zoo_state_dict(MLP(hidden=(4,)), torch.zeros(1), torch.ones(1)))[:3]
        ['backbone.0.mean', 'backbone.0.std', 'backbone.2.bias']
    """
    state = {"backbone.0.mean": mean, "backbone.0.std": std}
    for key, value in net.state_dict().items():
        if key.startswith("backbone."):
            index, rest = key[len("backbone.") :].split(".", 1)
            key = f"backbone.{int(index) + 1}.{rest}"
        state[key] = value
    return state


def _statistics(entry: ZooEntry, ckpt: str | Path, data_dir: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The standardisation the run used: the DataModule state saved in the checkpoint (recomputed if absent)."""
    saved = torch.load(str(ckpt), map_location="cpu", weights_only=True)
    hparams = saved.get("datamodule_hyper_parameters") or {}
    for key, expected in (("task", entry.task), ("standardize", entry.preprocessing.standardize == "per_pixel")):
        if key in hparams and hparams[key] != expected:
            raise ValueError(f"ckpt: the run's data had {key}={hparams[key]!r}, {entry.name} needs {expected!r}")
    if entry.preprocessing.standardize == "none":
        return torch.zeros(1), torch.ones(1)
    state = saved.get("FashionMNISTDataModule") or {}
    if isinstance(state.get("mean"), torch.Tensor) and isinstance(state.get("std"), torch.Tensor):
        return state["mean"].clone(), state["std"].clone()
    dm = FashionMNISTDataModule(data_dir, task=entry.task, standardize=True, val_size=hparams.get("val_size", 5000))
    dm.setup("fit")
    assert dm.mean is not None
    assert dm.std is not None
    return dm.mean.clone(), dm.std.clone()


def _network(entry: ZooEntry, ckpt: str | Path) -> torch.nn.Module:
    module_cls = AutoencoderModule if entry.kind == "autoencoder" else Classifier
    module = module_cls.load_from_checkpoint(str(ckpt), map_location="cpu")
    net = module.model
    expected = build_architecture(entry.architecture).config
    if getattr(net, "config", None) != expected:
        raise ValueError(
            f"ckpt: the checkpoint's architecture {getattr(net, 'config', None)} is not {entry.name}'s {expected}"
        )
    return net


def export_checkpoint(name: str, ckpt: str | Path, folder: str | Path, data_dir: str | None = None) -> ExportResult:
    """Export the checkpoint ``ckpt`` of zoo model ``name`` into ``folder`` and measure it.

    The preprocessing statistics are the ones the run standardised with (the DataModule state Lightning saves
    in the checkpoint), so the exported model computes on raw images exactly what the run computed.

    Raises:
        ValueError: for an unknown name, or a checkpoint whose architecture or data differ from the registry's.
        FileNotFoundError: for a missing checkpoint.

    Example::

        >>> export_checkpoint("cnn.fmnist", "missing.ckpt", "out")
        Traceback (most recent call last):
        ...
        FileNotFoundError: ckpt: no checkpoint at missing.ckpt
    """
    entry = get_entry(name)
    if not Path(ckpt).is_file():
        raise FileNotFoundError(f"ckpt: no checkpoint at {ckpt}")
    model = ZooModel(config_dict(entry))
    model.load_state_dict(zoo_state_dict(_network(entry, ckpt), *_statistics(entry, ckpt, data_dir)), strict=True)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {
        k: v.detach().to(torch.float32 if v.is_floating_point() else v.dtype).contiguous().clone()
        for k, v in model.state_dict().items()
    }
    weights = folder / "model.safetensors"
    save_file(tensors, str(weights), metadata={"format": "pt", "lit_deep_zoo": name})
    weights.chmod(0o644)
    metrics, extra = evaluate(model.eval(), entry, data_dir)
    sha = sha256_file(weights)
    write_repo_files(dataclasses.replace(entry, sha256=sha, metrics=metrics, extra_metrics=extra), folder)
    return ExportResult(folder, sha, weights.stat().st_size, metrics, extra)


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
