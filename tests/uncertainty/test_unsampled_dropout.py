"""A stochastic model is sampled or refused, never returned as deterministic (a silent spread of 0).

timm's attention keeps an ``nn.Dropout`` only to read its rate (``dropout_p=self.attn_drop.p if self.training
else 0.0``): that module exists but never runs, so ``mc_predict`` must not count it as a source of randomness.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lit_deep.uncertainty import mc_predict


class Attention(nn.Module):
    """timm-style attention: ``attn_drop`` is read for its rate, never called; ``proj_drop`` runs."""

    def __init__(self, dim: int = 8, proj_drop: float = 0.0) -> None:
        super().__init__()
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.attn_drop, self.proj_drop = nn.Dropout(0.1), nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop.p if self.training else 0.0)
        return self.proj_drop(self.proj(x))


class Net(nn.Module):
    def __init__(self, proj_drop: float = 0.0, untraceable: bool = False) -> None:
        super().__init__()
        self.attn, self.head = Attention(proj_drop=proj_drop), nn.Linear(8, 3)
        self.untraceable = untraceable

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.untraceable and bool(x.sum() > -1e9):  # data-dependent control flow: torch.fx cannot trace it
            x = x + 0
        return self.head(self.attn(x).mean(dim=1))


def _x() -> torch.Tensor:
    return torch.randn(4, 5, 8, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("untraceable", [False, True], ids=["traced", "untraced"])
def test_a_dropout_module_that_never_runs_is_refused_by_name(untraceable: bool) -> None:
    net = Net(untraceable=untraceable)
    with pytest.raises(ValueError, match=r"has dropout modules that never ran in its forward pass") as info:
        mc_predict(net, _x(), samples=4, seed=0, enable_dropout=True)
    message = str(info.value)
    assert "attn.attn_drop (Dropout, p=0.1)" in message and "proj_drop" not in message
    assert "'every stochastic op'" in message and "\n" not in message


@pytest.mark.parametrize("untraceable", [False, True], ids=["traced", "untraced"])
def test_one_sampled_dropout_does_not_hide_one_that_never_runs(untraceable: bool) -> None:
    with pytest.raises(ValueError, match=r"never ran in its forward pass: attn\.attn_drop \(Dropout, p=0\.1\);"):
        mc_predict(Net(proj_drop=0.2, untraceable=untraceable), _x(), samples=4, seed=0, enable_dropout=True)


@pytest.mark.parametrize("untraceable", [False, True], ids=["traced", "untraced"])
def test_with_the_idle_rate_set_to_zero_the_rest_is_sampled(untraceable: bool) -> None:
    net = Net(proj_drop=0.2, untraceable=untraceable)
    net.attn.attn_drop.p = 0.0
    pred = mc_predict(net, _x(), samples=8, seed=0, enable_dropout=True)
    assert float(pred.std.max()) > 0  # sampled: a real spread
    assert net.training  # modes restored


def test_dropout_inside_a_module_the_tracer_keeps_whole_is_sampled() -> None:
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.2, batch_first=True)
    net = nn.Sequential(layer, nn.Flatten(), nn.Linear(40, 3))
    pred = mc_predict(net, _x(), samples=8, seed=0, enable_dropout=True)
    assert float(pred.std.max()) > 0
