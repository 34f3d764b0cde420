import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lit_deep.models import CNN, MLP
from lit_deep.nn import MCDropout
from lit_deep.uncertainty import MCPrediction, mc_predict


def _x(n=12, d=6, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


class Wrapped(nn.Module):
    """A non-sequential model: mc_predict takes the generic path."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)


def test_fields_by_hand_on_a_tiny_model():
    # Two inputs, dropout 0.5 on them, a fixed linear layer: every sample is one of four known softmaxes.
    linear = nn.Linear(2, 2)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[1.0, -1.0], [0.5, 2.0]]))
        linear.bias.copy_(torch.tensor([0.1, -0.2]))
    model = nn.Sequential(nn.Dropout(0.5), linear)
    x = torch.tensor([[1.0, 2.0], [-1.0, 0.5]])
    pred = mc_predict(model, x, samples=64, seed=0, enable_dropout=True, return_samples=True)
    assert pred.samples is not None
    assert pred.samples.shape == (64, 2, 2)
    for n in range(2):
        masks = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
        options = (linear(x[n] * masks * 2.0)).softmax(-1).detach()
        distance = (pred.samples[:, n, None, :] - options[None]).abs().amax(-1).min(-1).values
        assert distance.max() < 1e-4  # the rate is 0.5 exactly, so the scale 2 is exact
    # The fields, by the plain formulas (nats; population std; BALD; variation ratio).
    s = pred.samples.double()
    mean = s.mean(0)
    entropy = -(mean * mean.log()).sum(-1)
    expected_entropy = -(s * s.log()).sum(-1).mean(0)
    winners = s.argmax(-1)
    modal = torch.stack([torch.bincount(winners[:, n], minlength=2).max() for n in range(2)]).double()
    assert torch.allclose(pred.probs.double(), mean, atol=1e-6)
    assert torch.allclose(pred.std.double(), ((s - mean) ** 2).mean(0).sqrt(), atol=1e-6)
    assert torch.allclose(pred.entropy.double(), entropy, atol=1e-6)
    assert torch.allclose(pred.mutual_info.double(), entropy - expected_entropy, atol=1e-6)
    assert torch.allclose(pred.variation_ratio.double(), 1 - modal / 64.0, atol=1e-6)
    assert torch.equal(pred.prediction, mean.argmax(-1))


def test_matches_from_samples_and_probabilities_sum_to_one():
    model = MLP(input_shape=(6,), hidden=(16, 8), num_classes=4, dropout=0.3, dropout_kind="mc", seed=0)
    pred = mc_predict(model, _x(), samples=30, seed=5, return_samples=True)
    ref = MCPrediction.from_samples(pred.samples)
    for name in ("probs", "std", "entropy", "mutual_info", "variation_ratio"):
        assert torch.allclose(getattr(pred, name), getattr(ref, name), atol=1e-6), name
    assert torch.allclose(pred.probs.sum(1), torch.ones(12))
    assert (pred.mutual_info >= 0).all()
    assert (pred.mutual_info <= pred.entropy + 1e-6).all()


def test_binary_model_reports_two_classes():
    model = nn.Sequential(MCDropout(0.5), nn.Linear(3, 1))
    pred = mc_predict(model, _x(d=3), samples=10, seed=0)
    assert pred.probs.shape == (12, 2)
    assert torch.allclose(pred.probs.sum(1), torch.ones(12))


def test_same_seed_same_result_and_none_follows_manual_seed():
    model = MLP(input_shape=(6,), hidden=(16,), num_classes=3, dropout=0.4, seed=0)
    a = mc_predict(model, _x(), samples=20, seed=7, enable_dropout=True)
    b = mc_predict(model, _x(), samples=20, seed=7, enable_dropout=True)
    c = mc_predict(model, _x(), samples=20, seed=8, enable_dropout=True)
    assert torch.equal(a.probs, b.probs)
    assert not torch.equal(a.probs, c.probs)
    torch.manual_seed(3)
    d = mc_predict(model, _x(), samples=20, enable_dropout=True)
    torch.manual_seed(3)
    e = mc_predict(model, _x(), samples=20, enable_dropout=True)
    assert torch.equal(d.probs, e.probs)


def test_result_does_not_depend_on_chunking_order_or_path():
    model = MLP(input_shape=(6,), hidden=(16, 8), num_classes=3, dropout=0.3, seed=0)
    x = _x(n=100)
    kwargs = {"samples": 25, "seed": 1, "enable_dropout": True}
    ref = mc_predict(model, x, **kwargs)
    small = mc_predict(model, x, batch_size=40, max_elements=6 * 33 * 4, **kwargs)  # 32 images x 4 samples
    generic = mc_predict(Wrapped(model), x, **kwargs)
    loader = mc_predict(model, DataLoader(TensorDataset(x), batch_size=13), **kwargs)
    tail = mc_predict(model, x[37:], indices=torch.arange(37, 100), **kwargs)
    perm = torch.randperm(100, generator=torch.Generator().manual_seed(0))
    shuffled = mc_predict(model, x[perm], indices=perm, **kwargs)
    for other, rows in ((small, slice(None)), (generic, slice(None)), (loader, slice(None)), (tail, slice(37, None))):
        assert torch.allclose(other.probs, ref.probs[rows], atol=1e-6)
        assert torch.allclose(other.mutual_info, ref.mutual_info[rows], atol=1e-6)
    assert torch.allclose(shuffled.probs, ref.probs[perm], atol=1e-6)


def _naive(model, x, samples):
    # T train-mode passes of torch's own dropout, batched: every row of the repeated batch draws its own mask.
    model.train()
    with torch.no_grad():
        return model(x.repeat(samples, 1)).softmax(-1).view(samples, *x.shape[:1], -1)


def _z(a, b):
    return (a.mean(0) - b.mean(0)) / (a.var(0) / a.shape[0] + b.var(0) / b.shape[0]).sqrt().clamp_min(1e-12)


def test_same_distribution_as_the_naive_loop():
    # T passes in train mode with torch's own dropout vs mc_predict (fast path, keyed 16-bit masks): the
    # per-sample probabilities must have the same mean and variance (two-sample z-tests, |z| < 5).
    torch.manual_seed(0)
    model = MLP(input_shape=(6,), hidden=(16, 8), num_classes=3, dropout=0.3, seed=0)
    x, samples = _x(n=8), 4000
    ours = mc_predict(model, x, samples=samples, seed=0, enable_dropout=True, return_samples=True).samples.double()
    ref = _naive(model, x, samples).double()
    assert _z(ours, ref).abs().max() < 5
    dev_ours, dev_ref = (ours - ours.mean(0)) ** 2, (ref - ref.mean(0)) ** 2
    assert _z(dev_ours, dev_ref).abs().max() < 5


def test_fast_path_runs_the_prefix_once_and_respects_the_memory_bound():
    model = MLP(input_shape=(6,), hidden=(16, 8), num_classes=3, dropout=(0.0, 0.0, 0.2), seed=0)
    calls, rows = [], []
    model.backbone[1].register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    model.head.register_forward_hook(lambda m, i, o: rows.append(i[0].shape[0]))
    mc_predict(model, _x(n=40), samples=50, seed=0, max_elements=8 * 64, enable_dropout=True)
    assert calls == [2, 40]  # two probe rows, then each image once: not once per sample
    assert sum(rows) == 40 * 50
    assert max(rows) * 8 <= 8 * 64


def test_batchnorm_stays_in_eval_mode_and_modes_are_restored():
    model = MLP(input_shape=(6,), hidden=(16,), num_classes=3, batch_norm="after", dropout=0.3, seed=0)
    model.train()
    model.backbone[4].eval()  # an odd mix, restored exactly
    before = [m.training for m in model.modules()]
    seen = []
    model.backbone[3].register_forward_hook(lambda m, i, o: seen.append(m.training))
    mc_predict(model, _x(), samples=5, seed=0, enable_dropout=True)
    assert seen
    assert not any(seen)
    assert [m.training for m in model.modules()] == before
    assert all("forward" not in vars(m) for m in model.modules())


def test_modes_are_restored_when_the_call_raises():
    class Boom(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    model = nn.Sequential(nn.Linear(6, 4), nn.Dropout(0.5), nn.BatchNorm1d(4), Boom()).train()
    before = [m.training for m in model.modules()]
    with pytest.raises(ValueError, match="boom"):
        mc_predict(model, _x(), samples=3, seed=0, enable_dropout=True)
    assert [m.training for m in model.modules()] == before
    assert "forward" not in vars(model[1])


def test_conv_net_with_channel_dropout():
    model = CNN(channels=(4,), dense=8, dropout=0.2, conv_dropout=0.2, seed=0)
    x = torch.rand(5, 1, 28, 28)
    pred = mc_predict(model, x, samples=6, seed=0, enable_dropout=True, return_samples=True)
    assert pred.probs.shape == (5, 10)
    assert pred.std.max() > 0
    again = mc_predict(Wrapped(model), x, samples=6, seed=0, enable_dropout=True)
    assert torch.allclose(again.probs, pred.probs, atol=1e-5)


def test_errors_name_the_argument():
    model = MLP(input_shape=(6,), hidden=(8,), num_classes=3, dropout=0.3, seed=0)
    with pytest.raises(ValueError, match="enable_dropout=True"):
        mc_predict(model, _x())
    with pytest.raises(ValueError, match="no stochastic dropout"):
        mc_predict(nn.Linear(6, 3), _x(), enable_dropout=True)
    with pytest.raises(ValueError, match="samples: must be an integer >= 1, got 0"):
        mc_predict(model, _x(), samples=0, enable_dropout=True)
    with pytest.raises(ValueError, match="seed"):
        mc_predict(model, _x(), seed=-1, enable_dropout=True)
    bad = _x()
    bad[3, 2] = math.nan
    with pytest.raises(ValueError, match="inputs: contain 1 NaN"):
        mc_predict(model, bad, enable_dropout=True)
    with pytest.raises(ValueError, match=r"inputs: the model failed on inputs of shape \(12, 5\)"):
        mc_predict(model, _x(d=5), enable_dropout=True)
    with pytest.raises(ValueError, match="floating-point"):
        mc_predict(model, torch.ones(3, 6, dtype=torch.long), enable_dropout=True)
    with pytest.raises(ValueError, match="indices: 3 indices for 12 inputs"):
        mc_predict(model, _x(), indices=torch.arange(3), enable_dropout=True)
    with pytest.raises(ValueError, match="batch_size"):
        mc_predict(model, _x(), batch_size=0, enable_dropout=True)


def test_samples_has_an_upper_bound() -> None:
    from lit_deep.models import MLP
    from lit_deep.uncertainty.predict import MAX_SAMPLES

    net = MLP(input_shape=(4,), hidden=(8,), num_classes=3, dropout=0.5, seed=0)
    with pytest.raises(ValueError, match=r"^samples: at most 10000 \(MAX_SAMPLES\), got 1000000000$"):
        mc_predict(net, torch.zeros(2, 4), samples=10**9, enable_dropout=True)
    assert MAX_SAMPLES == 10_000


def test_kept_samples_are_bounded_before_they_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    import tracemalloc

    from lit_deep.models import MLP

    net = MLP(input_shape=(4,), hidden=(8,), num_classes=3, dropout=0.5, seed=0)
    x = torch.zeros(1000, 4)
    message = (
        "^return_samples: keeping 10000 samples x 1000 inputs x 3 classes as float32 needs 0.1 GB, more than "
        r"max_samples_bytes=0.1 GB; use fewer samples or inputs, or raise max_samples_bytes$"
    )
    tracemalloc.start()
    with pytest.raises(ValueError, match=message):
        mc_predict(net, x, samples=10_000, enable_dropout=True, return_samples=True, max_samples_bytes=100_000_000)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20e6
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=100)
    with pytest.raises(ValueError, match="return_samples: keeping 10000 samples x 1000 inputs"):
        mc_predict(net, loader, samples=10_000, enable_dropout=True, return_samples=True, max_samples_bytes=10**8)
    pred = mc_predict(net, x[:10], samples=10, enable_dropout=True, return_samples=True, max_samples_bytes=1200)
    assert pred.samples is not None and pred.samples.shape == (10, 10, 3)  # exactly 1200 bytes: allowed
    with pytest.raises(ValueError, match="max_samples_bytes: must be an integer >= 1, got 0"):
        mc_predict(net, x, samples=2, enable_dropout=True, max_samples_bytes=0)
