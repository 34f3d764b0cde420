import math

import pytest
import torch
from torch import nn

from lit_deep.models import MLP, build, describe
from lit_deep.nn import MCAlphaDropout, MCDropout


def _types(module):
    return [type(m) for m in module]


def test_plain_layer_order_and_shapes():
    net = MLP(hidden=(5, 4), num_classes=3)
    assert _types(net.backbone) == [nn.Flatten, nn.Linear, nn.ReLU, nn.Linear, nn.ReLU]
    assert all(m.bias is not None for m in net.backbone if isinstance(m, nn.Linear))
    assert [n for n, _ in net.named_children()] == ["backbone", "head"]
    assert isinstance(net.head, nn.Linear)
    assert net.head.in_features == 4
    assert net.head.out_features == 3
    assert net(torch.rand(7, 1, 28, 28)).shape == (7, 3)
    assert net.feature_dim == 4
    assert net.num_classes == 3
    assert next(iter(dict(net.named_parameters()))) == "backbone.1.weight"


def test_batch_norm_before_activation_drops_the_linear_bias():
    net = MLP(hidden=(5, 4), batch_norm="before")
    assert _types(net.backbone) == [nn.Flatten, nn.Linear, nn.BatchNorm1d, nn.ReLU] * 1 + [
        nn.Linear,
        nn.BatchNorm1d,
        nn.ReLU,
    ]
    assert all(m.bias is None for m in net.backbone if isinstance(m, nn.Linear))
    assert net.head.bias is not None


def test_batch_norm_after_activation():
    net = MLP(hidden=(5, 4), batch_norm="after", input_batch_norm=True)
    assert _types(net.backbone) == [nn.Flatten, nn.BatchNorm1d, nn.Linear, nn.ReLU, nn.BatchNorm1d] + [
        nn.Linear,
        nn.ReLU,
        nn.BatchNorm1d,
    ]
    assert net.backbone[1].num_features == 784
    assert all(m.bias is not None for m in net.backbone if isinstance(m, nn.Linear))


def test_batch_norm_uses_keras_momentum_and_epsilon():
    norms = [
        m
        for m in MLP(hidden=(5,), batch_norm="before", input_batch_norm=True).modules()
        if isinstance(m, nn.BatchNorm1d)
    ]
    assert len(norms) == 2
    for bn in norms:
        assert bn.momentum == 0.01
        assert bn.eps == 1e-3


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("relu", nn.ReLU),
        ("leaky_relu", nn.LeakyReLU),
        ("prelu", nn.PReLU),
        ("rrelu", nn.RReLU),
        ("elu", nn.ELU),
        ("selu", nn.SELU),
        ("tanh", nn.Tanh),
        ("sigmoid", nn.Sigmoid),
        ("gelu", nn.GELU),
        ("silu", nn.SiLU),
    ],
)
def test_each_activation(name, cls):
    net = MLP(hidden=(6, 3), activation=name)
    acts = [m for m in net.backbone if isinstance(m, cls)]
    assert len(acts) == 2
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_leaky_relu_slope_is_the_books():
    net = MLP(hidden=(3,), activation="leaky_relu")
    act = net.backbone[2]
    assert act.negative_slope == 0.2
    assert act(torch.tensor([-10.0, 3.0])).tolist() == pytest.approx([-2.0, 3.0])
    assert MLP(hidden=(3,), activation="leaky_relu", leaky_slope=0.3).backbone[2].negative_slope == 0.3


def test_prelu_has_one_slope_per_neuron_starting_at_zero():
    net = MLP(hidden=(7, 5), activation="prelu")
    slopes = [m.weight for m in net.backbone if isinstance(m, nn.PReLU)]
    assert [s.shape for s in slopes] == [(7,), (5,)]
    assert all((s == 0).all() for s in slopes)


# fan_in 2000, fan_out 500: He 2/2000, LeCun 1/2000, Glorot 1/1250 differ.
@pytest.mark.parametrize(
    ("activation", "init", "variance", "uniform"),
    [
        ("relu", None, 2 / 2000, False),
        ("elu", None, 2 / 2000, False),
        ("leaky_relu", None, 2 / 2000, False),
        ("selu", None, 1 / 2000, False),
        ("tanh", None, 1 / 1250, True),
        ("sigmoid", None, 1 / 1250, True),
        ("relu", "lecun_normal", 1 / 2000, False),
    ],
)
def test_default_init_matches_the_activation(activation, init, variance, uniform):
    net = MLP(input_shape=(2000,), hidden=(500,), activation=activation, init=init, seed=0)
    w = net.backbone[1].weight
    assert w.var().item() == pytest.approx(variance, rel=0.03)
    limit = math.sqrt(3 * variance) if uniform else 2 * math.sqrt(variance) / 0.87962566
    assert w.abs().max() <= limit * (1 + 1e-6)
    assert (net.backbone[1].bias == 0).all()


def test_head_is_glorot_uniform_with_zero_bias():
    net = MLP(input_shape=(40,), hidden=(300,), num_classes=100, seed=1)
    limit = math.sqrt(6 / (300 + 100))
    assert net.head.weight.abs().max() <= limit
    assert net.head.weight.abs().max() > 0.99 * limit
    assert (net.head.bias == 0).all()


def test_seed_makes_the_initialisation_reproducible():
    a, b = MLP(hidden=(8,), seed=3), MLP(hidden=(8,), seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not torch.equal(a.head.weight, MLP(hidden=(8,), seed=4).head.weight)


def test_float_dropout_goes_before_every_linear_layer():
    net = MLP(hidden=(5, 4), dropout=0.2)
    assert _types(net.backbone) == [
        nn.Flatten,
        nn.Dropout,
        nn.Linear,
        nn.ReLU,
        nn.Dropout,
        nn.Linear,
        nn.ReLU,
        nn.Dropout,
    ]
    assert all(m.p == 0.2 for m in net.backbone if isinstance(m, nn.Dropout))


def test_dropout_sequence_sets_each_layer():
    net = MLP(hidden=(5, 4), dropout=[0.1, 0.0, 0.3])
    assert _types(net.backbone) == [nn.Flatten, nn.Dropout, nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Dropout]
    assert [m.p for m in net.backbone if isinstance(m, nn.Dropout)] == [0.1, 0.3]
    assert describe(net)["init_args"]["dropout"] == [0.1, 0.0, 0.3]


@pytest.mark.parametrize(
    ("kind", "cls", "stochastic_in_eval"),
    [
        ("standard", nn.Dropout, False),
        ("alpha", nn.AlphaDropout, False),
        ("mc", MCDropout, True),
        ("mc_alpha", MCAlphaDropout, True),
    ],
)
def test_dropout_kinds(kind, cls, stochastic_in_eval):
    net = MLP(hidden=(50,), dropout=0.3, dropout_kind=kind, activation="selu", seed=0)
    layers = [m for m in net.backbone if isinstance(m, (nn.Dropout, nn.AlphaDropout))]
    assert [type(m) for m in layers] == [cls, cls]
    x = torch.rand(4, 1, 28, 28)
    net.train()
    assert not torch.equal(net(x), net(x))
    net.eval()
    assert (not torch.equal(net(x), net(x))) == stochastic_in_eval


def test_description_rebuilds_the_architecture():
    net = MLP(hidden=(6,), activation="elu", batch_norm="after", dropout=0.1, num_classes=4)
    description = describe(net)
    assert description["class_path"] == "lit_deep.models.MLP"
    twin = MLP(**description["init_args"])
    assert type(build(description)) is MLP
    assert [type(m) for m in twin.modules()] == [type(m) for m in net.modules()]
    assert {k: v.shape for k, v in twin.state_dict().items()} == {k: v.shape for k, v in net.state_dict().items()}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"activation": "swish"}, r"activation: must be one of .*, got 'swish'"),
        ({"batch_norm": "middle"}, r"batch_norm: must be one of \(None, 'before', 'after'\), got 'middle'"),
        ({"init": "kaiming"}, r"init: must be one of \(None, .*\), got 'kaiming'"),
        ({"hidden": (5, 0)}, r"hidden: must be a sequence of integers >= 1, got \(5, 0\)"),
        ({"num_classes": 0}, r"num_classes: must be an integer >= 1, got 0"),
        ({"num_classes": 2.5}, r"num_classes: must be an integer >= 1, got 2.5"),
        ({"dropout": [0.1, 0.2]}, r"dropout: a sequence needs one rate per Linear layer \(3: .*got 2"),
        ({"dropout": 1.0}, r"dropout: must be a number in \[0, 1\), got 1.0"),
        ({"dropout": -0.1}, r"dropout: must be a number in \[0, 1\), got -0.1"),
        ({"dropout": [0.1, -0.2, 0.0]}, r"dropout\[1\]: must be a number in \[0, 1\), got -0.2"),
        ({"dropout_kind": "gaussian"}, r"dropout_kind: must be one of .*, got 'gaussian'"),
        ({"dropout_kind": "gaussian", "dropout": 0.2}, r"dropout_kind: must be one of .*, got 'gaussian'"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MLP(**{"hidden": (5, 4), **kwargs})


def test_a_huge_mlp_is_refused_before_allocation():
    import time
    import tracemalloc

    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(ValueError, match="^hidden: a 200000 x 200000 layer") as caught:
        MLP(hidden=[200_000, 200_000])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert str(caught.value) == (
        "hidden: a 200000 x 200000 layer is 4.0e10 parameters, more than the 2.1e9 limit (MAX_PARAMETERS)"
    )
    assert time.perf_counter() - start < 1 and peak < 10e6
    with pytest.raises(ValueError, match="^hidden, num_classes: the model is 3.6e9 parameters, more than the 2.1e9"):
        MLP(input_shape=(40_000,), hidden=[40_000, 20_000, 20_000, 20_000, 20_000])
