"""Metric-driven phases on two CPU ranks (gloo): one decision for both ranks, replicas bitwise equal after it.

Each rank logs its own value of the monitored metric (no ``sync_dist``), chosen so that rank 0 alone would never
end the phase, rank 1 alone would end it after epoch 2, and their mean ends it after epoch 3: both ranks must
unfreeze at epoch 4, restore the same best weights (epoch 1's) and stay bitwise equal afterwards.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

pytestmark = pytest.mark.ddp

SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.callbacks import Callback
    from torch.utils.data import DataLoader, TensorDataset

    from lit_deep import Classifier
    from lit_deep.callbacks import FreezeUnfreeze
    from lit_deep.cli import release_process_group
    from lit_deep.models import MLP

    OUT = Path(sys.argv[1])
    SCRIPTS = {0: [1.0, 0.9, 0.8, 0.7, 0.6, 0.5], 1: [1.0, 1.0, 1.5, 1.5, 1.0, 1.0]}


    def params(pl_module):
        return {n: p.detach().clone() for n, p in pl_module.model.named_parameters()}


    class Scripted(Callback):
        def on_validation_epoch_end(self, trainer, pl_module):
            if not trainer.sanity_checking:
                pl_module.log("score", SCRIPTS[trainer.global_rank][trainer.current_epoch])


    class Record(Callback):
        def __init__(self, freeze):
            self.freeze, self.rec = freeze, {}

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == 0:
                frozen = sorted(n for n, p in pl_module.model.named_parameters() if not p.requires_grad)
                self.rec[f"epoch{trainer.current_epoch}"] = {"frozen": frozen, "start": params(pl_module)}

        def on_validation_epoch_end(self, trainer, pl_module):
            self.rec[f"val{trainer.current_epoch}"] = params(pl_module)

        def on_validation_end(self, trainer, pl_module):  # after FreezeUnfreeze's: what other callbacks read
            self.rec[f"score{trainer.current_epoch}"] = float(trainer.callback_metrics["score"])

        def on_train_end(self, trainer, pl_module):
            self.rec["final"] = params(pl_module)
            self.rec["unfrozen_epochs"] = self.freeze.unfrozen_epochs
            torch.save(self.rec, OUT / f"rank{trainer.global_rank}.pt")


    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 1, 28, 28, generator=gen), torch.arange(64) % 10
    data = DataLoader(TensorDataset(x, y), batch_size=8)
    phases = [
        {"unfreeze": "backbone.3", "max_epochs": 6, "monitor": "score", "patience": 2, "restore_best": True},
        {"unfreeze": "backbone", "max_epochs": 1},
    ]
    freeze = FreezeUnfreeze("backbone", phases=phases, lr_factor=0.1)
    trainer = pl.Trainer(
        accelerator="cpu", devices=2, strategy="ddp", max_epochs=6, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=1,
        callbacks=[freeze, Scripted(), Record(freeze)],
    )
    torch.manual_seed(0)
    clf = Classifier(MLP(hidden=(32, 16), seed=0), optimizer="adamw", lr=0.01)
    trainer.fit(clf, data, data)
    release_process_group()
    """
)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    root = tmp_path_factory.mktemp("ddp_phases")
    (root / "ddp_phases.py").write_text(SCRIPT)
    done = subprocess.run(
        [sys.executable, str(root / "ddp_phases.py"), str(root)], capture_output=True, text=True, timeout=400
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return [torch.load(root / f"rank{rank}.pt") for rank in (0, 1)]


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_both_ranks_end_the_phase_at_the_same_epoch_on_the_rank_averaged_metric(ranks):
    for log in ranks:
        assert log["unfrozen_epochs"] == [4, 5]  # the mean (1.0, .95, 1.15, 1.1): 2 bad runs after epoch 1
        assert len(log["epoch3"]["frozen"]) == 4
        assert log["epoch4"]["frozen"] == ["backbone.1.bias", "backbone.1.weight"]
        assert log["epoch5"]["frozen"] == []


def test_the_rank_average_leaves_the_logged_metric_alone(ranks):
    for rank, log in enumerate(ranks):
        script = {0: [1.0, 0.9, 0.8, 0.7, 0.6, 0.5], 1: [1.0, 1.0, 1.5, 1.5, 1.0, 1.0]}[rank]
        assert [log[f"score{epoch}"] for epoch in range(6)] == pytest.approx(script)


def test_replicas_restore_the_same_best_weights_and_stay_bitwise_equal(ranks):
    for log in ranks:
        assert _equal(log["epoch4"]["start"], log["val1"])  # epoch 1 was the best of the first phase
    for key in ("val1", "val3", "val4", "val5", "final"):
        assert _equal(ranks[0][key], ranks[1][key]), f"the replicas diverged at {key}"
    assert not _equal(ranks[0]["final"], ranks[0]["val4"])
