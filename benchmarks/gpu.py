"""The GPU check: one command, under 5 minutes on one GPU, no network (shipped zoo copy, generated data).

Checks, each printed as ``ok`` / ``FAIL`` with its figures:

1. seeded ``mc_predict`` of ``mlp_mc.fmnist`` on CUDA equals the CPU result (same masks: counter-based, pure
   integer arithmetic), and its time against 100 plain eval passes on the GPU and against the CPU run;
2. a ``bf16-mixed`` fit with ``FreezeUnfreeze`` and ``TemperatureScaling`` under single-GPU DDP (NCCL, the backend
   that refuses CPU tensors), then MC test and MC predict;
3. metrics under autocast: probabilities and every ``MCPrediction`` field in float32.

Run: ``python benchmarks/gpu.py`` (exit 1 if a check fails; 2 if there is no CUDA device).
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from lit_deep import zoo
from lit_deep.uncertainty import mc_predict


def _timed(fn: Callable[[], object], repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def check_mc_predict(failures: list[str]) -> None:
    """Seeded MC on CUDA equals CPU; time against the eval floor and the CPU."""
    model = zoo.load("mlp_mc.fmnist")
    x = torch.rand(2000, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    cpu = mc_predict(model, x, samples=100, seed=0)
    cpu_s = time.perf_counter() - start
    gpu_model, gx = model.to("cuda"), x.to("cuda")
    gpu = mc_predict(gpu_model, gx, samples=100, seed=0)
    same = gpu.probs.device.type == "cuda" and torch.allclose(gpu.probs.cpu(), cpu.probs, atol=1e-5)
    mc_s = _timed(lambda: mc_predict(gpu_model, gx, samples=100, seed=0))

    def floor() -> None:
        with torch.no_grad():
            for _ in range(100):
                gpu_model(gx).softmax(-1)

    floor_s = _timed(floor)
    print(
        f"mc_predict CUDA vs CPU: {'ok' if same else 'FAIL'} (max |diff| "
        f"{(gpu.probs.cpu() - cpu.probs).abs().max():.2e}); CUDA {mc_s * 1e3:.1f} ms = {mc_s / floor_s:.2f}x the "
        f"eval floor ({floor_s * 1e3:.1f} ms), {cpu_s / mc_s:.1f}x faster than the CPU ({cpu_s * 1e3:.0f} ms)"
    )
    if not same:
        failures.append("mc_predict CUDA != CPU")
    # The chunk bound on the GPU (default 2**24 elements, a first choice): time a sweep, report the best.
    sweep = {
        e: _timed(lambda e=e: mc_predict(gpu_model, gx, samples=100, seed=0, max_elements=1 << e))
        for e in (20, 22, 24, 26)
    }
    best = min(sweep, key=sweep.__getitem__)
    times = ", ".join(f"2**{e} {t * 1e3:.1f} ms" for e, t in sweep.items())
    print(f"mc_predict max_elements sweep on CUDA: {times}; best 2**{best}")


def check_bf16_ddp_fit(failures: list[str]) -> None:
    """bf16-mixed fit with FreezeUnfreeze + TemperatureScaling on one GPU under DDP (NCCL), then MC test/predict."""
    import lightning.pytorch as pl

    from lit_deep import Classifier
    from lit_deep.callbacks import FreezeUnfreeze, TemperatureScaling
    from lit_deep.data import FashionMNISTDataModule, write_idx
    from lit_deep.models import MLP
    from lit_deep.uncertainty import MCPrediction

    folder = Path(tempfile.mkdtemp())
    g = torch.Generator().manual_seed(0)
    for split, n in (("train", 600), ("t10k", 200)):
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", torch.randint(0, 256, (n, 28, 28), generator=g).byte())
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", (torch.arange(n) % 10).byte())
    dm = FashionMNISTDataModule(str(folder), batch_size=64, val_size=100)
    clf = Classifier(MLP(hidden=(64,), dropout=0.2, seed=0), mc_samples=8, mc_seed=0)
    temperature = TemperatureScaling(verbose=False)
    trainer = pl.Trainer(
        accelerator="gpu",
        devices=1,
        strategy="ddp",
        precision="bf16-mixed",
        max_epochs=2,
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        default_root_dir=folder,
        callbacks=[FreezeUnfreeze(unfreeze_at_epoch=1), temperature],
    )
    trainer.fit(clf, dm)
    test = trainer.test(clf, dm, verbose=False)[0]
    [prediction] = trainer.predict(clf, dm)
    ok = (
        temperature.temperature is not None
        and isinstance(prediction, MCPrediction)
        and prediction.probs.dtype == torch.float32
        and 0 <= test["test_acc"] <= 1
    )
    print(
        f"bf16-mixed DDP (NCCL) fit + TemperatureScaling + MC test/predict: {'ok' if ok else 'FAIL'} "
        f"(T = {temperature.temperature}, test_acc {test['test_acc']:.3f})"
    )
    if not ok:
        failures.append("bf16 DDP fit")


def check_autocast_metrics(failures: list[str]) -> None:
    """Probabilities and MC fields are float32 under autocast."""
    model = zoo.load("mlp_mc.fmnist").to("cuda")
    x = torch.rand(64, 1, 28, 28, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        pred = mc_predict(model, x, samples=10, seed=0)
    dtypes = {name: getattr(pred, name).dtype for name in ("probs", "std", "entropy", "mutual_info")}
    ok = all(d == torch.float32 for d in dtypes.values()) and pred.probs.device.type == "cuda"
    print(f"MCPrediction under bf16 autocast: {'ok' if ok else 'FAIL'} {dtypes}")
    if not ok:
        failures.append("autocast dtypes")


def main() -> int:
    """Run every check; 0 when all pass."""
    if not torch.cuda.is_available():
        print("no CUDA device: nothing checked")
        return 2
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    failures: list[str] = []
    for check in (check_mc_predict, check_bf16_ddp_fit, check_autocast_metrics):
        try:
            check(failures)
        except Exception as err:  # noqa: BLE001 - report every check, then fail
            print(f"{check.__name__}: FAIL ({type(err).__name__}: {err})")
            failures.append(check.__name__)
    print("all GPU checks passed" if not failures else f"failed: {failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
