"""The transfer experiment and the demo, end to end on the real task-B data (short runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lit_deep.experiments import TransferConfig, run_transfer
from lit_deep.experiments.demo import main as demo_main
from lit_deep.experiments.demo import parser
from lit_deep.experiments.transfer import build_models, summarize
from lit_deep.models import MLP


def test_build_models_copies_the_backbone_and_shares_nothing() -> None:
    source = MLP(hidden=(16, 8), activation="selu", num_classes=8, seed=0)
    models = build_models(source, dropout=0.1, seed=0)
    transfer, scratch = models["transfer"], models["scratch"]
    assert torch.equal(transfer.backbone[1].weight, source.backbone[1].weight)
    assert transfer.backbone[1].weight is not source.backbone[1].weight
    assert not torch.equal(scratch.backbone[1].weight, source.backbone[1].weight)
    assert torch.equal(scratch.head.weight, transfer.head.weight)  # the same initial head
    assert isinstance(transfer.backbone[-1], torch.nn.AlphaDropout)
    assert transfer.training and scratch.training


def test_parser_options_are_documented() -> None:
    help_text = parser().format_help()
    for option in ("--seeds", "--output", "--source-model", "--b-classes", "--b-train-size"):
        assert option in help_text


@pytest.mark.realdata
def test_run_transfer_trains_both_models(tmp_path: Path) -> None:
    source = MLP(hidden=(32, 16), activation="selu", num_classes=8, seed=0)
    config = TransferConfig(epochs=2, unfreeze_at_epoch=1, mc_samples=5, b_train_size=64)
    run = run_transfer(source, config, seed=0, output=tmp_path, progress=False)
    assert set(run.metrics) == {"transfer", "scratch"}
    for metrics in run.metrics.values():
        assert 0.5 <= metrics["mc_accuracy"] <= 1.0 and metrics["det_nll"] > 0
    assert run.mc["transfer"].probs.shape == (2000, 2)
    assert (run.log_dirs["transfer"] / "metrics.csv").exists()
    summary = summarize([run, run])
    assert summary["scratch"]["det_accuracy"][1] == 0.0


@pytest.mark.realdata
@pytest.mark.slow
def test_demo_writes_its_report_and_plots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code = demo_main(
        ["--epochs", "2", "--unfreeze-at", "1", "--mc-samples", "5", "--no-progress", "--output", str(tmp_path)]
    )
    assert code == 0
    for name in ("curves.png", "learning_rate.png", "reliability.png", "uncertain.png", "report.txt"):
        assert (tmp_path / name).stat().st_size > 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["config"]["source_model"] == "mlp_selu.fmnist_a"
    assert "Most uncertain" in (tmp_path / "report.txt").read_text()


@pytest.mark.realdata
@pytest.mark.ddp
@pytest.mark.slow
def test_demo_runs_under_ddp_on_two_cpu_processes(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    # 200 images: 100 per rank, 4 steps an epoch; enough steps for both models to learn task B.
    args = ["--seeds", "1", "--epochs", "6", "--unfreeze-at", "2", "--mc-samples", "5", "--no-progress"]
    args += ["--devices", "2", "--strategy", "ddp", "--output", str(tmp_path)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "lit_deep.cli", "demo", *args], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("Task B: Sandal vs Shirt") == 1  # rank 0 reports, once
    assert done.stdout.count("source model: mlp_selu.fmnist_a") == 1
    assert "distributed_backend=gloo" in done.stderr and "All distributed processes registered" in done.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    for metrics in results["metrics"][0].values():
        assert 0.9 <= metrics["mc_accuracy"] <= 1.0
    for name in ("curves.png", "learning_rate.png", "reliability.png", "uncertain.png"):
        assert (tmp_path / name).stat().st_size > 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--seeds", "0"], "--seeds: must be at least 1, got 0"),
        (["--devices", "two"], "--devices: expected a count, ids like 0,1, 'auto' or -1, got 'two'"),
        (["--devices", "0"], "--devices: expected a count, ids like 0,1, 'auto' or -1, got '0'"),
        (["--num-nodes", "0"], "--num-nodes: must be at least 1, got 0"),
    ],
)
def test_demo_rejects_bad_options_before_any_work(argv: list[str], message: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=message):
        demo_main([*argv, "--output", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["shipped", "hub"])
def test_demo_prints_where_the_source_model_came_from(
    where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lit_deep import zoo
    from lit_deep.experiments import demo
    from lit_deep.zoo.api import ZooInfo

    class Stop(Exception):
        pass

    def load(name: str) -> MLP:
        model = MLP(hidden=(8,), num_classes=8, seed=0)
        model.__dict__["zoo_info"] = ZooInfo(name, f"lit-deep/{name}", "v1", None, where, "0" * 64)
        return model

    def stop(*args: object) -> None:
        raise Stop

    monkeypatch.setattr(zoo, "load", load)
    monkeypatch.setattr(demo, "run_transfer", stop)
    with pytest.raises(Stop):
        demo_main(["--output", str(tmp_path / "out")])
    assert f"source model: mlp_selu.fmnist_a ({where})" in capsys.readouterr().out
