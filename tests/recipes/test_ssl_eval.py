"""recipes/ssl_eval.py on tiny generated data: four arms, selection on validation, the table and the JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from lit_deep.models import CNN, read_checkpoint
from lit_deep.modules import RotationPretext
from tests.conftest import FakeFMNIST

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "recipes"))
import ssl_eval  # noqa: E402

TINY = (
    ssl_eval.Downstream("B", "task B", {"task": "B", "b_train_size": 4}, 1, 2),
    ssl_eval.Downstream("1k", "10 classes", {"task": "full", "train_size": 8}, 1, 4),
)


@pytest.fixture
def pretext(tmp_path: Path) -> Path:
    """A rotation-pretext checkpoint of a small CNN, trained for one step (as ``lit-deep fit`` writes it)."""
    module = RotationPretext(CNN(channels=(4,), convs_per_block=1, dense=8, num_classes=4, seed=0))
    trainer = pl.Trainer(max_steps=0, logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(module)
    path = tmp_path / "pretext.ckpt"
    trainer.save_checkpoint(path, weights_only=True)
    return path


def test_the_arms_share_the_head_and_differ_in_the_backbone(pretext: Path) -> None:
    checkpoint = read_checkpoint(pretext, require_model=True)
    source, description = checkpoint.model(), checkpoint.description
    assert description is not None
    models = {arm: ssl_eval.build_model(arm, source, description, 3, seed=1) for arm in ssl_eval.ARMS}
    assert all(torch.equal(m.head.weight, models["probe"].head.weight) for m in models.values())
    conv = {arm: m.backbone[0].weight for arm, m in models.items()}
    assert torch.equal(conv["probe"], source.backbone[0].weight)
    assert torch.equal(conv["scratch"], conv["random_probe"])
    assert not torch.equal(conv["probe"], conv["scratch"])


def test_evaluate_selects_on_validation_and_reports_every_arm(pretext: Path, tiny_fmnist: FakeFMNIST) -> None:
    checkpoint = read_checkpoint(pretext, require_model=True)
    assert checkpoint.description is not None
    results = ssl_eval.evaluate(
        checkpoint.model(),
        checkpoint.description,
        TINY,
        seeds=2,
        lrs=(1e-3, 1e-2),
        lr_factors=(0.5,),
        data_dir=str(tiny_fmnist.path),
        val_size=20,
    )
    for task in results["tasks"]:
        assert set(task["arms"]) == set(ssl_eval.ARMS)
        for arm, values in task["arms"].items():
            assert len(values["selection"]) == 2  # two rates tried on validation, no test score among them
            assert all(set(tried) == {"setting", "val_acc"} for tried in values["selection"])
            assert [r["seed"] for r in values["per_seed"]] == [0, 1]
            assert 0.0 <= values["test_acc"][0] <= 1.0
            assert values["setting"]["lr_factor"] == (0.5 if arm == "finetune" else 1.0)
    table = ssl_eval.markdown(results)
    assert table.count("\n") == 2 + 2 * len(ssl_eval.ARMS) - 1
    assert "| 10 classes | fine-tune (pretrained) |" in table


def test_merge_joins_the_tasks_and_arms_of_several_runs(tmp_path: Path) -> None:
    parts = [("B", "scratch"), ("1k", "probe"), ("B", "probe")]
    paths = [tmp_path / f"{task}_{arm}.json" for task, arm in parts]
    for path, (task, arm) in zip(paths, parts, strict=True):
        path.write_text(json.dumps({"seeds": 5, "seconds": 2.0, "tasks": [{"name": task, "arms": {arm: {}}}]}))
    merged = ssl_eval.merge(paths)
    assert [(t["name"], list(t["arms"])) for t in merged["tasks"]] == [("B", ["probe", "scratch"]), ("1k", ["probe"])]
    assert merged["seconds"] == 6.0
