import pytest
import torch
from torch import nn

from lit_deep.models import Autoencoder, BackboneHead, build, describe, transfer


def test_shapes_and_range():
    ae = Autoencoder(hidden=(64, 16), seed=0)
    x = torch.rand(5, 1, 28, 28)
    out = ae(x)
    assert out.shape == x.shape
    assert ((out > 0) & (out < 1)).all()
    assert ae.encode(x).shape == (5, 16)
    assert ae.encoder is ae.backbone
    assert ae.decoder is ae.head
    assert ae.feature_dim == 16


def test_decoder_mirrors_the_encoder():
    ae = Autoencoder(hidden=(64, 16), activation="elu")
    assert [type(m) for m in ae.encoder] == [nn.Flatten, nn.Linear, nn.ELU, nn.Linear, nn.ELU]
    assert [(m.in_features, m.out_features) for m in ae.encoder if isinstance(m, nn.Linear)] == [(784, 64), (64, 16)]
    assert [type(m) for m in ae.decoder] == [nn.Linear, nn.ELU, nn.Linear, nn.Sigmoid, nn.Unflatten]
    assert [(m.in_features, m.out_features) for m in ae.decoder if isinstance(m, nn.Linear)] == [(16, 64), (64, 784)]


def test_a_hidden_width_equal_to_the_input_size_keeps_its_activation():
    ae = Autoencoder(input_shape=(1, 4, 4), hidden=(16, 8), activation="selu")
    assert [type(m) for m in ae.decoder] == [nn.Linear, nn.SELU, nn.Linear, nn.Sigmoid, nn.Unflatten]
    assert ae(torch.rand(2, 1, 4, 4)).shape == (2, 1, 4, 4)


def test_default_init_is_lecun_for_selu():
    ae = Autoencoder(input_shape=(2000,), hidden=(500,), seed=0)
    assert ae.encoder[1].weight.var().item() == pytest.approx(1 / 2000, rel=0.03)
    assert (ae.encoder[1].bias == 0).all()


def test_transfer_builds_a_classifier_on_a_copied_encoder():
    ae = Autoencoder(hidden=(32, 8), seed=0)
    clf = transfer(ae, 3, seed=0)
    assert type(clf) is BackboneHead  # no longer an Autoencoder: the encoder with a classification head
    assert clf(torch.rand(4, 1, 28, 28)).shape == (4, 3)
    assert isinstance(clf.head, nn.Linear)
    assert clf.head.in_features == 8
    assert clf.num_classes == 3
    for (name, p), q in zip(clf.backbone.named_parameters(), ae.encoder.parameters(), strict=True):
        assert torch.equal(p, q), name
        assert p.data_ptr() != q.data_ptr(), name
    before = ae.encoder[1].weight.clone()
    with torch.no_grad():
        clf.backbone[1].weight.add_(1.0)
    assert torch.equal(ae.encoder[1].weight, before)
    rebuilt = build(describe(clf))  # described by its layers: a checkpoint reloads it
    assert rebuilt.head.out_features == 3
    assert [type(m) for m in rebuilt.backbone] == [type(m) for m in clf.backbone]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"activation": "swish"}, r"activation: must be one of .*, got 'swish'"),
        ({"hidden": ()}, r"hidden: must be a non-empty sequence of integers >= 1, got \(\)"),
        ({"hidden": (8, 0)}, r"hidden: must be a non-empty sequence of integers >= 1, got \(8, 0\)"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Autoencoder(**kwargs)
