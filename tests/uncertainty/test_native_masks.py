"""The native CPU mask kernel (``_masks.c`` through ``_native``): the torch path's masks and roundings bit for bit,
end to end in ``mc_predict``, and every way it can be unavailable falls back, said once, to the same results."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from lit_deep.models import MLP
from lit_deep.uncertainty import _native, mc_predict
from lit_deep.uncertainty._masks import MaskSampler

#: The kernel needs a C compiler (every Linux CI image here has one); without one, the fallback tests still run.
needs_cc = pytest.mark.skipif(_native._compiler() is None, reason="no C compiler on this machine")


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """An empty cache directory and no loaded kernel; the kernel is loaded afresh after the test."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("LIT_DEEP_NATIVE", raising=False)
    _native._reset()
    yield tmp_path / "cache" / "lit_deep" / "native"
    _native._reset()


def _torch_path(monkeypatch: pytest.MonkeyPatch, run):  # noqa: ANN001, ANN202
    """``run()`` with the native kernel off (the torch ops), then back on."""
    monkeypatch.setenv("LIT_DEEP_NATIVE", "0")
    _native._reset()
    try:
        return run()
    finally:
        monkeypatch.delenv("LIT_DEEP_NATIVE")
        _native._reset()


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.int32 if t.dtype == torch.float32 else torch.int64)


def _dropout(x: torch.Tensor, p: float, alpha: bool, samples: int = 5, first: int = 0) -> torch.Tensor:
    sampler = MaskSampler(seed=7)
    sampler.begin_chunk(torch.arange(40, 40 + x.shape[1]))
    sampler.begin_samples(samples, first=first)
    return sampler.dropout(x, p, alpha=alpha)


@needs_cc
def test_the_kernel_is_built_and_loaded_once(fresh: Path) -> None:
    kernel = _native.native_masks()
    assert kernel is not None
    assert _native.native_masks() is kernel
    (library,) = fresh.glob("masks-*.so")
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700 and not list(fresh.glob("*.tmp"))
    _native._reset()
    assert _native.native_masks() is not None  # loaded from the cache, not rebuilt
    assert list(fresh.glob("masks-*.so")) == [library]


@needs_cc
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("alpha", [False, True])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("shape", [(1, 7, 13), (5, 7, 13), (1, 3, 1029), (5, 2, 3, 5, 5), (1, 2, 3, 1, 1)])
def test_native_dropout_is_the_torch_path_bit_for_bit(monkeypatch, dtype, alpha, p, shape) -> None:
    # Rows longer than the kernel's 256-word block (1029 units), unit counts not a multiple of 4, broadcast inputs
    # ([1, S, ...]) and per-sample ones, signed zeros and non-finite values (0 * inf is NaN on both paths).
    assert _native.native_masks() is not None
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0), dtype=dtype)
    x.view(-1)[:4] = torch.tensor([-0.0, float("inf"), float("-inf"), float("nan")], dtype=dtype)
    native = _dropout(x, p, alpha, first=3)
    reference = _torch_path(monkeypatch, lambda: _dropout(x, p, alpha, first=3))
    assert native.shape == reference.shape == (5, *shape[1:])
    assert torch.equal(_bits(native), _bits(reference))


def test_other_dtypes_and_devices_keep_the_torch_path() -> None:
    assert not _native.NativeMasks.supports(torch.ones(2, dtype=torch.bfloat16))
    assert not _native.NativeMasks.supports(torch.ones(2, dtype=torch.float16))
    assert not _native.NativeMasks.supports(torch.ones(2, device="meta"))
    x = torch.randn(1, 3, 8, dtype=torch.bfloat16)
    assert _dropout(x, 0.5, False).dtype == torch.bfloat16


def _selu_net() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.SELU(), nn.AlphaDropout(0.2), nn.Linear(16, 3)).eval()


@needs_cc
@pytest.mark.parametrize("net", ["mlp", "selu"])
def test_mc_predict_is_the_same_with_and_without_the_kernel(monkeypatch, net) -> None:
    model = MLP(input_shape=(12,), hidden=(16, 8), dropout=0.3, num_classes=3, seed=0) if net == "mlp" else _selu_net()
    x = torch.randn(37, 12, generator=torch.Generator().manual_seed(1))

    def run() -> torch.Tensor:
        out = mc_predict(model, x, samples=9, seed=3, enable_dropout=True, return_samples=True, max_elements=300)
        return out.samples

    assert torch.equal(run(), _torch_path(monkeypatch, run))


def test_switched_off_by_the_environment(fresh: Path, monkeypatch, caplog) -> None:
    monkeypatch.setenv("LIT_DEEP_NATIVE", "0")
    with caplog.at_level(logging.INFO, logger="lit_deep.uncertainty"):
        assert _native.native_masks() is None
        assert _native.native_masks() is None
    (line,) = [r.getMessage() for r in caplog.records if "native mask kernel" in r.getMessage()]
    assert "LIT_DEEP_NATIVE=0" in line and "same masks" in line
    assert not fresh.exists()


def test_no_compiler_falls_back_in_one_line(fresh: Path, monkeypatch, caplog) -> None:
    monkeypatch.setenv("CC", str(fresh.parent / "no-such-cc"))
    with caplog.at_level(logging.INFO, logger="lit_deep.uncertainty"):
        assert _native.native_masks() is None
    (line,) = [r.getMessage() for r in caplog.records if "native mask kernel" in r.getMessage()]
    assert "no-such-cc" in line, line
    x = torch.randn(1, 4, 9)
    assert _dropout(x, 0.5, False).shape == (5, 4, 9)  # the torch path


def test_a_failing_compiler_is_named_with_its_first_error_line(fresh: Path, monkeypatch, caplog, tmp_path) -> None:
    script = tmp_path / "bad-cc"
    script.write_text("#!/bin/sh\necho 'bad-cc: fatal error: nope' >&2\nexit 3\n")
    script.chmod(0o755)
    monkeypatch.setenv("CC", str(script))
    with caplog.at_level(logging.INFO, logger="lit_deep.uncertainty"):
        assert _native.native_masks() is None
    (line,) = [r.getMessage() for r in caplog.records if "native mask kernel" in r.getMessage()]
    assert "failed (exit 3): bad-cc: fatal error: nope" in line, line
    assert not list(fresh.glob("*"))  # no half-written file left behind


def test_a_cache_directory_others_can_write_to_is_refused(fresh: Path, caplog) -> None:
    fresh.mkdir(parents=True)
    fresh.chmod(0o777)
    with caplog.at_level(logging.INFO, logger="lit_deep.uncertainty"):
        assert _native.native_masks() is None
    assert any("writable by others" in r.getMessage() and str(fresh) in r.getMessage() for r in caplog.records)
    assert not list(fresh.glob("*.so"))


@needs_cc
def test_a_cached_library_others_can_write_to_is_not_loaded(fresh: Path, caplog) -> None:
    assert _native.native_masks() is not None
    (library,) = fresh.glob("masks-*.so")
    library.chmod(0o766)
    _native._reset()
    with caplog.at_level(logging.INFO, logger="lit_deep.uncertainty"):
        assert _native.native_masks() is None
    assert any("cached library" in r.getMessage() for r in caplog.records)


@needs_cc
def test_a_library_of_another_interface_is_refused(fresh: Path, tmp_path, caplog) -> None:
    # A stale library under the expected name (e.g. left by another version): loaded, asked its interface, refused.
    library = _native._target(_native._compiler(), _native._flags())
    fresh.mkdir(parents=True, mode=0o700)
    source = tmp_path / "old.c"
    source.write_text("int lit_deep_masks_abi(void) { return 999; }\n")
    subprocess.run([*_native._compiler(), "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    library.chmod(0o700)
    with caplog.at_level(logging.INFO, logger="lit_deep.uncertainty"):
        assert _native.native_masks() is None
    assert any("interface 999, expected" in r.getMessage() for r in caplog.records)


@needs_cc
def test_processes_building_at_once_all_load_the_kernel(fresh: Path) -> None:
    # DDP ranks start together: each compiles into a temporary file and renames it into place.
    code = "from lit_deep.uncertainty import _native; assert _native.native_masks() is not None"
    env = {**os.environ, "XDG_CACHE_HOME": str(fresh.parents[1])}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env) for _ in range(3)]
    assert [proc.wait(timeout=120) for proc in procs] == [0, 0, 0]
    assert len(list(fresh.glob("masks-*.so"))) == 1 and not list(fresh.glob("*.tmp"))


@needs_cc
@pytest.mark.parametrize(
    ("x_shape", "out_shape", "images"),
    [((0, 4), (6, 4), 3), ((3, 4), (6, 4), 0), ((3, 4), (7, 4), 3), ((4, 4), (6, 4), 3), ((3, 5), (6, 4), 3)],
)
def test_the_kernel_refuses_arguments_it_would_read_past(x_shape, out_shape, images) -> None:
    # The C code trusts its arguments; the wrapper refuses, in one line, what would make it divide by zero or
    # read or write out of bounds (never reached from mc_predict, whose shapes fit by construction).
    kernel = _native.native_masks()
    assert kernel is not None
    with pytest.raises(ValueError, match=r"^native masks: rows .* do not fit \d+ images and an input of"):
        kernel.dropout(0, torch.arange(images), 0, torch.ones(x_shape), torch.empty(out_shape), 0, 2.0)
