import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from lit_deep.nn import MCAlphaDropout, MCDropout
from lit_deep.nn.dropout import apply_mask, keep_mask, keep_threshold, quantize_rate


@given(st.floats(min_value=0.0, max_value=0.999))
@settings(max_examples=50, deadline=None)
def test_quantize_rate_is_within_half_a_level(p):
    q = quantize_rate(p)
    assert abs(q - p) <= 2**-17 + 1e-12
    assert (q * 65536).is_integer()
    assert 0 <= q < 1


def test_threshold_matches_quantised_rate():
    # A kept unit has an int16 draw >= threshold; the fraction of int16 values below it is the drop rate.
    for p in (0.0, 0.2, 0.5, 0.9):
        assert (keep_threshold(p) + 32768) / 65536 == quantize_rate(p)


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_bad_rate_raises(p):
    with pytest.raises(ValueError, match=r"p: must be a number in \[0, 1\), got "):
        keep_mask((3,), p)
    with pytest.raises(ValueError, match=r"p: must be a number in \[0, 1\), got "):
        MCDropout(p)


@pytest.mark.parametrize("p", [0.05, 0.2, 0.5, 0.8])
def test_keep_mask_rate_and_independence(p):
    n = 400_000
    keep = keep_mask((n,), p, torch.Generator().manual_seed(1)).double()
    q = quantize_rate(p)
    sigma = math.sqrt(q * (1 - q) / n)
    assert abs(keep.mean().item() - (1 - q)) < 5 * sigma
    # Neighbouring units come from the same 64-bit word: they must still be uncorrelated.
    for lag in (1, 2, 3, 4):
        corr = torch.corrcoef(torch.stack([keep[:-lag], keep[lag:]]))[0, 1].item()
        assert abs(corr) < 5 / math.sqrt(n)


def test_keep_mask_is_reproducible_and_uses_all_bits():
    a = keep_mask((5, 7), 0.5, torch.Generator().manual_seed(3))
    b = keep_mask((5, 7), 0.5, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert a.shape == (5, 7)
    # The sign bit of the top 16-bit lane is random too (random_() without a range would leave it at 0).
    keep = keep_mask((4 * 10_000,), 0.5, torch.Generator().manual_seed(0)).view(-1, 4).double()
    assert 0.45 < keep[:, 3].mean().item() < 0.55


def test_apply_mask_standard_and_alpha_by_hand():
    x = torch.tensor([1.0, -2.0, 3.0])
    keep = torch.tensor([True, False, True])
    q = quantize_rate(0.3)
    assert torch.allclose(apply_mask(x, keep, 0.3), torch.tensor([1.0, 0.0, 3.0]) / (1 - q))
    alpha = 1.7580993408473766
    a = ((1 - q) * (1 + q * alpha**2)) ** -0.5
    expected = torch.tensor([a * 1.0 + a * alpha * q, a * alpha * (q - 1), a * 3.0 + a * alpha * q])
    assert torch.allclose(apply_mask(x, keep, 0.3, alpha=True), expected)


def test_mc_dropout_is_on_in_eval_mode_and_unbiased():
    layer = MCDropout(0.2).eval()
    torch.manual_seed(0)
    x = torch.full((200_000,), 3.0)
    out = layer(x)
    values = out.unique()
    assert values[0] == 0
    assert len(values) == 2
    assert values[1].item() == pytest.approx(3.0 / (1 - quantize_rate(0.2)), rel=1e-6)
    assert abs(out.mean().item() - 3.0) < 5 * 3.0 * math.sqrt(0.2 / 0.8 / x.numel())


def test_mc_dropout_matches_f_dropout_statistics():
    torch.manual_seed(0)
    x = torch.randn(50, 40)
    ours = torch.stack([MCDropout(0.3)(x) for _ in range(400)])
    ref = torch.stack([F.dropout(x, 0.3, training=True) for _ in range(400)])
    assert torch.allclose(ours.mean(0), ref.mean(0), atol=0.5)
    assert abs((ours == 0).float().mean().item() - (ref == 0).float().mean().item()) < 0.01


def test_mc_dropout_gradient_flows_through_kept_units():
    x = torch.ones(1000, requires_grad=True)
    torch.manual_seed(0)
    out = MCDropout(0.5)(x)
    out.sum().backward()
    assert torch.equal(x.grad, (out != 0).float() * 2.0)


def test_mc_alpha_dropout_keeps_moments_and_zero_rate_is_identity():
    torch.manual_seed(0)
    out = MCAlphaDropout(0.1).eval()(torch.randn(400_000))
    assert abs(out.mean().item()) < 0.01
    assert abs(out.std().item() - 1) < 0.01
    x = torch.randn(10)
    assert MCDropout(0.0)(x) is x
    assert MCAlphaDropout(0.0)(x) is x
