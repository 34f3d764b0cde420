"""Sparsity, int8 quantisation and latency: none changes the model it is given, nor the caller's warnings."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from lit_deep.nn import measure_latency, quantize_dynamic_int8, sparsity


def test_measure_latency_leaves_the_model_in_its_mode() -> None:
    net = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.Sequential(nn.BatchNorm1d(4)))
    net[2].eval()  # mixed modes come back as they were
    modes = [m.training for m in net.modules()]
    assert modes == [True, True, True, False, False]
    assert measure_latency(net, torch.zeros(3, 4), repeats=2) > 0
    assert [m.training for m in net.modules()] == modes


def test_measure_latency_checks_repeats() -> None:
    with pytest.raises(ValueError, match="repeats: must be an integer >= 1, got 0"):
        measure_latency(nn.Linear(2, 2), torch.zeros(1, 2), repeats=0)


def test_quantize_silences_only_its_own_notices(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch.ao.quantization as quantization

    real = quantization.quantize_dynamic

    def noisy(*args: object, **kwargs: object) -> nn.Module:
        warnings.warn("torch.ao.quantization is deprecated and will be removed", DeprecationWarning, stacklevel=1)
        warnings.warn("something else went wrong", UserWarning, stacklevel=1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(quantization, "quantize_dynamic", noisy)
    net = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quantized = quantize_dynamic_int8(net)
    assert [str(w.message) for w in caught] == ["something else went wrong"]
    assert net.training and sparsity(net) == 0.0
    assert quantized(torch.zeros(1, 8)).shape == (1, 2)


def test_measure_latency_synchronizes_a_cuda_device_around_each_timed_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    # CUDA kernels run asynchronously: the clock is read after torch.cuda.synchronize on the input's device, before
    # and after each timed pass; on the CPU nothing is synchronised.
    from lit_deep.nn import compression

    synced: list[object] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: synced.append(device))

    class _CudaInput:
        is_cuda = True
        device = torch.device("cuda", 1)

    compression._synchronize(_CudaInput())  # type: ignore[arg-type]
    compression._synchronize(torch.ones(1))
    assert synced == [torch.device("cuda", 1)]

    events: list[str] = []
    monkeypatch.setattr(compression, "_synchronize", lambda x: events.append("sync"))
    net = nn.Sequential(nn.Linear(4, 2))
    net.register_forward_hook(lambda *_: events.append("pass"))
    measure_latency(net, torch.zeros(3, 4), repeats=3)
    assert events == ["pass", "pass"] + ["sync", "pass", "sync"] * 3  # two warm-up passes, then timed ones
