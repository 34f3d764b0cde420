"""FreezeUnfreeze on two CPU ranks (gloo): real freezing, a rebuilt DDP wrapper, a killed run resumed."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tests.conftest import write_fake_fmnist

pytestmark = pytest.mark.ddp

SCRIPT = textwrap.dedent(
    """
    import os
    import signal
    import sys
    from pathlib import Path

    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.callbacks import Callback, ModelCheckpoint
    from lightning.pytorch.demos.transformer import LightningTransformer
    from torch.utils.data import DataLoader, TensorDataset

    from lit_deep import Classifier
    from lit_deep.callbacks import FreezeUnfreeze
    from lit_deep.cli import release_process_group
    from lit_deep.data import FashionMNISTDataModule
    from lit_deep.models import MLP

    MODE, OUT, DATA = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    EPOCHS, KILL_AT = 4, 3
    MILESTONES, FACTORS = {1: "backbone.[4-6]", 2: "backbone"}, {1: 0.1, 2: 0.01}


    class Record(Callback):
        # Per rank: the parameters after the wrap, at each epoch's end and at the end; the frozen names, the
        # group rates and whether a DDP wrapper of an earlier epoch is still alive, at each epoch's first batch.
        def __init__(self, tag):
            self.tag, self.rec, self.wrappers = tag, {}, []

        def params(self, pl_module):
            return {n: p.detach().clone() for n, p in pl_module.model.named_parameters()}

        def on_fit_start(self, trainer, pl_module):
            self.rec["start"] = self.params(pl_module)

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            import weakref

            if batch_idx == 0:
                frozen = sorted(n for n, p in pl_module.model.named_parameters() if not p.requires_grad)
                groups = [(g.get("name", i), g["lr"]) for i, g in enumerate(trainer.optimizers[0].param_groups)]
                old_alive = any(ref() is not None for ref in self.wrappers)
                self.rec[f"epoch{trainer.current_epoch}"] = {"frozen": frozen, "lrs": groups, "old_alive": old_alive}
                self.wrappers.append(weakref.ref(trainer.strategy.model))

        def on_train_epoch_end(self, trainer, pl_module):
            self.rec[f"end{trainer.current_epoch}"] = self.params(pl_module)

        def on_train_end(self, trainer, pl_module):
            self.rec["final"] = self.params(pl_module)
            torch.save(self.rec, OUT / f"{self.tag}_rank{trainer.global_rank}.pt")


    class Kill(Callback):
        # Both ranks kill themselves with SIGKILL once the checkpoint of epoch KILL_AT - 1 is on disk.
        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch == KILL_AT:
                os.kill(os.getpid(), signal.SIGKILL)


    def trainer(callbacks, max_epochs=EPOCHS, checkpoints=None):
        if checkpoints is not None:
            save = ModelCheckpoint(checkpoints, "{epoch}", save_top_k=-1, save_on_train_epoch_end=True)
            callbacks = [*callbacks, save]
        return pl.Trainer(
            accelerator="cpu", devices=2, strategy="ddp", max_epochs=max_epochs, callbacks=callbacks,
            logger=False, enable_checkpointing=checkpoints is not None, enable_progress_bar=False,
            enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
        )


    def fit_mlp(tag, extra=(), ckpt_path=None):
        torch.manual_seed(0)
        model = MLP(hidden=(32, 16), batch_norm="after", seed=0)
        clf = Classifier(model, optimizer="adamw", lr=0.01, weight_decay=0.01)
        freeze = FreezeUnfreeze("backbone", unfreeze_at_epoch=MILESTONES, lr_factor=FACTORS)
        checkpoints = OUT / "ckpt" if tag == "killed" else None
        fit = trainer([freeze, *extra, Record(tag)], checkpoints=checkpoints)
        fit.fit(clf, FashionMNISTDataModule(DATA, batch_size=16, val_size=40), ckpt_path=ckpt_path)


    class Demo(LightningTransformer):
        def prepare_data(self):  # Lightning's demo downloads WikiText-2; this test brings its own tokens
            pass


    def fit_transformer():
        tokens = torch.randint(0, 40, (64, 9), generator=torch.Generator().manual_seed(0))
        data = DataLoader(TensorDataset(tokens[:, :-1], tokens[:, 1:]), batch_size=8)
        module = Demo(vocab_size=40)
        fit = trainer([FreezeUnfreeze("embedding", unfreeze_at_epoch=1, lr_factor=1.0), Record("transformer")], 2)
        fit.fit(module, data)


    if MODE == "kill":
        fit_transformer()
        fit_mlp("killed", extra=[Kill()])
    else:
        fit_mlp("reference")
        for epoch in (0, 1):
            fit_mlp(f"resumed{epoch}", ckpt_path=OUT / "ckpt" / f"epoch={epoch}.ckpt")
    release_process_group()
    """
)


def _run(mode: str, root: Path, data: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(root / "ddp_freeze.py"), mode, str(root), str(data)]
    return subprocess.run(command, capture_output=True, text=True, timeout=400)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict]]:
    """Two launches: the Transformer, then an MLP run killed at epoch 3; an uninterrupted run and two resumptions."""
    root = tmp_path_factory.mktemp("ddp_freeze")
    data = write_fake_fmnist(root / "data", n_train=200, n_test=20).path
    (root / "ddp_freeze.py").write_text(SCRIPT)
    killed = _run("kill", root, data)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-4000:]
    assert sorted(p.name for p in (root / "ckpt").iterdir()) == ["epoch=0.ckpt", "epoch=1.ckpt", "epoch=2.ckpt"]
    result = _run("resume", root, data)
    assert result.returncode == 0, result.stderr[-4000:]
    tags = {path.stem.rsplit("_rank", 1)[0] for path in root.glob("*_rank*.pt")}
    return {tag: [torch.load(root / f"{tag}_rank{rank}.pt") for rank in (0, 1)] for tag in tags}


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], prefix: str = "") -> bool:
    keys = [k for k in a if k.startswith(prefix)]
    return bool(keys) and a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in keys)


def test_demo_transformer_with_its_embedding_frozen(runs):
    ranks = runs["transformer"]
    for log in ranks:
        assert log["epoch0"]["frozen"] == ["embedding.weight"]
        assert log["epoch1"]["frozen"] == []
        assert _equal(log["end0"], log["start"], "embedding.")  # frozen: bitwise unchanged
        assert not _equal(log["end0"], log["start"], "decoder.")
        assert not _equal(log["final"], log["end0"], "embedding.")  # trained after unfreezing
        assert not log["epoch1"]["old_alive"]  # the wrapper built before unfreezing is gone (with its hooks)
    assert _equal(ranks[0]["final"], ranks[1]["final"]), "the replicas diverged"


def test_gradual_unfreezing_keeps_ranks_bitwise_equal_with_rates_per_milestone(runs):
    ranks = runs["reference"]
    assert ranks[0]["epoch0"]["frozen"] == sorted(n for n in ranks[0]["final"] if n.startswith("backbone."))
    assert ranks[0]["epoch1"]["frozen"] == [
        "backbone.1.bias",
        "backbone.1.weight",
        "backbone.3.bias",
        "backbone.3.weight",
    ]
    assert ranks[0]["epoch2"]["frozen"] == []
    lrs = dict(ranks[0]["epoch3"]["lrs"])
    assert lrs["backbone.[4-6]"] == pytest.approx(lrs["head"] * 0.1)
    assert lrs["backbone"] == pytest.approx(lrs["head"] * 0.01)
    assert _equal(ranks[0]["end0"], ranks[0]["start"], "backbone.")
    assert not _equal(ranks[0]["final"], ranks[0]["end1"], "backbone.1.")  # the bottom layer trained at the end
    for epoch in range(4):
        assert _equal(ranks[0][f"end{epoch}"], ranks[1][f"end{epoch}"]), f"the replicas diverged in epoch {epoch}"


@pytest.mark.parametrize("epoch", [0, 1], ids=["killed-in-frozen-phase", "killed-after-unfreezing"])
def test_a_killed_run_resumes_exactly(runs, epoch):
    reference, resumed = runs["reference"], runs[f"resumed{epoch}"]
    for rank in (0, 1):
        for later in range(epoch + 1, 4):  # the same parameters frozen and the same rates, epoch by epoch
            assert resumed[rank][f"epoch{later}"]["frozen"] == reference[rank][f"epoch{later}"]["frozen"]
            assert resumed[rank][f"epoch{later}"]["lrs"] == reference[rank][f"epoch{later}"]["lrs"]
        assert _equal(resumed[rank]["final"], reference[rank]["final"])
    assert _equal(resumed[0]["final"], resumed[1]["final"]), "the replicas diverged after resuming"
