"""The ``lit-deep`` command: LightningCLI verbs (fit, validate, test, predict) plus lit_deep's own verbs.

``lit-deep fit --config recipes/baseline.yaml`` trains with ``Classifier`` and ``FashionMNISTDataModule``; any
LightningModule or DataModule can be chosen in the YAML (``class_path``). Extra verbs (``demo``, ``zoo``) are
looked up in :data:`COMMANDS` and imported only when used.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities.model_helpers import is_overridden

from lit_deep.data.datamodule import FashionMNISTDataModule
from lit_deep.modules import AutoencoderModule, Classifier  # noqa: F401 - their short names work in recipes
from lit_deep.modules._model import check_checkpoint

__all__ = ["COMMANDS", "LitDeepCLI", "main", "release_process_group", "write_results"]

#: verb -> "module:function" taking the remaining arguments and returning an exit code.
COMMANDS: dict[str, str] = {"zoo": "lit_deep.zoo.cli:main", "demo": "lit_deep.experiments.demo:main"}
_LIGHTNING_VERBS = ("fit", "validate", "test", "predict")


class LitDeepCLI(LightningCLI):
    """LightningCLI with lit_deep's defaults: the chapter's MLP and data, and a test run after ``fit``.

    ``--test_after_fit true`` (the default) evaluates the trained model on the test split once fitting ends,
    so ``lit-deep fit --config recipes/baseline.yaml`` prints the test accuracy.
    """

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Add ``--test_after_fit`` and ``--find-lr``."""
        parser.add_argument("--test_after_fit", type=bool, default=True, help="Run the test split after fit.")
        parser.add_argument(
            "--find_lr",
            "--find-lr",
            type=bool,
            nargs="?",
            const=True,
            default=False,
            help="Before fit, run the learning-rate range test, save lr_finder.png in the run directory and set "
            "1cycle's max_lr (else the optimizer's lr) to the rate at the lowest loss / 10.",
        )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse, then check a ``--ckpt_path`` file before LightningCLI reads its hyper-parameters into the config.

        The checkpoint is data: its model description must name allow-listed classes only and fit its weights, and
        its LightningModule class must be one already imported (see :func:`lit_deep.modules.check_checkpoint`).
        """
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        config = self.config.get(subcommand, self.config) if subcommand else self.config
        ckpt_path = config.get("ckpt_path") if hasattr(config, "get") else None
        if isinstance(ckpt_path, str) and Path(ckpt_path).is_file():
            check_checkpoint(ckpt_path)

    def before_fit(self) -> None:
        """Run the learning-rate range test when ``--find-lr`` is set (see :func:`lit_deep.schedules.find_lr`)."""
        config = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        if config.get("find_lr", False):
            from lit_deep.schedules.lr_finder import find_lr

            run_dir = Path(self.trainer.log_dir or self.trainer.default_root_dir)
            find_lr(self.trainer, self.model, self.datamodule, plot_path=run_dir / "lr_finder.png")

    def after_fit(self) -> None:
        """Test the final model when ``test_after_fit`` is set and a test loader exists."""
        config = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        fit_seconds = time.perf_counter() - self._fit_started
        fit_metrics = dict(self.trainer.callback_metrics)  # trainer.test replaces them
        testable = is_overridden("test_step", self.model)  # a pretext module has no test split to score
        if (
            config.get("test_after_fit", True)
            and testable
            and not getattr(self.trainer, "fast_dev_run", False)  # set by a connector: invisible to mypy
            and not self.trainer.interrupted
        ):
            self.trainer.test(self.model, datamodule=self.datamodule)
        write_results(self.trainer, fit_seconds, {**fit_metrics, **self.trainer.callback_metrics})

    def before_instantiate_classes(self) -> None:
        """Start the clock that ``results.json`` reports as the fit's wall time."""
        self._fit_started = time.perf_counter()


def write_results(trainer: pl.Trainer, fit_seconds: float, metrics: dict[str, Any] | None = None) -> Path | None:
    """Write the run's final metrics, epochs and wall time to ``<default_root_dir>/results.json`` (rank 0).

    ``recipes/run_all.py`` reads these files to build ``recipes/RESULTS.md``.

    Returns:
        The file written, or ``None`` on other ranks.
    """
    if not trainer.is_global_zero:
        return None
    source = trainer.callback_metrics if metrics is None else metrics
    values = {k: float(v) for k, v in source.items() if torch.is_tensor(v) and v.numel() == 1}
    results = {
        "metrics": values,
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "fit_seconds": round(fit_seconds, 1),
        "devices": trainer.num_devices * trainer.num_nodes,
    }
    path = Path(trainer.default_root_dir) / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return path


def _run_extra(verb: str, argv: list[str]) -> int:
    module_name, _, func_name = COMMANDS[verb].partition(":")
    func: Callable[[list[str]], int] = getattr(importlib.import_module(module_name), func_name)
    return int(func(argv) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lit-deep`` with ``argv`` (default: ``sys.argv[1:]``).

    Example::

        >>> import contextlib, io
        >>> out = io.StringIO()
        >>> with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        ...     main(["--help"])
        >>> "fit" in out.getvalue()
        True
    """
    args = list(sys.argv[1:] if argv is None else argv)
    group_was_up = _group_is_up()  # a caller's own process group is the caller's to end
    try:
        if args and args[0] in COMMANDS:
            return _run_extra(args[0], args[1:])
        if args and args[0] in ("-h", "--help") and COMMANDS:
            print(f"lit-deep verbs: {', '.join([*_LIGHTNING_VERBS, *COMMANDS])} (each has its own --help)")
        LitDeepCLI(
            pl.LightningModule,  # Classifier, AutoencoderModule or any LightningModule, chosen by class_path
            FashionMNISTDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=args,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"description": "Train deep networks the book's way (lit_deep)."},
            auto_configure_optimizers=False,
        )
        return 0
    finally:
        if not group_was_up:
            release_process_group()


def _group_is_up() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def release_process_group() -> None:
    """Destroy the ``torch.distributed`` process group, if one is up (no-op otherwise).

    Lightning leaves the group of a DDP run alive until the interpreter exits, where tearing down gloo's
    threads occasionally aborts the process ("terminate called without an active exception") after a
    successful run. Ending it explicitly once the work is done avoids that.

    Example::

        >>> import torch.distributed as dist
        >>> release_process_group()  # nothing to release in a single process
        >>> dist.is_initialized()
        False
    """
    import torch.distributed as dist

    if _group_is_up():
        dist.destroy_process_group()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
