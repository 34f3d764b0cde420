"""The one probability check and the one target check, shared by every metric, score, plot and calibrator."""

from __future__ import annotations

import pytest
import torch

from lit_deep._validate import ArgumentTypeError
from lit_deep.uncertainty import (
    MCPrediction,
    adaptive_calibration_error,
    aurc,
    calibration_report,
    uncertainty_score,
)
from lit_deep.uncertainty._inputs import check_probs, check_targets
from lit_deep.uncertainty.plots import reliability_bins
from lit_deep.uncertainty.temperature import temperature_from_logits


def _prediction() -> MCPrediction:
    g = torch.Generator().manual_seed(0)
    return MCPrediction.from_samples(torch.softmax(torch.randn(5, 4, 3, generator=g), dim=-1))


def test_an_mc_prediction_is_accepted_wherever_probabilities_are() -> None:
    pred, y = _prediction(), torch.tensor([0, 1, 2, 0])
    report = calibration_report(pred, y)
    assert report == calibration_report(pred.probs, y)
    assert adaptive_calibration_error(pred, y) == adaptive_calibration_error(pred.probs, y)
    assert aurc(pred, y) == aurc(pred.probs, y)
    assert torch.equal(reliability_bins(pred, y)[2], reliability_bins(pred.probs, y)[2])
    assert uncertainty_score(pred, "mutual_info").shape == (4,)


def test_rows_may_miss_1_by_the_stated_tolerance_of_their_dtype() -> None:
    p = torch.tensor([[0.5004, 0.5], [0.25, 0.75]])
    assert torch.equal(check_probs(p), p)  # float32: within 1e-3
    with pytest.raises(ValueError, match=r"rows must sum to 1 \(within 0.001 for torch.float32\), got 1 rows"):
        check_probs(torch.tensor([[0.502, 0.5], [0.25, 0.75]]))
    check_probs(torch.tensor([[0.502, 0.5]], dtype=torch.bfloat16))  # 16-bit: within 1e-2
    with pytest.raises(ValueError, match="look like logits"):  # far from 1: the logits hint
        check_probs(torch.tensor([[0.9, 0.9]]))


def test_probabilities_of_the_wrong_type_are_type_errors() -> None:
    for bad in ([[0.5, 0.5]], torch.tensor([[1, 0]])):
        with pytest.raises(ArgumentTypeError, match="probs: must be a floating-point tensor of probabilities"):
            check_probs(bad)


def test_targets_are_integer_class_indices() -> None:
    assert check_targets(torch.tensor([0, 2], dtype=torch.uint8), 2, 3).dtype == torch.int64
    for bad in (torch.tensor([0.0, 1.0]), torch.tensor([True, False]), [0, 1]):
        with pytest.raises(ArgumentTypeError, match="targets: must be"):
            check_targets(bad, 2, 3)
    with pytest.raises(ValueError, match=r"targets: class indices must be in \[0, 3\) \(3 classes\), got values in"):
        check_targets(torch.tensor([-1, 2]), 2, 3)


def test_temperature_checks_its_targets_against_the_logits() -> None:
    with pytest.raises(ValueError, match=r"targets: class indices must be in \[0, 2\)"):
        temperature_from_logits(torch.zeros(3), torch.tensor([0, 1, 2]))  # binary logits: labels 0 or 1
    with pytest.raises(TypeError, match="targets: must be integer class indices"):
        temperature_from_logits(torch.zeros(3, 2), torch.tensor([0.0, 1.0, 1.0]))
