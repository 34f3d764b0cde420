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
import csv
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from catalog import RECIPES  # noqa: E402

# Book figures for the recipes written by hand (the catalog carries its own).
BOOK = {
    "baseline": "88.37 % / 88.64 % test (SGD, 30 epochs; handson-ml2 / handson-ml3)",
    "schedules/one_cycle": "val 89.34 % (1cycle, 25 epochs, batch 128; handson-ml2)",
}
# What the figures alone do not say (observations from the runs' logs).
NOTES = {
    "schedules/piecewise": "Nadam at 0.01 is too fast for this SELU net: val accuracy fell to 58 % by epoch 3 and "
    "recovered only partly after the steps down (exponential decay starts at the same rate but leaves it sooner)",
    "deep/relu_he_100": "100 ReLU layers train far worse than 100 SELU layers in the same 5 epochs",
    "optimizers/adamw": "the book's weight decay 1e-5 is multiplied by the rate 1e-3 (PyTorch and tf.keras alike): "
    "1e-8 per step, below float32 resolution, so this run equals Adam's exactly; decoupled decay needs ~1e-2 here",
}
# Recipes that need another recipe's output first.
ORDER_FIRST = ("pretraining/rotation_pretext",)


def recipe_files() -> list[Path]:
    """Every recipe of the table: the baseline, the catalog's and the schedules' (zoo models have their cards)."""
    return [HERE / "baseline.yaml"] + [r.path for r in RECIPES] + sorted((HERE / "schedules").glob("*.yaml"))


def recipe_name(path: Path) -> str:
    """``group/name`` (``baseline`` for the top-level recipe)."""
    return path.stem if path.parent == HERE else f"{path.parent.name}/{path.stem}"


def selected(path: Path, only: list[str] | None) -> bool:
    """Whether ``--only`` (groups or ``group/name`` recipes) selects ``path``; everything without ``--only``."""
    return not only or path.parent.name in only or recipe_name(path) in only


def capped(path: Path) -> bool:
    """Whether the stored results ran fewer epochs than the recipe asks for (and did not stop early)."""
    if not stored(path).exists():
        return False
    results = json.loads(stored(path).read_text())
    return not _stopped_early(path, results) and results["epochs"] < _max_epochs(path)


def _stopped_early(path: Path, results: dict) -> bool:
    """Whether a run short of its recipe's epochs ended by EarlyStopping rather than by ``--epoch-cap``."""
    return "EarlyStopping" in path.read_text() and not results.get("epoch_cap")


def run_dir(path: Path) -> Path:
    config = yaml.safe_load(path.read_text())
    return ROOT / config["trainer"]["default_root_dir"]


def stored(path: Path) -> Path:
    """Where a recipe's results are kept (committed): ``recipes/results/<group>/<name>.json``."""
    return HERE / "results" / f"{recipe_name(path)}.json"


def _max_epochs(path: Path) -> int:
    return int(yaml.safe_load(path.read_text())["trainer"].get("max_epochs", 1000))


def _cost(path: Path) -> float:
    """A rough relative run time: epochs times steps per epoch (the 100-layer nets count four times)."""
    data = yaml.safe_load(path.read_text()).get("data", {}).get("init_args", {})
    images = data.get("train_size") or (data.get("b_train_size", 200) if data.get("task") == "B" else 55_000)
    epochs = min(_max_epochs(path), EPOCH_CAP or 10**6)
    return epochs * images / 55_000 * 32 / data.get("batch_size", 32) * (4 if path.parent.name == "deep" else 1)


EPOCH_CAP: int | None = None  # --epoch-cap: shorten long recipes (the results record the epochs actually run)


def run(path: Path, smoke: bool) -> dict | None:
    args = [
        sys.executable,
        "-m",
        "lit_deep.cli",
        "fit",
        "--config",
        str(path),
        "--trainer.enable_progress_bar",
        "false",
    ]
    if EPOCH_CAP is not None and _max_epochs(path) > EPOCH_CAP and not smoke:
        args += ["--trainer.max_epochs", str(EPOCH_CAP)]
    if smoke:
        args += ["--trainer.fast_dev_run", "true", "--trainer.default_root_dir", str(ROOT / "runs" / "smoke")]
    started = time.perf_counter()
    # One thread per process: on a shared 2-core machine, two single-threaded recipes finish sooner than two
    # that each ask for both cores (oversubscription made training ~10x slower in our measurements).
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{path.relative_to(ROOT)} failed:\n{done.stderr[-3000:]}")
    if smoke:
        return None
    results = collect(path)
    assert results is not None
    results["process_seconds"] = round(time.perf_counter() - started, 1)
    if EPOCH_CAP is not None and _max_epochs(path) > EPOCH_CAP:
        results["epoch_cap"] = EPOCH_CAP  # a short run by request, not an early stop
    stored(path).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return results


def _last_logged(folder: Path, keys: tuple[str, ...]) -> dict[str, float]:
    logs = sorted(folder.glob("**/metrics.csv"), key=lambda p: p.stat().st_mtime)
    found: dict[str, float] = {}
    if logs:
        with open(logs[-1], newline="") as fh:
            for row in csv.DictReader(fh):
                found.update({k: float(row[k]) for k in keys if row.get(k)})
    return found


def collect(path: Path) -> dict | None:
    """Store the results a finished run left in its run directory (``None`` if there are none)."""
    source = run_dir(path) / "results.json"
    if not source.exists():
        return None
    results = json.loads(source.read_text())
    results["recipe_max_epochs"] = _max_epochs(path)
    if "val_acc" not in results["metrics"]:  # runs before the CLI kept the fit's metrics: read the CSV log
        results["metrics"].update(_last_logged(run_dir(path), ("val_acc", "val_nll", "train_acc")))
    quant = run_dir(path) / "quantization.json"
    if quant.exists():
        results["quantization"] = json.loads(quant.read_text())
    stored(path).parent.mkdir(parents=True, exist_ok=True)
    stored(path).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return results


def _book(path: Path) -> str:
    name = recipe_name(path)
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


def _epochs(path: Path, results: dict) -> str:
    planned = results.get("recipe_max_epochs")
    if planned and planned != results["epochs"]:
        if _stopped_early(path, results):
            return f"{results['epochs']} (early stop; max {planned})"
        return f"{results['epochs']} (recipe: {planned})"
    return str(results["epochs"])


def table(paths: list[Path]) -> str:
    lines = [
        "| recipe | test acc % | val acc % | test NLL | epochs | fit wall time | book | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for path in paths:
        results_file = stored(path)
        name = f"`{recipe_name(path)}`"
        if not results_file.exists():
            lines.append(f"| {name} | not run | | | | | {_book(path)} | |")
            continue
        r = json.loads(results_file.read_text())
        m = r["metrics"]
        test = f"{100 * m['test_acc']:.2f}" if "test_acc" in m else "-"
        val = f"{100 * m['val_acc']:.2f}" if "val_acc" in m else "-"
        nll = f"{m['test_nll']:.4f}" if "test_nll" in m else "-"
        notes = "; ".join(n for n in (NOTES.get(recipe_name(path), ""), _extra(r)) if n)
        if "sparsity" in m:
            notes = f"sparsity {100 * m['sparsity']:.1f} %" + (f"; {notes}" if notes else "")
        if "val_acc" not in m and "train_acc" in m:
            notes = f"pretext (rotation) accuracy, train {100 * m['train_acc']:.2f} %" + (f"; {notes}" if notes else "")
        lines.append(
            f"| {name} | {test} | {val} | {nll} | {_epochs(path, r)} | {r['fit_seconds'] / 60:.1f} min "
            f"| {_book(path)} | {notes} |"
        )
    return "\n".join(lines)


def transfer_table() -> str:
    source = HERE / "results" / "transfer.json"
    if not source.exists():
        return "_not run yet: `python recipes/transfer_seeds.py`_"
    sys.path.insert(0, str(HERE))
    from transfer_seeds import markdown

    return markdown(json.loads(source.read_text()))


def script_table(name: str, script: str) -> str:
    """The markdown table of ``recipes/<script>.py`` from ``recipes/results/<name>.json``."""
    source = HERE / "results" / f"{name}.json"
    if not source.exists():
        return f"_not run yet: `python recipes/{script}.py`_"
    sys.path.insert(0, str(HERE))
    module = __import__(script)
    return module.markdown(json.loads(source.read_text()))


def write_results(paths: list[Path]) -> Path:
    template = (HERE / "RESULTS.template.md").read_text()
    text = template.replace("{{RECIPES}}", table(paths)).replace("{{TRANSFER}}", transfer_table())
    text = text.replace("{{ENSEMBLE}}", script_table("ensemble", "ensemble_seeds"))
    text = text.replace("{{TRANSFER_PHASES}}", script_table("transfer_phases", "transfer_phases"))
    text = text.replace("{{TRANSFER_RESNET}}", script_table("transfer_resnet.fmnist", "transfer_seeds"))
    text = text.replace("{{TEMPERATURE}}", script_table("temperature", "temperature_zoo"))
    text = text.replace("{{SSL}}", script_table("ssl_eval", "ssl_eval"))
    out = HERE / "RESULTS.md"
    out.write_text(text)
    return out


def _announce(func, path: Path, smoke: bool) -> None:  # noqa: ANN001
    started = time.perf_counter()
    try:
        func(path, smoke)
    except RuntimeError as err:
        print(f"FAILED {err}", flush=True)
        return
    print(f"done {path.relative_to(ROOT)} in {time.perf_counter() - started:.0f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="groups or group/name recipes to run (default: all)")
    parser.add_argument("--capped", action="store_true", help="also rerun results with fewer epochs than planned")
    parser.add_argument("--rerun", action="store_true", help="run recipes whose results already exist")
    parser.add_argument("--smoke", action="store_true", help="fast_dev_run every recipe; write nothing")
    parser.add_argument("--table-only", action="store_true", help="only rewrite RESULTS.md from the results on disk")
    parser.add_argument("--jobs", type=int, default=2, help="recipes run at once (one thread each)")
    parser.add_argument("--epoch-cap", type=int, help="run at most this many epochs per recipe")
    parser.add_argument("--collect", action="store_true", help="store results of runs finished outside run_all")
    args = parser.parse_args()
    global EPOCH_CAP
    EPOCH_CAP = args.epoch_cap
    if args.collect:
        for path in recipe_files():
            stale = stored(path).exists() and "val_acc" not in json.loads(stored(path).read_text())["metrics"]
            if (stale or not stored(path).exists()) and collect(path) is not None:
                print(f"collected {path.relative_to(ROOT)}")
    paths = recipe_files()
    if not args.table_only:
        todo = [
            p
            for p in paths
            if selected(p, args.only)
            and (args.smoke or args.rerun or not stored(p).exists() or (args.capped and capped(p)))
        ]
        todo.sort(key=_cost, reverse=True)  # longest first: two workers finish closer together
        first = [p for p in todo if recipe_name(p) in ORDER_FIRST]
        for path in first:
            _announce(run, path, args.smoke)
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for future in [pool.submit(_announce, run, p, args.smoke) for p in todo if p not in first]:
                future.result()
    if not args.smoke:
        print(f"wrote {write_results(paths)}")


if __name__ == "__main__":
    main()
