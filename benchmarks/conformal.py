"""Conformal prediction sets of the zoo classifiers: coverage and mean set size at alpha = 0.1 (LAC, APS, RAPS).

Each zoo classifier (the shipped copies, offline) predicts its task's real Fashion-MNIST test split (MC-dropout
models: the mean of ``--mc-samples`` passes); the split is cut ``--splits`` times at random into calibration and
test halves, and the table gives the mean test coverage (target ``>= 1 - alpha``, at most about
``1 - alpha + 1/(n+1)``) and mean set size of randomized LAC / APS / RAPS (``lam=0.1, k_reg=1``), plus the
deterministic APS. With ``--mapie PYTHON`` (a Python with MAPIE installed, e.g. a venv under /tmp: MAPIE is
not a dependency), MAPIE's sets on the same probabilities and splits are printed beside them
(benchmarks/conformal_mapie.py). Run: ``python benchmarks/conformal.py [--mapie /tmp/mapie-venv/bin/python]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

from lit_deep import zoo
from lit_deep.uncertainty import conformal_calibrate, deterministic_probs, mc_predict, prediction_sets, set_coverage
from lit_deep.uncertainty.conformal import mean_set_size
from lit_deep.zoo.registry import REGISTRY
from lit_deep.zoo.release.evaluate import load_test_split

VARIANTS = {
    "lac": {"method": "lac"},
    "aps": {"method": "aps"},
    "raps": {"method": "raps", "lam": 0.1, "k_reg": 1},
    "aps-det": {"method": "aps", "randomized": False},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alpha", type=float, default=0.1)
    parser.add_argument("--splits", type=int, default=20)
    parser.add_argument("--mc-samples", type=int, default=30)
    parser.add_argument("--mapie", type=str, default=None, help="a Python interpreter with MAPIE installed")
    args = parser.parse_args()
    names = [name for name, entry in REGISTRY.items() if entry.kind == "classifier"]
    header = f"{'model':<20}{'acc':>7}" + "".join(f"{v + ' cov':>12}{'size':>7}" for v in VARIANTS)
    rows, mapie_rows = [header], []
    for name in names:
        entry = REGISTRY[name]
        model = zoo.load(name)
        images, labels = load_test_split(entry.task)
        if entry.mc_samples:
            probs = mc_predict(model, images, args.mc_samples, seed=0, enable_dropout=True).probs
        else:
            probs = deterministic_probs(model, images)
        n = labels.numel()
        g = torch.Generator().manual_seed(0)
        masks = []
        results: dict[str, tuple[list[float], list[float]]] = {v: ([], []) for v in VARIANTS}
        for split in range(args.splits):
            perm = torch.randperm(n, generator=g)
            mask = torch.zeros(n, dtype=torch.bool)
            mask[perm[: n // 2]] = True
            masks.append(mask.numpy())
            for variant, kwargs in VARIANTS.items():
                calibrated = conformal_calibrate(probs[mask], labels[mask], args.alpha, seed=split, **kwargs)  # type: ignore[arg-type]
                sets = prediction_sets(probs[~mask], calibrated, seed=1000 + split)
                results[variant][0].append(set_coverage(sets, labels[~mask]))
                results[variant][1].append(mean_set_size(sets))
        acc = float((probs.argmax(1) == labels).double().mean())
        cells = "".join(f"{np.mean(c):>12.4f}{np.mean(s):>7.3f}" for c, s in results.values())
        rows.append(f"{name:<20}{acc:>7.4f}{cells}")
        if args.mapie:
            with tempfile.TemporaryDirectory() as folder:
                np.save(Path(folder) / "probs.npy", probs.double().numpy())
                np.save(Path(folder) / "labels.npy", labels.numpy())
                np.save(Path(folder) / "splits.npy", np.stack(masks))
                script = Path(__file__).with_name("conformal_mapie.py")
                done = subprocess.run([args.mapie, str(script), folder], capture_output=True, text=True, check=True)
            mapie = json.loads(done.stdout.strip().splitlines()[-1])
            cells = "".join(f"{mapie[v]['coverage']:>12.4f}{mapie[v]['size']:>7.3f}" for v in ("lac", "aps", "raps"))
            mapie_rows.append(f"{name:<20}{'':>7}{cells}")
    n_cal = "n = half the test split"
    print(f"alpha = {args.alpha}, {args.splits} random calibration/test halves ({n_cal}); mean coverage and set size")
    print("\n".join(rows))
    if args.mapie:
        print("MAPIE 1.x (SplitConformalClassifier, randomized APS/RAPS; its RAPS tunes its own lam and k_reg)")
        print(f"{'model':<20}{'':>7}" + "".join(f"{v + ' cov':>12}{'size':>7}" for v in ("lac", "aps", "raps")))
        print("\n".join(mapie_rows))


if __name__ == "__main__":
    main()
