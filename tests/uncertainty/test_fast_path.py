from torch import nn

from lit_deep.models import CNN, MLP
from lit_deep.uncertainty._fast_path import flatten_sequential, make_plan
from lit_deep.uncertainty._layers import stochastic_layers


class Custom(nn.Sequential):
    def forward(self, x):
        return super().forward(x) * 2


def test_flatten_nested_sequentials_and_refuse_custom_forwards():
    model = MLP(hidden=(8,), dropout=0.1, seed=0)
    layers = flatten_sequential(model)
    assert layers is not None
    assert [type(m).__name__ for m in layers] == ["Flatten", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    assert flatten_sequential(Custom(nn.Linear(2, 2))) is None
    assert flatten_sequential(nn.Linear(2, 2)) is None
    nested = nn.Sequential(nn.Linear(2, 2), Custom(nn.ReLU()))
    assert [type(m).__name__ for m in flatten_sequential(nested)] == ["Linear", "Custom"]


def test_plan_splits_before_the_first_stochastic_layer():
    model = MLP(hidden=(300, 100), dropout=(0, 0, 0.2), seed=0)
    plan = make_plan(model, stochastic_layers(model, True))
    assert plan.fast
    assert plan.broadcast
    assert [type(m).__name__ for m in plan.prefix] == ["Flatten", "Linear", "ReLU", "Linear", "ReLU"]
    assert [type(m).__name__ for m in plan.suffix] == ["Dropout", "Linear"]
    # With only always-on layers counted, nn.Dropout is deterministic: everything is prefix.
    assert make_plan(model, stochastic_layers(model, False)).suffix == []


def test_plan_with_dropout_inside_a_composite_layer_repeats_the_input():
    block = Custom(nn.Dropout(0.5))
    model = nn.Sequential(nn.Linear(3, 3), block, nn.Linear(3, 2))
    plan = make_plan(model, stochastic_layers(model, True))
    assert len(plan.prefix) == 1
    assert plan.suffix[0] is block
    assert not plan.broadcast
    conv = CNN(channels=(4,), dense=0, dropout=0.0, conv_dropout=0.2, seed=0)
    plan = make_plan(conv, stochastic_layers(conv, True))
    assert type(plan.suffix[0]).__name__ == "Dropout2d"
    assert len(plan.prefix) == 7
