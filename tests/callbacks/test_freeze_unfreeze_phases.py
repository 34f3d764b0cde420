"""FreezeUnfreeze's metric-driven phases: ends on patience or max_epochs, best weights restored, resumed mid-phase."""

import pytest
import torch
from jsonargparse import ArgumentParser
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from lit_deep.callbacks import FreezeUnfreeze
from lit_deep.callbacks.freeze_unfreeze import Phase
from tests.callbacks.helpers import classifier, group_lrs, loader, make_trainer, snapshot, tiny_mlp


def _equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class Scripted(Callback):
    """Logs ``score`` = ``script[epoch]`` at each validation epoch end (what the phases monitor)."""

    def __init__(self, script):
        self.script = script

    def on_validation_epoch_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            pl_module.log("score", float(self.script[trainer.current_epoch]))


class Record(Callback):
    """Per epoch: the frozen parameter names at its first batch, the weights then and after its validation."""

    def __init__(self):
        self.frozen, self.start, self.validated = {}, {}, {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0:
            epoch = trainer.current_epoch
            self.frozen[epoch] = sorted(n for n, p in pl_module.model.named_parameters() if not p.requires_grad)
            self.start[epoch] = snapshot(pl_module.model)

    def on_validation_epoch_end(self, trainer, pl_module):
        self.validated[trainer.current_epoch] = snapshot(pl_module.model)


BACKBONE = ["backbone.1.bias", "backbone.1.weight", "backbone.3.bias", "backbone.3.weight"]


def _fit(tmp_path, phases, script, max_epochs, extra=(), ckpt_path=None, **options):
    torch.manual_seed(0)
    clf = classifier(model=tiny_mlp(), optimizer="adamw", lr=0.01)
    callback = FreezeUnfreeze("backbone", phases=phases, lr_factor=0.1)
    record = Record()
    trainer = make_trainer(
        tmp_path, [callback, Scripted(script), record, *extra], max_epochs=max_epochs, limit_val_batches=1, **options
    )
    trainer.fit(clf, loader(), loader(n=8, seed=1), ckpt_path=ckpt_path)
    return clf, callback, record, trainer


def test_a_phase_without_monitor_is_an_epoch_milestone_bitwise(tmp_path):
    runs = []
    for kwargs in ({"unfreeze_at_epoch": 2}, {"phases": [{"unfreeze": "backbone", "max_epochs": 2}]}):
        torch.manual_seed(0)
        clf = classifier(optimizer="adamw", lr=0.01)
        callback = FreezeUnfreeze("backbone", lr_factor=0.1, **kwargs)
        trainer = make_trainer(tmp_path, [callback], max_epochs=4)
        trainer.fit(clf, loader())
        runs.append((snapshot(clf.model), group_lrs(trainer), callback.unfrozen_epochs))
    assert runs[0][2] == runs[1][2] == [2]
    assert runs[0][1] == runs[1][1]
    assert _equal(runs[0][0], runs[1][0])


@pytest.mark.parametrize(
    ("mode", "min_delta", "script", "unfrozen_at"),
    [
        ("min", 0.0, [1.0, 0.9, 0.95, 0.92, 0.5, 0.6, 0.4, 0.3], [4, 6]),  # patience 2, then 1
        ("max", 0.0, [0.1, 0.2, 0.15, 0.18, 0.5, 0.4, 0.6, 0.7], [4, 6]),
        ("min", 0.05, [1.0, 0.9, 0.87, 0.86, 0.5, 0.48, 0.3, 0.2], [4, 6]),  # 0.87, 0.86, 0.48 do not count
    ],
    ids=["min", "max", "min_delta"],
)
def test_phases_end_after_patience_bad_runs_and_counters_restart(tmp_path, mode, min_delta, script, unfrozen_at):
    common = {"monitor": "score", "mode": mode, "min_delta": min_delta, "max_epochs": 10}
    phases = [{"unfreeze": "backbone.3", "patience": 2, **common}, {"unfreeze": "backbone", "patience": 1, **common}]
    _, callback, record, trainer = _fit(tmp_path, phases, script, max_epochs=8)
    assert callback.unfrozen_epochs == unfrozen_at
    assert callback.phase == 2
    first, second = unfrozen_at
    for epoch, frozen in record.frozen.items():
        expected = BACKBONE if epoch < first else BACKBONE[:2] if epoch < second else []
        assert frozen == expected, epoch
    lrs = group_lrs(trainer)
    assert lrs["backbone.3"] == pytest.approx(lrs["head"] * 0.1)


def test_max_epochs_ends_a_phase_that_keeps_improving_with_the_phases_own_rate(tmp_path):
    phases = [{"unfreeze": "backbone", "max_epochs": 3, "monitor": "score", "patience": 1, "lr_factor": 0.5}]
    _, callback, record, trainer = _fit(tmp_path, phases, [1.0, 0.9, 0.8, 0.7, 0.6], max_epochs=5)
    assert callback.unfrozen_epochs == [3]
    assert record.frozen[2] == BACKBONE and record.frozen[3] == []
    lrs = group_lrs(trainer)
    assert lrs["backbone"] == pytest.approx(lrs["head"] * 0.5)


def test_restore_best_loads_the_best_epochs_weights_bitwise_before_unfreezing(tmp_path):
    script = [1.0, 0.5, 0.7, 0.8, 0.9, 0.9]
    phases = [{"unfreeze": "backbone", "max_epochs": 10, "monitor": "score", "patience": 2, "restore_best": True}]
    _, callback, record, _ = _fit(tmp_path, phases, script, max_epochs=5)
    assert callback.unfrozen_epochs == [4]
    assert _equal(record.start[4], record.validated[1])  # epoch 1 was the best: its weights, not epoch 3's
    assert not _equal(record.validated[3], record.validated[1])
    assert record.frozen[4] == []
    # Without restore_best the last weights go on.
    phases[0]["restore_best"] = False
    _, _, plain, _ = _fit(tmp_path, phases, script, max_epochs=5)
    assert _equal(plain.start[4], plain.validated[3])


PHASES = [
    {"unfreeze": "backbone.3", "max_epochs": 10, "monitor": "score", "patience": 2, "restore_best": True},
    {"unfreeze": "backbone", "max_epochs": 2},
]
SCRIPT = [1.0, 0.5, 0.7, 0.8, 0.9, 0.9, 0.9, 0.9]


def _fit_with_checkpoints(root, ckpt_path=None):
    save = ModelCheckpoint(root / "ckpt", "{epoch}", save_top_k=-1, save_on_train_epoch_end=True)
    return _fit(root, PHASES, SCRIPT, 7, extra=[save], ckpt_path=ckpt_path, enable_checkpointing=True)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp("phases")
    return root, _fit_with_checkpoints(root)


@pytest.mark.parametrize(
    ("epoch", "state"),
    [
        (2, {"unfrozen": [], "ended_at": [], "best": 0.5, "best_epoch": 1, "bad": 1}),  # mid-phase
        (3, {"unfrozen": [], "ended_at": [[0, 4]], "best": None, "best_epoch": None, "bad": 0}),  # restore pending
        (4, {"unfrozen": [0], "ended_at": [[0, 4]], "best": None, "best_epoch": None, "bad": 0}),  # second phase
    ],
    ids=["mid-phase", "ended-restore-pending", "second-phase"],
)
def test_resume_mid_phase_matches_an_uninterrupted_run_bitwise(tmp_path, uninterrupted, epoch, state):
    root, (full, full_cb, full_record, full_trainer) = uninterrupted
    path = root / "ckpt" / f"epoch={epoch}.ckpt"
    saved = torch.load(path, weights_only=True)["callbacks"]  # plain data and tensors only
    (mine,) = [v for k, v in saved.items() if k.startswith("FreezeUnfreeze")]
    assert {k: v for k, v in mine.items() if k in state} == state
    if epoch == 2:  # the best weights so far (epoch 1's), as tensors
        assert _equal(mine["best_state"], full_record.validated[1]) and mine["restore"] == []
    if epoch == 3:
        assert mine["best_state"] is None and _equal(mine["restore"][0][1], full_record.validated[1])
    resumed, resumed_cb, record, trainer = _fit_with_checkpoints(tmp_path, path)
    assert resumed_cb.unfrozen_epochs == full_cb.unfrozen_epochs == [4, 6]
    for later in range(epoch + 1, 7):
        assert record.frozen[later] == full_record.frozen[later]
    assert group_lrs(trainer) == group_lrs(full_trainer)
    if epoch < 4:  # the resumed run restored the best weights itself
        assert _equal(record.start[4], full_record.validated[1])
    assert _equal(snapshot(resumed.model), snapshot(full.model))


def test_yaml_style_phases_are_understood():
    parser = ArgumentParser()
    parser.add_class_arguments(FreezeUnfreeze, "freeze")
    phases = "[{unfreeze: backbone.3, max_epochs: 5, monitor: val_loss, patience: 2, restore_best: true}]"
    config = parser.parse_args(["--freeze.phases", phases, "--freeze.unfreeze_at_epoch", "null"])
    callback = parser.instantiate(config).freeze
    assert callback.phases == [Phase("backbone.3", 5, "val_loss", patience=2, restore_best=True)]
    assert callback.milestones == {0: ("backbone.3",)}
    assert "phases" in callback.state_key


def test_a_monitor_that_is_not_logged_is_named(tmp_path):
    phases = [{"unfreeze": "backbone", "max_epochs": 3, "monitor": "val_los"}]
    with pytest.raises(ValueError, match=r"phases\[0\].monitor: 'val_los' was not logged in validation"):
        _fit(tmp_path, phases, [1.0] * 3, max_epochs=3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"phases": []}, r"phases: must be None or a non-empty list of phases, got \[\]"),
        ({"phases": {"unfreeze": "backbone"}}, r"phases: must be None or a non-empty list"),
        ({"phases": ["backbone"]}, r"phases\[0\]: must be a Phase or a mapping of its fields, got 'backbone'"),
        ({"phases": [{"unfreeze": "backbone"}]}, r"phases\[0\]: missing \['max_epochs'\]"),
        ({"phases": [{"unfreeze": "b", "max_epochs": 2, "patient": 2}]}, r"phases\[0\]: unknown fields \['patient'\]"),
        ({"phases": [{"unfreeze": "b", "max_epochs": 0}]}, r"phases\[0\].max_epochs: must be an integer >= 1, got 0"),
        ({"phases": [{"unfreeze": "b", "max_epochs": 2, "patience": 0}]}, r"phases\[0\].patience: must be an integer"),
        ({"phases": [{"unfreeze": "b", "max_epochs": 2, "mode": "up"}]}, r"phases\[0\].mode: must be one of"),
        ({"phases": [{"unfreeze": "b", "max_epochs": 2, "min_delta": -1}]}, r"phases\[0\].min_delta: must be a"),
        ({"phases": [{"unfreeze": "b", "max_epochs": 2, "monitor": ""}]}, r"phases\[0\].monitor: must be None or"),
        ({"phases": [{"unfreeze": "b", "max_epochs": 2, "restore_best": True}]}, r"phases\[0\].restore_best: needs"),
        ({"phases": [{"unfreeze": "b", "max_epochs": 2, "lr_factor": 0}]}, r"phases\[0\].lr_factor: must be a"),
        ({"phases": [{"unfreeze": [], "max_epochs": 2}]}, r"phases\[0\].unfreeze: expected a module name"),
        ({"phases": [{"unfreeze": "b", "max_epochs": 2}], "unfreeze_at_epoch": 3}, r"unfreeze_at_epoch: must be left"),
        ({"phases": [{"unfreeze": "b", "max_epochs": 2}], "lr_factor": {2: 0.1}}, r"lr_factor: a factor per milestone"),
    ],
)
def test_bad_phases(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FreezeUnfreeze(**kwargs)


def test_a_phase_unfreezing_nothing_new_fails_at_fit_start(tmp_path):
    phases = [{"unfreeze": "backbone", "max_epochs": 1}, {"unfreeze": "backbone.3", "max_epochs": 1}]
    with pytest.raises(ValueError, match=r"phases\[1\].unfreeze: the milestone at the end of phase 1"):
        make_trainer(tmp_path, [FreezeUnfreeze(phases=phases)]).fit(classifier(), loader())
