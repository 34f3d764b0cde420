"""The range-test rule and how the found rate reaches the model (the CLI run is in test_recipes.py)."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import lightning.pytorch as pl
import pytest

from lit_deep import LitDeepWarning
from lit_deep.callbacks.lr_finder import apply_found_lr, find_lr, suggest_lr
from lit_deep.schedules import OneCycle, PowerDecay
from tests.schedules.conftest import tiny_classifier


def test_rule_is_the_rate_at_the_lowest_loss_over_ten() -> None:
    lrs = [10 ** (-5 + k / 4) for k in range(24)]
    losses = [0.5] + [2.3 - 0.05 * k for k in range(1, 16)] + [2.0, 3.0, 4.0, math.inf, math.nan, 9.0, 9.0, 9.0]
    # the first point (biased low by Lightning's smoothing) is skipped; the minimum is at k = 15
    assert suggest_lr(lrs, losses) == pytest.approx(lrs[15] / 10)
    assert suggest_lr(lrs, losses, skip_begin=0) == pytest.approx(lrs[0] / 10)
    assert suggest_lr(lrs, losses, divisor=3) == pytest.approx(lrs[15] / 3)


def test_rule_warns_when_the_loss_never_turned() -> None:
    with pytest.warns(LitDeepWarning, match="still falling at the largest rate"):
        assert suggest_lr([0.1, 1.0], [2.0, 1.0], skip_begin=0) == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (([0.1, 1.0], [2.0]), r"losses: expected one loss per rate \(2\), got 1"),
        (([0.1] * 12, [math.nan] * 12), "losses: no finite loss after the first 10 of 12 points"),
        (([0.1], [1.0], 0.0), "divisor: must be > 0, got 0.0"),
        (([0.1], [1.0], 10.0, -1), "skip_begin: must be >= 0, got -1"),
    ],
)
def test_rule_errors(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        suggest_lr(*args)


def test_apply_sets_max_lr_of_a_one_cycle_partial_else_lr() -> None:
    one_cycle = tiny_classifier(functools.partial(OneCycle, max_lr=0.05, preset="torch"))
    assert apply_found_lr(one_cycle, 0.02) == "schedule.max_lr"
    assert one_cycle.schedule.keywords == {"max_lr": 0.02, "preset": "torch"}
    assert one_cycle.lr == 0.01
    decay = tiny_classifier(functools.partial(PowerDecay, s=10))
    assert apply_found_lr(decay, 0.02) == "lr"
    assert (decay.lr, decay.hparams["lr"]) == (0.02, 0.02)
    bare = tiny_classifier(OneCycle)  # max_lr=None: peaks at the optimizer's rate, which is now the found one
    assert apply_found_lr(bare, 0.3) == "lr"
    assert bare.lr == 0.3


def test_find_lr_is_skipped_under_fast_dev_run(tmp_path: Path) -> None:
    trainer = pl.Trainer(accelerator="cpu", fast_dev_run=True, default_root_dir=str(tmp_path), logger=False)
    assert find_lr(trainer, tiny_classifier(None)) is None


def test_find_lr_on_too_few_batches_names_the_batches_not_num_training(tmp_path: Path) -> None:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    x = torch.rand(56, 1, 28, 28)
    data = DataLoader(TensorDataset(x, torch.randint(0, 10, (56,))), batch_size=8)  # 7 batches
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )
    with pytest.raises(ValueError, match="only 7 batches per epoch") as info:
        find_lr(trainer, tiny_classifier(None), train_dataloaders=data, num_training=100)
    message = str(info.value)
    assert message.startswith("train_dataloaders: the training data has only 7 batches per epoch, so the range")
    assert "num_training=100 cannot be reached" in message and "raise num_training" not in message
    assert "\n" not in message
