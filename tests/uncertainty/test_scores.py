import math

import pytest
import torch

from lit_deep.uncertainty import MCPrediction, uncertainty_score
from lit_deep.uncertainty.scores import max_softmax_uncertainty, predictive_entropy


def test_entropy_in_nats_with_zero_probabilities():
    probs = torch.tensor([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0.0]])
    assert predictive_entropy(probs).tolist() == pytest.approx([0.0, math.log(3), math.log(2)], abs=1e-6)
    assert max_softmax_uncertainty(probs).tolist() == pytest.approx([0.0, 2 / 3, 0.5])


def test_named_scores():
    pred = MCPrediction.from_samples(torch.tensor([[[0.9, 0.1]], [[0.3, 0.7]]]))
    assert uncertainty_score(pred, "std").item() == pytest.approx(0.3)
    assert uncertainty_score(pred, "mutual_info") is pred.mutual_info
    assert uncertainty_score(pred.probs, "entropy").item() == pytest.approx(-0.6 * math.log(0.6) - 0.4 * math.log(0.4))
    with pytest.raises(ValueError, match="name: must be one of"):
        uncertainty_score(pred, "margin")
    with pytest.raises(ValueError, match="needs an MCPrediction"):
        uncertainty_score(pred.probs, "mutual_info")
