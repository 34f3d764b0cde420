"""Deep ensemble of the 300-100 MLP: five seeds trained alike, each alone against their ensemble.

Every member is the book's 300-100 ReLU MLP (Nadam 1e-3, batch 32) trained ``--epochs`` epochs on the 55,000
training images with its own seed (initial weights and data order); the weights go to ``--output``
(``seed<k>.safetensors``; a member whose file exists is not trained again). Then each member and
:class:`lit_deep.uncertainty.Ensemble` of all of them (mean of the members' probabilities) are evaluated on
the 10,000 test images: accuracy, NLL and ECE (15 bins), also after temperature scaling fitted on the 5,000
validation images. Writes ``recipes/results/ensemble.json`` and prints a markdown table that
``recipes/run_all.py`` puts into RESULTS.md.

Run: ``python recipes/ensemble_seeds.py --seeds 5 --epochs 10`` (``--train-only`` stops after training).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from lit_deep.models import MLP

HERE = Path(__file__).resolve().parent


def member(seed: int) -> MLP:
    """The 300-100 ReLU MLP of seed ``seed``."""
    return MLP(hidden=(300, 100), seed=seed)


def train(seed: int, epochs: int, output: Path) -> float:
    """Train member ``seed`` unless its weights exist; the fit's wall time in seconds (0 if skipped)."""
    import lightning.pytorch as pl
    from safetensors.torch import save_file

    from lit_deep import Classifier
    from lit_deep.data import FashionMNISTDataModule

    target = output / f"seed{seed}.safetensors"
    if target.exists():
        return 0.0
    pl.seed_everything(seed, verbose=False)
    model = member(seed)
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=epochs, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    started = time.perf_counter()
    trainer.fit(Classifier(model, optimizer="nadam", lr=1e-3), FashionMNISTDataModule(batch_size=32, seed=seed))
    output.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(target))
    return time.perf_counter() - started


def load(seed: int, output: Path) -> MLP:
    """Member ``seed`` with its trained weights."""
    from safetensors.torch import load_file

    model = member(seed)
    model.load_state_dict(load_file(str(output / f"seed{seed}.safetensors")))
    return model.eval()


def _split(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    from lit_deep.data import FashionMNISTDataModule

    dm = FashionMNISTDataModule(batch_size=1000)
    dm.setup("fit" if name == "val" else "test")
    loader = dm.val_dataloader() if name == "val" else dm.test_dataloader()
    xs, ys = zip(*loader, strict=True)
    return torch.cat(xs), torch.cat(ys)


def evaluate(seeds: int, output: Path) -> dict:
    """Test metrics of every member and of the ensemble, before and after temperature scaling."""
    from lit_deep.uncertainty import Ensemble, TemperatureScaled, calibration_report, fit_temperature

    (x_val, y_val), (x_test, y_test) = _split("val"), _split("test")
    members = [load(seed, output) for seed in range(seeds)]

    def report(model: torch.nn.Module) -> dict:
        with torch.no_grad():
            probs = model(x_test).softmax(-1) if not isinstance(model, Ensemble) else model.predict(x_test).probs
        return calibration_report(probs, y_test)

    singles = [report(m) for m in members]
    ensemble = Ensemble(members)
    result = {
        "seeds": seeds,
        "members": singles,
        "ensemble": calibration_report(ensemble.predict(x_test).probs, y_test),
        "members_scaled": [],
    }
    for m in members:
        temperature = fit_temperature(m, (x_val, y_val))
        result["members_scaled"].append({**report(TemperatureScaled(m, temperature)), "temperature": temperature})
    scaled = Ensemble(
        [TemperatureScaled(m, r["temperature"]) for m, r in zip(members, result["members_scaled"], strict=True)]
    )
    result["ensemble_scaled"] = calibration_report(scaled.predict(x_test).probs, y_test)
    return result


def _mean_std(rows: list[dict], key: str, scale: float = 1.0) -> str:
    values = [scale * r[key] for r in rows]
    digits = 2 if scale != 1.0 else 4
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def markdown(results: dict) -> str:
    """The RESULTS.md table: mean ± std of the single members against the ensemble, raw and scaled."""
    lines = [
        "| model | temperature scaling | test accuracy % | test NLL | test ECE |",
        "|---|---|---|---|---|",
    ]
    for label, singles, ens in (
        ("no", results["members"], results["ensemble"]),
        ("yes (fitted on val)", results["members_scaled"], results["ensemble_scaled"]),
    ):
        lines.append(
            f"| single model (mean ± std of {results['seeds']}) | {label} | {_mean_std(singles, 'accuracy', 100)} "
            f"| {_mean_std(singles, 'nll')} | {_mean_std(singles, 'ece')} |"
        )
        lines.append(
            f"| ensemble of {results['seeds']} | {label} | {100 * ens['accuracy']:.2f} | {ens['nll']:.4f} "
            f"| {ens['ece']:.4f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--output", type=Path, default=Path("runs/ensemble_seeds"))
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for seed in range(args.seeds):
        seconds = train(seed, args.epochs, args.output)
        print(f"seed {seed}: " + (f"trained in {seconds / 60:.1f} min" if seconds else "weights on disk"), flush=True)
    if args.train_only:
        return
    results = {**evaluate(args.seeds, args.output), "epochs": args.epochs}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "ensemble.json").write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))


if __name__ == "__main__":
    main()
