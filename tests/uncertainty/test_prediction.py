import math

import pytest
import torch

from lit_deep.uncertainty import MCPrediction


def test_from_samples_by_hand():
    # Two samples, two images, two classes.
    samples = torch.tensor([[[0.9, 0.1], [0.5, 0.5]], [[0.7, 0.3], [0.1, 0.9]]])
    pred = MCPrediction.from_samples(samples, keep_samples=True)
    assert torch.allclose(pred.probs, torch.tensor([[0.8, 0.2], [0.3, 0.7]]))
    assert torch.allclose(pred.std, torch.tensor([[0.1, 0.1], [0.2, 0.2]]))
    h = lambda *p: -sum(q * math.log(q) for q in p)  # noqa: E731
    assert pred.entropy.tolist() == pytest.approx([h(0.8, 0.2), h(0.3, 0.7)], abs=1e-6)
    mi0 = h(0.8, 0.2) - (h(0.9, 0.1) + h(0.7, 0.3)) / 2
    mi1 = h(0.3, 0.7) - (h(0.5, 0.5) + h(0.1, 0.9)) / 2
    assert pred.mutual_info.tolist() == pytest.approx([mi0, mi1], abs=1e-6)
    # Image 1: sample argmaxes are 0 (tie, first wins) and 1 -> modal count 1 of 2.
    assert pred.variation_ratio.tolist() == [0.0, 0.5]
    assert pred.prediction.tolist() == [0, 1]
    assert pred.samples is samples
    assert len(pred) == 2
    assert pred.num_classes == 2


def test_select_cat_pack_unpack_round_trip():
    samples = torch.rand(3, 5, 4).softmax(-1)
    pred = MCPrediction.from_samples(samples, keep_samples=True)
    both = MCPrediction.cat([pred.select(slice(0, 2)), pred.select(torch.tensor([2, 3, 4]))])
    assert torch.equal(both.probs, pred.probs)
    assert torch.equal(both.samples, pred.samples)
    back = MCPrediction.unpack(pred.pack(), 4)
    for name in ("probs", "std", "entropy", "mutual_info", "variation_ratio", "prediction"):
        assert torch.equal(getattr(back, name), getattr(pred, name)), name
    assert back.samples is None


def test_errors():
    with pytest.raises(ValueError, match="samples: expected a"):
        MCPrediction.from_samples(torch.rand(2, 3))
    with pytest.raises(ValueError, match="parts"):
        MCPrediction.cat([])
    with pytest.raises(ValueError, match="packed"):
        MCPrediction.unpack(torch.zeros(2, 5), 2)
