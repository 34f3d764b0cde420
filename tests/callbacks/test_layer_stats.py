import copy
import csv

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lit_deep import Classifier
from lit_deep.callbacks import LayerStats
from lit_deep.data import FashionMNISTDataModule
from lit_deep.models import MLP
from tests.callbacks.helpers import classifier, loader, make_trainer

DEPTH = 30


def initial_activation_stds(tmp_path, model, data):
    """Activation std of every layer on the first training batch, before any update (LayerStats at step 0)."""
    stats = LayerStats(every_n_steps=1)
    make_trainer(tmp_path, [stats], max_steps=1).fit(Classifier(model), data)
    return list(stats.history[0]["act_std"].values())


def gaussian_batch(n=256):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 28, 28, generator=gen)  # standardised inputs
    return DataLoader(TensorDataset(x, torch.arange(n) % 10), batch_size=n)


def sigmoid_normal_init(seed=0):
    model = MLP(hidden=(100,) * DEPTH, activation="sigmoid", seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in model.backbone:
            if isinstance(layer, nn.Linear):
                layer.weight.normal_(0.0, 1.0, generator=gen)
    return model


def test_selu_with_lecun_init_self_normalises_sigmoid_with_normal_init_does_not(tmp_path):
    selu = initial_activation_stds(tmp_path, MLP(hidden=(100,) * DEPTH, activation="selu", seed=0), gaussian_batch())
    assert len(selu) == DEPTH
    assert all(0.8 <= s <= 1.25 for s in selu), selu
    sigmoid = initial_activation_stds(tmp_path, sigmoid_normal_init(), gaussian_batch())
    assert len(sigmoid) == DEPTH
    assert not all(0.8 <= s <= 1.25 for s in sigmoid)
    assert max(sigmoid) < 0.5  # a sigmoid's output spread can never reach 1


@pytest.mark.realdata
def test_selu_self_normalises_on_standardised_fashion_mnist(tmp_path):
    data = FashionMNISTDataModule(standardize=True, batch_size=512)
    stds = initial_activation_stds(tmp_path, MLP(hidden=(100,) * DEPTH, activation="selu", seed=0), data)
    assert len(stds) == DEPTH
    assert all(0.8 <= s <= 1.25 for s in stds), stds


class HookCounter(Classifier):
    """Records how many forward hooks the model carries during each training step."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.hooks_per_step = []

    def training_step(self, batch, batch_idx):
        self.hooks_per_step.append(sum(len(m._forward_hooks) for m in self.model.modules()))
        return super().training_step(batch, batch_idx)


def test_hooks_exist_only_on_logging_steps(tmp_path):
    module = HookCounter(MLP(input_shape=(1, 4, 4), hidden=(8, 6), num_classes=3, seed=0))
    stats = LayerStats(every_n_steps=3)
    make_trainer(tmp_path, [stats], max_epochs=2).fit(module, loader())
    assert module.hooks_per_step == [2, 0, 0, 2, 0, 0, 2, 0]
    assert [record["step"] for record in stats.history] == [0, 3, 6]
    assert all(len(m._forward_hooks) == 0 for m in module.model.modules())


def test_logged_values_match_an_independent_computation(tmp_path):
    clf = classifier(optimizer="sgd", lr=0.1)
    reference = copy.deepcopy(clf.model)
    stats = LayerStats(every_n_steps=2)
    trainer = make_trainer(tmp_path, [stats], max_epochs=1, logger=CSVLogger(tmp_path), log_every_n_steps=1)
    data = loader()
    trainer.fit(clf, data)

    x, y = next(iter(data))
    outputs = {}
    for name in ("2", "4"):
        reference.backbone[int(name)].register_forward_hook(lambda m, i, o, name=name: outputs.__setitem__(name, o))
    F.cross_entropy(reference(x), y).backward()
    first = stats.history[0]
    assert list(first["act_std"]) == ["backbone.2", "backbone.4"]
    for name in ("2", "4"):
        assert first["act_mean"][f"backbone.{name}"] == pytest.approx(float(outputs[name].mean()), rel=1e-5)
        assert first["act_std"][f"backbone.{name}"] == pytest.approx(float(outputs[name].std(correction=0)), rel=1e-5)
    expected = {n: float(p.grad.norm()) for n, p in reference.named_parameters() if p.dim() >= 2}
    assert first["grad_norm"] == pytest.approx(expected, rel=1e-5)

    with open(tmp_path / "lightning_logs" / "version_0" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    acts = [r for r in rows if r["layer_stats/act_std/backbone.2"]]
    grads = [r for r in rows if r["layer_stats/grad_norm/head.weight"]]
    assert [int(r["step"]) for r in acts] == [int(r["step"]) for r in grads] == [0, 2]
    assert float(acts[0]["layer_stats/act_std/backbone.2"]) == pytest.approx(first["act_std"]["backbone.2"])
    assert float(grads[0]["layer_stats/grad_norm/head.weight"]) == pytest.approx(expected["head.weight"], rel=1e-5)


def test_gradient_accumulation_records_once_per_optimizer_step(tmp_path):
    stats = LayerStats(every_n_steps=1)
    make_trainer(tmp_path, [stats], max_epochs=2, accumulate_grad_batches=2).fit(classifier(), loader())
    assert [record["step"] for record in stats.history] == [0, 1, 2, 3]
    assert all(len(record["grad_norm"]) == 3 and len(record["act_std"]) == 2 for record in stats.history)


def test_layers_fall_back_to_linear_and_can_be_chosen(tmp_path):
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    stats = LayerStats(every_n_steps=1, log_gradients=False)
    make_trainer(tmp_path, [stats], max_steps=1).fit(Classifier(net), loader())
    assert list(stats.history[0]["act_std"]) == ["1"]
    assert stats.history[0]["grad_norm"] == {}
    chosen = LayerStats(every_n_steps=1, modules=["backbone.1", nn.ReLU])
    make_trainer(tmp_path, [chosen], max_steps=1).fit(classifier(), loader())
    assert list(chosen.history[0]["act_std"]) == ["backbone.1", "backbone.2", "backbone.4"]


def test_plot_is_saved_at_the_end_of_training(tmp_path):
    path = tmp_path / "plots" / "layer_std.png"
    stats = LayerStats(every_n_steps=2, plot_path=path)
    make_trainer(tmp_path, [stats], max_epochs=1).fit(classifier(), loader())
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    figure = stats.plot()
    assert len(figure.axes[0].lines) == len(stats.history) == 2


def test_history_survives_resume(tmp_path):
    def fit(root, ckpt_path=None):
        stats = LayerStats(every_n_steps=3)
        ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1, filename="{epoch}")
        trainer = make_trainer(root, [stats, ckpt], max_epochs=2, enable_checkpointing=True)
        trainer.fit(classifier(), loader(), ckpt_path=ckpt_path)
        return stats.history

    full = fit(tmp_path / "full")
    resumed = fit(tmp_path / "resumed", tmp_path / "ckpt" / "epoch=0.ckpt")
    assert [r["step"] for r in resumed] == [0, 3, 6]
    assert resumed == full


def test_two_instances_keep_separate_states_in_a_checkpoint(tmp_path):
    def fit(root, ckpt_path=None):
        every_step, hidden_only = LayerStats(every_n_steps=1), LayerStats(every_n_steps=2, modules="backbone.1")
        ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1, filename="{epoch}")
        trainer = make_trainer(root, [every_step, hidden_only, ckpt], max_epochs=2, enable_checkpointing=True)
        trainer.fit(classifier(), loader(), ckpt_path=ckpt_path)
        return every_step.history, hidden_only.history

    full = fit(tmp_path / "full")
    assert len(full[0]) == 2 * len(full[1])
    states = torch.load(tmp_path / "ckpt" / "epoch=0.ckpt", weights_only=True)["callbacks"]
    assert {"LayerStats{'every_n_steps': 1, 'modules': None, 'log_gradients': True}"} < set(states)
    assert fit(tmp_path / "resumed", tmp_path / "ckpt" / "epoch=0.ckpt") == full


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"every_n_steps": 0}, r"every_n_steps: must be an integer >= 1, got 0"),
        ({"every_n_steps": 2.5}, r"every_n_steps: .* got 2.5"),
        ({"every_n_steps": True}, r"every_n_steps: .* got True"),
        ({"modules": 3}, r"modules: expected a module name, pattern, module type or a non-empty list, got 3"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LayerStats(**kwargs)


@pytest.mark.parametrize(
    ("modules", "match"),
    [("encoder.*", r"modules: 'encoder.\*' matches no submodule"), (nn.Conv2d, r"modules: MLP has no Conv2d layer")],
)
def test_bad_selection_fails_at_fit_start(tmp_path, modules, match):
    with pytest.raises(ValueError, match=match):
        make_trainer(tmp_path, [LayerStats(modules=modules)]).fit(classifier(), loader())
