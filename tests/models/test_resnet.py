import pytest
import torch
from torch import nn

from lit_deep.models import ResNet, build, describe, transfer
from lit_deep.models.resnet import ResidualBlock


def test_default_is_resnet20_with_global_pooling():
    net = ResNet(seed=0)
    assert sum(p.numel() for p in net.parameters()) == 272_186  # He et al.'s CIFAR ResNet-20 on one channel
    assert tuple(net(torch.rand(2, 1, 28, 28)).shape) == (2, 10)
    assert net.feature_dim == 64
    blocks = [m for m in net.backbone if isinstance(m, ResidualBlock)]
    assert len(blocks) == 9
    assert [b.conv1.stride for b in blocks if b.conv1.stride != (1, 1)] == [(2, 2), (2, 2)]
    assert isinstance(net.backbone[-1], nn.Flatten)


def test_blocks_start_as_identity_and_the_features_pass_through():
    block = ResidualBlock(4, 4).eval()
    x = torch.rand(3, 4, 7, 7)  # non-negative: ReLU(x + 0) == x
    assert torch.equal(block(x), x)
    assert ResidualBlock(4, 4, zero_init_residual=False).bn2.weight.min() == 1


def test_downsampling_block_has_a_projection_shortcut():
    block = ResidualBlock(4, 8, stride=2)
    assert isinstance(block.shortcut, nn.Sequential)
    assert tuple(block(torch.zeros(1, 4, 28, 28)).shape) == (1, 8, 14, 14)
    assert isinstance(ResidualBlock(8, 8).shortcut, nn.Identity)


def test_he_init_of_the_convolutions():
    net = ResNet(widths=(32, 64), blocks=1, seed=0)
    w = net.backbone[3].conv2.weight  # 32 x 32 x 3 x 3: fan_in 288
    assert w.var().item() == pytest.approx(2 / 288, rel=0.1)


def test_seeded_models_are_equal_and_leave_the_global_generator_alone():
    before = torch.random.get_rng_state()
    a, b = ResNet(widths=(4, 8), blocks=1, seed=3), ResNet(widths=(4, 8), blocks=1, seed=3)
    assert torch.equal(before, torch.random.get_rng_state())
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_description_rebuilds_and_a_cut_backbone_is_described_by_parts():
    net = ResNet(widths=(4, 8), blocks=2, dropout=0.1, num_classes=3, seed=0)
    description = describe(net)
    assert description["class_path"] == "lit_deep.models.ResNet"
    twin = build(description)
    assert type(twin) is ResNet and repr(twin) == repr(net)
    new = transfer(net, num_classes=2, seed=0)  # a copy of the backbone, a new head: described by its parts
    assert tuple(new(torch.rand(2, 1, 28, 28)).shape) == (2, 2)
    rebuilt = build(describe(new))
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in new.state_dict().items()}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"widths": ()}, r"widths: must be a non-empty sequence of integers >= 1, got \(\)"),
        ({"widths": (8, 0)}, r"widths: must be a non-empty sequence of integers >= 1, got \(8, 0\)"),
        ({"blocks": 0}, r"blocks: must be an integer >= 1, got 0"),
        ({"num_classes": True}, r"num_classes: must be an integer >= 1, got True"),
        ({"dropout": 1.0}, r"dropout: must be a number in \[0, 1\), got 1.0"),
        ({"activation": "swish"}, r"activation: must be one of .*, got 'swish'"),
        ({"input_shape": (28, 28)}, r"input_shape: must be a sequence of 3 integers >= 1, got \(28, 28\)"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ResNet(**{"widths": (4,), "blocks": 1, **kwargs})


def test_bad_block_arguments():
    with pytest.raises(ValueError, match=r"^stride: must be one of \(1, 2\), got 3"):
        ResidualBlock(4, 4, stride=3)


def test_a_huge_resnet_is_refused_before_allocation():
    with pytest.raises(ValueError, match=r"^widths: a .* layer is .* parameters, more than the 2.1e9"):
        ResNet(widths=(200_000,), blocks=1)


def test_the_from_scratch_twin_resets_normalisation_and_residual_blocks():
    source = ResNet(widths=(4, 8), blocks=1, seed=0)
    with torch.no_grad():
        for module in source.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.fill_(3.0)
                module.running_mean.fill_(5.0)
    twin = transfer(source, 2, reinitialize=True, seed=1)
    for name, module in twin.backbone.named_modules():
        if isinstance(module, nn.BatchNorm2d):
            assert module.running_mean.abs().max() == 0, name
            expected = 0.0 if name.endswith("bn2") else 1.0  # each block starts as the identity again
            assert torch.all(module.weight == expected), name
