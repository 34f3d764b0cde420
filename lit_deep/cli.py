"""The ``lit-deep`` command: LightningCLI verbs (fit, validate, test, predict) plus lit_deep's own verbs.

``lit-deep fit --config recipes/baseline.yaml`` trains with ``Classifier`` and ``FashionMNISTDataModule``; any
LightningModule or DataModule can be chosen in the YAML (``class_path``). Extra verbs (``demo``, ``zoo``) are
looked up in :data:`COMMANDS` and imported only when used.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from lit_deep.data.datamodule import FashionMNISTDataModule
from lit_deep.modules.classifier import Classifier

__all__ = ["COMMANDS", "LitDeepCLI", "main"]

#: verb -> "module:function" taking the remaining arguments and returning an exit code.
COMMANDS: dict[str, str] = {}
_LIGHTNING_VERBS = ("fit", "validate", "test", "predict")


class LitDeepCLI(LightningCLI):
    """LightningCLI with lit_deep's defaults: the chapter's MLP and data, and a test run after ``fit``.

    ``--test_after_fit true`` (the default) evaluates the trained model on the test split once fitting ends,
    so ``lit-deep fit --config recipes/baseline.yaml`` prints the test accuracy.
    """

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Add ``--test_after_fit``."""
        parser.add_argument("--test_after_fit", type=bool, default=True, help="Run the test split after fit.")

    def after_fit(self) -> None:
        """Test the final model when ``test_after_fit`` is set and a test loader exists."""
        config = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        if config.get("test_after_fit", True) and not self.trainer.fast_dev_run and not self.trainer.interrupted:
            self.trainer.test(self.model, datamodule=self.datamodule)


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
    if args and args[0] in COMMANDS:
        return _run_extra(args[0], args[1:])
    if args and args[0] in ("-h", "--help") and COMMANDS:
        print(f"lit-deep verbs: {', '.join([*_LIGHTNING_VERBS, *COMMANDS])} (each has its own --help)")
    LitDeepCLI(
        Classifier,
        FashionMNISTDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"description": "Train deep networks the book's way (lit_deep)."},
        auto_configure_optimizers=False,
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
