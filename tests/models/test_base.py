import math

import pytest
import torch
from torch import nn

from lit_deep.models import CNN, MLP, BackboneHead, build, describe, make_activation, make_dropout, transfer


def test_backbone_head_is_head_of_backbone():
    net = BackboneHead(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), nn.Linear(3, 2), feature_dim=3)
    x = torch.rand(5, 2, 2)
    assert torch.equal(net(x), net.head(net.backbone(x)))
    assert list(dict(net.named_parameters())) == ["backbone.1.weight", "backbone.1.bias", "head.weight", "head.bias"]
    assert net.num_classes == 2


def test_num_classes_needs_a_linear_head():
    net = BackboneHead(nn.Identity(), nn.Sequential(nn.Linear(3, 2)), feature_dim=3)
    # (nn.Module.__getattr__ replaces the property's message with "has no attribute 'num_classes'")
    with pytest.raises(AttributeError, match=r"num_classes"):
        _ = net.num_classes


@pytest.mark.parametrize(
    "make",
    [lambda: MLP(hidden=(20, 10), num_classes=8, seed=0), lambda: CNN(channels=(4,), dense=10, num_classes=8, seed=0)],
)
def test_transfer_copies_the_backbone(make):
    source = make()
    source_state = {k: v.clone() for k, v in source.state_dict().items()}
    target = transfer(source, 2, seed=1)
    assert type(target) is BackboneHead  # a plain backbone + head, described by its parts
    assert target.num_classes == 2
    assert describe(target)["init_args"]["head"]["init_args"]["out_features"] == 2
    assert source.num_classes == 8
    assert describe(source)["init_args"]["num_classes"] == 8
    for (name, p), q in zip(target.backbone.state_dict().items(), source.backbone.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
        assert p.data_ptr() != q.data_ptr(), name
    # Train the new model a step: the source does not move.
    opt = torch.optim.SGD(target.parameters(), lr=0.5)
    target(torch.rand(4, 1, 28, 28)).sum().backward()
    opt.step()
    assert all(torch.equal(v, source_state[k]) for k, v in source.state_dict().items())
    assert not torch.equal(
        target.backbone.state_dict()[next(iter(source_state)).split(".", 1)[1]], source_state[next(iter(source_state))]
    )


def test_new_head_is_glorot_uniform():
    source = MLP(input_shape=(10,), hidden=(300,), seed=0)
    target = transfer(source, 100, seed=0)
    limit = math.sqrt(6 / (300 + 100))
    assert target.head.weight.shape == (100, 300)
    assert target.head.weight.abs().max() <= limit
    assert target.head.weight.abs().max() > 0.99 * limit
    assert target.head.weight.var().item() == pytest.approx(limit**2 / 3, rel=0.05)
    assert (target.head.bias == 0).all()
    again = transfer(source, 100, seed=0)
    assert torch.equal(again.head.weight, target.head.weight)


def test_rebuilding_from_the_description_loads_the_state():
    target = transfer(MLP(hidden=(6,), seed=0), 3)
    twin = build(describe(target))
    twin.load_state_dict(target.state_dict())
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(twin(x), target(x))


def test_transfer_errors():
    with pytest.raises(ValueError, match=r"num_classes: must be None or an integer >= 1, got 0"):
        transfer(MLP(hidden=(4,)), 0)
    with pytest.raises(
        ValueError, match=r"source: expected a model with .backbone and .head \(BackboneHead\), got Linear"
    ):
        transfer(nn.Linear(3, 2), 2)


def test_factory_errors():
    with pytest.raises(ValueError, match=r"activation: must be one of .*, got 'mish'"):
        make_activation("mish", 3)
    with pytest.raises(ValueError, match=r"dropout_kind: must be one of .*, got 'gauss'"):
        make_dropout("gauss", 0.1)
    with pytest.raises(ValueError, match=r"dropout: must be a number in \[0, 1\), got 1.0"):
        make_dropout("standard", 1.0)
    assert isinstance(make_dropout("standard", 0.1, spatial=True), nn.Dropout2d)
