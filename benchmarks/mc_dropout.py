"""MC dropout on the 10,000 real test images with T=100: lit_deep's ``mc_predict`` against the naive loop, plain
eval passes, torch-uncertainty and Baal, on MLPs, on the zoo CNN behind a wrapper, and on a functional-dropout model.

Sections (one run, ``--repeats`` interleaved repeats, medians):

1. **MLPs** (a) dropout 0.2 before every Linear layer (input included); (b) 300-100 with dropout 0.2 only before
   the output layer. Ways: ``naive`` (T train-mode passes, torch's dropout), ``mc_predict``, ``eval`` (T plain
   eval passes: the floor), ``torch-uncertainty`` (its ``mc_dropout`` wrapper, ``on_batch=False``: T passes) and
   ``baal`` (``MCDropoutModule``, T passes). Section ``m``: peak memory above the start of each way on (a), each in
   a fresh process whose resident size is sampled every 2 ms.
2. **Sweep** of ``max_elements`` on (a), which chose :data:`lit_deep.uncertainty.predict.DEFAULT_MAX_ELEMENTS`.
3. **cnn.fmnist** (``lit_deep.zoo.load``, offline copy) called through a wrapper whose ``forward`` is not
   ``nn.Sequential``'s: ``naive`` (T passes, dropout on, BatchNorm in eval; timed on ``--naive-passes`` passes and
   scaled to T, each pass costs the same), ``mc_predict`` (the torch.fx split), ``hand-split`` (backbone up to the
   first dropout once, the rest T times with torch's dropout: the limit of the split).
4. **F.dropout** in a user model's ``forward`` (300-100 MLP, functional dropout before the output layer):
   ``naive`` vs ``mc_predict``.

Peers are imported only if installed (a benchmark venv: ``/work/benchenv-13``); torch-uncertainty's package
``__init__`` imports torchvision, whose PyPI wheel does not load against the CPU torch build, so its
``methods/mc_dropout.py`` (imports torch and einops only) is loaded from its file.
Run: ``python benchmarks/mc_dropout.py --threads 2``.
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing as mp
import os
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lit_deep.data import load_fashion_mnist
from lit_deep.models import MLP
from lit_deep.uncertainty import mc_predict
from lit_deep.uncertainty.predict import DEFAULT_MAX_ELEMENTS

MLPS: dict[str, Callable[[], nn.Module]] = {
    "(a) dropout 0.2 before every layer": lambda: MLP(hidden=(300, 100), dropout=0.2, seed=0),
    "(b) dropout 0.2 before the output only": lambda: MLP(hidden=(300, 100), dropout=(0.0, 0.0, 0.2), seed=0),
}


def _set_dropout(model: nn.Module, on: bool) -> None:
    model.eval()
    for m in model.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.train(on)


def passes(model: nn.Module, x: torch.Tensor, samples: int, dropout: bool, chunk: int = 10_000) -> torch.Tensor:
    """T passes (dropout on or off, everything else in eval mode), mean softmax."""
    _set_dropout(model, dropout)
    total = 0
    with torch.no_grad():
        for _ in range(samples):
            total = total + torch.cat([model(x[i : i + chunk]).softmax(-1) for i in range(0, len(x), chunk)])
    model.eval()
    return total / samples


def train_mode_passes(model: nn.Module, x: torch.Tensor, samples: int) -> torch.Tensor:
    """T passes in train mode (for functional dropout, which follows ``self.training``), mean softmax."""
    model.train()
    with torch.no_grad():
        out = torch.stack([model(x).softmax(-1) for _ in range(samples)]).mean(0)
    model.eval()
    return out


def torch_uncertainty(model: nn.Module, x: torch.Tensor, samples: int) -> torch.Tensor | None:
    path = importlib.util.find_spec("torch_uncertainty")
    if path is None or path.submodule_search_locations is None:
        return None
    file = os.path.join(next(iter(path.submodule_search_locations)), "methods", "mc_dropout.py")
    spec = importlib.util.spec_from_file_location("tu_mc_dropout", file)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    wrapped = module.mc_dropout(model, num_estimators=samples, on_batch=False).eval()
    with torch.no_grad():
        out = wrapped(x).softmax(-1).view(samples, len(x), -1).mean(0)
    model.eval()
    return out


def baal(model: nn.Module, x: torch.Tensor, samples: int) -> torch.Tensor | None:
    try:
        from baal.bayesian.dropout import MCDropoutModule
    except ImportError:
        return None
    wrapped = MCDropoutModule(model).eval()
    with torch.no_grad():
        out = torch.stack([wrapped(x).softmax(-1) for _ in range(samples)]).mean(0)
    wrapped.unpatch()
    return out


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _child(way: str, samples: int, images: int, threads: int, queue: Any) -> None:
    torch.set_num_threads(threads)
    x = load_fashion_mnist("test")[0][:images].unsqueeze(1).float() / 255.0
    model = MLPS["(a) dropout 0.2 before every layer"]()
    fn = _mlp_ways(model, x, samples)[way]
    start, peak, done = _rss(), [0], threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.002)

    watcher = threading.Thread(target=watch)
    watcher.start()
    out = fn()
    done.set()
    watcher.join()
    queue.put(None if out is None else (max(peak[0], _rss()) - start) / 2**20)


def peak_mib(way: str, samples: int, images: int, threads: int) -> float | None:
    """Peak resident memory (MiB) above the start of one way on MLP (a), in a fresh process (RSS sampled)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(way, samples, images, threads, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def _mlp_ways(model: nn.Module, x: torch.Tensor, t: int) -> dict[str, Callable[[], object]]:
    return {
        "eval": lambda: passes(model, x, t, dropout=False),
        "mc_predict": lambda: mc_predict(model, x, t, seed=0, enable_dropout=True),
        "naive": lambda: passes(model, x, t, dropout=True),
        "torch-uncertainty": lambda: torch_uncertainty(model, x, t),
        "baal": lambda: baal(model, x, t),
    }


def compare(ways: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per way, repeats interleaved; ways returning None (peer not installed) are dropped."""
    runs: dict[str, list[float]] = {k: [] for k in ways}
    for _ in range(repeats):
        for key, fn in ways.items():
            start = time.perf_counter()
            if fn() is None:
                runs[key] = []
                continue
            runs[key].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in runs.items() if v}


def _row(med: dict[str, float], base: str) -> str:
    return "  ".join(f"{k} {v:6.2f} s ({v / med[base]:.2f}x)" for k, v in med.items())


class Wrapper(nn.Module):
    """A forward that is not nn.Sequential's."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


class FunctionalMLP(nn.Module):
    """300-100 MLP with ``F.dropout(h, 0.2, self.training)`` before the output layer."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.l1, self.l2, self.out = nn.Linear(784, 300), nn.Linear(300, 100), nn.Linear(100, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.l2(torch.relu(self.l1(x.flatten(1)))))
        return self.out(F.dropout(h, 0.2, self.training))


def hand_split(model: nn.Module, x: torch.Tensor, samples: int, cut: int, chunk: int = 500) -> torch.Tensor:
    """The zoo CNN split by hand: ``backbone[:cut]`` once, the rest T times (torch's dropout)."""
    backbone, head = model.backbone, model.head
    front, rest = backbone[:cut], nn.Sequential(*backbone[cut:], head)
    model.eval()
    _set_dropout(rest, True)
    out = []
    with torch.no_grad():
        for i in range(0, len(x), chunk):
            h = front(x[i : i + chunk])
            rows = h.unsqueeze(0).expand(samples, *h.shape).reshape(samples * h.shape[0], *h.shape[1:])
            out.append(rest(rows).softmax(-1).view(samples, h.shape[0], -1).mean(0))
    model.eval()
    return torch.cat(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sweep", default="18,20,22,24", help="log2 of the max_elements values to sweep")
    parser.add_argument("--naive-passes", type=int, default=10, help="CNN naive loop: passes timed, scaled to T")
    parser.add_argument("--sections", default="1m234", help="1 MLPs, m memory, 2 sweep, 3 CNN, 4 F.dropout")
    parser.add_argument("--images", type=int, default=10_000, help="test images used")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images, _ = load_fashion_mnist("test")
    x = images[: args.images].unsqueeze(1).float() / 255.0
    t = args.samples
    print(f"{x.shape[0]} test images, T={t}, {torch.get_num_threads()} threads, repeats={args.repeats} (median)")
    print(f"mc_predict max_elements = 2**{DEFAULT_MAX_ELEMENTS.bit_length() - 1} (the default)")
    if "1" in args.sections:
        for name, build in MLPS.items():
            ways = _mlp_ways(build(), x, t)
            med = compare(ways, args.repeats)
            print(f"\n{name}\n  " + _row(med, "mc_predict"))
            print(f"  mc_predict / eval = {med['mc_predict'] / med['eval']:.2f}x, naive / mc_predict = "
                  f"{med['naive'] / med['mc_predict']:.2f}x")  # fmt: skip
    if "m" in args.sections:
        mem = {k: peak_mib(k, t, len(x), args.threads) for k in _mlp_ways(nn.Identity(), x, t)}
        print("\n(a) peak MiB above the start (fresh process each, RSS sampled every 2 ms): "
              + "  ".join(f"{k} {v:.0f}" for k, v in mem.items() if v is not None))  # fmt: skip
    if "2" in args.sections:
        model = MLPS["(a) dropout 0.2 before every layer"]()
        sweep = {
            f"2**{e}": (lambda e=e: mc_predict(model, x, t, seed=0, enable_dropout=True, max_elements=2**e))
            for e in map(int, args.sweep.split(","))
        }
        print("\nmax_elements sweep on (a): " + "  ".join(f"{k} {v:.2f} s" for k, v in compare(sweep, 1).items()))
    if "3" in args.sections:
        from lit_deep import zoo

        cnn = zoo.load("cnn.fmnist").eval()
        cut = next(i for i, m in enumerate(cnn.backbone) if isinstance(m, nn.Dropout))
        wrapped = Wrapper(cnn)
        n = args.naive_passes
        ways = {
            "mc_predict": lambda: mc_predict(wrapped, x, t, seed=0, enable_dropout=True),
            "hand-split": lambda: hand_split(cnn, x, t, cut),
            f"naive ({n} passes)": lambda: passes(wrapped, x, n, dropout=True, chunk=1000),
        }
        med = compare(ways, args.repeats)
        naive = med.pop(f"naive ({n} passes)") * t / n
        print(f"\ncnn.fmnist through a wrapper (dropout from backbone[{cut}] on)\n  " + _row(med, "hand-split"))
        print(f"  naive (scaled to T) {naive:.2f} s: naive / mc_predict = {naive / med['mc_predict']:.2f}x, "
              f"mc_predict / hand-split = {med['mc_predict'] / med['hand-split']:.2f}x")  # fmt: skip
    if "4" in args.sections:
        model = FunctionalMLP()
        ways = {
            "mc_predict": lambda: mc_predict(model, x, t, seed=0, enable_dropout=True),
            "naive": lambda: train_mode_passes(model, x, t),
            "eval": lambda: passes(model, x, t, dropout=False),
        }
        med = compare(ways, args.repeats)
        print("\nF.dropout before the output layer (user model)\n  " + _row(med, "mc_predict"))
        print(f"  naive / mc_predict = {med['naive'] / med['mc_predict']:.2f}x")


if __name__ == "__main__":
    main()
