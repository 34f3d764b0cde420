import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lit_deep.models import CNN, MLP
from lit_deep.uncertainty import mc_predict
from lit_deep.uncertainty._graph import GraphPlan, WholePlan, make_plan
from lit_deep.uncertainty._layers import stochastic_layers
from lit_deep.uncertainty._masks import MaskSampler


def _x(n=12, d=6, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


class FunctionalNet(nn.Module):
    """A user model with dropout written as a function, near the top (before the last layer)."""

    def __init__(self, training_flag=None):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU())
        self.out = nn.Linear(8, 3)
        self.flag = training_flag

    def forward(self, x):
        h = self.body(x)
        return self.out(F.dropout(h, 0.3, self.training if self.flag is None else self.flag))


class Wrapper(nn.Module):
    """Calls a model through a forward that is not nn.Sequential's."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)


class Untraceable(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        if x.sum() > -1e9:  # data-dependent control flow: torch.fx cannot trace it
            return self.inner(x)
        return -self.inner(x)


def _z(a, b):
    return (a.mean(0) - b.mean(0)) / (a.var(0) / a.shape[0] + b.var(0) / b.shape[0]).sqrt().clamp_min(1e-12)


def test_functional_dropout_same_distribution_as_the_naive_loop_and_prefix_once():
    model = FunctionalNet()
    calls = []
    model.body[0].register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    x, samples = _x(n=8), 4000
    ours = mc_predict(model, x, samples=samples, seed=0, enable_dropout=True, return_samples=True).samples.double()
    assert calls == [2, 8]  # the probe, then every image once
    model.train()  # the naive loop: torch's own F.dropout, one mask per row of the repeated batch
    with torch.no_grad():
        ref = model(x.repeat(samples, 1)).softmax(-1).view(samples, 8, -1).double()
    assert _z(ours, ref).abs().max() < 5
    assert _z((ours - ours.mean(0)) ** 2, (ref - ref.mean(0)) ** 2).abs().max() < 5


def test_functional_dropout_is_switchable_or_always_on_like_the_modules():
    with pytest.raises(ValueError, match="enable_dropout=True"):
        mc_predict(FunctionalNet(), _x(), samples=3)
    always = mc_predict(FunctionalNet(training_flag=True), _x(), samples=20, seed=1)
    assert always.std.max() > 0
    switched = mc_predict(FunctionalNet(training_flag=False), _x(), samples=20, seed=1, enable_dropout=True)
    assert torch.equal(always.probs, switched.probs)  # same call, same keyed masks


def test_wrapped_cnn_splits_the_backbone_off_and_matches_the_sequential_result():
    cnn = CNN(channels=(4,), dense=8, dropout=0.3, seed=0)
    wrapped = Wrapper(cnn)
    sampler = MaskSampler(0)
    layers = stochastic_layers(wrapped, True)
    x = torch.rand(5, 1, 28, 28)
    wrapped.eval()
    plan = make_plan(wrapped, layers, True, sampler, x[:2])
    assert isinstance(plan, GraphPlan)
    kinds = {
        part: {type(wrapped.get_submodule(n.target)).__name__ for n in gm.graph.nodes if n.op == "call_module"}
        for part, gm in (("prefix", plan.prefix), ("suffix", plan.suffix))
    }
    assert "Conv2d" in kinds["prefix"]
    assert "Conv2d" not in kinds["suffix"]
    assert "Dropout" in kinds["suffix"]
    a = mc_predict(cnn, x, samples=7, seed=3, enable_dropout=True)
    b = mc_predict(wrapped, x, samples=7, seed=3, enable_dropout=True)
    assert torch.allclose(a.probs, b.probs, atol=1e-6)


def test_untraceable_model_falls_back_with_one_info_line_and_same_result(caplog):
    mlp = MLP(input_shape=(6,), hidden=(16,), num_classes=3, dropout=0.3, seed=0)
    with caplog.at_level(logging.INFO, logger="lit_deep.uncertainty"):
        a = mc_predict(Untraceable(mlp), _x(), samples=10, seed=2, enable_dropout=True)
        mc_predict(Untraceable(mlp), _x(), samples=10, seed=2, enable_dropout=True)
    lines = [r.getMessage() for r in caplog.records if "runs whole" in r.getMessage()]
    assert len(lines) == 1
    assert "torch.fx could not trace it" in lines[0]
    b = mc_predict(mlp, _x(), samples=10, seed=2, enable_dropout=True)
    assert torch.allclose(a.probs, b.probs, atol=1e-6)


def test_batch_size_read_after_dropout_and_residuals_are_per_sample():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.a, self.b = nn.Linear(6, 6), nn.Linear(6, 3)
            self.drop = nn.Dropout(0.4)

        def forward(self, x):
            n = x.size(0)
            h = torch.relu(self.a(x))
            h = h + self.drop(h)  # h is read by the dropout and by the sum
            return self.b(h).reshape(n, -1)

    model = Residual().eval()
    plan = make_plan(model, stochastic_layers(model, True), True, MaskSampler(0), _x(n=2))
    assert isinstance(plan, GraphPlan)
    assert plan.broadcast == [False, False]  # x (for its size) and h, both repeated per sample
    fast = mc_predict(model, _x(), samples=9, seed=4, enable_dropout=True)
    whole = mc_predict(Untraceable(model), _x(), samples=9, seed=4, enable_dropout=True)
    assert torch.allclose(fast.probs, whole.probs, atol=1e-6)
    assert torch.allclose(fast.mutual_info, whole.mutual_info, atol=1e-6)


def test_functional_alpha_and_channel_dropout_and_modes_restored():
    class Conv(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv, self.bn, self.fc = nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.Linear(3 * 4 * 4, 2)

        def forward(self, x):
            h = F.dropout2d(self.bn(self.conv(x)), 0.5, self.training)
            return self.fc(F.alpha_dropout(h.flatten(1), 0.2, self.training))

    model = Conv().train()
    before = [m.training for m in model.modules()]
    pred = mc_predict(model, torch.rand(4, 1, 6, 6), samples=16, seed=0, enable_dropout=True, return_samples=True)
    assert pred.std.max() > 0
    assert [m.training for m in model.modules()] == before
    assert all("forward" not in vars(m) for m in model.modules())


def test_plan_without_stochastic_nodes_and_whole_plan_shapes():
    plan = make_plan(nn.Linear(3, 2), [], True, MaskSampler(0), torch.ones(2, 3))
    assert isinstance(plan, GraphPlan)
    assert plan.stochastic == 0
    with pytest.raises(ValueError, match="no stochastic dropout layer or call"):
        mc_predict(nn.Linear(6, 3), _x(), enable_dropout=True)
    whole = WholePlan(nn.Linear(3, 2), 0)
    assert whole.stochastic_suffix(whole.deterministic_prefix(torch.ones(4, 3)), 2).shape == (8, 2)


def test_deterministic_module_with_control_flow_is_kept_opaque_and_split_off():
    class Checked(nn.Module):
        def forward(self, x):
            if x.dim() == 2:  # an input check: torch.fx cannot trace through it
                x = x * 1.0
            return x

    inner = MLP(input_shape=(6,), hidden=(16,), num_classes=3, dropout=(0.0, 0.3), seed=0)
    model = nn.Sequential(Checked(), Wrapper(inner)).eval()
    plan = make_plan(model, stochastic_layers(model, True), True, MaskSampler(0), _x(n=2))
    assert isinstance(plan, GraphPlan)
    assert "0" in {n.target for n in plan.prefix.graph.nodes if n.op == "call_module"}
    fast = mc_predict(model, _x(), samples=8, seed=1, enable_dropout=True)
    whole = mc_predict(Untraceable(model), _x(), samples=8, seed=1, enable_dropout=True)
    assert torch.allclose(fast.probs, whole.probs, atol=1e-6)


def test_graph_plan_runs_its_deterministic_prefix_then_its_stochastic_suffix():
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Dropout(0.5), nn.Linear(3, 2)).eval()
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    plan = make_plan(net, [net[2]], True, MaskSampler(0), x)
    assert isinstance(plan, GraphPlan) and not hasattr(plan, "head") and not hasattr(plan, "tail")
    frontier = plan.deterministic_prefix(x)
    assert [tuple(v.shape) for v in frontier] == [(5, 3)]  # Linear and ReLU, once per image
    assert torch.equal(frontier[0], net[1](net[0](x)))
    assert plan.stochastic_suffix(frontier, 3).shape[-1] == 2  # from the frontier to the model's output
