"""Shared fixtures: tiny generated Fashion-MNIST files and the real-data skip."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from lit_deep.data import write_idx

REAL_DIR = Path("/usr/share/datasets/fashion-mnist")
FILE_NAMES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


#: Recipes in the tests name the tests' own helper classes (callbacks that kill a run, probes): allowed to import.
os.environ.setdefault("LIT_DEEP_ALLOW_IMPORTS", "tests")


def real_data_available() -> bool:
    """Whether the real Fashion-MNIST files are installed (Debian package ``dataset-fashion-mnist``)."""
    return all((REAL_DIR / name).is_file() for names in FILE_NAMES.values() for name in names)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip tests marked ``realdata`` where the real files are not installed, ``cuda`` where there is no GPU."""
    if item.get_closest_marker("realdata") is not None and not real_data_available():
        pytest.skip(f"the real Fashion-MNIST is not installed in {REAL_DIR}")
    if item.get_closest_marker("cuda") is not None and not torch.cuda.is_available():
        pytest.skip("no CUDA device")


#: Every device a device-generic test runs on: the CPU always, CUDA where there is one (marked ``cuda``).
DEVICES = [pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=pytest.mark.cuda)]


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> torch.device:
    """A device-generic test's device (``cuda`` skipped without a GPU)."""
    return torch.device(request.param)


@dataclass
class FakeFMNIST:
    """Tiny Fashion-MNIST files written with ``write_idx`` and the tensors they hold."""

    path: Path
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor

    def labels(self, split: str) -> torch.Tensor:
        return self.train_labels if split == "train" else self.test_labels

    def images(self, split: str) -> torch.Tensor:
        return self.train_images if split == "train" else self.test_images


def write_fake_fmnist(folder: Path, n_train: int = 60, n_test: int = 20, seed: int = 0) -> FakeFMNIST:
    """Write the four standard files: random uint8 images, labels cycling 0..9 (train and test differ)."""
    gen = torch.Generator().manual_seed(seed)
    train_images = torch.randint(0, 256, (n_train, 28, 28), generator=gen, dtype=torch.uint8)
    test_images = torch.randint(0, 256, (n_test, 28, 28), generator=gen, dtype=torch.uint8)
    train_labels = torch.arange(n_train) % 10
    test_labels = (torch.arange(n_test) + 3) % 10
    tensors = {
        "train": (train_images, train_labels.to(torch.uint8)),
        "test": (test_images, test_labels.to(torch.uint8)),
    }
    for split, (images, labels) in tensors.items():
        write_idx(folder / FILE_NAMES[split][0], images)
        write_idx(folder / FILE_NAMES[split][1], labels)
    return FakeFMNIST(folder, train_images, train_labels, test_images, test_labels)


@pytest.fixture
def make_fmnist(tmp_path: Path) -> Callable[..., FakeFMNIST]:
    """A factory: ``make_fmnist(n_train=60, n_test=20, seed=0, name="fmnist")`` writes tiny files in tmp_path."""

    def make(n_train: int = 60, n_test: int = 20, seed: int = 0, name: str = "fmnist") -> FakeFMNIST:
        return write_fake_fmnist(tmp_path / name, n_train, n_test, seed)

    return make


@pytest.fixture
def tiny_fmnist(make_fmnist: Callable[..., FakeFMNIST]) -> FakeFMNIST:
    """60 training and 20 test images with labels cycling 0..9."""
    return make_fmnist()


def run_ddp_script(folder: Path, source: str, *args: str, timeout: int = 300) -> None:
    """Write ``source`` (dedented) to ``folder/ddp_script.py`` and run it with ``args``; fail with its stderr's tail.

    The multi-process tests start Lightning's DDP from a script of their own: a pytest process cannot fork ranks.
    """
    script = folder / "ddp_script.py"
    script.write_text(textwrap.dedent(source))
    result = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
