"""Device and precision discipline: batches move to the model's device, results come back where the inputs
were, every probability is float32 or wider (bf16 models, autocast), loaders work everywhere."""

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lit_deep._device import batch_inputs, model_device, to_model_device
from lit_deep.nn.dropout import MCDropout
from lit_deep.uncertainty import Ensemble, mc_predict
from lit_deep.uncertainty._accumulate import SampleStats, to_probs
from lit_deep.uncertainty.metrics import ood_auroc
from lit_deep.uncertainty.ood import deterministic_probs
from lit_deep.uncertainty.selective import fpr_at_tpr


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), MCDropout(0.3), nn.Linear(8, 3)).eval()


def _x(n: int = 7) -> torch.Tensor:
    return torch.randn(n, 6, generator=torch.Generator().manual_seed(1))


FIELDS = ("probs", "std", "entropy", "mutual_info", "variation_ratio")


def _float32_or_wider(pred) -> bool:
    return all(getattr(pred, f).dtype in (torch.float32, torch.float64) for f in FIELDS)


def test_helpers():
    x = torch.ones(2, 6)
    assert batch_inputs([x, 0]) is x and batch_inputs(x) is x
    assert model_device(nn.ReLU()) is None and to_model_device(nn.ReLU(), x) is x
    assert to_model_device(_net(), x) is x


def test_a_bf16_model_gives_float32_fields():
    net = _net().to(torch.bfloat16)
    pred = mc_predict(net, _x().to(torch.bfloat16), samples=5, seed=0, return_samples=True)
    assert _float32_or_wider(pred)
    assert pred.samples is not None and pred.samples.dtype == torch.float32
    assert deterministic_probs(net, _x().to(torch.bfloat16)).dtype == torch.float32
    assert Ensemble([net, net]).predict(_x().to(torch.bfloat16)).probs.dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_gives_float32_fields(dtype):
    net, x = _net(), _x()
    with torch.autocast("cpu", dtype=dtype):
        pred = mc_predict(net, x, samples=5, seed=0)
        det = deterministic_probs(net, x)
        logits = net(x)
    assert logits.dtype == dtype  # the model did run in low precision
    assert _float32_or_wider(pred) and det.dtype == torch.float32
    assert torch.allclose(pred.probs.sum(1), torch.ones(len(x)))


def test_to_probs_and_stats_are_at_least_float32():
    assert to_probs(torch.zeros(3, dtype=torch.float16)).dtype == torch.float32
    assert to_probs(torch.zeros(3, 2, dtype=torch.float64)).dtype == torch.float64
    stats = SampleStats(1, 2, torch.bfloat16, "cpu")
    stats.update(torch.tensor([[[0.25, 0.75]]], dtype=torch.bfloat16))
    assert stats.result().probs.dtype == torch.float32 and stats.sum.dtype == torch.float64


def test_dataloader_inputs_everywhere():
    net, x = _net(), _x()
    loader = DataLoader(TensorDataset(x, torch.zeros(len(x))), batch_size=3)
    plain = DataLoader(x, batch_size=3)  # batches without labels
    assert torch.allclose(mc_predict(net, loader, samples=4, seed=1).probs, mc_predict(net, x, samples=4, seed=1).probs)
    assert torch.allclose(deterministic_probs(net, loader), deterministic_probs(net, x))
    assert torch.allclose(deterministic_probs(net, plain), deterministic_probs(net, x))
    ensemble = Ensemble([net, _net()])
    assert torch.allclose(ensemble.predict(loader).probs, ensemble.predict(x).probs)
    assert torch.allclose(
        ensemble.predict(plain, mc_samples=3, seed=2).probs, ensemble.predict(x, mc_samples=3, seed=2).probs
    )


def test_metrics_build_labels_on_the_scores_device():
    inside, outside = torch.tensor([0.1, 0.2, 0.6]), torch.tensor([0.5, 0.9])
    assert round(ood_auroc(inside, outside), 4) == 0.8333
    assert fpr_at_tpr(inside, outside, tpr=0.5) == 0.0


@pytest.mark.cuda
def test_cuda_model_with_cpu_and_cuda_inputs():
    net, x = _net().cuda(), _x()
    for inputs, where in ((x, "cpu"), (x.cuda(), "cuda")):
        pred = mc_predict(net, inputs, samples=4, seed=1, indices=torch.arange(len(x)).cuda(), return_samples=True)
        assert pred.probs.device.type == where and pred.samples is not None and pred.samples.device.type == where
        assert deterministic_probs(net, inputs).device.type == where
        assert Ensemble([net]).predict(inputs, mc_samples=2, seed=0).probs.device.type == where
    loader = DataLoader(TensorDataset(x, torch.zeros(len(x))), batch_size=3)
    assert mc_predict(net, loader, samples=4, seed=1).probs.device.type == "cuda"
    assert deterministic_probs(net, loader).device.type == "cuda"
    with torch.autocast("cuda", dtype=torch.float16):
        assert _float32_or_wider(mc_predict(net, x.cuda(), samples=4, seed=1))
    scores = torch.rand(10, device="cuda")
    assert 0 <= ood_auroc(scores[:5], scores[5:]) <= 1 and 0 <= fpr_at_tpr(scores[:5], scores[5:]) <= 1


def test_ensemble_results_live_where_the_inputs_are(device):  # noqa: ANN001
    # Deterministic members (mc_samples=0) and MC members: sums on the probabilities' device, not CPU float64.
    nets = [_net().to(device), _net().to(device)]
    x = _x().to(device)
    for samples in (0, 3):
        pred = Ensemble(nets).predict(x, mc_samples=samples, seed=0)
        assert pred.probs.device.type == device.type and _float32_or_wider(pred)
        reference = Ensemble([copy.deepcopy(n).cpu() for n in nets]).predict(x.cpu(), mc_samples=samples, seed=0)
        assert torch.allclose(pred.probs.cpu(), reference.probs, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_binary_probabilities_under_autocast_are_float32(dtype):
    # One logit (sigmoid): p = 0.997 must not round to 1 in bf16 (the NLL of the other class would clamp at 27.6).
    net = nn.Sequential(nn.Linear(2, 1)).eval()
    with torch.no_grad():
        net[0].weight.fill_(0.0)
        net[0].bias.fill_(5.8)
    x = torch.zeros(3, 2)
    with torch.autocast("cpu", dtype=dtype):
        probs = deterministic_probs(net, x)
        pred = mc_predict(nn.Sequential(net, MCDropout(0.0001)), x, samples=2, seed=0)
    assert probs.dtype == torch.float32 and pred.probs.dtype == torch.float32
    assert probs[0, 1] < 1.0 and probs[0, 0] > 0.0 and abs(float(probs[0, 1]) - 0.99698) < 1e-3
