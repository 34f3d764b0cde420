import pytest
import torch

from lit_deep.uncertainty import reliability_diagram, uncertainty_histogram
from lit_deep.uncertainty.plots import reliability_bins


def test_reliability_bins_by_hand():
    probs = torch.tensor([[0.95, 0.05], [0.55, 0.45], [0.6, 0.4], [0.1, 0.9]])
    y = torch.tensor([0, 1, 0, 1])
    conf, acc, count = reliability_bins(probs, y, n_bins=2)
    assert count.tolist() == [0, 4]
    assert conf[1].item() == pytest.approx((0.95 + 0.55 + 0.6 + 0.9) / 4)
    assert acc[1].item() == pytest.approx(0.75)


def test_plots_are_saved_as_png(tmp_path):
    g = torch.Generator().manual_seed(0)
    probs = torch.randn(200, 3, generator=g).softmax(-1)
    y = torch.randint(0, 3, (200,), generator=g)
    fig = reliability_diagram(probs, y, tmp_path / "rel.png")
    assert (tmp_path / "rel.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "ECE (15 bins)" in fig.axes[0].get_title()
    uncertainty_histogram(torch.rand(100), torch.rand(50), tmp_path / "hist.png", label="entropy (nats)")
    assert (tmp_path / "hist.png").stat().st_size > 1000
    uncertainty_histogram(torch.zeros(3), torch.zeros(3))  # all equal: still draws
    with pytest.raises(ValueError, match="bins"):
        uncertainty_histogram(torch.rand(3), torch.rand(3), bins=0)
    with pytest.raises(ValueError, match="scores_in"):
        uncertainty_histogram(torch.rand(3, 1), torch.rand(3))


def test_risk_coverage_beside_the_reliability_diagram(tmp_path):
    from lit_deep.uncertainty import aurc, calibration_figure, risk_coverage_plot

    probs = torch.softmax(torch.randn(200, 4, generator=torch.Generator().manual_seed(0)) * 3, dim=1)
    targets = torch.randint(0, 4, (200,), generator=torch.Generator().manual_seed(1))
    fig = calibration_figure(probs, targets, tmp_path / "both.png", title="net")
    assert (tmp_path / "both.png").read_bytes()[:4] == b"\x89PNG"
    left, right = fig.axes
    assert "ECE" in left.get_title()
    assert f"AURC = {aurc(probs, targets):.4f}" in right.get_title()
    (line, *_) = right.get_lines()
    assert len(line.get_xdata()) == 200
    single = risk_coverage_plot(probs, targets, tmp_path / "rc.png")
    assert single.axes[0].get_ylabel() == "risk (error rate)"
