"""Monte-Carlo dropout prediction with uncertainty, calibration and OOD metrics, and their plots."""

from lit_deep.uncertainty.metrics import (
    ECE_BINS,
    accuracy,
    brier_score,
    calibration_report,
    expected_calibration_error,
    nll,
    ood_auroc,
)
from lit_deep.uncertainty.ood import deterministic_probs, ood_aurocs
from lit_deep.uncertainty.plots import reliability_bins, reliability_diagram, uncertainty_histogram
from lit_deep.uncertainty.predict import DEFAULT_MAX_ELEMENTS, mc_predict
from lit_deep.uncertainty.prediction import MCPrediction
from lit_deep.uncertainty.scores import SCORES, max_softmax_uncertainty, predictive_entropy, uncertainty_score

__all__ = [
    "DEFAULT_MAX_ELEMENTS",
    "ECE_BINS",
    "SCORES",
    "MCPrediction",
    "accuracy",
    "brier_score",
    "calibration_report",
    "deterministic_probs",
    "expected_calibration_error",
    "max_softmax_uncertainty",
    "mc_predict",
    "nll",
    "ood_auroc",
    "ood_aurocs",
    "predictive_entropy",
    "reliability_bins",
    "reliability_diagram",
    "uncertainty_histogram",
    "uncertainty_score",
]
