"""Transfer learning, honestly: B-on-A against B from scratch over many seeds, for two task-B splits.

For each split and seed, ``lit_deep.experiments.run_transfer`` trains the model that reuses the zoo's model A
(frozen, then unfrozen at a lower rate; 1cycle; max-norm) and the same architecture from scratch, on the same
images, and evaluates both on the split's test images. Writes ``recipes/results/transfer.json`` and prints a
markdown table (mean +- std over seeds) that ``recipes/run_all.py`` puts into RESULTS.md.

Run: ``python recipes/transfer_seeds.py --seeds 10``; ``--source resnet.fmnist --splits 0`` reuses another zoo
model's backbone (written to ``recipes/results/transfer_<source>.json``).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from lit_deep import zoo
from lit_deep.data import CLASS_NAMES
from lit_deep.experiments.transfer import TransferConfig, run_transfer, summarize

HERE = Path(__file__).resolve().parent
#: (negative class, positive class, training images): the 2nd edition's split and the 3rd edition's.
SPLITS = ((5, 6, 200), (0, 2, 20))


def markdown(results: dict) -> str:
    lines = [
        "| task B | train images | model | accuracy % (det) | accuracy % (MC) | NLL (MC) | ECE (MC) | seeds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for split in results["splits"]:
        label = f"{split['names'][0]} vs {split['names'][1]}"
        for model, values in split["summary"].items():
            det, mc = values["det_accuracy"], values["mc_accuracy"]
            lines.append(
                f"| {label} | {split['train_size']} | {'B-on-A' if model == 'transfer' else 'scratch'} "
                f"| {100 * det[0]:.2f} ± {100 * det[1]:.2f} | {100 * mc[0]:.2f} ± {100 * mc[1]:.2f} "
                f"| {values['mc_nll'][0]:.4f} ± {values['mc_nll'][1]:.4f} "
                f"| {values['mc_ece'][0]:.4f} ± {values['mc_ece'][1]:.4f} | {split['seeds']} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--output", type=Path, default=Path("runs/transfer_seeds"))
    parser.add_argument("--source", default=TransferConfig().source_model, help="the zoo model reused")
    parser.add_argument("--splits", type=int, nargs="*", default=list(range(len(SPLITS))), help="indices of SPLITS")
    args = parser.parse_args()
    source = zoo.load(args.source)
    results: dict = {"source": args.source, "splits": []}
    for negative, positive, size in (SPLITS[i] for i in args.splits):
        config = replace(TransferConfig(), source_model=args.source, b_classes=(negative, positive), b_train_size=size)
        started = time.perf_counter()
        folder = args.output / args.source / f"{negative}_{positive}_{size}"
        runs = [run_transfer(source, config, seed, folder, progress=False) for seed in range(args.seeds)]
        results["splits"].append(
            {
                "classes": [negative, positive],
                "names": [CLASS_NAMES[negative], CLASS_NAMES[positive]],
                "train_size": size,
                "seeds": len(runs),
                "seconds": round(time.perf_counter() - started, 1),
                "per_seed": [r.metrics for r in runs],
                "summary": summarize(runs),
            }
        )
        print(markdown(results), flush=True)
    default = args.source == TransferConfig().source_model
    out = HERE / "results" / ("transfer.json" if default else f"transfer_{args.source}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
