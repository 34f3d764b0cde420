import pytest
import torch

from lit_deep.models import MLP
from lit_deep.uncertainty import Ensemble, MCPrediction, deterministic_probs, mc_predict


def _members():
    return [MLP(input_shape=(5,), hidden=(8,), num_classes=3, dropout=0.3, seed=s) for s in range(3)]


def _x():
    return torch.randn(7, 5, generator=torch.Generator().manual_seed(0))


def test_mean_of_member_probabilities_and_mutual_information_across_members():
    members = _members()
    pred = Ensemble(members).predict(_x())
    stacked = torch.stack([deterministic_probs(m, _x()) for m in members])
    ref = MCPrediction.from_samples(stacked)
    for name in ("probs", "std", "entropy", "mutual_info", "variation_ratio"):
        assert torch.allclose(getattr(pred, name), getattr(ref, name), atol=1e-6), name
    mean = stacked.double().mean(0)
    entropy = -(mean * mean.log()).sum(1)
    expected = -(stacked.double() * stacked.double().log()).sum(2).mean(0)
    assert torch.allclose(pred.mutual_info.double(), entropy - expected, atol=1e-6)
    ens = Ensemble(members).eval()
    with torch.no_grad():
        assert torch.allclose(ens(_x()).softmax(1), pred.probs, atol=1e-6)


def test_mc_sampled_members_pool_their_samples():
    members = _members()
    pred = Ensemble(members).predict(_x(), mc_samples=6, seed=10, enable_dropout=True)
    samples = torch.cat(
        [
            mc_predict(m, _x(), 6, seed=10 + i, enable_dropout=True, return_samples=True).samples
            for i, m in enumerate(members)
        ]
    )
    ref = MCPrediction.from_samples(samples)
    assert torch.allclose(pred.probs, ref.probs, atol=1e-6)
    assert torch.allclose(pred.mutual_info, ref.mutual_info, atol=1e-6)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="models: expected a non-empty list"):
        Ensemble([])
    with pytest.raises(ValueError, match="mc_samples: must be an integer >= 0, got -1"):
        Ensemble(_members()).predict(_x(), mc_samples=-1)
