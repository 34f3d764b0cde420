"""MkDocs hooks: tables generated from the code and the measured results, so the site cannot drift from them.

Markers a page may hold (each on a line of its own):

- ``<!-- zoo-table -->``: the zoo's table, generated from ``lit_deep.zoo.REGISTRY`` (name, architecture, task,
  test metrics, weights size, recipe);
- ``<!-- zoo-cards -->``: each zoo model's summary and limits from the registry (the words of its model card);
- ``<!-- results: PREFIX [PREFIX ...] -->``: the rows of ``recipes/RESULTS.md``'s main table whose recipe starts
  with one of the prefixes (e.g. ``init/`` or ``baseline``), under the table's own header;
- ``<!-- include: PATH -->``: a Markdown file of the repository (e.g. ``recipes/RESULTS.md``) without its title;
- ``<!-- recipes: PREFIX [PREFIX ...] -->``: the recipes ``recipes/PREFIX*.yaml`` with what each runs (the
  comment at the top of the file, written by ``recipes/catalog.py``).

The README's zoo table sits between ``<!-- zoo-table:start -->`` and ``<!-- zoo-table:end -->``; the build warns
(and so fails under ``--strict``) when it differs from the generated one. ``python docs/hooks.py --readme``
rewrites it.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RESULTS = ROOT / "recipes" / "RESULTS.md"
README_START, README_END = "<!-- zoo-table:start -->", "<!-- zoo-table:end -->"
log = logging.getLogger("mkdocs.plugins.lit_deep")


def _architecture(arch: dict[str, Any]) -> str:
    """A one-line description of a registry entry's ``{"class_path", "init_args"}``."""
    cls = arch["class_path"].rsplit(".", 1)[-1]
    args = arch.get("init_args", {})
    parts = []
    if "hidden" in args:
        parts.append("-".join(str(h) for h in args["hidden"]))
    if "channels" in args:
        parts.append("convs " + "-".join(str(c) for c in args["channels"]) + f", dense {args.get('dense', '')}")
    if "widths" in args:
        widths = "-".join(str(c) for c in args["widths"])
        parts.append(f"widths {widths}, {args.get('blocks', 3)} blocks/stage, BN")
    if args.get("activation"):
        parts.append(args["activation"].upper() if args["activation"] in ("selu", "elu") else args["activation"])
    if args.get("init"):
        parts.append(args["init"])
    if args.get("batch_norm"):
        parts.append("BN" if args["batch_norm"] is True else f"BN {args['batch_norm']}")
    dropout = args.get("dropout")
    if dropout:
        rate = max(dropout) if isinstance(dropout, list) else dropout
        kind = args.get("dropout_kind", "standard")
        parts.append(f"dropout {rate}" + ("" if kind == "standard" else f" ({kind})"))
    return f"`{cls}` " + ", ".join(parts)


def _percent(value: float) -> str:
    return f"{100 * value:.2f} %"


def zoo_table() -> str:
    """The zoo's Markdown table, one row per registry entry, in the registry's order."""
    from lit_deep.zoo import REGISTRY

    rows = [
        "| model | architecture | trained on | test accuracy | NLL | ECE (15 bins) | weights | recipe |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for entry in REGISTRY.values():
        metrics = entry.metrics
        if entry.kind == "autoencoder":
            accuracy, nll, ece = f"reconstruction MSE {metrics['test_mse']:.4f}", "", ""
        elif entry.kind == "pretext":
            accuracy, nll, ece = f"rotation {_percent(metrics['test_rotation_acc'])} (self-supervised)", "", ""
        else:
            accuracy = _percent(metrics["test_acc"])
            if entry.mc_samples:
                det = entry.extra_metrics.get("det_test_acc")
                accuracy += f" ({entry.mc_samples} MC samples" + (f"; one pass {_percent(det)})" if det else ")")
            nll = f"{metrics['test_nll']:.4f}" if "test_nll" in metrics else ""
            ece = f"{metrics['test_ece']:.4f}" if "test_ece" in metrics else ""
        task = {"full": "all 10 classes", "A": "task A (8 classes)"}.get(entry.task, entry.task)
        if entry.kind in ("autoencoder", "pretext"):
            task = "all images, no labels"
        weights = ROOT / "zoo" / entry.name / "model.safetensors"
        size = f"{weights.stat().st_size / 1e6:.1f} MB" if weights.exists() else ""
        rows.append(
            f"| `{entry.name}` | {_architecture(entry.architecture)} | {task} | {accuracy} | {nll} | {ece} | "
            f"{size} | `{entry.recipe}` |"
        )
    return "\n".join(rows)


def zoo_cards() -> str:
    """One section per registry entry: its summary and limits (the model card's words), and how to load it."""
    from lit_deep.zoo import REGISTRY

    sections = []
    for entry in REGISTRY.values():
        sections.append(
            f"### `{entry.name}`\n\n{entry.summary}\n\n**Limits.** {entry.limits}\n\n"
            f"Hub repo `{entry.repo_id()}`, trained by `{entry.recipe}` (seed {entry.seed}); "
            f'`zoo.load("{entry.name}")`.'
        )
    return "\n\n".join(sections)


def results_rows(prefixes: list[str]) -> str:
    """The header of RESULTS.md's first table and its rows whose recipe starts with one of ``prefixes``."""
    lines = RESULTS.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| recipe |"))
    header, rule = lines[start], lines[start + 1]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        recipe = line.split("|")[1].strip().strip("`")
        if any(recipe.startswith(prefix) for prefix in prefixes):
            rows.append(line)
    if not rows:
        log.warning("results: no row of recipes/RESULTS.md starts with %s", " or ".join(prefixes))
    return "\n".join([header, rule, *rows])


def recipe_list(prefixes: list[str]) -> str:
    """A table of the recipes under ``recipes/<prefix>*.yaml``: name, what it runs (its own comment), command."""
    rows = ["| recipe | what it runs |", "|---|---|"]
    for prefix in prefixes:
        for path in sorted((ROOT / "recipes").glob(f"{prefix}*.yaml")):
            comment = []
            for line in path.read_text().splitlines():
                if not line.startswith("#"):
                    break
                text = line.lstrip("# ").rstrip()
                if text.startswith("Run:"):
                    break
                if not text.startswith(("Generated by", "Epochs are kept", "Every recipe saves", "--ckpt_path")):
                    comment.append(text)
            name = path.relative_to(ROOT / "recipes").with_suffix("").as_posix()
            rows.append(f"| `{name}` | {' '.join(comment).replace('|', chr(92) + '|')} |")
    if len(rows) == 2:
        log.warning("recipes: no recipe matches %s", " or ".join(prefixes))
    return "\n".join(rows)


def included(relative: str) -> str:
    """A Markdown file of the repository without its title line (its other headings keep their levels)."""
    lines = (ROOT / relative).read_text().splitlines()
    return "\n".join(lines[1:] if lines and lines[0].startswith("# ") else lines)


def readme_zoo_table() -> str | None:
    """The zoo table as the README holds it (``None`` without the markers)."""
    match = re.search(re.escape(README_START) + r"\n(.*?)\n" + re.escape(README_END), README.read_text(), re.S)
    return match.group(1).strip() if match else None


def on_pre_build(config: Any, **kwargs: Any) -> None:
    """Warn when the README's zoo table is not the one the registry generates."""
    if readme_zoo_table() != zoo_table():
        log.warning("README.md: the zoo table differs from lit_deep.zoo.REGISTRY; run `python docs/hooks.py --readme`")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any, **kwargs: Any) -> str:
    """Replace the markers of the module docstring by generated tables."""
    markdown = markdown.replace("<!-- zoo-table -->", zoo_table()).replace("<!-- zoo-cards -->", zoo_cards())
    markdown = re.sub(r"<!-- include: ([^>]+?) -->", lambda m: included(m.group(1).strip()), markdown)
    markdown = re.sub(r"<!-- recipes: ([^>]+?) -->", lambda m: recipe_list(m.group(1).split()), markdown)
    return re.sub(r"<!-- results: ([^>]+?) -->", lambda m: results_rows(m.group(1).split()), markdown)


def write_readme_table() -> None:
    """Rewrite the README's zoo table from the registry."""
    text = README.read_text()
    if README_START not in text or README_END not in text:
        raise SystemExit(f"README.md: no {README_START} ... {README_END} markers")
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    README.write_text(f"{head}{README_START}\n{zoo_table()}\n{README_END}{tail}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    if sys.argv[1:] == ["--readme"]:
        write_readme_table()
    else:
        print(zoo_table())
