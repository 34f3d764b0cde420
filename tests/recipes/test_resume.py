"""Restart parity: a recipe killed and resumed with ``--ckpt_path last`` ends bitwise where an uninterrupted run ends.

Each case runs the real recipe through ``lit-deep fit`` on tiny generated data (128 training images, batch 32:
4 steps an epoch, 3 epochs), once uninterrupted and once killed (an exception raised inside the training loop,
after which nothing of the first process is reused but the files it wrote) and resumed from ``last.ckpt``:

* ``epoch_boundary``: the recipe's own checkpointing (``last.ckpt`` at each epoch end); killed in epoch 1, so
  the resume starts from the end of epoch 0;
* ``mid_epoch``: ``last.ckpt`` every 3 steps; killed at step 7, so the resume starts after step 6, the middle
  of epoch 1 (the sampler must continue with the epoch's remaining batches, the generators where they were).

Adding a recipe is one line in :data:`RECIPES` (with the data overrides it needs on tiny data). The transfer
recipe ``b_on_a`` (the zoo's model A with a new head and alpha dropout) resumes too; its unfreezing epoch (4)
lies beyond this test's 3 epochs, so it covers the frozen phase (tests/callbacks/test_freeze_unfreeze_ddp.py
kills and resumes runs in both phases). ``b_on_a_phases`` resumes inside its metric-driven frozen phase (its
best value, counter and best weights come from the checkpoint; tests/callbacks/test_freeze_unfreeze_phases.py
resumes across the transition).
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback

from lit_deep.cli import main
from tests.conftest import FakeFMNIST, write_fake_fmnist

RECIPES_DIR = Path(__file__).resolve().parents[2] / "recipes"
EPOCHS, STEPS_PER_EPOCH = 3, 4

#: recipe -> data overrides for the tiny files.
RECIPES: dict[str, dict[str, Any]] = {
    "baseline": {},
    "regularization/dropout": {},
    "regularization/alpha_dropout": {},
    "schedules/one_cycle": {"batch_size": 32},
    "transfer/b_on_a": {"b_train_size": 24, "batch_size": 6},
    "transfer/b_on_a_phases": {"b_train_size": 24, "batch_size": 6},
}
KILLS = {
    # kill at: (global step whose batch never runs, ModelCheckpoint settings of the run)
    "epoch_boundary": (STEPS_PER_EPOCH + 1, {}),
    "mid_epoch": (7, {"every_n_train_steps": 3}),
}


class Killed(Exception):
    """Stands for the process dying: raised inside the training loop."""


class KillAt(Callback):
    """Raise :class:`Killed` when the batch of global step ``step`` is about to run."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, idx: int) -> None:
        if trainer.global_step == self.step:
            raise Killed(f"killed before step {self.step}")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> FakeFMNIST:
    # 138 training-file images: 10 for validation, 128 = 4 batches of 32 for training; labels cycle 0..9.
    return write_fake_fmnist(tmp_path_factory.mktemp("fmnist"), n_train=138, n_test=20, seed=1)


def write_config(recipe: str, root: Path, data: FakeFMNIST, checkpoint: dict[str, Any], kill: int | None) -> Path:
    """The recipe with tiny data, ``root`` as its run folder, the kill's checkpointing and an optional kill."""
    config = yaml.safe_load((RECIPES_DIR / f"{recipe}.yaml").read_text())
    trainer = config["trainer"]
    trainer.update(
        max_epochs=EPOCHS,
        default_root_dir=str(root),
        logger={"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(root)}},
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    callbacks = copy.deepcopy(trainer.get("callbacks", []))
    (saver,) = [c for c in callbacks if c["class_path"].endswith("ModelCheckpoint")]
    assert saver["init_args"].get("save_last") is True, f"{recipe} does not save last.ckpt"
    saver["init_args"].update(checkpoint)
    if kill is not None:
        callbacks.append({"class_path": f"{__name__}.KillAt", "init_args": {"step": kill}})
    trainer["callbacks"] = callbacks
    init_args = config["data"]["init_args"]
    init_args.update(data_dir=str(data.path), val_size=10, **RECIPES[recipe])
    path = root.parent / f"{root.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def fit(config: Path, *extra: str) -> int:
    return main(["fit", "--config", str(config), "--test_after_fit", "false", *extra])


def final_state(root: Path) -> dict[str, Any]:
    checkpoint = torch.load(root / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == EPOCHS * STEPS_PER_EPOCH
    return {"model": checkpoint["state_dict"], "optimizer": checkpoint["optimizer_states"]}


def assert_bitwise_equal(a: Any, b: Any, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{where}: max difference {(a.double() - b.double()).abs().max().item()}"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_bitwise_equal(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_bitwise_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.fixture(scope="module")
def uninterrupted(data: FakeFMNIST, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Each recipe's final state after an uninterrupted run (computed once, on first use)."""
    cache: dict[str, dict[str, Any]] = {}

    class Lazy(dict):  # type: ignore[type-arg]
        def __missing__(self, recipe: str) -> dict[str, Any]:
            root = tmp_path_factory.mktemp("uninterrupted") / "run"
            assert fit(write_config(recipe, root, data, {}, kill=None)) == 0
            cache[recipe] = final_state(root)
            return cache[recipe]

    return Lazy()


@pytest.fixture(autouse=True)
def _argv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["lit-deep"])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)  # the same reduction order in every run


@pytest.mark.filterwarnings("error:You're resuming from a checkpoint that ended before the epoch ended")
@pytest.mark.parametrize("kill", list(KILLS))
@pytest.mark.parametrize("recipe", list(RECIPES))
def test_killed_and_resumed_run_ends_bitwise_where_an_uninterrupted_run_ends(
    recipe: str, kill: str, data: FakeFMNIST, uninterrupted: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    kill_step, checkpoint = KILLS[kill]
    root = tmp_path / "run"
    with pytest.raises(Killed):
        fit(write_config(recipe, root, data, checkpoint, kill=kill_step))
    saved = torch.load(root / "checkpoints" / "last.ckpt", weights_only=True)
    expected_step = STEPS_PER_EPOCH if kill == "epoch_boundary" else 6
    assert saved["global_step"] == expected_step
    if kill == "mid_epoch":  # the loader's position is in the checkpoint (Lightning's stateful-loader protocol)
        (position,) = saved["loops"]["fit_loop"]["state_dict"]["combined_loader"]
        assert (position["epoch"], position["batches"]) == (1, 2)
    assert fit(write_config(recipe, root, data, checkpoint, kill=None), "--ckpt_path", "last") == 0
    assert_bitwise_equal(final_state(root), uninterrupted[recipe], recipe)


def test_resume_without_a_last_checkpoint_is_refused(data: FakeFMNIST, tmp_path: Path, capsys) -> None:
    config = write_config("baseline", tmp_path / "fresh", data, {}, kill=None)
    assert fit(config, "--ckpt_path", "last") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lit-deep: error: --ckpt_path last: no last checkpoint in {tmp_path / 'fresh'}/checkpoints")
    assert "run without --ckpt_path to start a new run" in err
    assert not (tmp_path / "fresh" / "checkpoints").exists()  # nothing was trained
