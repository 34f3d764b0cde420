import math

import pytest
import torch
from torch import nn

from lit_deep.models import CNN, MLP, Autoencoder, BackboneHead, build, describe, make_activation, transfer
from lit_deep.models._base import make_dropout


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


def _digest(model: torch.nn.Module) -> str:
    import hashlib

    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


# Digests of the weights seeded construction gave before it stopped moving the global generator: unchanged.
SEEDED = {
    "mlp": (lambda: MLP(seed=0), "e992b9a368096c4c"),
    "mlp_bn_drop": (
        lambda: MLP(hidden=(32, 16), batch_norm="before", input_batch_norm=True, dropout=0.2, activation="elu", seed=3),
        "ab5cd322ba20a39e",
    ),
    "cnn": (lambda: CNN(channels=(8, 16), dense=32, seed=0), "93a2a3cdd5067ce0"),
    "cnn_nobn": (lambda: CNN(channels=(4,), dense=0, batch_norm=False, seed=5), "dfe5a6bd4a2c98be"),
    "autoencoder": (lambda: Autoencoder(hidden=(64, 16), seed=0), "ab918187a9b1a4f9"),
    "transfer": (
        lambda: transfer(MLP(hidden=(16, 8), activation="selu", num_classes=8, seed=0), 2, dropout=0.1, seed=0),
        "fcde4e1685f7434c",
    ),
    "transfer_reinit": (
        lambda: transfer(MLP(hidden=(16, 8), activation="selu", num_classes=8, seed=0), 2, reinitialize=True, seed=1),
        "42f48c2d73abc1d4",
    ),
}


@pytest.mark.parametrize("name", list(SEEDED))
def test_seeded_construction_leaves_the_global_generator_and_keeps_its_weights(name: str) -> None:
    build, digest = SEEDED[name]
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    model = build()
    assert torch.equal(torch.random.get_rng_state(), before)
    assert _digest(model) == digest
    MLP(hidden=(4,))  # without a seed the global generator is used, as before
    assert not torch.equal(torch.random.get_rng_state(), before)


def test_arguments_are_recorded_without_replacing_the_classes_init() -> None:
    import copy

    from lit_deep.models import Preprocess
    from lit_deep.models._record import recorded_init_args

    for cls in (BackboneHead, MLP, CNN, Autoencoder, Preprocess):
        assert not hasattr(cls.__dict__["__init__"], "__wrapped__"), cls  # the function as written in the class

    class Wider(MLP):  # a user subclass: recorded with its own signature, its __init__ left alone too
        def __init__(self, width: int = 5, **kwargs: object) -> None:
            super().__init__(hidden=(width,), **kwargs)

    assert not hasattr(Wider.__dict__["__init__"], "__wrapped__")
    net = Wider(7, num_classes=3)
    assert recorded_init_args(net) == {"width": 7, "num_classes": 3}
    assert recorded_init_args(MLP(hidden=(4,)))["hidden"] == (4,)
    twin = copy.deepcopy(net)
    assert recorded_init_args(twin) == recorded_init_args(net)
    mlp = MLP(hidden=(6, 3), dropout=0.1, seed=2)
    assert describe(build(describe(copy.deepcopy(mlp)))) == describe(mlp)


def test_transfer_cut_keeps_the_first_layers_and_sizes_the_head():
    source = CNN(channels=(4, 8), dense=16, seed=0)
    cut = transfer(source, 3, cut=7, seed=0)  # the first block: 2 x (conv, BN, ReLU), then max-pool
    assert len(cut.backbone) == 8 and isinstance(cut.backbone[-1], nn.Flatten)
    assert cut.feature_dim == 4 * 14 * 14 == cut.head.in_features
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(cut.backbone[:7].eval()(x), source.backbone[:7].eval()(x))  # the same pretrained layers
    assert cut.backbone[0] is not source.backbone[0]  # a copy
    flat = transfer(MLP(hidden=(8, 6), seed=0), 2, cut=3)  # Flatten, Linear, ReLU: already [B, 8]
    assert flat.feature_dim == 8 and not isinstance(flat.backbone[-1], nn.Flatten)
    rebuilt = build(describe(cut))
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in cut.state_dict().items()}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cut": 0}, r"^cut: must be an integer in \[1, 20\], got 0"),
        ({"cut": 99}, r"^cut: must be an integer in \[1, 20\], got 99"),
        ({"cut": 3, "num_classes": None}, r"^num_classes: a cut backbone \(3\) needs a new head"),
        ({"cut": 3, "input_shape": (1, 0, 28)}, r"^input_shape: must be a non-empty sequence of integers >= 1, got"),
    ],
)
def test_bad_cuts_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        transfer(CNN(channels=(4, 8), dense=16), **{"num_classes": 2, **kwargs})


def test_a_cut_of_a_backbone_that_does_not_say_its_input_shape_needs_one():
    net = BackboneHead(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()), nn.Linear(2, 2), feature_dim=2)
    with pytest.raises(ValueError, match=r"^input_shape: the source does not record its input shape; pass it"):
        transfer(net, 2, cut=1)
    assert transfer(net, 2, cut=1, input_shape=(1, 5, 5)).feature_dim == 2 * 3 * 3
    with pytest.raises(ValueError, match=r"^cut: needs a backbone that is an nn.Sequential, got Conv2d"):
        transfer(BackboneHead(nn.Conv2d(1, 2, 3), nn.Linear(2, 2), feature_dim=2), 2, cut=1)
