import numpy as np
import pytest
import torch

from lit_deep.uncertainty import adaptive_calibration_error, aurc, fpr_at_tpr
from lit_deep.uncertainty.selective import risk_coverage_curve


def _data(n=500, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(3 * torch.randn(n, c, generator=g), dim=1)
    targets = torch.where(torch.rand(n, generator=g) < 0.7, probs.argmax(1), torch.randint(0, c, (n,), generator=g))
    return probs, targets


def _np_ace(p, y, bins):
    conf, pred = p.max(1), p.argmax(1)
    order = np.argsort(conf, kind="stable")
    total = 0.0
    for chunk in np.array_split(order, bins):
        if len(chunk):
            total += len(chunk) * abs((pred[chunk] == y[chunk]).mean() - conf[chunk].mean())
    return total / len(y)


def _np_rc(p, y, score):
    order = np.argsort(score, kind="stable")
    wrong = (p.argmax(1) != y)[order].astype(float)
    k = np.arange(1, len(y) + 1)
    return k / len(y), np.cumsum(wrong) / k


def _np_fpr(s_in, s_out, tpr):
    # The largest threshold that flags at least `tpr` of the OOD scores, then the share of in-scores flagged.
    for t in np.sort(np.concatenate([s_in, s_out]))[::-1]:
        if (s_out >= t).mean() >= tpr:
            return (s_in >= t).mean()
    return 1.0


@pytest.mark.parametrize("bins", [1, 7, 15])
def test_adaptive_ece_against_numpy(bins):
    probs, targets = _data()
    assert adaptive_calibration_error(probs, targets, bins) == pytest.approx(
        _np_ace(probs.double().numpy(), targets.numpy(), bins), abs=1e-9
    )


def test_risk_coverage_and_aurc_against_numpy():
    probs, targets = _data(seed=1)
    score = 1 - probs.double().max(1).values
    cov, risk = risk_coverage_curve(probs, targets)
    ref_cov, ref_risk = _np_rc(probs.numpy(), targets.numpy(), score.numpy())
    np.testing.assert_allclose(cov.numpy(), ref_cov)
    np.testing.assert_allclose(risk.numpy(), ref_risk)
    assert aurc(probs, targets) == pytest.approx(ref_risk.mean())
    entropy = -(probs * probs.log()).sum(1)
    assert aurc(probs, targets, entropy) == pytest.approx(
        _np_rc(probs.numpy(), targets.numpy(), entropy.numpy())[1].mean()
    )
    # Errors ranked last give a lower area than errors ranked first.
    wrong = (probs.argmax(1) != targets).double()
    assert aurc(probs, targets, wrong) < aurc(probs, targets, -wrong)


def test_fpr_at_tpr_against_numpy():
    g = torch.Generator().manual_seed(2)
    s_in, s_out = torch.randn(400, generator=g), torch.randn(300, generator=g) + 1.5
    for tpr in (0.5, 0.9, 0.95):
        assert fpr_at_tpr(s_in, s_out, tpr) == pytest.approx(_np_fpr(s_in.numpy(), s_out.numpy(), tpr), abs=1e-6)
    assert fpr_at_tpr(torch.tensor([0.0, 0.1]), torch.tensor([0.5, 0.9])) == 0.0


def test_errors_name_the_argument():
    probs, targets = _data(n=10)
    with pytest.raises(ValueError, match="n_bins: must be an integer >= 1, got 0"):
        adaptive_calibration_error(probs, targets, 0)
    with pytest.raises(ValueError, match=r"scores: expected shape \(10,\)"):
        aurc(probs, targets, torch.zeros(3))
    with pytest.raises(ValueError, match=r"tpr: must be a number in \(0, 1\]"):
        fpr_at_tpr(torch.zeros(2), torch.ones(2), 1.5)
