"""OOD recipe: train an MLP with dropout on task A, score the never-seen sandals and shirts as out-of-distribution.

Trains the book's 300-100 MLP with dropout 0.2 before every layer on task A (eight classes: every class but
sandal and shirt; Nadam, batch 32, ``--epochs`` epochs), then compares how well uncertainty scores separate
task A's 8,000 test images (in-distribution) from the 2,000 sandal and shirt test images (OOD), as AUROC:
the maximum softmax probability of one deterministic pass (the baseline) against MC-dropout scores (T
samples, ordinary dropout switched on at inference): max softmax, predictive entropy, mutual information,
variation ratio. Also prints accuracy/NLL/Brier/ECE (15 bins) on task A and saves a reliability diagram and
the uncertainty histograms as PNG in ``--out``. Run: ``python benchmarks/ood.py`` (a couple of minutes).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import lightning.pytorch as pl

from lit_deep import Classifier
from lit_deep.data import FashionMNISTDataModule
from lit_deep.models import MLP
from lit_deep.uncertainty import (
    calibration_report,
    deterministic_probs,
    mc_predict,
    reliability_diagram,
    uncertainty_histogram,
    uncertainty_score,
)
from lit_deep.uncertainty.ood import ood_aurocs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/ood"))
    args = parser.parse_args()
    pl.seed_everything(args.seed, verbose=False)
    task_a, task_b = FashionMNISTDataModule(task="A", batch_size=32), FashionMNISTDataModule(task="B")
    task_a.setup()
    task_b.setup()
    assert task_a.test_set is not None
    assert task_b.test_set is not None
    model = MLP(hidden=(300, 100), num_classes=8, dropout=0.2, seed=args.seed)
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=args.epochs, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    start = time.perf_counter()
    trainer.fit(Classifier(model, optimizer="nadam", lr=1e-3), task_a)
    print(f"trained {args.epochs} epochs on task A in {time.perf_counter() - start:.0f} s")
    x_in, y_in, x_out = task_a.test_set.inputs, task_a.test_set.targets, task_b.test_set.inputs
    det_in, det_out = deterministic_probs(model, x_in), deterministic_probs(model, x_out)
    start = time.perf_counter()
    mc_in = mc_predict(model, x_in, args.samples, seed=args.seed, enable_dropout=True)
    mc_out = mc_predict(model, x_out, args.samples, seed=args.seed + 1, enable_dropout=True)
    print(f"mc_predict on {len(x_in) + len(x_out)} images, T={args.samples}: {time.perf_counter() - start:.1f} s")
    for name, report in (("deterministic", calibration_report(det_in, y_in)), ("MC", calibration_report(mc_in, y_in))):
        print(f"task A test, {name:13s}: " + "  ".join(f"{k} {v:.4f}" for k, v in report.items()))
    print(f"OOD AUROC ({len(x_in)} task-A test images vs {len(x_out)} sandals and shirts):")
    for name, value in ood_aurocs(det_in, det_out, mc_in, mc_out).items():
        print(f"  {name:28s} {value:.4f}")
    args.out.mkdir(parents=True, exist_ok=True)
    reliability_diagram(mc_in, y_in, args.out / "reliability_mc.png", title="Task A, MC dropout")
    reliability_diagram(det_in, y_in, args.out / "reliability_deterministic.png", title="Task A, deterministic")
    for score in ("entropy", "mutual_info"):
        scores_in, scores_out = uncertainty_score(mc_in, score), uncertainty_score(mc_out, score)
        uncertainty_histogram(scores_in, scores_out, args.out / f"hist_{score}.png", label=f"MC {score} (nats)")
    print(f"plots in {args.out}/")


if __name__ == "__main__":
    main()
