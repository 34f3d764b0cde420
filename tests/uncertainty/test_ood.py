import pytest
import torch

from lit_deep.models import MLP
from lit_deep.uncertainty import deterministic_probs, mc_predict
from lit_deep.uncertainty.ood import ood_aurocs


def test_deterministic_probs_turn_mc_layers_off_and_restore():
    model = MLP(input_shape=(5,), hidden=(8,), num_classes=3, dropout=0.5, dropout_kind="mc", seed=0).train()
    x = torch.randn(7, 5)
    probs = deterministic_probs(model, x, batch_size=3)
    with torch.no_grad():
        plain = torch.nn.Sequential(*[m for m in model.backbone if "Dropout" not in type(m).__name__], model.head)
        assert torch.allclose(probs, plain(x).softmax(-1))
    assert model.training
    assert all("forward" not in vars(m) for m in model.modules())
    with pytest.raises(ValueError, match="batch_size"):
        deterministic_probs(model, x, batch_size=0)


def test_ood_aurocs_reports_every_score():
    model = MLP(input_shape=(5,), hidden=(16,), num_classes=3, dropout=0.3, dropout_kind="mc", seed=0)
    g = torch.Generator().manual_seed(0)
    x_in, x_out = torch.randn(40, 5, generator=g), torch.randn(30, 5, generator=g)
    det_in, det_out = deterministic_probs(model, x_in), deterministic_probs(model, x_out)
    mc_in, mc_out = mc_predict(model, x_in, 20, seed=0), mc_predict(model, x_out, 20, seed=0)
    result = ood_aurocs(det_in, det_out, mc_in, mc_out)
    assert set(result) == {
        "max_softmax (deterministic)",
        "max_softmax (MC)",
        "entropy (MC)",
        "mutual_info (MC)",
        "variation_ratio (MC)",
    }
    assert all(0.0 <= v <= 1.0 for v in result.values())
