import pytest
import torch
from torch import nn

from lit_deep.models import MLP
from lit_deep.modules import OPTIMIZERS
from lit_deep.modules._optim import build_optimizer, param_groups, penalised_weights

# The book's (Keras's) settings, written out: name -> (class, expected defaults).
BOOK = {
    "sgd": (torch.optim.SGD, {"momentum": 0, "nesterov": False}),
    "momentum": (torch.optim.SGD, {"momentum": 0.9, "nesterov": False}),
    "nesterov": (torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
    "adagrad": (torch.optim.Adagrad, {"eps": 1e-7, "initial_accumulator_value": 0.1}),
    "rmsprop": (torch.optim.RMSprop, {"alpha": 0.9, "eps": 1e-7, "momentum": 0}),
    "adam": (torch.optim.Adam, {"betas": (0.9, 0.999), "eps": 1e-7, "decoupled_weight_decay": True}),
    "adamax": (torch.optim.Adamax, {"betas": (0.9, 0.999), "eps": 1e-7}),
    "nadam": (torch.optim.NAdam, {"betas": (0.9, 0.999), "eps": 1e-7, "decoupled_weight_decay": True}),
    "adamw": (torch.optim.AdamW, {"betas": (0.9, 0.999), "eps": 1e-7}),
}


def test_every_name_is_covered():
    assert set(OPTIMIZERS) == set(BOOK)


@pytest.mark.parametrize("name", list(BOOK))
def test_named_optimizers_get_the_books_settings(name):
    cls, expected = BOOK[name]
    opt = build_optimizer(name, [nn.Parameter(torch.zeros(3, 2))], lr=0.02)
    assert type(opt) is cls
    assert opt.defaults["lr"] == 0.02
    for key, value in expected.items():
        assert opt.defaults[key] == value, key


def test_adagrad_accumulator_starts_at_keras_value():
    p = nn.Parameter(torch.zeros(2))
    opt = build_optimizer("adagrad", [p], lr=0.1)
    assert torch.equal(opt.state[p]["sum"], torch.full((2,), 0.1))


def test_class_path_and_kwargs_override():
    opt = build_optimizer("torch.optim.ASGD", [nn.Parameter(torch.zeros(2))], lr=0.1, lambd=1e-3)
    assert type(opt) is torch.optim.ASGD
    assert opt.defaults["lambd"] == 1e-3
    opt = build_optimizer("momentum", [nn.Parameter(torch.zeros(2))], lr=0.1, momentum=0.5, weight_decay=1e-4)
    assert opt.defaults["momentum"] == 0.5
    assert opt.defaults["weight_decay"] == 1e-4


def test_errors():
    params = [nn.Parameter(torch.zeros(2))]
    for lr in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match=r"lr: must be a finite number > 0, got"):
            build_optimizer("sgd", params, lr=lr)
    with pytest.raises(ValueError, match=r"optimizer: must be one of .* or a class path, got 'adamm'"):
        build_optimizer("adamm", params, lr=0.1)
    with pytest.raises(ValueError, match=r"optimizer: 'torch.optim.Nope' is not a class of an imported module"):
        build_optimizer("torch.optim.Nope", params, lr=0.1)
    with pytest.raises(ValueError, match=r"optimizer: 'torch.nn.Linear' is not a torch.optim.Optimizer subclass"):
        build_optimizer("torch.nn.Linear", params, lr=0.1)
    with pytest.raises(ValueError, match=r"optimizer_kwargs: SGD rejected .*'rho': 0.9"):
        build_optimizer("sgd", params, lr=0.1, rho=0.9)


def test_param_groups_split_head_backbone_and_no_decay():
    model = MLP(hidden=(4,), batch_norm="before", activation="prelu")
    groups = param_groups(model, weight_decay=0.1)
    names = dict(model.named_parameters())
    by_group = {g["name"]: sorted(k for k, v in names.items() if any(v is p for p in g["params"])) for g in groups}
    assert by_group == {
        "head": ["head.weight"],
        "head_no_decay": ["head.bias"],
        "backbone": ["backbone.1.weight"],
        "backbone_no_decay": ["backbone.2.bias", "backbone.2.weight", "backbone.3.weight"],
    }
    assert {g["name"]: g["weight_decay"] for g in groups} == {
        "head": 0.1, "head_no_decay": 0.0, "backbone": 0.1, "backbone_no_decay": 0.0
    }  # fmt: skip


def test_param_groups_without_decay_and_for_any_module():
    assert [(g["name"], len(g["params"]), g["weight_decay"]) for g in param_groups(MLP(hidden=(4,)))] == [
        ("head", 2, 0.0),
        ("backbone", 2, 0.0),
    ]
    plain = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    assert [(g["name"], len(g["params"])) for g in param_groups(plain, 0.01)] == [("other", 1), ("other_no_decay", 3)]


def test_penalised_weights_are_the_matrices_and_kernels():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.PReLU(2), nn.Flatten(), nn.Linear(8, 2))
    assert [p.shape for p in penalised_weights(model)] == [(2, 1, 3, 3), (2, 8)]
