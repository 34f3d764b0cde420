"""Run every recipe on the real Fashion-MNIST and regenerate ``recipes/RESULTS.md``.

Each recipe runs as ``lit-deep fit --config <file>`` in its own process (the fit is followed by a test of the
final model) and leaves ``runs/<group>/<name>/results.json`` (metrics, epochs, wall time). The transfer table
comes from ``recipes/results/transfer.json`` (``python recipes/transfer_seeds.py``). Results already on disk
are reused unless ``--rerun``; ``--smoke`` runs every recipe with ``--trainer.fast_dev_run true`` instead (what
the test suite does) and writes nothing.

Run: ``python recipes/run_all.py [--only GROUP ...] [--rerun]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from catalog import RECIPES  # noqa: E402

# Book figures for the recipes written by hand (the catalog carries its own).
BOOK = {
    "schedules/one_cycle": "val 89.34 % (1cycle, 25 epochs, batch 128; handson-ml2)",
}
# Recipes that need another recipe's output first.
ORDER_FIRST = ("pretraining/rotation_pretext",)


def recipe_files() -> list[Path]:
    """Every runnable recipe: the catalog's, the schedules' and the zoo's (zoo models are reported by their cards)."""
    files = [r.path for r in RECIPES] + sorted((HERE / "schedules").glob("*.yaml"))
    key = {f"{p.parent.name}/{p.stem}": p for p in files}
    first = [key[k] for k in ORDER_FIRST if k in key]
    return first + [p for p in files if p not in first]


def run_dir(path: Path) -> Path:
    config = yaml.safe_load(path.read_text())
    return ROOT / config["trainer"]["default_root_dir"]


def stored(path: Path) -> Path:
    """Where a recipe's results are kept (committed): ``recipes/results/<group>/<name>.json``."""
    return HERE / "results" / path.parent.name / f"{path.stem}.json"


def run(path: Path, smoke: bool) -> dict | None:
    args = [sys.executable, "-m", "lit_deep.cli", "fit", "--config", str(path), "--trainer.enable_progress_bar", "false"]
    if smoke:
        args += ["--trainer.fast_dev_run", "true", "--trainer.default_root_dir", str(ROOT / "runs" / "smoke")]
    started = time.perf_counter()
    done = subprocess.run(args, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{path.relative_to(ROOT)} failed:\n{done.stderr[-3000:]}")
    if smoke:
        return None
    results = json.loads((run_dir(path) / "results.json").read_text())
    results["process_seconds"] = round(time.perf_counter() - started, 1)
    quant = run_dir(path) / "quantization.json"
    if quant.exists():
        results["quantization"] = json.loads(quant.read_text())
    stored(path).parent.mkdir(parents=True, exist_ok=True)
    stored(path).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return results


def _book(path: Path) -> str:
    name = f"{path.parent.name}/{path.stem}"
    for recipe in RECIPES:
        if recipe.path == path:
            return recipe.book
    return BOOK.get(name, "")


def _extra(results: dict) -> str:
    notes = []
    if "quantization" in results:
        q = results["quantization"]
        notes.append(
            f"int8: {q['speedup']:.2f}x faster (batch {q['batch_size']}), accuracy {100 * q['float_test_acc']:.2f} % "
            f"-> {100 * q['int8_test_acc']:.2f} %"
        )
    return "; ".join(notes)


def table(paths: list[Path]) -> str:
    lines = [
        "| recipe | test acc % | val acc % | test NLL | epochs | fit wall time | book | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for path in paths:
        results_file = stored(path)
        name = f"`{path.parent.name}/{path.stem}`"
        if not results_file.exists():
            lines.append(f"| {name} | not run | | | | | {_book(path)} | |")
            continue
        r = json.loads(results_file.read_text())
        m = r["metrics"]
        test = f"{100 * m['test_acc']:.2f}" if "test_acc" in m else "-"
        val = f"{100 * m['val_acc']:.2f}" if "val_acc" in m else "-"
        nll = f"{m['test_nll']:.4f}" if "test_nll" in m else "-"
        notes = _extra(r)
        if "sparsity" in m:
            notes = f"sparsity {100 * m['sparsity']:.1f} %" + (f"; {notes}" if notes else "")
        if "val_acc" not in m and "train_acc" in m:
            notes = f"pretext (rotation) accuracy, train {100 * m['train_acc']:.2f} %" + (f"; {notes}" if notes else "")
        lines.append(
            f"| {name} | {test} | {val} | {nll} | {r['epochs']} | {r['fit_seconds'] / 60:.1f} min | {_book(path)} | {notes} |"
        )
    return "\n".join(lines)


def transfer_table() -> str:
    source = HERE / "results" / "transfer.json"
    if not source.exists():
        return "_not run yet: `python recipes/transfer_seeds.py`_"
    sys.path.insert(0, str(HERE))
    from transfer_seeds import markdown

    return markdown(json.loads(source.read_text()))


def write_results(paths: list[Path]) -> Path:
    template = (HERE / "RESULTS.template.md").read_text()
    text = template.replace("{{RECIPES}}", table(paths)).replace("{{TRANSFER}}", transfer_table())
    out = HERE / "RESULTS.md"
    out.write_text(text)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="groups to run (default: all)")
    parser.add_argument("--rerun", action="store_true", help="run recipes whose results already exist")
    parser.add_argument("--smoke", action="store_true", help="fast_dev_run every recipe; write nothing")
    parser.add_argument("--table-only", action="store_true", help="only rewrite RESULTS.md from the results on disk")
    args = parser.parse_args()
    paths = recipe_files()
    if not args.table_only:
        for path in paths:
            if args.only and path.parent.name not in args.only:
                continue
            if not args.smoke and not args.rerun and stored(path).exists():
                continue
            print(f"running {path.relative_to(ROOT)}", flush=True)
            run(path, args.smoke)
    if not args.smoke:
        print(f"wrote {write_results(paths)}")


if __name__ == "__main__":
    main()
