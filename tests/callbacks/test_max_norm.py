import pytest
import torch
from jsonargparse import ArgumentParser
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins import MixedPrecision
from torch import nn

from lit_deep import Classifier
from lit_deep.callbacks import FreezeUnfreeze, MaxNorm
from tests.callbacks.helpers import classifier, loader, make_trainer, tiny_mlp

TOL = 1e-6


def row_norms(weight):
    return weight.detach().flatten(1).norm(dim=1)


class BoundChecker(Callback):
    """Asserts after every batch that each constrained weight respects its bound."""

    def __init__(self, callback):
        self.callback = callback
        self.checked = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        weights = dict(pl_module.model.named_parameters())
        for name, bound in self.callback.constrained.items():
            assert row_norms(weights[name]).max() <= bound * (1 + TOL), name
        self.checked += 1


def test_bounds_every_hidden_layer_after_each_step(tmp_path):
    clf = classifier(optimizer="sgd", lr=2.0)
    callback = MaxNorm(0.5, modules="backbone")
    checker = BoundChecker(callback)
    make_trainer(tmp_path, [callback, checker], max_epochs=1).fit(clf, loader(scale=10.0))
    assert callback.constrained == {"backbone.1.weight": 0.5, "backbone.3.weight": 0.5}
    assert checker.checked == 4
    assert row_norms(clf.model.backbone[1].weight).max() == pytest.approx(0.5, rel=1e-5)  # it did bind
    assert row_norms(clf.model.head.weight).max() > 0.5  # the output layer is not constrained


def test_per_module_bounds_and_type_selection(tmp_path):
    clf = classifier(optimizer="sgd", lr=2.0)
    callback = MaxNorm(modules={nn.Linear: 1.0, "head": 0.25})  # the later entry wins for the head
    checker = BoundChecker(callback)
    make_trainer(tmp_path, [callback, checker], max_epochs=1).fit(clf, loader(scale=10.0))
    assert callback.constrained == {"backbone.1.weight": 1.0, "backbone.3.weight": 1.0, "head.weight": 0.25}
    assert checker.checked == 4


def test_yaml_style_arguments_are_understood():
    parser = ArgumentParser()
    parser.add_class_arguments(MaxNorm, "max_norm")
    config = parser.parse_args(["--max_norm.modules", "{torch.nn.Linear: 2.0, head: 0.5}"])
    callback = parser.instantiate(config).max_norm
    assert callback.bounds == {nn.Linear: 2.0, "head": 0.5}


def test_conv_filters_are_bounded_per_output_filter(tmp_path):
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16, 3))
    callback = MaxNorm(0.3, modules=nn.Conv2d)
    make_trainer(tmp_path, [callback], max_epochs=1).fit(Classifier(net, optimizer="sgd", lr=2.0), loader(scale=10.0))
    assert callback.constrained == {"0.weight": 0.3}
    assert row_norms(net[0].weight).max() <= 0.3 * (1 + TOL)
    assert net[0].bias.abs().max() > 0  # biases are free


class Inflate(Callback):
    """Pushes ``backbone.1.weight`` far outside the ball at some batches and checks when it comes back."""

    def __init__(self, inflate_at, untouched_at, bounded_at, bound):
        self.inflate_at, self.untouched_at, self.bounded_at, self.bound = inflate_at, untouched_at, bounded_at, bound
        self.inflated = None
        self.seen = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx in self.inflate_at:
            weight = pl_module.model.backbone[1].weight
            with torch.no_grad():
                weight.mul_(10.0)
            self.inflated = weight.detach().clone()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        weight = pl_module.model.backbone[1].weight
        if batch_idx in self.untouched_at:
            assert torch.equal(weight, self.inflated), f"batch {batch_idx}: projected without an optimizer step"
        if batch_idx in self.bounded_at:
            assert row_norms(weight).max() <= self.bound * (1 + TOL), f"batch {batch_idx}: not projected"
        self.seen.append(batch_idx)


def test_gradient_accumulation_projects_only_after_real_steps(tmp_path):
    check = Inflate(inflate_at={0, 2}, untouched_at={0, 2}, bounded_at={1, 3}, bound=1.0)
    trainer = make_trainer(tmp_path, [MaxNorm(1.0, "backbone"), check], max_epochs=1, accumulate_grad_batches=2)
    trainer.fit(classifier(optimizer="sgd", lr=0.01), loader())
    assert check.seen == [0, 1, 2, 3]
    assert trainer.global_step == 2


class InfiniteLossAt(Classifier):
    """The loss is infinite at one batch, so AMP's GradScaler skips that optimizer step."""

    def __init__(self, *args, bad_batch=1, **kwargs):
        super().__init__(*args, **kwargs)
        self.bad_batch = bad_batch

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return loss * float("inf") if batch_idx == self.bad_batch else loss


def test_amp_skipped_step_is_not_followed_by_a_projection(tmp_path):
    scaler = torch.amp.GradScaler("cpu", init_scale=1.0)
    check = Inflate(inflate_at={1}, untouched_at={1}, bounded_at={2, 3}, bound=1.0)
    plugin = MixedPrecision("16-mixed", "cpu", scaler=scaler)
    trainer = make_trainer(tmp_path, [MaxNorm(1.0, "backbone"), check], max_epochs=1, plugins=[plugin])
    trainer.fit(InfiniteLossAt(tiny_mlp(), optimizer="sgd", lr=0.01), loader())
    assert check.seen == [0, 1, 2, 3]
    assert scaler.get_scale() < 1.0  # the scaler did skip a step


def test_frozen_weights_are_left_alone_until_unfrozen(tmp_path):
    clf = classifier(optimizer="sgd", lr=0.01)
    with torch.no_grad():
        clf.model.backbone[1].weight.mul_(10.0)
    inflated = clf.model.backbone[1].weight.detach().clone()

    class Check(Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            weight = pl_module.model.backbone[1].weight
            if trainer.current_epoch == 0:
                assert torch.equal(weight, inflated)
            else:
                assert row_norms(weight).max() <= 1.0 * (1 + TOL)

    callbacks = [MaxNorm(1.0, "backbone"), FreezeUnfreeze("backbone", unfreeze_at_epoch=1), Check()]
    make_trainer(tmp_path, callbacks, max_epochs=2).fit(clf, loader())


def test_hooks_are_removed_after_fit(tmp_path):
    clf = classifier(optimizer="sgd")
    trainer = make_trainer(tmp_path, [MaxNorm(1.0)], max_epochs=1)
    trainer.fit(clf, loader())
    optimizer = trainer.optimizers[0]
    with torch.no_grad():
        clf.model.backbone[1].weight.mul_(10.0)
    before = clf.model.backbone[1].weight.detach().clone()
    optimizer.zero_grad(set_to_none=False)
    optimizer.step()
    assert torch.equal(clf.model.backbone[1].weight, before)


@pytest.mark.ddp
def test_ddp_replicas_are_bounded_and_identical(ddp_run):
    for rank in (0, 1):
        state = ddp_run[f"ours_final_rank{rank}"]
        for name in ("backbone.1.weight", "backbone.4.weight"):
            assert row_norms(state[name]).max() <= 1.0 * (1 + TOL)
    assert all(torch.equal(t, ddp_run["ours_final_rank1"][k]) for k, t in ddp_run["ours_final_rank0"].items())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_value": 0}, r"max_value: must be a finite number > 0, got 0"),
        ({"max_value": -1.0}, r"max_value: .* got -1.0"),
        ({"max_value": float("nan")}, r"max_value: .* got nan"),
        ({"max_value": True}, r"max_value: .* got True"),
        ({"modules": {}}, r"modules: an empty mapping selects nothing"),
        ({"modules": {"head": 0.0}}, r"modules\['head'\]: must be a finite number > 0, got 0.0"),
        ({"modules": 3}, r"modules: expected a module name, pattern, module type or a non-empty list, got 3"),
        ({"modules": ["head", 3]}, r"modules: 3 is neither a non-empty name/pattern nor an nn.Module subclass"),
        ({"modules": [""]}, r"modules: '' is neither"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MaxNorm(**kwargs)


@pytest.mark.parametrize(
    ("modules", "match"),
    [
        ("encoder", r"modules: 'encoder' matches no submodule or parameter of MLP"),
        ("backbone.0", r"modules: 'backbone.0' selects no weight with 2 or more dimensions"),
        (nn.Conv2d, r"modules: MLP has no Conv2d layer"),
    ],
)
def test_bad_selection_fails_at_fit_start(tmp_path, modules, match):
    with pytest.raises(ValueError, match=match):
        make_trainer(tmp_path, [MaxNorm(1.0, modules)]).fit(classifier(), loader())
