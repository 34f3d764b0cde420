import math

import pytest
import torch
from torch import nn

from lit_deep.models import CNN, MLP, BackboneHead, make_activation, make_dropout, replace_head


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
def test_replace_head_copies_the_backbone(make):
    source = make()
    source_state = {k: v.clone() for k, v in source.state_dict().items()}
    target = replace_head(source, 2, torch.Generator().manual_seed(1))
    assert type(target) is type(source)
    assert target.num_classes == 2
    assert target.config["num_classes"] == 2
    assert source.num_classes == 8
    assert source.config["num_classes"] == 8
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
    target = replace_head(source, 100, torch.Generator().manual_seed(0))
    limit = math.sqrt(6 / (300 + 100))
    assert target.head.weight.shape == (100, 300)
    assert target.head.weight.abs().max() <= limit
    assert target.head.weight.abs().max() > 0.99 * limit
    assert target.head.weight.var().item() == pytest.approx(limit**2 / 3, rel=0.05)
    assert (target.head.bias == 0).all()
    again = replace_head(source, 100, torch.Generator().manual_seed(0))
    assert torch.equal(again.head.weight, target.head.weight)


def test_rebuilding_from_the_updated_config_loads_the_state():
    target = replace_head(MLP(hidden=(6,), seed=0), 3)
    twin = MLP(**target.config)
    twin.load_state_dict(target.state_dict())
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(twin(x), target(x))


def test_replace_head_errors():
    with pytest.raises(ValueError, match=r"num_classes: must be a positive integer, got 0"):
        replace_head(MLP(hidden=(4,)), 0)
    with pytest.raises(
        ValueError, match=r"model: expected a model with .backbone and .head \(BackboneHead\), got Linear"
    ):
        replace_head(nn.Linear(3, 2), 2)


def test_factory_errors():
    with pytest.raises(ValueError, match=r"activation: expected one of .*, got 'mish'"):
        make_activation("mish", 3)
    with pytest.raises(ValueError, match=r"dropout_kind: expected one of .*, got 'gauss'"):
        make_dropout("gauss", 0.1)
    with pytest.raises(ValueError, match=r"dropout: rate must be in \[0, 1\), got 1.0"):
        make_dropout("standard", 1.0)
    assert isinstance(make_dropout("standard", 0.1, spatial=True), nn.Dropout2d)
