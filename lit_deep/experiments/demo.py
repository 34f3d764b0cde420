"""``lit-deep demo``: transfer learning from the zoo, end to end, with uncertainty.

1. loads ``mlp_selu.fmnist_a`` (the book's model A) from the zoo through the Hub (offline: the shipped copy),
2. builds task B (sandal vs shirt, 200 training images) and a model with the reused backbone and a new head,
3. trains it with ``FreezeUnfreeze``, ``MaxNorm`` and 1cycle, beside the same architecture from scratch,
4. evaluates both on the task-B test images, deterministically and with MC dropout,
5. prints a report and writes plots to ``--output``.
"""

from __future__ import annotations

import argparse
import math
import re
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import NoReturn

from lightning.pytorch.utilities.rank_zero import rank_zero_only

from lit_deep._io import check_writable, write_json, write_text
from lit_deep.data import CLASS_NAMES
from lit_deep.experiments._plots import plot_curves, plot_lr, plot_uncertain
from lit_deep.experiments.transfer import (
    Hardware,
    TransferConfig,
    TransferRun,
    metrics_table,
    run_transfer,
    summarize,
)
from lit_deep.uncertainty import reliability_diagram

__all__ = ["main", "parser", "validate"]

PLOTS = ("curves.png", "learning_rate.png", "reliability.png", "uncertain.png")


class _Parser(argparse.ArgumentParser):
    """Raises its errors (``lit-deep`` prints them in one line) instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:  # noqa: D102 - argparse's own method
        raise argparse.ArgumentError(None, message)


def parser() -> argparse.ArgumentParser:
    """The demo's command-line options.

    Example::

        >>> parser().parse_args(["--seeds", "3", "--b-classes", "0", "2"]).b_classes
        [0, 2]
    """
    defaults = TransferConfig()
    p = _Parser(
        prog="lit-deep demo",
        description="Transfer learning from the zoo: task B (two classes, few images) with the reused backbone of "
        "a pretrained model vs the same net from scratch; MC-dropout uncertainty; plots.",
    )
    p.add_argument("--seeds", type=int, default=5, help="number of seeds (42, 43, ...); mean +- std when > 1")
    p.add_argument("--output", type=Path, default=Path("out/demo"), help="folder for the logs, plots and report")
    p.add_argument(
        "--source-model",
        default=defaults.source_model,
        help="zoo model whose backbone is reused (e.g. resnet.fmnist, or the self-supervised rotation_cnn.fmnist)",
    )
    p.add_argument(
        "--b-classes",
        type=int,
        nargs=2,
        default=list(defaults.b_classes),
        metavar=("NEG", "POS"),
        help="task B's classes (default 5 6: sandal vs shirt; the newer edition uses 0 2 with 20 images)",
    )
    p.add_argument("--b-train-size", type=int, default=defaults.b_train_size, help="task B's training images")
    p.add_argument("--epochs", type=int, default=defaults.epochs, help="training epochs of each model")
    p.add_argument("--unfreeze-at", type=int, default=defaults.unfreeze_at_epoch, help="epoch that unfreezes")
    p.add_argument("--max-lr", type=float, default=defaults.max_lr, help="1cycle's peak learning rate (Nadam)")
    p.add_argument("--mc-samples", type=int, default=defaults.mc_samples, help="Monte-Carlo dropout samples")
    p.add_argument("--top", type=int, default=6, help="most uncertain test images to show")
    p.add_argument("--no-progress", action="store_true", help="hide Lightning's progress bars")
    p.add_argument("--accelerator", default="cpu", help="Lightning accelerator (cpu, gpu, auto, ...)")
    p.add_argument("--devices", default="1", help="devices per node: a count (2 with --strategy ddp), ids 0,1, auto")
    p.add_argument("--num-nodes", type=int, default=1, help="number of nodes (torchrun / SLURM launches)")
    p.add_argument("--strategy", default="auto", help="Lightning strategy, e.g. ddp (one process per device)")
    return p


def _global_rank() -> int:
    """This process's rank (0 without DDP); Lightning sets it from the launcher's environment."""
    return int(getattr(rank_zero_only, "rank", 0))


def _source_of(model: object) -> str:
    """Where ``zoo.load`` got the model from: ``"hub"`` or ``"shipped"`` (its ``zoo_info.source``)."""
    zoo_info = getattr(model, "zoo_info", None)
    return str(zoo_info.source) if zoo_info is not None else "unknown"


def _uncertain_report(run: TransferRun, names: Sequence[str], top: int, output: Path) -> str:
    mc = run.mc["transfer"]
    assert run.test_images is not None
    assert run.test_labels is not None
    order = mc.entropy.argsort(descending=True)[:top]
    lines = ["Most uncertain task-B test images (transfer model, MC dropout, predictive entropy in nats):"]
    lines.append(f"{'index':>6} {'true':<8} " + " ".join(f"{n:>20}" for n in names) + f" {'entropy':>8}")
    for i in order.tolist():
        cells = " ".join(f"{mc.probs[i, c]:>11.3f} +- {mc.std[i, c]:.3f}" for c in range(len(names)))
        lines.append(f"{i:>6} {names[int(run.test_labels[i])]:<8} {cells} {mc.entropy[i]:>8.3f}")
    plot_uncertain(run.test_images, run.test_labels, mc.probs, mc.std, order, names, output / "uncertain.png")
    return "\n".join(lines)


def validate(args: argparse.Namespace) -> None:
    """Check every option before any work (loading, training); a ``ValueError`` names the first bad one.

    Example::

        >>> try:
        ...     validate(parser().parse_args(["--unfreeze-at", "50", "--epochs", "2"]))
        ... except ValueError as err:
        ...     print(str(err).split(";")[0])
        --unfreeze-at: 50 is not below --epochs 2
    """
    for flag, value, minimum in (
        ("--seeds", args.seeds, 1),
        ("--epochs", args.epochs, 1),
        ("--mc-samples", args.mc_samples, 1),
        ("--b-train-size", args.b_train_size, 1),
        ("--num-nodes", args.num_nodes, 1),
        ("--top", args.top, 0),
        ("--unfreeze-at", args.unfreeze_at, 0),
    ):
        if value < minimum:
            raise ValueError(f"{flag}: must be at least {minimum}, got {value}")
    if args.unfreeze_at >= args.epochs:
        raise ValueError(
            f"--unfreeze-at: {args.unfreeze_at} is not below --epochs {args.epochs}; the backbone would never be "
            f"unfrozen: choose an epoch in 0..{args.epochs - 1} (0 trains it from the start)"
        )
    if not (math.isfinite(args.max_lr) and args.max_lr > 0):
        raise ValueError(f"--max-lr: must be a positive number, got {args.max_lr}")
    negative, positive = args.b_classes
    if not (0 <= negative < len(CLASS_NAMES) and 0 <= positive < len(CLASS_NAMES)) or negative == positive:
        raise ValueError(f"--b-classes: expected two different class indices in 0..9, got {negative} {positive}")
    if not (
        (args.devices.isdigit() and int(args.devices) > 0)
        or args.devices in ("auto", "-1")
        or re.fullmatch(r"\d+(,\d*)+", args.devices)  # device ids as Lightning takes them: 0,1 or 0,
    ):
        raise ValueError(f"--devices: expected a count, ids like 0,1, 'auto' or -1, got {args.devices!r}")
    if "/" not in args.source_model:  # a zoo name (a Hub repo id owner/name is checked when it is downloaded)
        from lit_deep import zoo

        if args.source_model not in zoo.list_models():
            known = ", ".join(zoo.list_models())
            raise ValueError(f"--source-model: no zoo model {args.source_model!r}; choose one of {known}")
    check_writable(args.output, "--output")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns 0.

    Raises:
        ValueError: for a bad option, before any work (``lit-deep demo`` prints it in one line, exit code 2).

    Example::

        >>> import contextlib, io
        >>> with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):
        ...     main(["--help"])
        >>> "--source-model" in out.getvalue()
        True
    """
    from lit_deep import zoo

    args = parser().parse_args(argv)
    validate(args)
    config = TransferConfig(
        source_model=args.source_model,
        b_classes=(args.b_classes[0], args.b_classes[1]),
        b_train_size=args.b_train_size,
        epochs=args.epochs,
        unfreeze_at_epoch=args.unfreeze_at,
        mc_samples=args.mc_samples,
        max_lr=args.max_lr,
    )
    devices: int | str = int(args.devices) if args.devices.lstrip("-").isdigit() else args.devices
    hardware = Hardware(args.accelerator, devices, args.num_nodes, args.strategy)
    output: Path = args.output
    started = time.perf_counter()
    source = zoo.load(config.source_model)  # under DDP: local rank 0 downloads, the other ranks read its cache
    if _global_rank() == 0:
        print(f"source model: {config.source_model} ({_source_of(source)})")
    progress = not args.no_progress
    runs = [run_transfer(source, config, 42 + i, output, progress, hardware) for i in range(args.seeds)]
    if _global_rank() != 0:  # every rank evaluated the same synchronised models; rank 0 reports
        return 0
    names = [CLASS_NAMES[c] for c in config.b_classes]
    table = metrics_table(summarize(runs), len(runs))
    first = runs[0]
    uncertain = _uncertain_report(first, names, args.top, output)
    plot_curves(first.log_dirs, output / "curves.png")
    plot_lr(first.log_dirs, output / "learning_rate.png")
    assert first.test_labels is not None
    reliability_diagram(
        first.mc["transfer"], first.test_labels, output / "reliability.png", title="Transfer, MC dropout"
    )
    seconds = time.perf_counter() - started
    report = (
        f"\nTask B: {names[0]} vs {names[1]}, {config.b_train_size} training images, "
        f"{len(first.test_labels)} test images; backbone from {config.source_model}\n\n{table}\n\n{uncertain}\n\n"
        f"Plots: {', '.join(str(output / f) for f in PLOTS)}\n"
        f"Wall time: {seconds:.0f} s\n"
    )
    print(report)
    write_text(output / "report.txt", report)
    results = {"config": asdict(config), "seeds": [r.seed for r in runs], "metrics": [r.metrics for r in runs]}
    write_json(output / "results.json", results, indent=2)  # strict JSON (NaN -> null), atomic
    return 0
