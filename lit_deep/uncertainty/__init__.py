"""Monte-Carlo dropout prediction with uncertainty, calibration and OOD metrics, and their plots."""

from lit_deep.uncertainty._lightning import MCPredictor, index_batches, shuffles
from lit_deep.uncertainty.ensemble import Ensemble
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
from lit_deep.uncertainty.plots import (
    calibration_figure,
    reliability_bins,
    reliability_diagram,
    risk_coverage_plot,
    uncertainty_histogram,
)
from lit_deep.uncertainty.predict import DEFAULT_MAX_ELEMENTS, mc_predict
from lit_deep.uncertainty.prediction import MCPrediction
from lit_deep.uncertainty.scores import SCORES, max_softmax_uncertainty, predictive_entropy, uncertainty_score
from lit_deep.uncertainty.selective import adaptive_calibration_error, aurc, fpr_at_tpr, risk_coverage_curve
from lit_deep.uncertainty.temperature import (
    Temperature,
    TemperatureScaled,
    fit_temperature,
    logits_and_targets,
    temperature_from_logits,
)
from lit_deep.uncertainty.temperature_callback import TemperatureScaling

__all__ = [
    "DEFAULT_MAX_ELEMENTS",
    "Ensemble",
    "Temperature",
    "TemperatureScaled",
    "TemperatureScaling",
    "ECE_BINS",
    "SCORES",
    "MCPrediction",
    "MCPredictor",
    "accuracy",
    "adaptive_calibration_error",
    "aurc",
    "brier_score",
    "calibration_figure",
    "calibration_report",
    "deterministic_probs",
    "expected_calibration_error",
    "fit_temperature",
    "fpr_at_tpr",
    "logits_and_targets",
    "index_batches",
    "max_softmax_uncertainty",
    "mc_predict",
    "nll",
    "ood_auroc",
    "ood_aurocs",
    "predictive_entropy",
    "reliability_bins",
    "temperature_from_logits",
    "reliability_diagram",
    "risk_coverage_curve",
    "risk_coverage_plot",
    "shuffles",
    "uncertainty_histogram",
    "uncertainty_score",
]
