"""Monte-Carlo dropout prediction with uncertainty, calibration and OOD metrics, conformal sets, and plots.

Plain PyTorch: this package imports neither Lightning nor matplotlib (the plots import it when called). Its
Lightning pieces live above it: MC dropout in ``trainer.predict`` is ``Classifier(mc_samples=...)``
(:mod:`lit_deep.modules.mc_predictor`) and the temperature callback is
:class:`lit_deep.callbacks.TemperatureScaling`.
"""

from lit_deep.uncertainty.conformal import conformal_calibrate, prediction_sets, set_coverage
from lit_deep.uncertainty.ensemble import Ensemble
from lit_deep.uncertainty.metrics import (
    accuracy,
    brier_score,
    calibration_report,
    expected_calibration_error,
    nll,
    ood_auroc,
)
from lit_deep.uncertainty.ood import deterministic_probs
from lit_deep.uncertainty.plots import (
    calibration_figure,
    reliability_diagram,
    risk_coverage_plot,
    uncertainty_histogram,
)
from lit_deep.uncertainty.predict import mc_predict
from lit_deep.uncertainty.prediction import MCPrediction
from lit_deep.uncertainty.scores import uncertainty_score
from lit_deep.uncertainty.selective import adaptive_calibration_error, aurc, fpr_at_tpr
from lit_deep.uncertainty.temperature import TemperatureScaled, fit_temperature

__all__ = [
    "Ensemble",
    "MCPrediction",
    "TemperatureScaled",
    "accuracy",
    "adaptive_calibration_error",
    "aurc",
    "brier_score",
    "calibration_figure",
    "calibration_report",
    "conformal_calibrate",
    "deterministic_probs",
    "expected_calibration_error",
    "fit_temperature",
    "fpr_at_tpr",
    "mc_predict",
    "nll",
    "ood_auroc",
    "prediction_sets",
    "reliability_diagram",
    "risk_coverage_plot",
    "set_coverage",
    "uncertainty_histogram",
    "uncertainty_score",
]
