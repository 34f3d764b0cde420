"""The recipes in recipes/schedules/ run through ``lit-deep fit`` and wire exactly one scheduler, as declared."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from lit_deep import Classifier
from lit_deep.cli import LitDeepCLI, main
from lit_deep.data import FashionMNISTDataModule, write_idx
from lit_deep.schedules import ExponentialDecay, OneCycle, PiecewiseConstant, PlateauDecay, PowerDecay

RECIPES = Path(__file__).resolve().parents[2] / "recipes" / "schedules"
EXPECTED = {
    "one_cycle.yaml": (OneCycle, "step"),
    "power.yaml": (PowerDecay, "step"),
    "exponential.yaml": (ExponentialDecay, "epoch"),
    "piecewise.yaml": (PiecewiseConstant, "epoch"),
    "performance.yaml": (PlateauDecay, "epoch"),
}
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*(does not have many workers|smaller than the logging interval)"),
    pytest.mark.filterwarnings("ignore:LightningCLI's args parameter is intended"),
]


def overrides(data_dir: Path, root: Path, *extra: str) -> list[str]:
    return [
        f"--data.init_args.data_dir={data_dir}",
        "--data.init_args.val_size=20",
        "--data.init_args.batch_size=8",
        f"--trainer.default_root_dir={root}",
        "--trainer.enable_progress_bar=false",
        "--trainer.limit_val_batches=1",
        "--test_after_fit=false",
        *extra,
    ]


def cli(args: list[str]) -> LitDeepCLI:
    """LitDeepCLI as ``lit-deep`` builds it (see lit_deep.cli.main)."""
    return LitDeepCLI(
        Classifier,
        FashionMNISTDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
    )


def test_every_schedule_has_a_recipe() -> None:
    assert sorted(p.name for p in RECIPES.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("recipe", sorted(EXPECTED))
def test_recipe_fits_with_its_scheduler(recipe: str, tiny_fmnist: Any, tmp_path: Path) -> None:
    args = ["fit", f"--config={RECIPES / recipe}", *overrides(tiny_fmnist.path, tmp_path, "--trainer.max_epochs=2")]
    run = cli(args)
    (config,) = run.trainer.lr_scheduler_configs  # LightningCLI added no per-epoch scheduler of its own
    kind, interval = EXPECTED[recipe]
    assert type(config.scheduler) is kind
    assert config.interval == interval
    if kind is OneCycle:
        assert config.scheduler.total_steps == run.trainer.global_step == config.scheduler.last_epoch == 10
    if kind is PlateauDecay:
        assert config.monitor == "val_loss"


def test_lit_deep_fit_fast_dev_run(tiny_fmnist: Any, tmp_path: Path) -> None:
    """``lit-deep fit --config recipes/schedules/one_cycle.yaml --trainer.fast_dev_run true`` (1 step) works."""
    recipe = RECIPES / "one_cycle.yaml"
    assert (
        main(["fit", f"--config={recipe}", *overrides(tiny_fmnist.path, tmp_path, "--trainer.fast_dev_run=true")]) == 0
    )


def learnable_fmnist(folder: Path, n_train: int = 100, n_test: int = 20) -> Path:
    """Images whose brightness encodes the label (plus noise): a network can learn them in a few steps."""
    gen = torch.Generator().manual_seed(0)
    for n, names in (
        (n_train, ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")),
        (n_test, ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")),
    ):
        labels = torch.arange(n) % 10
        noise = torch.randint(0, 40, (n, 28, 28), generator=gen)
        images = (labels.view(-1, 1, 1) * 20 + noise).to(torch.uint8)
        write_idx(folder / names[0], images)
        write_idx(folder / names[1], labels.to(torch.uint8))
    return folder


def test_find_lr_sets_one_cycle_max_lr_and_saves_the_plot(tmp_path: Path) -> None:
    data = learnable_fmnist(tmp_path / "data")
    # a narrower net keeps the 100-step range test quick; 30 epochs of 10 batches leave room for it (the range
    # test cannot run longer than the training), while max_steps=3 keeps the fit itself short
    small = "--model.init_args.model.init_args.hidden=[32]"
    args = overrides(data, tmp_path / "run", small, "--trainer.max_epochs=30", "--trainer.max_steps=3", "--find-lr")
    run = cli(["fit", f"--config={RECIPES / 'one_cycle.yaml'}", *args])
    max_lr = run.model.schedule.keywords["max_lr"]
    assert max_lr != 0.05
    assert 1e-4 < max_lr < 1.0
    assert run.trainer.lr_scheduler_configs[0].scheduler.base_lrs == [max_lr, max_lr]
    assert (Path(run.trainer.log_dir) / "lr_finder.png").stat().st_size > 1000
