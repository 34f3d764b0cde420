"""B-on-A with an epoch milestone against B-on-A with a metric-driven phase, over seeds (sandal vs shirt, 200 images).

Both runs are ``lit_deep.experiments.run_transfer``'s B-on-A model (zoo model A's backbone, a new head, 1cycle,
Nadam, max-norm, 20 epochs) on the same images with the same seed; only ``FreezeUnfreeze`` differs:

* ``epoch``: the backbone unfrozen at epoch 4 (the recipe ``transfer/b_on_a``);
* ``phases``: the frozen phase ends when ``val_loss`` has not improved for ``--patience`` epochs (at most
  ``--max-phase`` epochs), and its best weights are restored before unfreezing (``transfer/b_on_a_phases``).

Prints a markdown table (mean +- std over seeds, and the epochs at which the phase ended) and writes
``recipes/results/transfer_phases.json`` (``transfer_phases_p<patience>_m<max-phase>.json`` for other settings).

Run: ``python recipes/transfer_phases.py --seeds 3``
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from dataclasses import replace
from pathlib import Path

from lit_deep import zoo
from lit_deep.experiments.transfer import TransferConfig, run_transfer, summarize

HERE = Path(__file__).resolve().parent


class _PhaseEnds(logging.Handler):
    """Collects the epochs at which FreezeUnfreeze unfroze (from its info messages)."""

    def __init__(self) -> None:
        super().__init__()
        self.epochs: list[int] = []

    def emit(self, record: logging.LogRecord) -> None:
        match = re.search(r"FreezeUnfreeze: epoch (\d+): unfroze", record.getMessage())
        if match:
            self.epochs.append(int(match.group(1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--patience", type=int, default=2)
    parser.add_argument("--max-phase", type=int, default=8)
    parser.add_argument("--output", type=Path, default=Path("runs/transfer_phases"))
    args = parser.parse_args()
    source = zoo.load(TransferConfig().source_model)
    phase = {
        "unfreeze": "backbone",
        "max_epochs": args.max_phase,
        "monitor": "val_loss",
        "patience": args.patience,
        "restore_best": True,
    }
    configs = {"epoch": TransferConfig(), "phases": replace(TransferConfig(), phases=(phase,))}
    handler = _PhaseEnds()
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addHandler(handler)
    results: dict = {"phase": phase, "variants": {}}
    for name, config in configs.items():
        started, runs, ends = time.perf_counter(), [], []
        for seed in range(args.seeds):
            handler.epochs.clear()
            runs.append(run_transfer(source, config, seed, args.output / name, progress=False, models=("transfer",)))
            ends.append(list(handler.epochs))
        results["variants"][name] = {
            "seeds": args.seeds,
            "seconds": round(time.perf_counter() - started, 1),
            "unfrozen_at": ends,
            "per_seed": [r.metrics["transfer"] for r in runs],
            "summary": summarize(runs)["transfer"],
        }
    print(markdown(results))
    default = (args.patience, args.max_phase) == (2, 8)
    out = (
        HERE
        / "results"
        / ("transfer_phases.json" if default else f"transfer_phases_p{args.patience}_m{args.max_phase}.json")
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


def markdown(results: dict) -> str:
    """The comparison as a markdown table."""
    lines = [
        "| B-on-A, sandal vs shirt, 200 images | unfrozen at epoch | accuracy % (det) | accuracy % (MC) | NLL (MC) "
        "| ECE (MC) | seeds |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, variant in results["variants"].items():
        values = variant["summary"]
        det, mc = values["det_accuracy"], values["mc_accuracy"]
        label = "epoch milestone (4)" if name == "epoch" else "metric-driven phase (val_loss, restore best)"
        ends = ", ".join(str(e[0]) if e else "-" for e in variant["unfrozen_at"])
        lines.append(
            f"| {label} | {ends} | {100 * det[0]:.2f} ± {100 * det[1]:.2f} | {100 * mc[0]:.2f} ± {100 * mc[1]:.2f} "
            f"| {values['mc_nll'][0]:.4f} ± {values['mc_nll'][1]:.4f} "
            f"| {values['mc_ece'][0]:.4f} ± {values['mc_ece'][1]:.4f} | {variant['seeds']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
