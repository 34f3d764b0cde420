"""Every recipe's model is described exactly, its checkpoint reloads without arguments, and runs resume.

The model of each recipe is built as ``lit-deep fit --config`` builds it (LightningCLI, no training), described,
rebuilt, checkpointed and reloaded with ``load_from_checkpoint``; a few recipes (the baseline, dropout, the
zoo-based transfer and both fine-tuning recipes) also train two steps and resume with ``--ckpt_path``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from lit_deep.cli import LitDeepCLI, main
from lit_deep.data import FashionMNISTDataModule
from lit_deep.models import build, describe
from lit_deep.models.description import state_shapes
from tests.recipes.test_recipes import ALL, RECIPES

EVERY = [*ALL, *sorted((RECIPES / "zoo").glob("*.yaml"))]


def _instantiate(path: Path, extra: list[str]) -> pl.LightningModule:
    args = ["--config", str(path), *extra]
    cli = LitDeepCLI(
        pl.LightningModule,
        FashionMNISTDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        run=False,
        args=args,
        auto_configure_optimizers=False,
    )
    return cli.model


def _extra(path: Path, checkpoint: Path) -> list[str]:
    return ["--model.init_args.model.init_args.checkpoint", str(checkpoint)] if path.stem == "rotation_finetune" else []


def _layers(model: torch.nn.Module) -> str:
    """The model's repr without its class name: Pretrained/FromCheckpoint are rebuilt from parts as BackboneHead."""
    return repr(model).partition("(")[2]


@pytest.mark.parametrize("path", EVERY, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_recipe_model_round_trips_and_reloads(
    path: Path, tmp_path: Path, pretext_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(sys, "argv", ["lit-deep"])
    module = _instantiate(path, _extra(path, pretext_checkpoint))
    model = module.model
    rebuilt = build(describe(model))
    assert _layers(rebuilt) == _layers(model)
    assert state_shapes(rebuilt) == state_shapes(model)
    ckpt = tmp_path / "model.ckpt"
    trainer = pl.Trainer(max_steps=0, logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(ckpt)
    loaded = type(module).load_from_checkpoint(ckpt)
    assert _layers(loaded.model) == _layers(model)
    for (name, a), (_, b) in zip(loaded.state_dict().items(), module.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


RESUMED = ["baseline", "dropout", "b_on_a", "rotation_finetune", "autoencoder_finetune"]


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize("stem", RESUMED)
def test_recipe_checkpoint_resumes_with_ckpt_path(
    stem: str, tmp_path: Path, pretext_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = next(p for p in EVERY if p.stem == stem)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(sys, "argv", ["lit-deep"])
    monkeypatch.chdir(tmp_path)
    common = ["--config", str(path), *_extra(path, pretext_checkpoint), "--trainer.enable_progress_bar", "false"]
    common += ["--trainer.default_root_dir", str(tmp_path), "--trainer.logger", "false", "--test_after_fit", "false"]
    common += ["--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1"]
    saver = ["--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint"]
    saver += [f"--trainer.callbacks.dirpath={tmp_path / 'ckpts'}", "--trainer.callbacks.every_n_train_steps=1"]
    saver += ["--trainer.callbacks.save_last=true"]
    assert main(["fit", *common, *saver, "--trainer.max_steps", "2"]) == 0
    last = tmp_path / "ckpts" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 2
    module = _instantiate(path, _extra(path, pretext_checkpoint))
    loaded = type(module).load_from_checkpoint(last)
    assert _layers(loaded.model) == _layers(module.model)
    assert main(["fit", *common, *saver, "--trainer.max_steps", "3", "--ckpt_path", str(last)]) == 0
    assert torch.load(last, weights_only=True)["global_step"] == 3
