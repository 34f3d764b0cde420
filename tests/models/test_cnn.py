import pytest
import torch
from torch import nn

from lit_deep.models import CNN, build, describe
from lit_deep.nn import MCDropout


def test_default_shapes():
    net = CNN(channels=(8, 16), dense=32, seed=0)
    assert net(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    assert net.feature_dim == 32
    assert net.head.in_features == 32
    assert net.backbone(torch.rand(3, 1, 28, 28)).shape == (3, 32)


def test_layer_order_with_batch_norm():
    net = CNN(channels=(4,), convs_per_block=2, dense=8, dropout=0.25)
    assert [type(m) for m in net.backbone] == [
        nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d,
        nn.Flatten, nn.Dropout, nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Dropout,
    ]  # fmt: skip
    convs = [m for m in net.backbone if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert all(m.bias is None for m in convs)
    assert convs[0].kernel_size == (3, 3)
    assert convs[0].padding == (1, 1)
    assert net.backbone[9].in_features == 4 * 14 * 14
    for bn in (m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)):
        assert bn.momentum == 0.01
        assert bn.eps == 1e-3


def test_without_batch_norm_or_dense_or_dropout():
    net = CNN(channels=(4, 6), convs_per_block=1, dense=0, batch_norm=False, dropout=0.0)
    assert [type(m) for m in net.backbone] == [nn.Conv2d, nn.ReLU, nn.MaxPool2d] * 2 + [nn.Flatten]
    assert all(m.bias is not None for m in net.backbone if isinstance(m, nn.Conv2d))
    assert net.feature_dim == 6 * 7 * 7
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_other_input_shapes_and_classes():
    net = CNN(input_shape=(3, 32, 32), channels=(4, 4, 4), dense=0, num_classes=5)
    assert net.feature_dim == 4 * 4 * 4
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 5)


def test_conv_dropout_and_mc_kind():
    net = CNN(channels=(4,), dense=8, conv_dropout=0.2, dropout=0.3)
    assert sum(isinstance(m, nn.Dropout2d) for m in net.backbone) == 1
    mc = CNN(channels=(4,), dense=8, conv_dropout=0.2, dropout=0.3, dropout_kind="mc", seed=0).eval()
    assert sum(isinstance(m, MCDropout) for m in mc.backbone) == 3
    x = torch.rand(2, 1, 28, 28)
    assert not torch.equal(mc(x), mc(x))
    net.eval()
    assert torch.equal(net(x), net(x))


def test_default_init_is_he_for_relu():
    net = CNN(channels=(64, 128), convs_per_block=1, dense=0, seed=0)
    w = net.backbone[4].weight  # Conv2d(64, 128, 3): fan_in 576
    assert w.shape == (128, 64, 3, 3)
    assert w.var().item() == pytest.approx(2 / 576, rel=0.05)


def test_description_rebuilds():
    net = CNN(channels=(4, 8), dense=16, activation="elu", num_classes=3)
    description = describe(net)
    assert description["class_path"] == "lit_deep.models.CNN"
    assert description["init_args"]["channels"] == [4, 8]
    twin = build(description)
    assert type(twin) is CNN
    assert repr(twin) == repr(net)
    assert {k: v.shape for k, v in twin.state_dict().items()} == {k: v.shape for k, v in net.state_dict().items()}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"activation": "swish"}, r"activation: must be one of .*, got 'swish'"),
        ({"input_shape": (28, 28)}, r"input_shape: must be a sequence of 3 integers >= 1, got \(28, 28\)"),
        ({"channels": ()}, r"channels: must be a non-empty sequence of integers >= 1, got \(\)"),
        ({"channels": (8, 0)}, r"channels: must be a non-empty sequence of integers >= 1, got \(8, 0\)"),
        ({"channels": (2,) * 5}, r"channels: 5 pooling blocks shrink \(1, 28, 28\) below 1x1"),
        ({"convs_per_block": 0}, r"convs_per_block: must be an integer >= 1, got 0"),
        ({"dense": -1}, r"dense: must be an integer >= 0, got -1"),
        ({"num_classes": 0}, r"num_classes: must be an integer >= 1, got 0"),
        ({"dropout": 1.0}, r"dropout: must be a number in \[0, 1\), got 1.0"),
        ({"conv_dropout": -0.5}, r"conv_dropout: must be a number in \[0, 1\), got -0.5"),
        ({"dropout_kind": "gaussian"}, r"dropout_kind: must be one of .*, got 'gaussian'"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CNN(**{"channels": (4,), "dense": 8, **kwargs})


def test_a_huge_cnn_is_refused_before_allocation():
    with pytest.raises(ValueError, match=r"^dense: a 6272 x 1000000 layer is 6.3e9 parameters, more than the 2.1e9"):
        CNN(channels=(32, 128), dense=1_000_000)
    with pytest.raises(ValueError, match=r"^channels: a 4500000 x 500000 layer is 2.3e12 parameters"):
        CNN(channels=(500_000, 500_000), convs_per_block=1, dense=0)
