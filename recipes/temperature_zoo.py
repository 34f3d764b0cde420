"""Temperature scaling of the zoo's classifiers: ``T`` fitted on the validation split, test ECE/NLL before and after.

For each model (``mlp.fmnist``, ``cnn.fmnist``; loaded with ``lit_deep.zoo.load`` from the shipped copy), the
logits of the 5,000 validation images (the first 5,000 training images, never trained on) give ``T``
(:func:`lit_deep.uncertainty.fit_temperature`); the 10,000 test images are scored before and after with
accuracy, NLL, ECE (15 equal-width bins), adaptive ECE (15 equal-mass bins) and AURC. Writes
``recipes/results/temperature.json`` and prints the markdown table that ``recipes/run_all.py`` puts into
RESULTS.md. Run: ``HF_HUB_OFFLINE=1 python recipes/temperature_zoo.py`` (about a minute).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
MODELS = ("mlp.fmnist", "cnn.fmnist", "resnet.fmnist")


def evaluate(name: str) -> dict:
    """Temperature and test metrics before/after for one zoo model."""
    from lit_deep import zoo
    from lit_deep.data import FashionMNISTDataModule
    from lit_deep.uncertainty import (
        TemperatureScaled,
        adaptive_calibration_error,
        aurc,
        calibration_report,
        deterministic_probs,
        fit_temperature,
    )

    model = zoo.load(name, calibrated=False).eval()  # the raw logits: the zoo folds in the fitted temperature
    dm = FashionMNISTDataModule(batch_size=1000)
    dm.setup("fit")
    assert dm.val_set is not None
    assert dm.test_set is not None
    temperature = fit_temperature(model, (dm.val_set.inputs, dm.val_set.targets))
    x, y = dm.test_set.inputs, dm.test_set.targets
    rows = {}
    for label, net in (("before", model), ("after", TemperatureScaled(model, temperature))):
        probs = deterministic_probs(net, x)
        rows[label] = {**calibration_report(probs, y), "adaptive_ece": adaptive_calibration_error(probs, y)}
        rows[label]["aurc"] = aurc(probs, y)
    return {"temperature": temperature, **rows}


def markdown(results: dict) -> str:
    """The RESULTS.md table."""
    lines = [
        "| model | T (fitted on val) | | test acc % | test NLL | test ECE | adaptive ECE | AURC |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        for label in ("before", "after"):
            m = r[label]
            lines.append(
                f"| `{name}` | {r['temperature']:.4f} | {label} | {100 * m['accuracy']:.2f} | {m['nll']:.4f} "
                f"| {m['ece']:.4f} | {m['adaptive_ece']:.4f} | {m['aurc']:.4f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {name: evaluate(name) for name in MODELS}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "temperature.json").write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))


if __name__ == "__main__":
    main()
