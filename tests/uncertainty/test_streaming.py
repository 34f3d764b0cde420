"""The streaming metrics equal their whole-dataset functions over any batch split, and keep float64 states."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from lit_deep.uncertainty import adaptive_calibration_error, aurc, brier_score, nll
from lit_deep.uncertainty.prediction import MCPrediction
from lit_deep.uncertainty.streaming import AURC, AdaptiveCalibrationError, BrierScore, NegativeLogLikelihood


def _data(n: int = 997, c: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(3 * torch.randn(n, c, generator=g), dim=1)
    targets = torch.where(torch.rand(n, generator=g) < 0.7, probs.argmax(1), torch.randint(0, c, (n,), generator=g))
    return probs, targets


PAIRS = [
    (NegativeLogLikelihood, nll),
    (BrierScore, brier_score),
    (lambda: AdaptiveCalibrationError(n_bins=10), lambda p, y: adaptive_calibration_error(p, y, n_bins=10)),
    (AdaptiveCalibrationError, adaptive_calibration_error),
    (AURC, aurc),
]


@pytest.mark.parametrize(("make", "function"), PAIRS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streaming_over_random_batch_splits_equals_the_function(make, function, seed: int) -> None:  # type: ignore[no-untyped-def]
    probs, targets = _data(seed=seed)
    g = torch.Generator().manual_seed(100 + seed)
    cuts = sorted(torch.randperm(probs.shape[0] - 1, generator=g)[: int(torch.randint(1, 30, (1,), generator=g))] + 1)
    metric = make()
    for p, y in zip(probs.tensor_split(cuts), targets.tensor_split(cuts), strict=True):
        metric.update(p, y)
    streamed = metric.compute()
    assert streamed.dtype == torch.float64
    assert float(streamed) == pytest.approx(function(probs, targets), abs=1e-6)


def test_aurc_with_scores_and_mc_predictions() -> None:
    probs, targets = _data()
    entropy = -(probs * probs.log()).sum(1)
    metric = AURC()
    for p, y, s in zip(probs.split(100), targets.split(100), entropy.split(100), strict=True):
        metric.update(MCPrediction.from_samples(p[None]), y, s)
    assert float(metric.compute()) == pytest.approx(aurc(probs, targets, entropy), abs=1e-6)


def test_states_reduce_as_ddp_would() -> None:
    """Two "ranks" merged with the metrics' own reduction (merge_state) equal one metric on all the data."""
    probs, targets = _data()
    for make, function in PAIRS:
        ranks = [make(), make()]
        ranks[0].update(probs[:400], targets[:400])
        ranks[1].update(probs[400:], targets[400:])
        ranks[0].merge_state(ranks[1])
        assert float(ranks[0].compute()) == pytest.approx(function(probs, targets), abs=1e-6)
    assert NegativeLogLikelihood()._reductions["total"] is not None  # sum states, reduced by dist_reduce_fx


@pytest.mark.parametrize("cast", ["half", "bfloat16", "to"])
def test_accumulators_stay_float64_when_the_module_is_cast(cast: str) -> None:
    holder = torch.nn.Module()
    holder.nll, holder.ace = NegativeLogLikelihood(), AdaptiveCalibrationError()
    holder.ace.update(*_data(n=10))
    holder = holder.half() if cast == "half" else holder.bfloat16() if cast == "bfloat16" else holder.to(torch.float16)
    assert holder.nll.total.dtype == torch.float64 and holder.nll.count.dtype == torch.int64
    assert all(v.dtype == torch.float64 for v in holder.ace.values)
    holder.nll.update(torch.tensor([[0.5, 0.5]], dtype=torch.float16), torch.tensor([0]))
    assert holder.nll.total.dtype == torch.float64
    holder.nll.reset()
    assert holder.nll.total.dtype == torch.float64


def test_bad_inputs_name_the_argument() -> None:
    with pytest.raises(ValueError, match=r"^n_bins: must be an integer >= 1, got 0"):
        AdaptiveCalibrationError(n_bins=0)
    with pytest.raises(ValueError, match=r"^targets: expected shape \(2,\)"):
        BrierScore().update(torch.full((2, 2), 0.5), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"^scores: expected shape \(2,\)"):
        AURC().update(torch.full((2, 2), 0.5), torch.tensor([0, 1]), torch.zeros(3))
    with pytest.raises(ValueError, match="compute"), pytest.warns(UserWarning, match="before the ``update``"):
        AURC().compute()


def test_import_lit_deep_uncertainty_still_loads_no_torchmetrics() -> None:
    code = "import sys, lit_deep.uncertainty; print('torchmetrics' in sys.modules, 'matplotlib' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert done.stdout.split() == ["False", "False"]
