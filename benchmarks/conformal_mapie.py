"""MAPIE's split conformal sets on saved probabilities (run by benchmarks/conformal.py inside a MAPIE venv).

Reads ``probs.npy``, ``labels.npy`` and ``splits.npy`` (calibration index arrays) from the folder given, prints
one JSON line: per score, MAPIE's mean coverage and set size over the splits. Not a lit_deep dependency.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from mapie.classification import SplitConformalClassifier
from sklearn.base import BaseEstimator, ClassifierMixin


class Given(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """A "classifier" whose inputs are already the probabilities."""

    def fit(self, x: np.ndarray, y: np.ndarray) -> Given:
        self.classes_ = np.arange(x.shape[1])
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return x

    def predict(self, x: np.ndarray) -> np.ndarray:
        return x.argmax(1)


def main() -> None:
    folder = Path(sys.argv[1])
    probs, labels, cal_masks = (np.load(folder / f"{n}.npy") for n in ("probs", "labels", "splits"))
    probs = probs.astype(np.float64)
    out = {}
    for score in ("lac", "aps", "raps"):
        cov, size = [], []
        for split, mask in enumerate(cal_masks):
            est = Given().fit(probs, labels)
            kwargs = {"conformity_score": score, "prefit": True, "confidence_level": 0.9, "random_state": split}
            mapie = SplitConformalClassifier(est, **kwargs)
            # Randomized APS/RAPS as lit_deep's default. MAPIE's RAPS holds out part of the conformalization set
            # to pick its own lambda and k_reg, so its RAPS row is not the same parameters as lit_deep's.
            params = {"include_last_label": "randomized"} if score != "lac" else None
            mapie.conformalize(probs[mask], labels[mask])
            _, sets = mapie.predict_set(probs[~mask], conformity_score_params=params)
            sets = sets[:, :, 0]
            cov.append(float(sets[np.arange(sets.shape[0]), labels[~mask]].mean()))
            size.append(float(sets.sum(1).mean()))
        out[score] = {"coverage": float(np.mean(cov)), "size": float(np.mean(size))}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
