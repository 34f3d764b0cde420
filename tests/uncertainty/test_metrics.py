import math

import pytest
import torch

from lit_deep.uncertainty import (
    MCPrediction,
    accuracy,
    brier_score,
    calibration_report,
    expected_calibration_error,
    nll,
    ood_auroc,
)


def _data(n=500, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    probs = (torch.randn(n, c, generator=g) * 2).softmax(-1)
    targets = torch.randint(0, c, (n,), generator=g)
    return probs, targets


def test_against_plain_references():
    probs, y = _data()
    n, c = probs.shape
    assert accuracy(probs, y) == pytest.approx((probs.argmax(1) == y).double().mean().item())
    assert nll(probs, y) == pytest.approx(-sum(math.log(probs[i, y[i]]) for i in range(n)) / n, rel=1e-5)
    brier = sum(sum((probs[i, k].item() - float(k == int(y[i]))) ** 2 for k in range(c)) for i in range(n)) / n
    assert brier_score(probs, y) == pytest.approx(brier, rel=1e-5)
    # ECE, 15 equal-width bins over the confidence, bins (b/15, (b+1)/15].
    conf, pred = probs.max(1)
    ece = 0.0
    for b in range(15):
        inside = (conf > b / 15) & (conf <= (b + 1) / 15)
        if inside.any():
            gap = (pred[inside] == y[inside]).double().mean() - conf[inside].double().mean()
            ece += inside.double().mean().item() * abs(gap.item())
    assert expected_calibration_error(probs, y) == pytest.approx(ece, abs=1e-5)
    report = calibration_report(MCPrediction.from_samples(probs[None]), y)
    assert report["ece"] == pytest.approx(ece, abs=1e-5)
    assert set(report) == {"accuracy", "nll", "brier", "ece"}


def test_auroc_against_pair_counting():
    g = torch.Generator().manual_seed(1)
    s_in, s_out = torch.randn(60, generator=g), torch.randn(40, generator=g) + 1
    wins = sum(float(o > i) + 0.5 * float(o == i) for o in s_out for i in s_in)
    assert ood_auroc(s_in, s_out) == pytest.approx(wins / (60 * 40), abs=1e-6)
    assert ood_auroc(torch.zeros(3), torch.ones(2)) == 1.0


def test_errors():
    probs, y = _data(10)
    with pytest.raises(ValueError, match="targets: expected shape"):
        accuracy(probs, y[:5])
    with pytest.raises(ValueError, match="targets: class indices"):
        nll(probs, y + 10)
    with pytest.raises(ValueError, match="probs: expected"):
        brier_score(probs[:, 0], y)
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error(probs, y, n_bins=0)
    with pytest.raises(ValueError, match="scores_in, scores_out"):
        ood_auroc(torch.zeros(0), torch.ones(2))
    with pytest.raises(ValueError, match="NaN"):
        ood_auroc(torch.tensor([math.nan]), torch.ones(2))
