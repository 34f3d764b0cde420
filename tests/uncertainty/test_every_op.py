"""``mc_predict(stochastic="all")``: every stochastic op sampled (transformers attention dropout, drop-path)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lit_deep.models import MLP
from lit_deep.uncertainty import mc_predict


class DropPath(nn.Module):
    """timm's stochastic depth, hand-written: the whole residual branch is dropped per image in training mode."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand(x.shape[0], *([1] * (x.dim() - 1)), device=x.device) >= self.p
        return x * keep / (1 - self.p)


class ResidualNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(6, 16)
        self.norm = nn.BatchNorm1d(16)
        self.branch = nn.Sequential(nn.Linear(16, 16), nn.ReLU())
        self.drop_path = DropPath(0.3)
        self.out = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.inp(x))
        return self.out(h + self.drop_path(self.branch(h)))


def test_drop_path_is_sampled_batchnorm_statistics_untouched_and_modes_restored() -> None:
    torch.manual_seed(0)
    net = ResidualNet().eval()
    running = net.norm.running_mean.clone()
    x = torch.randn(10, 6)
    with pytest.raises(ValueError, match="no stochastic dropout layer"):  # the default mode has no mask to key
        mc_predict(net, x, samples=4, enable_dropout=True)
    before = torch.random.get_rng_state()
    pred = mc_predict(net, x, samples=30, seed=1, stochastic="all")
    assert float(pred.std.max()) > 0  # sampled
    assert torch.equal(net.norm.running_mean, running)  # BatchNorm in eval: statistics used, not updated
    assert not any(m.training for m in net.modules())  # modes restored
    assert torch.equal(torch.random.get_rng_state(), before)  # the process's generator left alone
    again = mc_predict(net, x, samples=30, seed=1, stochastic="all")
    assert torch.equal(again.probs, pred.probs)  # reproducible for the same seed and batching
    assert not torch.equal(mc_predict(net, x, samples=30, seed=2, stochastic="all").probs, pred.probs)


def test_a_model_with_nothing_stochastic_is_refused() -> None:
    with pytest.raises(ValueError, match="gave the same output on every sample in training mode"):
        mc_predict(MLP(input_shape=(4,), hidden=(8,), num_classes=2), torch.randn(3, 4), samples=3, stochastic="all")
    with pytest.raises(ValueError, match="stochastic: must be one of"):
        mc_predict(MLP(input_shape=(4,), hidden=(8,), dropout=0.5), torch.randn(3, 4), stochastic="some")


def test_dropout_layers_agree_in_distribution_with_the_default_mode() -> None:
    net = MLP(input_shape=(5,), hidden=(64,), num_classes=3, dropout=0.3, seed=0)
    x = torch.randn(20, 5, generator=torch.Generator().manual_seed(0))
    keyed = mc_predict(net, x, samples=400, seed=0, enable_dropout=True)
    every = mc_predict(net, x, samples=400, seed=0, stochastic="all")
    assert torch.allclose(keyed.probs, every.probs, atol=0.1)  # the same predictive mean (400 samples), other draws


def test_transformers_vit_attention_probability_dropout_is_sampled() -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(
        image_size=28,
        patch_size=7,
        num_channels=1,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=10,
        hidden_dropout_prob=0.0,  # only attention-probability dropout: F.dropout gated by module.training
        attention_probs_dropout_prob=0.3,
        attn_implementation="eager",
    )
    torch.manual_seed(0)
    vit = transformers.ViTForImageClassification(config).eval()
    x = torch.rand(6, 1, 28, 28)
    with pytest.raises(ValueError, match="no stochastic dropout layer"):
        mc_predict(vit, x, samples=4, enable_dropout=True)
    pred = mc_predict(vit, x, samples=20, seed=0, stochastic="all")
    assert pred.probs.shape == (6, 10) and float(pred.std.max()) > 0
    assert not vit.training
    # the mean of the samples is close to a naive loop over training-mode passes
    vit.train()
    with torch.no_grad():
        naive = torch.stack([F.softmax(vit(pixel_values=x).logits, -1) for _ in range(200)]).mean(0)
    vit.eval()
    assert torch.allclose(mc_predict(vit, x, samples=200, seed=0, stochastic="all").probs, naive, atol=0.05)
