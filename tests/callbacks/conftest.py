"""The two-process DDP run shared by the FreezeUnfreeze and MaxNorm tests (started once per session)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from tests.conftest import write_fake_fmnist

DDP_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.callbacks import BackboneFinetuning, Callback

    from lit_deep import Classifier
    from lit_deep.callbacks import FreezeUnfreeze, MaxNorm
    from lit_deep.cli import release_process_group
    from lit_deep.data import FashionMNISTDataModule
    from lit_deep.models import MLP

    OUT, DATA = Path(sys.argv[1]), sys.argv[2]
    UNFREEZE, EPOCHS = 2, 4


    class Save(Callback):
        def __init__(self, tag):
            self.tag = tag

        def on_train_epoch_end(self, trainer, pl_module):
            if trainer.current_epoch == UNFREEZE - 1:  # the end of the frozen phase
                self.save(trainer, pl_module, "frozen")

        def on_train_end(self, trainer, pl_module):
            self.save(trainer, pl_module, "final")

        def save(self, trainer, pl_module, phase):
            state = {name: p.detach().clone() for name, p in pl_module.model.named_parameters()}
            torch.save(state, OUT / f"{self.tag}_{phase}_rank{trainer.global_rank}.pt")


    class LitBackbone(Classifier):
        # What Lightning's BackboneFinetuning asks for: a `backbone` attribute, an optimizer over trainable params.
        @property
        def backbone(self):
            return self.model.backbone

        def configure_optimizers(self):
            return torch.optim.Adam([p for p in self.parameters() if p.requires_grad], lr=self.lr)


    def model():
        return MLP(hidden=(32, 16), batch_norm="after", seed=0)


    def fit(tag, module, callbacks):
        trainer = pl.Trainer(
            accelerator="cpu", devices=2, strategy="ddp", max_epochs=EPOCHS, callbacks=[*callbacks, Save(tag)],
            logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            limit_val_batches=0, num_sanity_val_steps=0,
        )
        trainer.fit(module, FashionMNISTDataModule(DATA, batch_size=16, val_size=40))
        if trainer.global_rank == 0:
            torch.save({n: p.detach() for n, p in model().named_parameters()}, OUT / "initial.pt")


    ours = Classifier(model(), optimizer="adamw", lr=0.01, weight_decay=0.01)
    fit("ours", ours, [FreezeUnfreeze("backbone", UNFREEZE, lr_factor=0.1), MaxNorm(1.0, modules="backbone")])
    fit("lightning", LitBackbone(model(), lr=0.01), [BackboneFinetuning(unfreeze_backbone_at_epoch=UNFREEZE)])
    # The same optimizer over the trainable parameters only: FreezeUnfreeze adds the backbone's group at the milestone.
    fit("added", LitBackbone(model(), lr=0.01), [FreezeUnfreeze("backbone", UNFREEZE, lr_factor=0.1)])
    release_process_group()
    """
)


@pytest.fixture(scope="session")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, torch.Tensor]]:
    """Run the script on 2 CPU ranks (gloo); each rank trains on its own shard. Returns the saved states by file."""
    root = tmp_path_factory.mktemp("ddp")
    data = write_fake_fmnist(root / "data", n_train=200, n_test=20)
    script = root / "ddp_freeze.py"
    script.write_text(DDP_SCRIPT)
    result = subprocess.run(
        [sys.executable, str(script), str(root), str(data.path)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return {path.stem: torch.load(path) for path in root.glob("*.pt")}
