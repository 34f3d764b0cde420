import copy

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lit_deep import Classifier
from lit_deep.data import FashionMNISTDataModule
from lit_deep.models import MLP, describe
from tests.conftest import REAL_DIR


def _trainer(tmp_path, **kwargs):
    options = {
        "accelerator": "cpu",
        "devices": 1,
        "max_epochs": 2,
        "limit_train_batches": 3,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        "default_root_dir": tmp_path,
        **kwargs,
    }
    return pl.Trainer(**options)


def _dm(fake, **kwargs):
    return FashionMNISTDataModule(str(fake.path), **{"val_size": 10, "batch_size": 8, "eval_batch_size": 8, **kwargs})


def _outputs(model, loader):
    model.eval()
    with torch.no_grad():
        pairs = [(model(x), y) for x, y in loader]
    return torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])


class EpochOrder(Classifier):
    """Records the training labels each epoch sees, in order."""

    def training_step(self, batch, batch_idx):
        self.seen = getattr(self, "seen", {})
        self.seen.setdefault(self.current_epoch, []).append(batch[1])
        return super().training_step(batch, batch_idx)


def test_fit_logs_accuracy_and_nll_for_every_stage(tiny_fmnist, tmp_path):
    clf = EpochOrder(MLP(hidden=(16,), seed=0), lr=0.01)
    trainer = _trainer(tmp_path, limit_train_batches=None)
    dm = _dm(tiny_fmnist)
    trainer.fit(clf, dm)
    # Lightning calls the sampler's set_epoch: each epoch has its own shuffle, the one the sampler gives.
    orders = [torch.cat(clf.seen[epoch]) for epoch in (0, 1)]
    assert not torch.equal(orders[0], orders[1])
    for epoch, order in enumerate(orders):
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)
        assert torch.equal(order, torch.cat([y for _, y in loader]))
    metrics = trainer.callback_metrics
    assert {"train_acc", "train_nll", "train_loss", "val_acc", "val_nll", "val_loss"} <= set(metrics)
    assert trainer.global_step == 14
    result = trainer.test(clf, _dm(tiny_fmnist), verbose=False)[0]
    assert set(result) == {"test_acc", "test_nll", "test_brier", "test_ace", "test_aurc"}
    assert 0 <= result["test_acc"] <= 1
    assert result["test_nll"] > 0


def test_multiclass_metrics_equal_a_manual_cross_entropy_over_the_whole_loader(tiny_fmnist, tmp_path):
    clf = Classifier(MLP(hidden=(16,), seed=0), lr=0.05, l2=1e-3)
    dm = _dm(tiny_fmnist)  # 20 test images in batches of 8, 8 and 4: per-image, not per-batch, means
    trainer = _trainer(tmp_path)
    trainer.fit(clf, dm)
    test = trainer.test(clf, dm, verbose=False)[0]
    val = trainer.validate(clf, dm, verbose=False)[0]
    for stage, loader, result in (("test", dm.test_dataloader(), test), ("val", dm.val_dataloader(), val)):
        logits, y = _outputs(clf.model, loader)
        assert len(y) == (20 if stage == "test" else 10)
        assert result[f"{stage}_nll"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
        assert result[f"{stage}_acc"] == pytest.approx((logits.argmax(1) == y).float().mean().item())
    penalty = 1e-3 * sum(p.pow(2).sum() for p in (clf.model.backbone[1].weight, clf.model.head.weight))
    assert val["val_loss"] == pytest.approx(val["val_nll"] + penalty.item(), rel=1e-5)


def test_binary_one_logit_and_two_logit_paths_mean_the_same(tiny_fmnist, tmp_path):
    dm = _dm(tiny_fmnist, task="B", b_train_size=8, batch_size=4)
    one = Classifier(MLP(hidden=(8,), num_classes=1, seed=0), lr=0.05)
    two = Classifier(MLP(hidden=(8,), num_classes=2, seed=0), lr=0.05)
    assert one.binary
    assert not two.binary
    for clf in (one, two):  # both train
        _trainer(tmp_path, max_epochs=2).fit(clf, dm)
    result = _trainer(tmp_path).test(one, dm, verbose=False)[0]
    logits, y = _outputs(one.model, dm.test_dataloader())
    p = torch.sigmoid(logits.squeeze(1))
    assert result["test_nll"] == pytest.approx(F.binary_cross_entropy(p, y.float()).item(), rel=1e-5)
    assert result["test_acc"] == pytest.approx(((p > 0.5).long() == y).float().mean().item())
    # A two-logit model with logits (0, z) is the one-logit model with logit z: same NLL, accuracy, probabilities.
    twin = copy.deepcopy(two)
    with torch.no_grad():
        twin.model.backbone.load_state_dict(one.model.backbone.state_dict())
        twin.model.head.weight.copy_(torch.cat([torch.zeros_like(one.model.head.weight), one.model.head.weight]))
        twin.model.head.bias.copy_(torch.cat([torch.zeros(1), one.model.head.bias]))
    twin_result = _trainer(tmp_path).test(twin, dm, verbose=False)[0]
    assert twin_result["test_nll"] == pytest.approx(result["test_nll"], rel=1e-5)
    assert twin_result["test_acc"] == result["test_acc"]
    x = next(iter(dm.test_dataloader()))[0]
    assert torch.allclose(one.predict_step((x,), 0), twin.predict_step((x,), 0), atol=1e-6)
    assert one.predict_step(x, 0).shape == (len(x), 2)


class PenaltyCheck(Classifier):
    """Asserts inside the training step that the loss is the cross-entropy plus the hand-computed penalty."""

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        x, y = batch
        weights = [self.model.backbone[1].weight, self.model.head.weight]  # BN, PReLU and biases excluded
        by_hand = sum(self.l1 * w.abs().sum() + self.l2 * (w**2).sum() for w in weights)
        assert torch.allclose(self.penalty(), by_hand)
        assert torch.allclose(loss, F.cross_entropy(self(x), y) + by_hand, atol=1e-6)
        self.checked = getattr(self, "checked", 0) + 1
        return loss


def test_l1_l2_penalties_apply_to_weight_matrices_only(tiny_fmnist, tmp_path):
    model = MLP(hidden=(8,), batch_norm="before", activation="prelu", seed=0)
    clf = PenaltyCheck(model, lr=0.01, l1=1e-3, l2=1e-2)
    assert [tuple(p.shape) for p in clf._penalised] == [(8, 784), (10, 8)]
    trainer = _trainer(tmp_path, max_epochs=1)
    trainer.fit(clf, _dm(tiny_fmnist))
    assert clf.checked == 3
    assert Classifier(MLP(hidden=(4,))).penalty() == 0.0


def _adam_first_step(tiny_fmnist, tmp_path, **kwargs):
    """Weights before and after one Adam step, and the cross-entropy gradient of that step's batch."""
    dm = _dm(tiny_fmnist)
    clf = Classifier(MLP(hidden=(8,), seed=0), optimizer="adam", lr=0.01, **kwargs)
    before = copy.deepcopy(clf.model)
    _trainer(tmp_path, max_epochs=1, limit_train_batches=1, limit_val_batches=0).fit(clf, dm)
    x, y = next(iter(dm.train_dataloader()))  # epoch 0's first batch: the one the trainer used
    F.cross_entropy(before(x), y).backward()
    return before, clf.model


def test_l2_penalty_is_not_decoupled_weight_decay_for_adam(tiny_fmnist, tmp_path):
    lr, eps, lam = 0.01, 1e-7, 0.05
    # Adam's first step moves each weight by lr * g / (|g| + eps), whatever the gradient's scale.
    l2_before, l2_after = _adam_first_step(tiny_fmnist, tmp_path, l2=lam)
    wd_before, wd_after = _adam_first_step(tiny_fmnist, tmp_path, weight_decay=2 * lam)
    for name, w in l2_before.named_parameters():
        g = w.grad + (2 * lam * w if w.dim() >= 2 else 0)  # the l2 penalty enters the gradient...
        expected = w - lr * g / (g.abs() + eps)
        assert torch.allclose(dict(l2_after.named_parameters())[name], expected, atol=1e-6), name
    for name, w in wd_before.named_parameters():
        decay = (1 - lr * 2 * lam) if w.dim() >= 2 else 1.0  # ...decoupled decay shrinks the weight beside it
        expected = w * decay - lr * w.grad / (w.grad.abs() + eps)
        assert torch.allclose(dict(wd_after.named_parameters())[name], expected, atol=1e-6), name
    assert not torch.allclose(l2_after.head.weight, wd_after.head.weight, atol=1e-4)
    assert torch.equal(l2_after.head.bias, wd_after.head.bias)  # biases: neither penalised nor decayed


@pytest.mark.parametrize(
    ("name", "cls", "settings"),
    [
        ("momentum", torch.optim.SGD, {"momentum": 0.9}),
        ("nesterov", torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
        ("rmsprop", torch.optim.RMSprop, {"alpha": 0.9, "eps": 1e-7}),
        ("nadam", torch.optim.NAdam, {"eps": 1e-7}),
        ("torch.optim.Adadelta", torch.optim.Adadelta, {"rho": 0.9}),
    ],
)
def test_configure_optimizers_by_name_or_class_path(name, cls, settings):
    clf = Classifier(MLP(hidden=(4,)), optimizer=name, lr=0.5, weight_decay=0.01)
    opt = clf.configure_optimizers()
    assert type(opt) is cls
    for key, value in settings.items():
        assert opt.defaults[key] == value
    assert {g["name"]: (g["lr"], g["weight_decay"]) for g in opt.param_groups} == {
        "head": (0.5, 0.01), "head_no_decay": (0.5, 0.0), "backbone": (0.5, 0.01), "backbone_no_decay": (0.5, 0.0)
    }  # fmt: skip


def test_optimizer_kwargs_reach_the_optimizer():
    opt = Classifier(MLP(hidden=(4,)), optimizer="sgd", optimizer_kwargs={"momentum": 0.5}).configure_optimizers()
    assert opt.defaults["momentum"] == 0.5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr": 0.0}, r"lr: must be a finite number > 0, got 0.0"),
        ({"lr": -1e-3}, r"lr: must be a finite number > 0, got -0.001"),
        ({"l1": -0.1}, r"l1: must be a finite number >= 0, got -0.1"),
        ({"l2": -0.1}, r"l2: must be a finite number >= 0, got -0.1"),
        ({"weight_decay": -1.0}, r"weight_decay: must be a finite number >= 0, got -1.0"),
        ({"optimizer": "adamm"}, r"optimizer: must be one of .* or a class path, got 'adamm'"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Classifier(MLP(hidden=(4,)), **kwargs)


def test_bad_model():
    with pytest.raises(ValueError, match=r"model.class_path: 'lit_deep.models.Nope' is not an allowed model class"):
        Classifier({"class_path": "lit_deep.models.Nope", "init_args": {}})


def test_checkpoint_reloads_without_the_model_argument(tiny_fmnist, tmp_path):
    clf = Classifier(MLP(hidden=(12,), batch_norm="after", seed=0), optimizer="momentum", lr=0.05, l2=1e-4)
    trainer = _trainer(tmp_path, max_epochs=1)
    trainer.fit(clf, _dm(tiny_fmnist))
    path = tmp_path / "clf.ckpt"
    trainer.save_checkpoint(path)
    loaded = Classifier.load_from_checkpoint(path)
    assert type(loaded.model) is MLP
    assert describe(loaded.model) == describe(clf.model)
    assert (loaded.optimizer_name, loaded.lr, loaded.l2) == ("momentum", 0.05, 1e-4)
    x = torch.rand(5, 1, 28, 28)
    clf.eval()
    loaded.eval()
    assert torch.equal(loaded(x), clf(x))
    assert torch.equal(loaded.model.backbone[3].running_mean, clf.model.backbone[3].running_mean)


class _Unregistered(nn.Module):
    """A user's module whose class is not registered: no description can rebuild it."""

    def __init__(self) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.linear = nn.Linear(784, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.flatten(x))


def test_any_module_trains_and_reloads_with_the_model_argument(tiny_fmnist, tmp_path):
    def make():
        torch.manual_seed(0)
        return _Unregistered()

    clf = Classifier(make(), lr=0.01)
    assert clf.num_outputs == 10
    assert "model" not in clf.hparams  # not describable: reloading needs model=
    # torch.nn layers are described (a Sequential of them reloads without the model argument)
    assert Classifier(nn.Sequential(nn.Flatten(), nn.Linear(784, 10))).hparams["model"]["class_path"] == (
        "torch.nn.Sequential"
    )
    trainer = _trainer(tmp_path, max_epochs=1)
    trainer.fit(clf, _dm(tiny_fmnist))
    path = tmp_path / "plain.ckpt"
    trainer.save_checkpoint(path)
    loaded = Classifier.load_from_checkpoint(path, model=make())
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(loaded(x), clf(x))
    assert not torch.equal(loaded(x), make()(x))


@pytest.fixture
def one_thread():
    """One intra-op thread: on 2 shared cores, two threads spin-waiting on each other cost up to 10x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.realdata
@pytest.mark.slow
def test_300_100_mlp_one_epoch_on_real_data(tmp_path, monkeypatch, one_thread):
    monkeypatch.delenv("LIT_DEEP_DATA", raising=False)
    pl.seed_everything(0)
    clf = Classifier(MLP(hidden=(300, 100), seed=0), optimizer="nadam", lr=1e-3)
    dm = FashionMNISTDataModule(str(REAL_DIR), batch_size=64)
    trainer = _trainer(tmp_path, max_epochs=1, limit_train_batches=None)
    trainer.fit(clf, dm)
    assert trainer.callback_metrics["val_acc"] > 0.80
    result = trainer.test(clf, dm, verbose=False)[0]
    print(f"300-100 MLP, 1 epoch of Nadam: test_acc={result['test_acc']:.4f}")
    assert result["test_acc"] > 0.80


@pytest.mark.parametrize("batch_size", [40, 16])  # 16: a short last batch must keep its images' own seeds
def test_mc_samples_make_the_test_score_the_mc_mean(tmp_path, batch_size: int) -> None:
    from lit_deep.uncertainty import mc_predict

    torch.manual_seed(0)
    x, y = torch.rand(40, 1, 28, 28), torch.arange(40) % 10
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch_size)
    clf = Classifier(MLP(hidden=(16,), dropout=0.3, dropout_kind="mc", seed=0), mc_samples=8, mc_seed=3)
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    result = trainer.test(clf, loader, verbose=False)[0]
    expected = mc_predict(clf.model, x, 8, seed=3, enable_dropout=True, indices=torch.arange(40)).probs
    assert result["test_acc"] == pytest.approx(float((expected.argmax(1) == y).float().mean()))
    assert result["test_nll"] == pytest.approx(float(-expected[torch.arange(40), y].log().mean()), rel=1e-5)


class LossRecorder(Classifier):
    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.losses = [*getattr(self, "losses", []), float(loss)]
        return loss


def test_train_loss_is_logged_on_the_loggers_steps_and_each_epochs_last(tiny_fmnist, tmp_path) -> None:
    import csv

    from lightning.pytorch.loggers import CSVLogger

    clf = LossRecorder(MLP(hidden=(16,), seed=0), optimizer="sgd", lr=0.05)
    logger = CSVLogger(tmp_path, name="log", version="")
    trainer = _trainer(tmp_path, limit_train_batches=None, logger=logger, log_every_n_steps=3)
    trainer.fit(clf, _dm(tiny_fmnist))  # 2 epochs of 7 steps
    with open(tmp_path / "log" / "metrics.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["train_loss"]]
    assert [int(r["step"]) for r in rows] == [2, 5, 8, 11]  # every third step, as Lightning writes them
    for row in rows:
        assert float(row["train_loss"]) == pytest.approx(clf.losses[int(row["step"])], rel=1e-6)
    assert float(trainer.callback_metrics["train_loss"]) == pytest.approx(clf.losses[-1], rel=1e-6)  # step 13


def test_mc_test_scoring_with_a_shuffled_loader_seeds_by_position_and_leaves_the_rng_alone(tmp_path) -> None:
    torch.manual_seed(0)
    x, y = torch.rand(40, 1, 28, 28), torch.arange(40) % 10
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16, shuffle=True)

    def test_order(mc_samples: int) -> tuple[torch.Tensor, Classifier]:
        clf = Classifier(MLP(hidden=(16,), dropout=0.3, dropout_kind="mc", seed=0), mc_samples=mc_samples, mc_seed=3)
        seen: list[torch.Tensor] = []
        recorder = pl.Callback()
        recorder.on_test_batch_start = lambda trainer, module, batch, *args: seen.append(batch[1])  # type: ignore[method-assign]
        trainer = pl.Trainer(
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=tmp_path,
            callbacks=[recorder],
        )
        torch.manual_seed(1)
        trainer.test(clf, loader, verbose=False)
        return torch.cat(seen), clf

    plain, _ = test_order(0)
    mc, clf = test_order(4)
    assert clf._test_batches is None  # a shuffling sampler's order is not read ahead...
    assert torch.equal(mc, plain)  # ...so the loop draws the same order as without MC scoring


@pytest.mark.parametrize("num_classes", [10, 1])  # cross-entropy and the one-logit BCE path
def test_train_metrics_are_the_epoch_means_over_every_training_image(tiny_fmnist, tmp_path, num_classes) -> None:
    clf = Classifier(MLP(hidden=(16,), num_classes=num_classes, seed=0), optimizer="sgd", lr=1e-12)  # frozen in effect
    task = {"task": "full"} if num_classes == 10 else {"task": "B", "b_train_size": 4}
    dm = _dm(tiny_fmnist, **task)
    trainer = _trainer(tmp_path, max_epochs=1, limit_train_batches=None)
    trainer.fit(clf, dm)
    assert dm.train_set is not None
    x, y = dm.train_set.inputs, dm.train_set.targets
    with torch.no_grad():
        logits = clf.model.eval()(x)
        nll = clf._per_sample_nll(logits, y)
        preds = (logits.squeeze(-1) > 0).long() if num_classes == 1 else logits.argmax(-1)
    assert float(trainer.callback_metrics["train_acc"]) == pytest.approx(float((preds == y).float().mean()), abs=1e-6)
    assert float(trainer.callback_metrics["train_nll"]) == pytest.approx(float(nll.mean()), rel=1e-5)


def test_a_label_beyond_the_classes_is_one_line_in_fit(tiny_fmnist, tmp_path):
    from torch.utils.data import DataLoader, TensorDataset

    data = TensorDataset(torch.rand(8, 1, 28, 28), torch.tensor([0, 1, 2, 3, 0, 1, 2, 3]))
    trainer = pl.Trainer(
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
    )
    with pytest.raises(ValueError, match=r"targets: .*\[0, 3\)"):
        trainer.fit(Classifier(MLP(hidden=(4,), num_classes=3)), DataLoader(data, batch_size=4))


def test_validation_and_test_log_streaming_calibration_metrics_equal_to_the_functions(tiny_fmnist, tmp_path):
    from lit_deep.uncertainty import aurc, brier_score

    dm = FashionMNISTDataModule(str(tiny_fmnist.path), batch_size=8, val_size=10, eval_batch_size=3)
    clf = Classifier(MLP(hidden=(8,), seed=0))
    trainer = pl.Trainer(
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
    )
    result = trainer.test(clf, dm, verbose=False)[0]
    dm.setup("test")
    x, y = dm.test_set[0 : len(dm.test_set)]
    with torch.no_grad():
        probs = clf.eval().probabilities(clf(x))
    assert result["test_brier"] == pytest.approx(brier_score(probs, y), abs=1e-5)
    assert result["test_aurc"] == pytest.approx(aurc(probs, y), abs=1e-5)
